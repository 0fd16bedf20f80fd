"""A breaker's trip marks each bot Tripped and voids its kept promotion decision in one status
write, against a real API server: no moment exists where the bot is Tripped and still carries
the decision (nor one where the decision is gone and the bot not yet Tripped), so a fast reset
can never bring it back on evidence from before the trip."""

from __future__ import annotations

import copy
import threading
from typing import Any

from kubernetes import client, watch
from tests.support.manifests import example

from tradebot.controllers import bot_control, circuitbreaker, runtime

G, V = "tradebot.dev", "v1alpha1"
DECISION = {
    "mode": "testnet",
    "generation": 1,
    "codeHash": "a" * 64,
    "parametersHash": "",
    "passed": True,
    "decidedAt": "2026-11-01T10:00:00Z",
}


def _bot(api: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    doc = copy.deepcopy(example("LiveBot", "ema-rsi-dry"))
    doc["metadata"] = {"name": name}
    api.create_namespaced_custom_object(G, V, namespace, "livebots", doc)
    api.patch_namespaced_custom_object_status(
        G,
        V,
        namespace,
        "livebots",
        name,
        {"status": {"phase": "Running", "podName": f"{name}-pod", "gateDecision": DECISION}},
    )
    return dict(api.get_namespaced_custom_object(G, V, namespace, "livebots", name))


def test_a_trip_clears_the_kept_decision_in_the_write_that_marks_the_bot_tripped(
    operator_runtime: runtime.Runtime, api_client: Any, namespace: str, crds_installed: None
):
    api = client.CustomObjectsApi(api_client)
    bot = _bot(api, namespace, "tripped")
    # Positive control: the decision is there to be cleared.
    assert bot["status"]["gateDecision"] == DECISION
    seen: list[dict[str, Any]] = []
    ready = threading.Event()

    def watching() -> None:
        w = watch.Watch()
        ready.set()
        for e in w.stream(
            api.list_namespaced_custom_object,
            G,
            V,
            namespace,
            "livebots",
            resource_version=bot["metadata"]["resourceVersion"],
            field_selector="metadata.name=tripped",
            timeout_seconds=20,
        ):
            seen.append(dict(e["object"].get("status") or {}))
            if seen[-1].get("phase") == "Tripped":
                w.stop()

    thread = threading.Thread(target=watching, daemon=True)
    thread.start()
    ready.wait(5)
    circuitbreaker._mark_tripped(
        bot, "CircuitBreaker main-fleet is open", bot_control.StopOutcome(pod_removed=True)
    )
    thread.join(30)
    after = api.get_namespaced_custom_object(G, V, namespace, "livebots", "tripped")["status"]
    assert after["phase"] == "Tripped"
    assert "gateDecision" not in after
    assert "podName" not in after
    # One write: the first change the watch saw after the bot was Running is the trip itself,
    # with the decision already gone.
    assert len(seen) == 1, seen
    assert seen[0]["phase"] == "Tripped"
    assert "gateDecision" not in seen[0]
