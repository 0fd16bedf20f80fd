"""A reset never erases an unrecorded incident. The operator dies at the crash point right
after a trip's Open state is written (before the incident is recorded); a person resets the
breaker before the operator comes back. The trip was written together with
status.pendingIncident, so the restarted operator records the incident before (and while)
closing the breaker, once."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from kubernetes import client
from tests.support.manifests import example
from tests.support.operator import operator_process
from tests.support.wait import wait_for

from tradebot.faults import EXIT_CODE
from tradebot.records import open_store

G, V = "tradebot.dev", "v1alpha1"
NAME = "guard"


def _breaker() -> dict[str, Any]:
    cb = copy.deepcopy(example("CircuitBreaker"))
    cb["metadata"] = {"name": NAME}
    cb["spec"]["selector"] = {"matchLabels": {"fleet": "none"}}  # no bots: the kill switch trips
    cb["spec"]["limits"] = {"maxDrawdown": 0.5}
    return cb


def _status(api: Any, namespace: str) -> dict[str, Any]:
    obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
        G, V, namespace, "circuitbreakers", NAME
    )
    return dict(obj.get("status") or {})


def _annotate(api: Any, namespace: str, key: str, token: str) -> None:
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        G, V, namespace, "circuitbreakers", NAME, {"metadata": {"annotations": {key: token}}}
    )


def _incident_ids(dsn: str, namespace: str) -> list[str]:
    with open_store(dsn) as store:
        return [i.id for i in store.list_incidents(namespace=namespace, breaker=NAME)]


def test_a_reset_after_a_crash_before_the_incident_was_recorded_still_records_it(
    cluster: Any, api_client: Any, namespace: str, tmp_path: Path, crds_installed: Any
) -> None:
    dsn = f"sqlite://{tmp_path / 'records.db'}"
    settings = {"database_dsn": dsn, "local_state_dir": str(tmp_path / "state")}
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        G, V, namespace, "circuitbreakers", _breaker()
    )
    log = tmp_path / "operator.log"
    with operator_process(
        cluster.kubeconfig, namespace, log, crash_at="breaker-open-persisted", **settings
    ) as first:
        wait_for(lambda: _status(api_client, namespace).get("state"), 60, what="a first round")
        _annotate(api_client, namespace, "tradebot.dev/trip", "kill-1")
        assert first.wait(timeout=60) == EXIT_CODE, log.read_text()[-3000:]
    crashed = _status(api_client, namespace)
    assert crashed["state"] == "Open"
    pending = crashed["pendingIncident"]  # written with Open, in the same patch
    assert pending["id"]
    assert pending["reason"] == "tripped by hand (token kill-1)"
    assert "incidentId" not in crashed or crashed["incidentId"] != pending["id"]
    assert _incident_ids(dsn, namespace) == []  # died before recording it
    # A person resets while no operator runs.
    _annotate(api_client, namespace, "tradebot.dev/reset", "reset-1")
    with operator_process(cluster.kubeconfig, namespace, log, **settings):
        status = wait_for(
            lambda: (
                (s := _status(api_client, namespace)).get("state") == "Closed"
                and not s.get("pendingIncident")
                and s
            ),
            60,
            what="the reset applied and the pending incident settled",
        )
    assert status["lastResetToken"] == "reset-1"
    assert _incident_ids(dsn, namespace) == [pending["id"]]
