"""A finished Backtest frees its slot: its Job and ConfigMap are deleted and the admission loop
is woken, also when the Job is gone already (deleted by its TTL, or by an earlier round that
died before writing cleanedUp): a 404 must not leave the queue waiting for the next tick."""

from __future__ import annotations

from typing import Any, cast

import kopf
from kubernetes import client
from tests.support.manifests import example

from tradebot.api.backtest import BacktestSpec
from tradebot.controllers import backtest, runtime

RECORDED = {
    "phase": "Succeeded",
    "conditions": [{"type": "Recorded", "status": "True", "reason": "Recorded"}],
}


def _clean_up(namespace: str, jname: str) -> kopf.Patch:
    body = kopf.Body(
        {"metadata": {"name": "bt", "namespace": namespace, "uid": "u-1"}, "status": RECORDED}
    )
    patch = kopf.Patch()
    spec = BacktestSpec.model_validate(example("Backtest")["spec"])
    backtest._after_finish(body, dict(RECORDED), patch, spec, namespace, "bt", "u-1", jname, 1)
    return patch


def test_deleting_the_job_wakes_the_admission_loop(
    operator_runtime: runtime.Runtime, api_client: Any, namespace: str
) -> None:
    batch = client.BatchV1Api(api_client)
    batch.create_namespaced_job(
        namespace,
        {
            "metadata": {"name": "bt-job"},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "busybox:1.36"}],
                    }
                }
            },
        },
    )
    assert [j.metadata.name for j in batch.list_namespaced_job(namespace).items] == ["bt-job"]
    assert not operator_runtime.admission_wakeup.is_set()
    patch = _clean_up(namespace, "bt-job")
    assert operator_runtime.admission_wakeup.is_set()
    assert patch.status["cleanedUp"] is True
    jobs = batch.list_namespaced_job(namespace).items
    # Gone, or going (a finalizer of the garbage collector may keep it a moment).
    assert all(
        j.metadata.deletion_timestamp is not None for j in jobs if j.metadata.name == "bt-job"
    )


def test_a_job_gone_already_still_wakes_the_admission_loop(
    operator_runtime: runtime.Runtime, namespace: str
) -> None:
    assert not operator_runtime.admission_wakeup.is_set()
    patch = _clean_up(namespace, "bt-never-existed")  # the API server answers 404
    assert operator_runtime.admission_wakeup.is_set()
    assert patch.status["cleanedUp"] is True


G, V = "tradebot.dev", "v1alpha1"


def _running_backtest(api: Any, namespace: str, name: str) -> dict[str, Any]:
    doc = example("Backtest")
    doc["metadata"] = {"name": name}
    api.create_namespaced_custom_object(G, V, namespace, "backtests", doc)
    return cast(
        dict[str, Any],
        api.patch_namespaced_custom_object_status(
            G, V, namespace, "backtests", name, {"status": {"phase": "Running", "jobName": "gone"}}
        ),
    )


def _reasons(api_client: Any, namespace: str, name: str) -> list[str]:
    events = client.CoreV1Api(api_client).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}"
    )
    return [str(e.reason) for e in events.items]


def test_a_step_from_a_stale_copy_loses_its_write_and_decides_again(
    operator_runtime: runtime.Runtime, api_client: Any, namespace: str, crds_installed: None
) -> None:
    """The timer's copy can lag the fast path's write: from a copy that still says Running
    (its Job gone by now), the step would requeue a Backtest that has finished. Its write is
    conditional on that copy's version, so it is refused, the Backtest is read again, and the
    step done is the finished one's clean-up; no Requeued Event, nothing written twice."""
    api = client.CustomObjectsApi(api_client)
    # Positive control: from a current Running copy with no Job, the step requeues.
    current = _running_backtest(api, namespace, "fresh")
    backtest.advance(namespace, "fresh", current)
    fresh = cast(
        dict[str, Any], api.get_namespaced_custom_object(G, V, namespace, "backtests", "fresh")
    )
    assert fresh["status"]["phase"] == "Queued"
    assert "Requeued" in _reasons(api_client, namespace, "fresh")

    stale = _running_backtest(api, namespace, "bt")
    api.patch_namespaced_custom_object_status(
        G, V, namespace, "backtests", "bt", {"status": {**RECORDED, "message": "done"}}
    )
    backtest.advance(namespace, "bt", stale)
    after = cast(
        dict[str, Any], api.get_namespaced_custom_object(G, V, namespace, "backtests", "bt")
    )
    assert after["status"]["phase"] == "Succeeded"
    assert after["status"]["message"] == "done"
    assert after["status"]["cleanedUp"] is True
    assert "Requeued" not in _reasons(api_client, namespace, "bt")
