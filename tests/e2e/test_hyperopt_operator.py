"""The operator in-process on the local cluster running real `freqtrade hyperopt` searches on
the bundled data through the local executor: two workers through the admission queue, the
merge (independent workers with SQLite records, one shared Optuna study on PostgreSQL), the
walk-forward Backtest, the records; a strategy with nothing to search refused; a deleted
Hyperopt's workers stopped."""

from __future__ import annotations

import base64
import copy
import json
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from kubernetes import client
from tests.support.manifests import example
from tests.support.operator import running_operator
from tests.support.wait import wait_for

from tradebot.domain import hyperopt_jobs
from tradebot.executors import local_hyperopt

G, V = "tradebot.dev", "v1alpha1"
NAME = "ema-rsi-search"


def _apply(kubectl: Any, namespace: str, *docs: dict[str, Any]) -> None:
    for doc in docs:
        kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(doc))


def _get(api: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    return dict(api.get_namespaced_custom_object(G, V, namespace, plural, name))


def _status(api: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    return dict(_get(api, namespace, plural, name).get("status") or {})


def _hyperopt(name: str = NAME, **spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(example("Hyperopt"))
    doc["metadata"] = {"name": name}
    doc["spec"].update(spec)
    return doc


class Watcher:
    """Samples a Hyperopt's status from a thread: the most workers seen Running at once and
    every progress value. A failing read fails the test (`check`)."""

    def __init__(self, api: Any, namespace: str, name: str) -> None:
        self.api, self.namespace, self.name = api, namespace, name
        self.most_running = 0
        self.progress: list[str] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    s = _status(self.api, self.namespace, "hyperopts", self.name)
                except client.ApiException as e:
                    if e.status != 404:
                        raise
                    s = {}
                running = sum(w.get("phase") == "Running" for w in s.get("workers") or [])
                self.most_running = max(self.most_running, running)
                if s.get("progress") and (not self.progress or self.progress[-1] != s["progress"]):
                    self.progress.append(s["progress"])
                self._stop.wait(0.3)
        except BaseException as e:
            self.error = e

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def check(self) -> None:
        if self.error is not None:
            raise AssertionError(f"status watcher died: {self.error!r}")


def _search(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, dsn: str
) -> tuple[dict[str, Any], Watcher, dict[str, Any]]:
    api = client.CustomObjectsApi(api_client)
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="local",
        max_concurrent_backtests=2,
        reconcile_interval_seconds=1.0,
        database_dsn=dsn,
        local_state_dir=tmp_path / "state",
    ):
        _apply(kubectl, namespace, example("Strategy", "ema-rsi"))
        wait_for(
            lambda: _status(api, namespace, "strategies", "ema-rsi").get("phase") == "Ready",
            60,
            what="Strategy Ready",
        )
        with Watcher(api, namespace, NAME) as watcher:
            _apply(kubectl, namespace, _hyperopt())
            status = wait_for(
                lambda: (
                    (s := _status(api, namespace, "hyperopts", NAME)).get("phase")
                    in ("Succeeded", "Failed")
                    and s.get("cleanedUp")
                    and s
                ),
                900,
                what="Hyperopt finished",
            )
        watcher.check()
        oos = _get(api, namespace, "backtests", f"{NAME}-oos")
    assert status["phase"] == "Succeeded", status.get("message")
    return status, watcher, oos


def _check_result(
    status: dict[str, Any], watcher: Watcher, oos: dict[str, Any], ho: dict[str, Any]
) -> None:
    # Both workers held a slot at once (the queue's limit is 2), and progress was reported.
    assert watcher.most_running == 2
    assert status["epochsTotal"] == 8
    assert status["epochsDone"] == 8
    assert status["progress"] == "8/8"
    assert len(watcher.progress) >= 2
    best = status["best"]
    params = json.loads(best["parameters"])
    assert params["strategy_name"] == "EmaRsiStrategy"
    assert 50 <= params["params"]["buy"]["buy_rsi_max"] <= 80
    assert status["bestLoss"] == best["loss"]
    assert len(best["loss"].split(".")[1]) == 8
    assert Decimal(status["bestProfit"]) == Decimal(best["results"]["profitTotal"])
    assert {w["phase"] for w in status["workers"]} == {"Succeeded"}
    assert [w["index"] for w in status["workers"]] == [0, 1]
    names = [a["name"] for a in status["artifacts"]]
    assert any(n.startswith("w0/") and n.endswith(".fthypt") for n in names)
    assert any(n.startswith("w1/") and n.endswith(".fthypt") for n in names)
    assert all(len(a["sha256"]) == 64 for a in status["artifacts"])
    assert status["runId"] == f"ho-{ho['metadata']['uid']}"
    for key in ("codeHash", "configHash", "dataHash"):
        assert len(status[key]) == 64
    # Walk-forward: a Backtest of exactly the best parameters on the validation window.
    assert oos["metadata"]["ownerReferences"][0]["uid"] == ho["metadata"]["uid"]
    assert oos["spec"]["parameters"] == best["parameters"]
    assert oos["spec"]["timerange"] == ho["spec"]["validation"]["timerange"]
    assert oos["spec"]["pairs"] == ho["spec"]["pairs"]
    assert oos["status"]["phase"] == "Succeeded"
    assert len(oos["status"]["parametersHash"]) == 64
    validation = status["validation"]
    assert validation["backtestName"] == f"{NAME}-oos"
    assert validation["phase"] == "Succeeded"
    assert validation["outOfSample"]["profitTotal"] == oos["status"]["results"]["profitTotal"]
    assert validation["inSample"]["profitTotal"] == best["results"]["profitTotal"]
    assert validation["outOfSample"]["trades"] == oos["status"]["results"]["trades"]


def _check_records(dsn: str, status: dict[str, Any]) -> None:
    from tradebot.records import open_store

    with open_store(dsn) as store:
        run = store.get_run(status["runId"])
        epochs = store.epochs(status["runId"])
        metrics = store.get_metrics(status["runId"])
        artifacts = store.get_artifacts(status["runId"])
    assert run is not None
    assert run.kind == "hyperopt"
    assert run.status == "succeeded"
    assert run.config_hash == status["configHash"]
    assert len(epochs) == 8
    assert {e.worker for e in epochs} == {0, 1}
    assert min(Decimal(str(e.loss)) for e in epochs) == Decimal(status["bestLoss"])
    assert metrics["loss"] == Decimal(status["bestLoss"])
    assert metrics["oosProfitTotal"] == Decimal(status["validation"]["outOfSample"]["profitTotal"])
    assert sorted(a.name for a in artifacts) == sorted(a["name"] for a in status["artifacts"])


def test_independent_workers_with_sqlite_records(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
) -> None:
    dsn = f"sqlite://{tmp_path / 'records.db'}"
    status, watcher, oos = _search(cluster, api_client, kubectl, namespace, tmp_path, dsn)
    ho = _get(client.CustomObjectsApi(api_client), namespace, "hyperopts", NAME)
    assert status["storage"] == "independent"
    _check_result(status, watcher, oos, ho)
    _check_records(dsn, status)
    # The workers' Jobs and ConfigMap are gone once the result is stored.
    jobs = (
        client.BatchV1Api(api_client)
        .list_namespaced_job(namespace, label_selector=f"{hyperopt_jobs.LABEL_HYPEROPT}={NAME}")
        .items
    )
    assert jobs == []


def test_shared_study_with_postgres_records(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    tmp_path: Path,
    crds_installed,
    postgres_dsn: str,
) -> None:
    status, watcher, oos = _search(cluster, api_client, kubectl, namespace, tmp_path, postgres_dsn)
    api = client.CustomObjectsApi(api_client)
    ho = _get(api, namespace, "hyperopts", NAME)
    uid = ho["metadata"]["uid"]
    assert status["storage"] == "shared"
    _check_result(status, watcher, oos, ho)
    _check_records(postgres_dsn, status)
    # The study lives in a database of its own, reached with a role of its own (never the
    # operator's), whose URL is in a Secret the Hyperopt owns.
    secret = client.CoreV1Api(api_client).read_namespaced_secret(
        hyperopt_jobs.storage_secret_name(NAME, uid), namespace
    )
    assert secret.metadata.owner_references[0].uid == uid
    database = "tradebot_ho_" + uid.replace("-", "")
    admin = postgres_dsn
    with psycopg.connect(admin) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
    url = base64.b64decode(secret.data["url"]).decode()
    assert f"//{database}:" in url
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        trials = conn.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()
    assert trials is not None
    assert trials[0] == 8
    # Deleting the Hyperopt drops the study's database and role.
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="local",
        database_dsn=postgres_dsn,
        local_state_dir=tmp_path / "state",
    ):
        api.delete_namespaced_custom_object(G, V, namespace, "hyperopts", NAME)

        def dropped() -> bool:
            with psycopg.connect(admin) as conn:
                return (
                    conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
                    ).fetchone()
                    is None
                )

        wait_for(dropped, 60, what="study database dropped")


def test_deleting_a_running_hyperopt_stops_its_workers(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
) -> None:
    api = client.CustomObjectsApi(api_client)
    core = client.CoreV1Api(api_client)
    state = tmp_path / "state"
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="local",
        max_concurrent_backtests=2,
        reconcile_interval_seconds=1.0,
        database_dsn=f"sqlite://{tmp_path / 'r.db'}",
        local_state_dir=state,
    ):
        _apply(
            kubectl,
            namespace,
            example("Strategy", "ema-rsi"),
            _hyperopt("nothing", spaces=["sell"], validation=None),
        )
        refused = wait_for(
            lambda: (
                (s := _status(api, namespace, "hyperopts", "nothing")).get("phase") == "Failed"
                and s
            ),
            60,
            what="refused",
        )
        assert "sell" in refused["message"]
        assert "no hyperoptable parameters" in refused["message"]
        events = core.list_namespaced_event(
            namespace, field_selector="involvedObject.name=nothing"
        ).items
        assert any(
            e.reason == "NoHyperoptParameters" and e.type == "Warning" and "sell" in e.message
            for e in events
        )
        _apply(kubectl, namespace, _hyperopt("long", epochs=400))
        uid = _get(api, namespace, "hyperopts", "long")["metadata"]["uid"]
        runs = [hyperopt_jobs.worker_run_id(uid, i) for i in (0, 1)]
        # Positive control: both workers' processes run.
        pids = wait_for(
            lambda: all(p := [local_hyperopt.running(state, r) for r in runs]) and p,
            300,
            what="both workers running",
        )
        api.delete_namespaced_custom_object(G, V, namespace, "hyperopts", "long")
        wait_for(
            lambda: all(local_hyperopt.running(state, r) is None for r in runs),
            60,
            what="workers stopped",
        )
        wait_for(
            lambda: (
                not any(
                    o["metadata"]["name"] == "long"
                    for o in api.list_namespaced_custom_object(G, V, namespace, "hyperopts")[
                        "items"
                    ]
                )
            ),
            60,
            what="Hyperopt gone",
        )
        time.sleep(3)  # a round still in flight must not start them again
        assert all(local_hyperopt.running(state, r) is None for r in runs)
    assert len(pids) == 2


def test_kubernetes_executor_workers_are_jobs_owned_by_the_hyperopt(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
) -> None:
    """The kubernetes executor: each worker is a Job owned by the Hyperopt with the runner's
    hyperopt command; (no container runs on kwok) its pod is cued to finish with a worker
    summary, and the Hyperopt merges the summaries from the termination messages: the lower
    loss wins. Deleting the Hyperopt deletes its Jobs."""
    api = client.CustomObjectsApi(api_client)
    core = client.CoreV1Api(api_client)
    batch = client.BatchV1Api(api_client)
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="kubernetes",
        reconcile_interval_seconds=1.0,
        database_dsn=f"sqlite://{tmp_path / 'r.db'}",
    ):
        _apply(
            kubectl, namespace, example("Strategy", "ema-rsi"), _hyperopt("cued", validation=None)
        )
        pods = wait_for(
            lambda: (
                len(
                    p := core.list_namespaced_pod(
                        namespace, label_selector=f"{hyperopt_jobs.LABEL_HYPEROPT}=cued"
                    ).items
                )
                == 2
                and p
            ),
            120,
            what="both workers' pods",
        )
        uid = _get(api, namespace, "hyperopts", "cued")["metadata"]["uid"]
        jobs = batch.list_namespaced_job(
            namespace, label_selector=f"{hyperopt_jobs.LABEL_HYPEROPT}=cued"
        ).items
        assert sorted(j.metadata.labels[hyperopt_jobs.LABEL_WORKER] for j in jobs) == ["0", "1"]
        assert {j.metadata.owner_references[0].uid for j in jobs} == {uid}
        # The workers report the code the operator launched (other code fails the search).
        launched_code = _status(api, namespace, "hyperopts", "cued")["launched"]["codeHash"]
        for pod in pods:
            index = int(pod.metadata.labels[hyperopt_jobs.LABEL_WORKER])
            args = pod.spec.containers[0].args
            assert args[:1] == ["hyperopt"]
            assert args[args.index("--worker") + 1] == str(index)
            loss = "-1.50000000" if index == 1 else "-0.50000000"
            summary = {
                "ok": True,
                "strategy": "EmaRsiStrategy",
                "worker": index,
                "storage": "independent",
                "epochsDone": 4,
                "best": {
                    "epoch": 3,
                    "loss": loss,
                    "parametersHash": "p" * 64,
                    "parameters": json.dumps(
                        {
                            "strategy_name": "EmaRsiStrategy",
                            "params": {"buy": {"buy_rsi_max": 60 + index}},
                        }
                    ),
                    "results": {"profitTotal": "0.0100000" + str(index), "trades": 5},
                },
                "artifacts": [{"name": "x.fthypt", "sha256": "a" * 64, "size": 1}],
                "codeHash": launched_code,
                "configHash": "d" * 64,
                "dataHash": "e" * 64,
            }
            core.patch_namespaced_pod(
                pod.metadata.name,
                namespace,
                {
                    "metadata": {
                        "annotations": {
                            "kwok.tradebot.dev/outcome": "Succeeded",
                            "kwok.tradebot.dev/exit-code": "0",
                            "kwok.tradebot.dev/termination-message": json.dumps(summary),
                        }
                    }
                },
            )
        status = wait_for(
            lambda: (
                (s := _status(api, namespace, "hyperopts", "cued")).get("phase")
                in ("Succeeded", "Failed")
                and s
            ),
            120,
            what="Hyperopt merged",
        )
        assert status["phase"] == "Succeeded", status.get("message")
        assert status["bestLoss"] == "-1.50000000"
        assert json.loads(status["best"]["parameters"])["params"]["buy"]["buy_rsi_max"] == 61
        assert status["bestProfit"] == "0.01000001"
        assert status["epochsDone"] == 8
        assert sorted(a["name"] for a in status["artifacts"]) == ["w0/x.fthypt", "w1/x.fthypt"]
        # Finished: the Jobs are deleted once the merged result is stored.
        wait_for(
            lambda: (
                not batch.list_namespaced_job(
                    namespace, label_selector=f"{hyperopt_jobs.LABEL_HYPEROPT}=cued"
                ).items
            ),
            60,
            what="worker Jobs deleted",
        )
        # A running one: deleting it takes its Jobs with it (owner references).
        _apply(kubectl, namespace, _hyperopt("running", validation=None))
        wait_for(
            lambda: (
                len(
                    batch.list_namespaced_job(
                        namespace, label_selector=f"{hyperopt_jobs.LABEL_HYPEROPT}=running"
                    ).items
                )
                == 2
            ),
            120,
            what="the running search's Jobs",
        )
        api.delete_namespaced_custom_object(
            G, V, namespace, "hyperopts", "running", body={"propagationPolicy": "Foreground"}
        )
        wait_for(
            lambda: (
                not batch.list_namespaced_job(
                    namespace, label_selector=f"{hyperopt_jobs.LABEL_HYPEROPT}=running"
                ).items
            ),
            120,
            what="the deleted search's Jobs gone",
        )


def test_a_killed_worker_restarts_and_the_shared_study_counts_each_trial_once(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    tmp_path: Path,
    crds_installed,
    postgres_dsn: str,
) -> None:
    api = client.CustomObjectsApi(api_client)
    state = tmp_path / "state"
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="local",
        max_concurrent_backtests=2,
        reconcile_interval_seconds=1.0,
        database_dsn=postgres_dsn,
        local_state_dir=state,
    ):
        _apply(
            kubectl,
            namespace,
            example("Strategy", "ema-rsi"),
            _hyperopt("resilient", epochs=12, validation=None),
        )
        uid = _get(api, namespace, "hyperopts", "resilient")["metadata"]["uid"]
        run = hyperopt_jobs.worker_run_id(uid, 0)
        epochs_file = local_hyperopt.output_dir(state, run) / "epochs.jsonl"

        def mid_study() -> int | None:
            pid = local_hyperopt.running(state, run)
            lines = epochs_file.read_text().splitlines() if epochs_file.exists() else []
            return pid if pid is not None and len(lines) >= 1 else None

        killed = wait_for(mid_study, 300, what="worker 0 running with an epoch done")
        assert local_hyperopt.stop(state, run)  # SIGKILL to its process group
        # The executor starts the same worker again (a new process), which rejoins the study.
        restarted = wait_for(
            lambda: (p := local_hyperopt.running(state, run)) not in (None, killed) and p,
            120,
            what="worker 0 restarted",
        )
        assert restarted != killed
        status = wait_for(
            lambda: (
                (s := _status(api, namespace, "hyperopts", "resilient")).get("phase")
                in ("Succeeded", "Failed")
                and s
            ),
            900,
            what="Hyperopt finished",
        )
    assert status["phase"] == "Succeeded", status.get("message")
    assert status["storage"] == "shared"
    assert status["epochsDone"] == 12
    from tradebot.records import open_store

    with open_store(postgres_dsn) as store:
        epochs = store.epochs(status["runId"])
    numbers = [e.epoch for e in epochs]
    assert len(numbers) == len(set(numbers)) == 12
    secret = client.CoreV1Api(api_client).read_namespaced_secret(
        hyperopt_jobs.storage_secret_name("resilient", uid), namespace
    )
    url = base64.b64decode(secret.data["url"]).decode()
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        complete = conn.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()
        running = conn.execute("SELECT count(*) FROM trials WHERE state = 'RUNNING'").fetchone()
    assert complete is not None
    assert complete[0] == 12
    assert running is not None
    assert running[0] == 0
