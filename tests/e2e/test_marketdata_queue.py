"""MarketData downloads share the admission queue's limits with Backtests (the operator
in-process on the local cluster, kubernetes executor: kwok pods hold their slot until cued).
With a limit of 1 and a Backtest running, a download waits, says so, and starts when the
Backtest's pod finishes."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

from kubernetes import client
from tests.support.manifests import example
from tests.support.operator import running_operator
from tests.support.wait import wait_for

from tradebot.controllers.marketdata import WAITING

G, V = "tradebot.dev", "v1alpha1"


def _apply(kubectl: Any, namespace: str, *docs: dict[str, Any]) -> None:
    for doc in docs:
        kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(doc))


def _status(api: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    return dict(api.get_namespaced_custom_object(G, V, namespace, plural, name).get("status") or {})


def _jobs(batch: Any, namespace: str, kind: str) -> list[str]:
    return [
        j.metadata.name
        for j in batch.list_namespaced_job(
            namespace, label_selector=f"tradebot.dev/kind={kind}"
        ).items
    ]


def test_a_download_waits_for_the_slot_a_backtest_holds(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    tmp_path: Path,
    crds_installed: None,
) -> None:
    api = client.CustomObjectsApi(api_client)
    core, batch = client.CoreV1Api(api_client), client.BatchV1Api(api_client)
    bt = copy.deepcopy(example("Backtest", "ema-rsi-sample"))
    bt["metadata"] = {"name": "holds-the-slot"}
    md = {
        "apiVersion": f"{G}/{V}",
        "kind": "MarketData",
        "metadata": {"name": "majors"},
        "spec": {
            "pairs": ["SOL/USDT"],
            "timeframes": ["1h"],
            "days": 3,
            "storage": {"volumeClaimTemplate": {"storage": "1Gi"}},
        },
    }
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="kubernetes",
        max_concurrent_backtests=1,
        database_dsn=f"sqlite://{tmp_path}/r.db",
        reconcile_interval_seconds=0.5,
    ):
        _apply(kubectl, namespace, example("Strategy", "ema-rsi"), bt)
        pod: Any = wait_for(
            lambda: next(
                iter(
                    core.list_namespaced_pod(
                        namespace,
                        label_selector="tradebot.dev/backtest=holds-the-slot",
                        field_selector="status.phase=Running",
                    ).items
                ),
                None,
            ),
            90,
            what="backtest pod",
        )

        _apply(kubectl, namespace, md)
        waiting = wait_for(
            lambda: (
                (s := _status(api, namespace, "marketdata", "majors")).get("message") == WAITING
                and s
            ),
            60,
            what="download waiting",
        )
        admitted = next(c for c in waiting["conditions"] if c["type"] == "Admitted")
        assert (admitted["status"], admitted["reason"]) == ("False", "Waiting")
        assert waiting["phase"] == "Downloading"
        # Several admission passes (every 0.5 s, and on every event) and the download is still
        # not started: the one slot is the Backtest's.
        time.sleep(4)
        assert _jobs(batch, namespace, "marketdata") == []
        assert _status(api, namespace, "marketdata", "majors")["message"] == WAITING

        # Positive control: the Backtest's pod finishes, the slot frees, the download starts.
        core.patch_namespaced_pod(
            pod.metadata.name,
            namespace,
            {
                "metadata": {
                    "annotations": {
                        "kwok.tradebot.dev/outcome": "Failed",
                        "kwok.tradebot.dev/exit-code": "1",
                    }
                }
            },
        )
        (job,) = wait_for(
            lambda: _jobs(batch, namespace, "marketdata"),
            60,
            what="download Job created when the slot freed",
        )
        status = wait_for(
            lambda: (
                (s := _status(api, namespace, "marketdata", "majors")).get("message") != WAITING
                and s
            ),
            30,
            what="download admitted",
        )
        admitted = next(c for c in status["conditions"] if c["type"] == "Admitted")
        assert (admitted["status"], admitted["reason"]) == ("True", "Admitted")
        assert status["message"] == f"downloading as Job {job}"
        # And it holds the slot in turn: a second Backtest waits behind the download.
        second = copy.deepcopy(bt)
        second["metadata"] = {"name": "waits-for-the-download"}
        _apply(kubectl, namespace, second)
        wait_for(
            lambda: (
                _status(api, namespace, "backtests", "waits-for-the-download").get("queuePosition")
                == 1
            ),
            60,
            what="second Backtest queued",
        )
        time.sleep(3)
        assert _status(api, namespace, "backtests", "waits-for-the-download")["phase"] == "Queued"
        md_pod: Any = wait_for(
            lambda: next(
                iter(
                    core.list_namespaced_pod(
                        namespace,
                        label_selector=f"job-name={job}",
                        field_selector="status.phase=Running",
                    ).items
                ),
                None,
            ),
            60,
            what="download pod",
        )
        core.patch_namespaced_pod(
            md_pod.metadata.name,
            namespace,
            {
                "metadata": {
                    "annotations": {
                        "kwok.tradebot.dev/outcome": "Failed",
                        "kwok.tradebot.dev/exit-code": "1",
                    }
                }
            },
        )
        wait_for(
            lambda: (
                _status(api, namespace, "backtests", "waits-for-the-download").get("phase")
                == "Running"
            ),
            60,
            what="second Backtest admitted after the download finished",
        )
        # The download's result (a failure here: the pod was cued to fail) is in status, and
        # only then its Job is deleted.
        done = wait_for(
            lambda: (
                (s := _status(api, namespace, "marketdata", "majors")).get("phase") == "Failed"
                and s
            ),
            60,
            what="download failed",
        )
        assert "the download Job failed" in done["message"]
        wait_for(
            lambda: _jobs(batch, namespace, "marketdata") == [],
            30,
            what="download Job deleted once its result was in status",
        )


def test_with_the_local_executor_a_download_also_waits_then_runs(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    tmp_path: Path,
    crds_installed: None,
) -> None:
    """The local executor runs the download itself, but only once the queue has admitted its
    Job: a backtest Job (made here, its kwok pod held Running) takes the one slot first."""
    from tradebot_testing.exchange_double import ExchangeDouble

    api = client.CustomObjectsApi(api_client)
    core, batch = client.CoreV1Api(api_client), client.BatchV1Api(api_client)
    labels = {
        "app.kubernetes.io/managed-by": "tradebot-operator",
        "tradebot.dev/kind": "backtest",
        "tradebot.dev/backtest": "held",
    }
    holder = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "holds-the-slot", "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "runner", "image": "registry.k8s.io/pause:3.10"}],
                },
            },
        },
    }
    md = {
        "apiVersion": f"{G}/{V}",
        "kind": "MarketData",
        "metadata": {"name": "local"},
        "spec": {
            "pairs": ["SOL/USDT", "XRP/USDT"],
            "timeframes": ["1h"],
            "days": 3,
            "storage": {"volumeClaimTemplate": {"storage": "1Gi"}},
        },
    }
    with (
        ExchangeDouble() as double,
        running_operator(
            cluster.kubeconfig,
            namespace,
            executor="local",
            max_concurrent_backtests=1,
            local_state_dir=tmp_path / "state",
            database_dsn=f"sqlite://{tmp_path}/r.db",
            reconcile_interval_seconds=0.5,
            exchange_double_url=double.url,
        ),
    ):
        _apply(kubectl, namespace, holder)
        pod: Any = wait_for(
            lambda: next(
                iter(
                    core.list_namespaced_pod(
                        namespace,
                        label_selector="job-name=holds-the-slot",
                        field_selector="status.phase=Running",
                    ).items
                ),
                None,
            ),
            90,
            what="holder pod",
        )
        _apply(kubectl, namespace, md)
        wait_for(
            lambda: _status(api, namespace, "marketdata", "local").get("message") == WAITING,
            60,
            what="download waiting",
        )
        time.sleep(4)
        assert _jobs(batch, namespace, "marketdata") == []
        assert not (tmp_path / "state" / "runs").exists() or not any(
            (tmp_path / "state" / "runs").glob("marketdata-*")
        ), "the download started"
        assert double.calls.get("GET /api/v3/klines", 0) == 0

        core.patch_namespaced_pod(
            pod.metadata.name,
            namespace,
            {"metadata": {"annotations": {"kwok.tradebot.dev/outcome": "Succeeded"}}},
        )
        ready = wait_for(
            lambda: (
                (s := _status(api, namespace, "marketdata", "local")).get("phase") == "Ready" and s
            ),
            180,
            what="download Ready",
        )
        assert ready["pairsReady"] == "2/2"
        assert double.calls.get("GET /api/v3/klines", 0) > 0
        # Its pod was finished by its outcome (the slot freed), and its Job deleted after.
        wait_for(
            lambda: _jobs(batch, namespace, "marketdata") == [], 30, what="download Job deleted"
        )
