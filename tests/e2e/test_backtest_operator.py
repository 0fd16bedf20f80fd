"""The operator in-process on the local cluster: Strategies, the Backtest queue, real
Freqtrade runs through the local executor, records, restarts."""

from __future__ import annotations

import copy
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.support.manifests import example
from tests.support.operator import job_watch, pod_unfinished, pod_watch, running_operator
from tests.support.wait import wait_for

G, V = "tradebot.dev", "v1alpha1"


def _apply(kubectl: Any, namespace: str, *docs: dict[str, Any]) -> None:
    for doc in docs:
        kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(doc))


def _backtest(name: str, priority: int = 0, **spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(example("Backtest", "ema-rsi-sample"))
    doc["metadata"] = {"name": name}
    doc["spec"].update(priority=priority, **spec)
    return doc


def _get(api: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    return dict(api.get_namespaced_custom_object(G, V, namespace, plural, name))


def _phase(api: Any, namespace: str, plural: str, name: str) -> str | None:
    return (_get(api, namespace, plural, name).get("status") or {}).get("phase")


def _metric(name: str, **labels: str) -> float:
    from tradebot.observability.metrics import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def _all_done(api: Any, namespace: str, names: list[str]) -> list[str] | None:
    phases = [_phase(api, namespace, "backtests", n) for n in names]
    return phases if all(p in ("Succeeded", "Failed") for p in phases) else None


def test_queue_limits_real_backtests_and_records_them(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    api = client.CustomObjectsApi(api_client)
    db = tmp_path / "records.db"
    names = [f"bt-{i}" for i in range(6)]
    positions: dict[str, set[int]] = {n: set() for n in names}
    finished_before = _metric("tradebot_backtests_finished_total", phase="Succeeded")
    admitted_before = _metric("tradebot_backtest_admissions_total")
    # A slot is held from the Job's creation until its pod has finished: a finished Job
    # waiting for its result to be recorded no longer counts, so running pods are counted.
    with (
        job_watch(api_client, namespace) as jobs,
        pod_watch(api_client, namespace, "tradebot.dev/kind", active=pod_unfinished) as pods,
        running_operator(
            cluster.kubeconfig,
            namespace,
            executor="local",
            max_concurrent_backtests=2,
            database_dsn=f"sqlite://{db}",
            local_state_dir=tmp_path / "state",
            reconcile_interval_seconds=1.0,
        ),
    ):
        _apply(kubectl, namespace, example("Strategy", "ema-rsi"))
        wait_for(
            lambda: _phase(api, namespace, "strategies", "ema-rsi") == "Ready",
            60,
            what="Strategy Ready",
        )
        # One apply, so all six arrive within a moment (a run takes seconds). The last one
        # has the highest priority: it overtakes every Backtest waiting when it arrived.
        kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            stdin=json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "List",
                    "items": [_backtest(n, priority=5 if n == "bt-5" else 0) for n in names],
                }
            ),
        )

        def done() -> list[str] | None:
            for n in names:
                pos = (_get(api, namespace, "backtests", n).get("status") or {}).get(
                    "queuePosition"
                )
                if pos:
                    positions[n].add(pos)
            return _all_done(api, namespace, names)

        phases = wait_for(done, 300, interval=0.5, what="6 backtests finished")
        wait_for(lambda: not jobs.live, 30, what="Jobs deleted after recording")

    assert phases == ["Succeeded"] * 6
    assert _metric("tradebot_backtests_finished_total", phase="Succeeded") - finished_before == 6
    assert _metric("tradebot_backtest_admissions_total") - admitted_before == 6
    assert pods.max_live == 2, f"at most 2 runs at once, saw {pods.max_live}"
    assert sorted(jobs.added) == sorted(set(jobs.added)), "a Job was created twice"
    assert len(jobs.added) == 6
    # Queue positions were shown, and the high-priority Backtest never waited behind 2 others.
    assert max(max(p, default=0) for p in positions.values()) >= 3
    assert max(positions["bt-5"], default=0) <= 1
    order = [next(n for n in names if job.startswith(f"bt-{n}-")) for job in jobs.added]
    # The two first slots go to whichever Backtests were Queued first (the controller's first
    # rounds run in parallel); the next slot to free is bt-5's, ahead of the three or more
    # older ones still waiting. Without priorities it, the newest, would come last.
    assert order.index("bt-5") <= 2, order

    statuses = [_get(api, namespace, "backtests", n)["status"] for n in names]
    # The same spec on the same data gives the same results, config and data.
    assert len({json.dumps(s["results"], sort_keys=True) for s in statuses}) == 1
    assert len({(s["configHash"], s["dataHash"], s["codeHash"]) for s in statuses}) == 1
    assert int(statuses[0]["results"]["trades"]) > 0

    with sqlite3.connect(db) as conn:
        runs = conn.execute("SELECT id, status, config_hash FROM runs ORDER BY id").fetchall()
        assert len(runs) == 6
        assert {r[1] for r in runs} == {"succeeded"}
        metrics = conn.execute("SELECT count(*) FROM metrics").fetchone()[0]
        assert metrics >= 6 * 5
        arts = conn.execute("SELECT run_id, name, sha256, size FROM artifacts").fetchall()
        trades = dict(
            conn.execute("SELECT run_id, count(*) FROM backtest_trades GROUP BY run_id").fetchall()
        )
    # Each run's trades were parsed from its result zip into the records as it was recorded.
    assert trades == {r[0]: int(statuses[0]["results"]["trades"]) for r in runs}
    # Artifact hashes in the records and status match the files the runner wrote.
    import hashlib

    for run_id, name, sha, size in arts:
        path = tmp_path / "state" / "runs" / run_id / "artifacts" / name
        assert path.stat().st_size == size
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha


def test_operator_restart_mid_queue_starts_nothing_twice(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    api = client.CustomObjectsApi(api_client)
    db = tmp_path / "records.db"
    names = [f"r-{i}" for i in range(4)]
    settings = dict(
        executor="local",
        max_concurrent_backtests=1,
        database_dsn=f"sqlite://{db}",
        local_state_dir=tmp_path / "state",
        reconcile_interval_seconds=1.0,
    )
    with (
        job_watch(api_client, namespace) as jobs,
        pod_watch(api_client, namespace, "tradebot.dev/kind", active=pod_unfinished) as pods,
    ):
        with running_operator(cluster.kubeconfig, namespace, **settings):
            _apply(kubectl, namespace, example("Strategy", "ema-rsi"), *map(_backtest, names))

            # One running and every other one queued: each Backtest's first round queues it,
            # and under load that may come after the first one already runs.
            def mid_queue() -> bool:
                phases = [_phase(api, namespace, "backtests", n) for n in names]
                return (
                    phases.count("Running") == 1
                    and phases.count("Queued") >= 2
                    and all(p in ("Running", "Queued", "Succeeded") for p in phases)
                )

            wait_for(mid_queue, 120, what="a Backtest Running and the others Queued")
        # The operator is gone mid-run: the queue is only in the cluster now.
        frozen = list({n: _phase(api, namespace, "backtests", n) for n in names}.values())
        assert frozen.count("Running") == 1
        assert frozen.count("Queued") >= 2
        assert frozen.count("Queued") + frozen.count("Succeeded") == 3
        time.sleep(2)
        with running_operator(cluster.kubeconfig, namespace, **settings):
            phases = wait_for(
                lambda: _all_done(api, namespace, names),
                300,
                interval=0.5,
                what="all backtests finished after restart",
            )
    assert phases == ["Succeeded"] * 4
    assert len(jobs.added) == 4
    assert len(set(jobs.added)) == 4
    assert pods.max_live == 1
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall()
    assert rows == [("succeeded", 4)]


def test_running_backtest_moves_on_when_woken_not_by_the_timer(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    """The safety-net interval is 10 minutes here: after its first round, the Backtest's timer
    steps it no more in this test. So the runner's start, its exit reported on the pod, the
    result recorded and the Job cleaned up all come from the fast path (the pod's events and
    the runner's exit), within the test's few minutes, and each only once."""
    api = client.CustomObjectsApi(api_client)
    db = tmp_path / "records.db"
    with (
        job_watch(api_client, namespace) as jobs,
        running_operator(
            cluster.kubeconfig,
            namespace,
            executor="local",
            database_dsn=f"sqlite://{db}",
            local_state_dir=tmp_path / "state",
            reconcile_interval_seconds=600.0,
        ),
    ):
        _apply(kubectl, namespace, example("Strategy", "ema-rsi"), _backtest("woken"))

        def finished() -> dict[str, Any] | None:
            s = _get(api, namespace, "backtests", "woken").get("status") or {}
            recorded = any(
                c["type"] == "Recorded" and c["status"] == "True" for c in s.get("conditions", [])
            )
            return s if s.get("phase") in ("Succeeded", "Failed") and recorded else None

        status = wait_for(finished, 240, interval=0.2, what="Backtest finished and recorded")
        # Cleaned up at once after the final status (the Job is deleted by the same step).
        wait_for(lambda: not jobs.live, 60, what="the Job deleted")
        wait_for(
            lambda: (_get(api, namespace, "backtests", "woken").get("status") or {}).get(
                "cleanedUp"
            ),
            60,
            what="cleanedUp",
        )
    assert status["phase"] == "Succeeded", status.get("message")
    assert int(status["results"]["trades"]) > 0
    assert len(jobs.added) == 1
    events = (
        client.CoreV1Api(api_client)
        .list_namespaced_event(namespace, field_selector="involvedObject.name=woken")
        .items
    )
    assert [e.reason for e in events].count("Succeeded") == 1, [e.reason for e in events]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT status FROM runs").fetchall() == [("succeeded",)]


def test_invalid_strategy_and_waiting_backtest(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    api = client.CustomObjectsApi(api_client)
    broken = copy.deepcopy(example("Strategy", "ema-rsi"))
    broken["spec"]["code"] = broken["spec"]["code"].replace(
        "def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:",
        "def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame",
    )
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="local",
        database_dsn=f"sqlite://{tmp_path / 'r.db'}",
        local_state_dir=tmp_path / "state",
    ):
        _apply(kubectl, namespace, broken, _backtest("waits"))
        status = wait_for(
            lambda: (
                (s := _get(api, namespace, "strategies", "ema-rsi").get("status") or {}).get(
                    "phase"
                )
                == "Invalid"
                and s
            ),
            60,
            what="Strategy Invalid",
        )
        header = "def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame"
        lineno = broken["spec"]["code"].splitlines().index("    " + header) + 1
        assert f"syntax error at line {lineno}" in status["message"]
        bt = wait_for(
            lambda: (
                (s := _get(api, namespace, "backtests", "waits").get("status") or {}).get("phase")
                == "Pending"
                and s
            ),
            60,
            what="Backtest Pending",
        )
        cond = {c["type"]: c for c in bt["conditions"]}["StrategyReady"]
        assert (cond["status"], cond["reason"]) == ("False", "StrategyNotReady")
        events = (
            client.CoreV1Api(api_client)
            .list_namespaced_event(namespace, field_selector="involvedObject.name=ema-rsi")
            .items
        )
        assert any(e.reason == "InvalidCode" and e.type == "Warning" for e in events)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_failed_run_reports_why(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    tmp_path: Path,
    crds_installed,
    backend: str,
    request: pytest.FixtureRequest,
):
    api = client.CustomObjectsApi(api_client)
    dsn = (
        f"sqlite://{tmp_path / 'r.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_dsn")
    )
    outside = _backtest("outside", timerange={"start": "2023-01-01", "end": "2023-02-01"})
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="local",
        database_dsn=dsn,
        local_state_dir=tmp_path / "state",
    ):
        _apply(kubectl, namespace, example("Strategy", "ema-rsi"), outside)
        status = wait_for(
            lambda: (
                (s := _get(api, namespace, "backtests", "outside").get("status") or {}).get("phase")
                in ("Failed", "Succeeded")
                and s
            ),
            180,
            what="Backtest finished",
        )
    assert status["phase"] == "Failed"
    assert "2023" in status["message"] or "data" in status["message"].lower()
    events = (
        client.CoreV1Api(api_client)
        .list_namespaced_event(namespace, field_selector="involvedObject.name=outside")
        .items
    )
    assert any(e.reason == "Failed" and e.type == "Warning" for e in events)
    from tradebot.records import open_store

    with open_store(dsn) as store:
        runs = store.list_runs(namespace=namespace)
        strategies = store.get_strategy(
            _get(api, namespace, "strategies", "ema-rsi")["metadata"]["uid"],
            _get(api, namespace, "strategies", "ema-rsi")["status"]["codeHash"],
        )
    assert [(r.status, r.error) for r in runs] == [("failed", status["message"])]
    assert strategies is not None
    assert strategies.class_name == "EmaRsiStrategy"
    # The registry records what the docs show, parsed from the code.
    assert strategies.interface["parameters"]["buy_rsi_max"]["low"] == "50"
    assert "rsi" in strategies.interface["indicators"]
    assert strategies.interface["entrySignals"]


def test_gpu_backtest_job_lands_on_a_rocm_node(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    """The kubernetes executor: the Job carries the ROCm profile and the scheduler puts its
    pod on an amd.com/gpu node. (No container runs on kwok; the pod is cued to finish with a
    runner summary so the Backtest completes through the same status path.)"""
    api = client.CustomObjectsApi(api_client)
    core = client.CoreV1Api(api_client)
    gpu = _backtest("gpu", gpu={"count": 2, "vendor": "amd"})
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="kubernetes",
        database_dsn=f"sqlite://{tmp_path / 'r.db'}",
    ):
        _apply(kubectl, namespace, example("Strategy", "ema-rsi"), gpu)
        pod = wait_for(
            lambda: next(
                iter(
                    core.list_namespaced_pod(
                        namespace, label_selector="tradebot.dev/backtest=gpu"
                    ).items
                ),
                None,
            ),
            60,
            what="the GPU Job's pod",
        )
        pod = wait_for(
            lambda: (
                (p := core.read_namespaced_pod(pod.metadata.name, namespace)).spec.node_name and p
            ),
            60,
            what="pod scheduled",
        )
        node = core.read_node(pod.spec.node_name)
        assert node.metadata.labels.get("feature.node.kubernetes.io/amd-gpu") == "true"
        assert pod.spec.containers[0].resources.limits["amd.com/gpu"] == "2"
        summary = {
            "ok": False,
            "strategy": "EmaRsiStrategy",
            "exitCode": 2,
            "error": "cued failure: no ROCm device in kwok",
        }
        core.patch_namespaced_pod(
            pod.metadata.name,
            namespace,
            {
                "metadata": {
                    "annotations": {
                        "kwok.tradebot.dev/outcome": "Failed",
                        "kwok.tradebot.dev/exit-code": "2",
                        "kwok.tradebot.dev/termination-message": json.dumps(summary),
                    }
                }
            },
        )
        status = wait_for(
            lambda: (
                (s := _get(api, namespace, "backtests", "gpu").get("status") or {}).get("phase")
                == "Failed"
                and s
            ),
            60,
            what="GPU Backtest Failed",
        )
    assert status["message"] == "cued failure: no ROCm device in kwok"


def test_queued_backtest_whose_strategy_vanished_goes_back_to_pending(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    api = client.CustomObjectsApi(api_client)
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="local",
        max_concurrent_backtests=1,
        reconcile_interval_seconds=1.0,
        database_dsn=f"sqlite://{tmp_path / 'r.db'}",
        local_state_dir=tmp_path / "state",
    ):
        _apply(kubectl, namespace, example("Strategy", "ema-rsi"))
        wait_for(
            lambda: _phase(api, namespace, "strategies", "ema-rsi") == "Ready",
            60,
            what="Strategy Ready",
        )
        _apply(kubectl, namespace, _backtest("first"))
        wait_for(
            lambda: _phase(api, namespace, "backtests", "first") == "Running",
            60,
            what="first Running",
        )
        _apply(kubectl, namespace, _backtest("second"))
        wait_for(
            lambda: _phase(api, namespace, "backtests", "second") == "Queued",
            60,
            what="second Queued",
        )
        kubectl("delete", "strategy", "ema-rsi", "-n", namespace)
        wait_for(
            lambda: _phase(api, namespace, "backtests", "first") == "Succeeded",
            120,
            what="first Succeeded (its run had started)",
        )
        status = wait_for(
            lambda: (
                (s := _get(api, namespace, "backtests", "second").get("status") or {}).get("phase")
                == "Pending"
                and s
            ),
            60,
            what="second back to Pending",
        )
    assert "ema-rsi not found" in status["message"]
    jobs = client.BatchV1Api(api_client).list_namespaced_job(namespace).items
    assert [j.metadata.labels["tradebot.dev/backtest"] for j in jobs] in ([], ["first"])
