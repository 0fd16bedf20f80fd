"""A CircuitBreaker over a fleet of kwok bots: one trip stops every bot and is recorded once,
also when the operator dies at any point of handling the trip."""

from __future__ import annotations

import copy
import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.support.cluster import stop_process
from tests.support.manifests import example
from tests.support.operator import pod_watch, running_operator
from tests.support.operator_env import operator_env
from tests.support.wait import wait_for

from tradebot.faults import EXIT_CODE
from tradebot.observability.metrics import REGISTRY
from tradebot.records import IncidentRecord, open_store

G, V = "tradebot.dev", "v1alpha1"


def _rounds(kind: str) -> float:
    """The in-process operator's rounds of `kind` so far (its reconciliations counter)."""
    return sum(
        REGISTRY.get_sample_value(
            "tradebot_reconciliations_total", {"kind": kind, "outcome": outcome}
        )
        or 0.0
        for outcome in ("ok", "error")
    )


def _rounds_ran(kind: str, count: int, timeout: float = 60) -> None:
    """Waits until `count` more rounds of `kind` ran from now."""
    start = _rounds(kind)
    wait_for(lambda: _rounds(kind) >= start + count, timeout, what=f"{count} {kind} rounds")


def _bot(name: str) -> dict[str, Any]:
    doc = copy.deepcopy(example("LiveBot", "ema-rsi-dry"))
    doc["metadata"] = {"name": name, "labels": {"tradebot.dev/fleet": "main"}}
    # Small, so that twenty fit on the two kwok CPU nodes (8 CPUs each).
    doc["spec"]["resources"] = {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"cpu": "50m", "memory": "64Mi"},
    }
    return doc


def _breaker() -> dict[str, Any]:
    cb = copy.deepcopy(example("CircuitBreaker"))
    # Limits no kwok bot reaches by itself: the trip comes from the kill switch.
    cb["spec"]["limits"] = {"maxDrawdown": 0.5}
    return cb


def _apply(kubectl: Any, namespace: str, docs: list[dict[str, Any]]) -> None:
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
    )


def _custom(api: Any) -> Any:
    return client.CustomObjectsApi(api)


def _bots(api: Any, namespace: str) -> list[dict[str, Any]]:
    return list(_custom(api).list_namespaced_custom_object(G, V, namespace, "livebots")["items"])


def _breaker_status(api: Any, namespace: str) -> dict[str, Any]:
    return dict(
        _custom(api)
        .get_namespaced_custom_object(G, V, namespace, "circuitbreakers", "main-fleet")
        .get("status")
        or {}
    )


def _pods(api: Any, namespace: str) -> list[Any]:
    return list(
        client.CoreV1Api(api)
        .list_namespaced_pod(namespace, label_selector="tradebot.dev/kind=livebot")
        .items
    )


def _running(api: Any, namespace: str, count: int) -> bool:
    bots = _bots(api, namespace)
    return (
        len(bots) == count
        and all((b.get("status") or {}).get("phase") == "Running" for b in bots)
        and len([p for p in _pods(api, namespace) if p.status.phase == "Running"]) == count
    )


def _trip(api: Any, namespace: str, token: str) -> None:
    _custom(api).patch_namespaced_custom_object(
        G,
        V,
        namespace,
        "circuitbreakers",
        "main-fleet",
        {"metadata": {"annotations": {"tradebot.dev/trip": token}}},
    )


def _incidents(dsn: str, namespace: str) -> list[Any]:
    with open_store(dsn) as store:
        return list(store.list_incidents(namespace=namespace, breaker="main-fleet"))


def test_a_trip_stops_twenty_bots_and_is_recorded_once(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    names = [f"bot-{i:02d}" for i in range(20)]
    dsn = f"sqlite://{tmp_path / 'records.db'}"
    _apply(
        kubectl, namespace, [example("Strategy", "ema-rsi"), _breaker(), *[_bot(n) for n in names]]
    )
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="kubernetes",
        database_dsn=dsn,
        local_state_dir=tmp_path / "state",
    ):
        wait_for(lambda: _running(api_client, namespace, 20), 120, what="20 bots Running")
        before = sorted(p.metadata.name for p in _pods(api_client, namespace))
        with pod_watch(api_client, namespace, "tradebot.dev/account") as pods:
            _trip(api_client, namespace, "kill-1")
            status = wait_for(
                lambda: (s := _breaker_status(api_client, namespace)).get("incidentId") and s,
                30,
                what="the trip handled",
            )
            assert status["state"] == "Open"
            assert sorted(status["affectedBots"]) == names
            wait_for(lambda: not _pods(api_client, namespace), 30, what="every bot pod gone")
            phases = {
                b["metadata"]["name"]: b["status"]["phase"] for b in _bots(api_client, namespace)
            }
            assert set(phases.values()) == {"Tripped"}, phases
            # Breaker rounds that ran after every pod was gone (the counter is the evidence a
            # round happened at all): nothing comes back.
            _rounds_ran("CircuitBreaker", 3)
            # The watch lists the pods that existed as ADDED; nothing else was added.
            assert sorted(pods.added) == before
            assert not _pods(api_client, namespace)
            # Handled once: one Warning for the trip, not one per breaker round.
            tripped = _tripped_events(api_client, namespace)
            assert [e.type for e in tripped] == ["Warning"], [e.message for e in tripped]
    found = _incidents(dsn, namespace)
    assert len(found) == 1, [i.id for i in found]
    incident = found[0]
    assert incident.id == status["incidentId"]
    assert sorted(incident.bots) == names
    assert incident.reason == "manual"
    assert incident.source_kind == "CircuitBreaker"
    assert "tripped by hand (token kill-1)" in incident.description
    assert set(incident.figures) >= {f"{n}.equity" for n in names}


def _apply_incident_fleet(kubectl: Any, namespace: str) -> None:
    """Two bots under a breaker that trips on a single incident of either."""
    cb = _breaker()
    cb["spec"]["limits"] = {"maxIncidents": 1}
    _apply(
        kubectl,
        namespace,
        [example("Strategy", "ema-rsi"), cb, *[_bot(n) for n in ("bot-a", "bot-b")]],
    )


def _incident(namespace: str, bot: str, at: dt.datetime, source: str = "LiveBot") -> IncidentRecord:
    return IncidentRecord(
        id=f"{source}-{bot}-{at.timestamp()}",
        namespace=namespace,
        source_kind=source,
        source_name=bot if source == "LiveBot" else "other",
        source_uid="u",
        bots=(bot,),
        severity="warning",
        reason="staleHeartbeat",
        description="silent",
        created_at=at,
    )


def _tripped_events(api_client: Any, namespace: str) -> list[Any]:
    """The breaker's `Tripped` Events (one per trip handled, not one per round)."""
    return list(
        client.CoreV1Api(api_client)
        .list_namespaced_event(
            namespace, field_selector="involvedObject.name=main-fleet,reason=Tripped"
        )
        .items
    )


@contextmanager
def _operator_process(
    kubeconfig: Path, namespace: str, dsn: str, state: Path, crash_at: str | None
) -> Iterator[subprocess.Popen[bytes]]:
    env = operator_env(kubeconfig, database_dsn=dsn, local_state_dir=state)
    if crash_at:
        env["TRADEBOT_CRASH_AT"] = crash_at
    log = (state / f"operator-{crash_at or 'clean'}.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tradebot.cli",
            "operator",
            "-n",
            namespace,
            "--executor",
            "kubernetes",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        stop_process(process, timeout=20)
        log.close()


@pytest.mark.parametrize(
    "crash_at", ["breaker-open-persisted", "breaker-bots-stopped", "breaker-incident-recorded"]
)
def test_an_operator_killed_while_handling_a_trip_still_stops_every_bot(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    tmp_path: Path,
    crds_installed: Any,
    crash_at: str,
):
    names = [f"bot-{i}" for i in range(5)]
    dsn = f"sqlite://{tmp_path / 'records.db'}"
    state = tmp_path / "state"
    state.mkdir()
    _apply(
        kubectl, namespace, [example("Strategy", "ema-rsi"), _breaker(), *[_bot(n) for n in names]]
    )
    with _operator_process(cluster.kubeconfig, namespace, dsn, state, crash_at) as first:
        wait_for(lambda: _running(api_client, namespace, 5), 120, what="5 bots Running")
        _trip(api_client, namespace, "kill-1")
        assert first.wait(timeout=60) == EXIT_CODE, (
            state / f"operator-{crash_at}.log"
        ).read_text()[-3000:]
    # Dead at the crash point: the trip is in status whatever was done after it.
    assert _breaker_status(api_client, namespace)["state"] == "Open"
    if crash_at == "breaker-open-persisted":
        assert len(_pods(api_client, namespace)) == 5  # died before stopping anything
        assert _incidents(dsn, namespace) == []
    with pod_watch(api_client, namespace, "tradebot.dev/account") as pods:
        # The bot pods as the watch's own first list saw them: one still terminating from the
        # crashed operator's stops may be gone by then, and must not count as missing.
        before = sorted(pods.added)
        with _operator_process(cluster.kubeconfig, namespace, dsn, state, None):
            status = wait_for(
                lambda: (s := _breaker_status(api_client, namespace)).get("incidentId") and s,
                60,
                what="the trip handled after the restart",
            )
            wait_for(lambda: not _pods(api_client, namespace), 30, what="every bot pod gone")
            wait_for(
                lambda: (
                    {(b.get("status") or {}).get("phase") for b in _bots(api_client, namespace)}
                    == {"Tripped"}
                ),
                30,
                what="every LiveBot Tripped",
            )
            time.sleep(5)
            assert sorted(pods.added) == before  # the restarted operator started no bot
    found = _incidents(dsn, namespace)
    assert [i.id for i in found] == [status["incidentId"]]
    assert sorted(found[0].bots) == names


def test_a_bots_own_incidents_trip_a_breaker_with_max_incidents(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    dsn = f"sqlite://{tmp_path / 'records.db'}"
    _apply_incident_fleet(kubectl, namespace)

    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="kubernetes",
        database_dsn=dsn,
        local_state_dir=tmp_path / "state",
    ):
        wait_for(lambda: _running(api_client, namespace, 2), 120, what="2 bots Running")
        now = dt.datetime.now(dt.UTC)
        with open_store(dsn) as store:
            # Before the pod started, and a breaker's own trip record: neither counts.
            store.record_incident(_incident(namespace, "bot-a", now - dt.timedelta(hours=2)))
            store.record_incident(_incident(namespace, "bot-a", now, source="CircuitBreaker"))
        # Evidence that rounds ran after both incidents were recorded, not a fixed sleep
        # (under load four seconds may hold no round, and "not tripped" would prove nothing).
        _rounds_ran("CircuitBreaker", 2)
        assert _breaker_status(api_client, namespace).get("state") in (None, "Closed")
        with open_store(dsn) as store:
            store.record_incident(_incident(namespace, "bot-b", dt.datetime.now(dt.UTC)))
        status = wait_for(
            lambda: (s := _breaker_status(api_client, namespace)).get("incidentId") and s,
            30,
            what="the breaker tripped on bot-b's incident",
        )
    assert status["tripLimits"] == ["incidents"]
    assert "bot bot-b: incidents 1 >= 1" in status["reason"]
    assert "bot-a" not in status["reason"]


def test_a_pod_created_as_its_breaker_opens_is_removed_in_the_same_round(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    tmp_path: Path,
    crds_installed: Any,
    monkeypatch: pytest.MonkeyPatch,
):
    """The breaker opens just after the bot's round checked it and just before the round
    creates the pod (simulated: the checks before the pod exists answer "no breaker open"):
    the round reads again after creating and removes the pod at once, not a round later."""
    import threading

    from tradebot.domain import livebot_round

    _apply(kubectl, namespace, [example("Strategy", "ema-rsi"), _breaker()])
    real = livebot_round.tripped_by
    created = threading.Event()

    def racing(*args: Any) -> Any:
        if not created.is_set():
            if not _pods(api_client, namespace):
                return None  # the trip is not seen yet
            created.set()
        return real(*args)

    from kubernetes import watch

    statuses: list[dict[str, Any]] = []
    livebots = watch.Watch()
    done = threading.Event()

    def follow() -> None:
        try:
            for ev in livebots.stream(
                _custom(api_client).list_namespaced_custom_object,
                G,
                V,
                namespace,
                "livebots",
                timeout_seconds=60,
            ):
                statuses.append(dict(ev["object"].get("status") or {}))
        except Exception:
            if not done.is_set():
                raise  # only the connection closing at the end is expected

    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="kubernetes",
        database_dsn=f"sqlite://{tmp_path / 'records.db'}",
        local_state_dir=tmp_path / "state",
    ):
        _trip(api_client, namespace, "kill-1")
        wait_for(
            lambda: _breaker_status(api_client, namespace).get("incidentId"),
            30,
            what="the trip handled",
        )
        monkeypatch.setattr(livebot_round, "tripped_by", racing)
        threading.Thread(target=follow, daemon=True).start()
        with pod_watch(api_client, namespace, "tradebot.dev/account") as pods:
            _apply(kubectl, namespace, [_bot("bot-late")])
            wait_for(lambda: created.is_set(), 60, what="the bot's pod created")
            wait_for(lambda: not _pods(api_client, namespace), 30, what="the pod gone")
            # The round's status patch lands when the round ends, just after the deletion.
            wait_for(
                lambda: (
                    (
                        _custom(api_client)
                        .get_namespaced_custom_object(G, V, namespace, "livebots", "bot-late")
                        .get("status")
                        or {}
                    ).get("phase")
                    == "Tripped"
                ),
                10,
                what="the bot Tripped",
            )
            time.sleep(4)  # two more rounds: nothing comes back
            assert len(pods.added) == 1
            assert not _pods(api_client, namespace)
    done.set()
    livebots.stop()
    # Removed by the round that created it: no status ever showed the pod as the bot's.
    assert statuses
    assert statuses[-1].get("phase") == "Tripped"
    assert not [s for s in statuses if s.get("podName")], statuses


def test_a_trip_by_hand_is_handled_as_it_arrives_not_at_the_timed_round(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    """The breaker's timed rounds an hour apart: a limit crossed waits for the next one (the
    control: the timer really is out of the way), a trip by hand does not, and is handled
    once however many rounds (timed or asked for by events) see its token."""
    dsn = f"sqlite://{tmp_path / 'records.db'}"
    _apply_incident_fleet(kubectl, namespace)
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="kubernetes",
        database_dsn=dsn,
        local_state_dir=tmp_path / "state",
        breaker_interval_seconds=3600,
    ):
        wait_for(lambda: _running(api_client, namespace, 2), 120, what="2 bots Running")
        wait_for(
            lambda: "observedGeneration" in _breaker_status(api_client, namespace),
            30,
            what="the breaker's first timed round",
        )
        with open_store(dsn) as store:
            store.record_incident(_incident(namespace, "bot-b", dt.datetime.now(dt.UTC)))
        rounds = _rounds("CircuitBreaker")
        time.sleep(4)  # four ticks of kopf's timer: the limit crossed is not seen
        assert _breaker_status(api_client, namespace).get("state") in (None, "Closed")
        # ... because no round ran (the timer is out of the way), not because one ran and
        # missed the incident.
        assert _rounds("CircuitBreaker") == rounds
        _trip(api_client, namespace, "kill-1")
        status = wait_for(
            lambda: (s := _breaker_status(api_client, namespace)).get("incidentId") and s,
            30,
            what="the trip by hand handled without a timed round",
        )
        assert status["state"] == "Open"
        assert status["tripLimits"] == ["manual"]
        wait_for(lambda: not _pods(api_client, namespace), 30, what="every bot pod gone")
        # The same token again (another annotation written beside it): no second trip.
        _custom(api_client).patch_namespaced_custom_object(
            G,
            V,
            namespace,
            "circuitbreakers",
            "main-fleet",
            {"metadata": {"annotations": {"example.com/note": "again"}}},
        )
        time.sleep(3)
        assert _breaker_status(api_client, namespace)["trippedAt"] == status["trippedAt"]
        tripped = _tripped_events(api_client, namespace)
        assert [e.type for e in tripped] == ["Warning"], [e.message for e in tripped]
    breaker_incidents = [i for i in _incidents(dsn, namespace) if i.source_kind == "CircuitBreaker"]
    assert [i.id for i in breaker_incidents] == [status["incidentId"]]
