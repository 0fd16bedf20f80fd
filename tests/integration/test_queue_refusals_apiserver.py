"""A start refused for good, written to the object on a real API server: Failed, a condition
with the reason, an Event. What the admission loop calls for a Hyperopt or a MarketData whose
run is too large or whose Job the API server refuses (the Backtest's path is in
tests/e2e/test_bad_input_never_sticks.py)."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from tests.support.manifests import example

from tradebot.controllers import runtime
from tradebot.controllers.hyperopt_queue import HYPEROPT
from tradebot.controllers.marketdata_queue import MARKETDATA

G, V = "tradebot.dev", "v1alpha1"


def _create(api_client: Any, namespace: str, plural: str, doc: dict[str, Any]) -> None:
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        G, V, namespace, plural, doc
    )


def _status(api_client: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    obj = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        G, V, namespace, plural, name
    )
    return dict(obj.get("status") or {})


def _reasons(api_client: Any, namespace: str, name: str) -> list[tuple[str, str]]:
    events = client.CoreV1Api(api_client).list_namespaced_event(namespace).items
    return [(e.reason, e.type) for e in events if e.involved_object.name == name]


def test_a_refused_hyperopt_fails_with_its_reason(
    operator_runtime: runtime.Runtime, api_client: Any, namespace: str, crds_installed: None
):
    doc = example("Hyperopt", "ema-rsi-search")
    doc["metadata"] = {"name": "search"}
    _create(api_client, namespace, "hyperopts", doc)
    assert _status(api_client, namespace, "hyperopts", "search").get("phase") != "Failed"
    assert HYPEROPT.refuse is not None
    HYPEROPT.refuse(namespace, "search", "RunTooLarge", "the run's config ... take 1100000 bytes")
    status = _status(api_client, namespace, "hyperopts", "search")
    assert status["phase"] == "Failed"
    assert status["finishedAt"]
    complete = next(c for c in status["conditions"] if c["type"] == "Complete")
    assert (complete["status"], complete["reason"]) == ("False", "RunTooLarge")
    assert "1100000 bytes" in status["message"]
    assert ("RunTooLarge", "Warning") in _reasons(api_client, namespace, "search")


def test_a_refused_marketdata_download_fails_and_stops_waiting(
    operator_runtime: runtime.Runtime, api_client: Any, namespace: str, crds_installed: None
):
    doc = example("MarketData", "majors")
    _create(api_client, namespace, "marketdata", doc)
    client.CustomObjectsApi(api_client).patch_namespaced_custom_object_status(
        G, V, namespace, "marketdata", "majors", {"status": {"currentRun": "run-1"}}
    )
    assert _status(api_client, namespace, "marketdata", "majors")["currentRun"] == "run-1"
    assert MARKETDATA.refuse is not None
    MARKETDATA.refuse(namespace, "majors", "CreateRefused", 'Job.batch "md-x" is invalid: ...')
    status = _status(api_client, namespace, "marketdata", "majors")
    assert status["phase"] == "Failed"
    assert status.get("currentRun") is None  # no longer waits in the queue
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "CreateRefused")
    assert "is invalid" in status["message"]
    assert ("CreateRefused", "Warning") in _reasons(api_client, namespace, "majors")
