"""Backtests are not kopf's (controllers/backtest_watch.py drives them from the queue's
informers): a new one carries nothing of kopf, a waiting one is stepped by the ticker without
repeating its Event, a change wakes it at once, and a Backtest an older operator left with
kopf's finalizer can still be deleted."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tests.support.manifests import example
from tests.support.operator import local_operator
from tests.support.wait import wait_for

from tradebot.controllers.backtest_watch import KOPF_FINALIZER

G, V = "tradebot.dev", "v1alpha1"


def _backtest(name: str, strategy: str = "ema-rsi") -> dict[str, Any]:
    doc = copy.deepcopy(example("Backtest", "ema-rsi-sample"))
    doc["metadata"] = {"name": name}
    doc["spec"]["strategyRef"] = {"name": strategy}
    return doc


def _get(api: Any, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return dict(api.get_namespaced_custom_object(G, V, namespace, "backtests", name))
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def _in_phase(api: Any, namespace: str, name: str, phase: str, timeout: float) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        b = _get(api, namespace, name)
        return b if b and (b.get("status") or {}).get("phase") == phase else None

    return wait_for(probe, timeout, what=f"Backtest {name} {phase}")


def _events(api_client: Any, namespace: str, name: str) -> list[str]:
    return [
        e.reason
        for e in client.CoreV1Api(api_client)
        .list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
        .items
    ]


def test_a_backtest_left_with_kopfs_finalizer_is_released_when_deleted(
    cluster: Any, api_client: Any, namespace: str, tmp_path: Path, crds_installed: None
) -> None:
    api = client.CustomObjectsApi(api_client)
    old = _backtest("old")
    old["metadata"]["finalizers"] = [KOPF_FINALIZER]
    api.create_namespaced_custom_object(G, V, namespace, "backtests", old)
    api.delete_namespaced_custom_object(G, V, namespace, "backtests", "old")
    # Positive control: with no operator running, the finalizer holds it.
    time.sleep(1.0)
    held = _get(api, namespace, "old")
    assert held is not None
    assert held["metadata"].get("deletionTimestamp")
    with local_operator(cluster, namespace, tmp_path):
        wait_for(lambda: _get(api, namespace, "old") is None, 60, what="the old Backtest gone")


def test_a_waiting_backtest_is_stepped_without_kopf_and_woken_by_its_strategy(
    cluster: Any, api_client: Any, namespace: str, tmp_path: Path, crds_installed: None
) -> None:
    api = client.CustomObjectsApi(api_client)
    with local_operator(
        cluster, namespace, tmp_path, reconcile_interval_seconds=0.5, queue_hold="Hold"
    ):
        api.create_namespaced_custom_object(G, V, namespace, "backtests", _backtest("waits"))
        pending = _in_phase(api, namespace, "waits", "Pending", 60)
        # Several ticker rounds (0.5 s) with nothing new: no second Event, no new write.
        time.sleep(3.0)
        again = _get(api, namespace, "waits")
        assert again is not None
        assert again["metadata"]["resourceVersion"] == pending["metadata"]["resourceVersion"]
        reasons = _events(api_client, namespace, "waits")
        assert reasons.count("StrategyNotFound") == 1, reasons
        # Its Strategy arrives and becomes Ready: the ticker queues it (on hold: it stays).
        api.create_namespaced_custom_object(
            G, V, namespace, "strategies", example("Strategy", "ema-rsi")
        )
        queued = _in_phase(api, namespace, "waits", "Queued", 90)
        # Nothing of kopf on it: no finalizer, no annotation of kopf's storage.
        meta = queued["metadata"]
        assert not meta.get("finalizers"), meta.get("finalizers")
        assert not [k for k in meta.get("annotations") or {} if "kopf" in k or "last-handled" in k]
        # A new one, its Strategy Ready, is queued from its informer event.
        api.create_namespaced_custom_object(G, V, namespace, "backtests", _backtest("second"))
        _in_phase(api, namespace, "second", "Queued", 30)
