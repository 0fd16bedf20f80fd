"""A flood cannot grow the queue without bound, and finished Backtests can go at their TTL
while their run records stay: the operator in-process on the local cluster."""

from __future__ import annotations

import copy
import json
import sqlite3
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tests.support.manifests import example
from tests.support.operator import running_operator
from tests.support.wait import wait_for

from tradebot.freqtrade.introspect import code_hash

G, V = "tradebot.dev", "v1alpha1"


def _backtest(name: str, **spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(example("Backtest", "ema-rsi-sample"))
    doc["metadata"] = {"name": name}
    doc["spec"].update(spec)
    return doc


def _status(api: Any, namespace: str, name: str) -> dict[str, Any]:
    return dict(
        api.get_namespaced_custom_object(G, V, namespace, "backtests", name).get("status") or {}
    )


def test_backtests_beyond_the_waiting_cap_are_refused_with_a_condition(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    api = client.CustomObjectsApi(api_client)
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="kubernetes",
        queue_hold="Hold",
        max_waiting_backtests_per_namespace=2,
        database_dsn=f"sqlite://{tmp_path / 'r.db'}",
    ):
        kubectl(
            "apply", "-n", namespace, "-f", "-", stdin=json.dumps(example("Strategy", "ema-rsi"))
        )
        wait_for(
            lambda: (
                (
                    api.get_namespaced_custom_object(G, V, namespace, "strategies", "ema-rsi").get(
                        "status"
                    )
                    or {}
                ).get("phase")
                == "Ready"
            ),
            60,
            what="Strategy Ready",
        )
        for name in ("first", "second"):
            kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(_backtest(name)))
            wait_for(
                lambda n=name: _status(api, namespace, n).get("phase") == "Queued",
                60,
                what=f"{name} Queued",
            )
        kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(_backtest("third")))
        refused = wait_for(
            lambda: (s := _status(api, namespace, "third")).get("phase") == "Failed" and s,
            60,
            what="third refused",
        )
        # Positive control: the two within the cap still wait, held.
        assert [_status(api, namespace, n)["phase"] for n in ("first", "second")] == [
            "Queued",
            "Queued",
        ]
    cond = {c["type"]: c for c in refused["conditions"]}["Admitted"]
    assert (cond["status"], cond["reason"]) == ("False", "QueueFull")
    assert "already has 2 Backtests waiting" in refused["message"]


def test_a_finished_backtest_goes_at_its_ttl_and_its_record_stays(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    api = client.CustomObjectsApi(api_client)
    core = client.CoreV1Api(api_client)
    db = tmp_path / "r.db"
    summary = json.dumps(
        {
            "ok": True,
            "strategy": "EmaRsiStrategy",
            "exitCode": 0,
            "results": {"profitTotal": "0.01000000", "trades": 1},
            # The code the operator launched (a report of other code fails the run).
            "codeHash": code_hash(example("Strategy", "ema-rsi")["spec"]["code"]),
        }
    )
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="kubernetes",
        database_dsn=f"sqlite://{db}",
        reconcile_interval_seconds=0.5,
    ):
        kubectl(
            "apply", "-n", namespace, "-f", "-", stdin=json.dumps(example("Strategy", "ema-rsi"))
        )
        kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            stdin=json.dumps(_backtest("short", ttlSecondsAfterFinished=0)),
        )
        kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(_backtest("kept")))
        for name in ("short", "kept"):
            pod = wait_for(
                lambda n=name: next(
                    iter(
                        core.list_namespaced_pod(
                            namespace,
                            label_selector=f"tradebot.dev/backtest={n}",
                            field_selector="status.phase=Running",
                        ).items
                    ),
                    None,
                ),
                90,
                what=f"{name} pod",
            )
            core.patch_namespaced_pod(
                pod.metadata.name,
                namespace,
                {
                    "metadata": {
                        "annotations": {
                            "kwok.tradebot.dev/outcome": "Succeeded",
                            "kwok.tradebot.dev/termination-message": summary,
                        }
                    }
                },
            )

        def gone() -> bool:
            try:
                _status(api, namespace, "short")
            except ApiException as e:
                return e.status == 404
            return False

        wait_for(gone, 90, what="the Backtest with a TTL of 0 deleted")
        # Positive control: the one without a TTL finished too, and stays.
        kept = wait_for(
            lambda: (s := _status(api, namespace, "kept")).get("cleanedUp") and s,
            60,
            what="kept finished and cleaned up",
        )
    assert kept["phase"] == "Succeeded"
    with sqlite3.connect(db) as conn:
        runs = conn.execute("SELECT name, status FROM runs ORDER BY name").fetchall()
    assert runs == [("kept", "succeeded"), ("short", "succeeded")]
