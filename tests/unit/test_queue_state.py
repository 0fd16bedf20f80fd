"""The admission queue's in-memory index, fed the raw objects its informers would deliver:
what waits, what holds a slot, when a slot frees and when the loop is woken."""

from __future__ import annotations

import threading
from typing import Any

from tradebot.controllers.queue import BACKTEST, QueueState
from tradebot.domain.queue import Limits, next_admissions


def _bt(
    name: str, phase: str | None = "Queued", priority: int = 0, rv: str = "1", **status: Any
) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": name,
            "uid": f"u-{name}",
            "resourceVersion": rv,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"strategyRef": {"name": "s"}, "priority": priority},
        "status": {"phase": phase, **status},
    }


def _job(backtest: str, backoff_limit: int = 0, **status: Any) -> dict[str, Any]:
    return {
        "spec": {"backoffLimit": backoff_limit},
        "metadata": {
            "namespace": "ns",
            "name": f"job-{backtest}",
            "labels": {
                "tradebot.dev/kind": "backtest",
                "tradebot.dev/backtest": backtest,
                "tradebot.dev/strategy": "s",
            },
        },
        "status": status,
    }


def _pod(backtest: str, phase: str, suffix: str = "x") -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": f"job-{backtest}-{suffix}",
            "labels": {"tradebot.dev/kind": "backtest", "job-name": f"job-{backtest}"},
        },
        "status": {"phase": phase},
    }


def _state() -> QueueState:
    state = QueueState(threading.Event(), waiting_cap=3)
    state.on_objects(BACKTEST, [])
    state.on_jobs([])
    state.on_pods([])
    state.wakeup.clear()
    return state


def _admit(state: QueueState, limit: int) -> tuple[tuple[str, str], ...]:
    with state.lock:
        admitted = next_admissions(state.ordered(0.0), state.running(), Limits(limit, 10, 10), {})
        for key in admitted:
            state.assume(key, "s")
    return admitted


def test_a_queued_backtest_waits_and_wakes_the_loop() -> None:
    state = _state()
    state.on_object(BACKTEST, "ADDED", _bt("a", phase="Pending"))
    assert len(state.waiting) == 0
    assert not state.wakeup.is_set()  # positive control below: only Queued wakes it
    state.on_object(BACKTEST, "MODIFIED", _bt("a"))
    assert [q.name for q in state.waiting] == ["a"]
    assert state.wakeup.is_set()


def test_the_slot_frees_when_the_pod_finishes_not_when_the_job_goes() -> None:
    state = _state()
    for name in ("a", "b"):
        state.on_object(BACKTEST, "ADDED", _bt(name))
    assert _admit(state, 1) == (("ns", "a"),)
    assert _admit(state, 1) == ()  # the assumed start holds the slot before its Job is seen
    state.on_job("ADDED", _job("a"))
    state.on_object(BACKTEST, "MODIFIED", _bt("a", rv="2"))  # a stale Queued event
    assert _admit(state, 1) == ()
    state.wakeup.clear()
    state.on_pod("MODIFIED", _pod("a", "Running"))
    assert not state.wakeup.is_set()
    state.on_pod("MODIFIED", _pod("a", "Succeeded"))
    assert state.wakeup.is_set()
    assert _admit(state, 1) == (("ns", "b"),)


def test_a_job_gone_before_its_backtest_finished_puts_it_back_in_the_queue() -> None:
    state = _state()
    state.on_object(BACKTEST, "ADDED", _bt("a"))
    assert _admit(state, 1) == (("ns", "a"),)
    state.on_job("ADDED", _job("a"))
    state.on_object(BACKTEST, "MODIFIED", _bt("a", phase="Running", rv="2"))
    state.on_job("DELETED", _job("a"))
    assert len(state.waiting) == 0  # Running: the Backtest controller requeues it
    state.on_object(BACKTEST, "MODIFIED", _bt("a", rv="3"))
    assert [q.name for q in state.waiting] == ["a"]


def test_a_relist_drops_what_vanished() -> None:
    state = _state()
    state.on_object(BACKTEST, "ADDED", _bt("a"))
    state.on_job("ADDED", _job("x"))
    assert len(state.running()) == 1
    state.on_jobs([])
    state.on_objects(BACKTEST, [])
    assert state.running() == []
    assert len(state.waiting) == 0


def test_beyond_the_waiting_cap_backtests_are_refused_not_queued() -> None:
    state = _state()
    for name in ("a", "b", "c", "d"):
        state.on_object(BACKTEST, "ADDED", _bt(name))
    assert [q.name for q in state.waiting] == ["a", "b", "c"]
    assert list(state.over_cap) == [("ns", "d")]


def test_a_finished_recorded_backtest_gets_its_ttl_expiry() -> None:
    state = _state()
    recorded = {
        "finishedAt": "2026-01-01T00:10:00Z",
        "cleanedUp": True,
        "conditions": [{"type": "Recorded", "status": "True"}],
    }
    state.on_object(BACKTEST, "ADDED", _bt("kept", phase="Succeeded", **recorded))
    assert state.expiries == {}  # no TTL: kept
    ttl = _bt("short", phase="Succeeded", **recorded)
    ttl["spec"]["ttlSecondsAfterFinished"] = 60
    state.on_object(BACKTEST, "ADDED", ttl)
    when, uid = state.expiries[("ns", "short")]
    assert (when.isoformat(), uid) == ("2026-01-01T00:11:00+00:00", "u-short")
    not_recorded = _bt("later", phase="Succeeded", finishedAt="2026-01-01T00:10:00Z")
    not_recorded["spec"]["ttlSecondsAfterFinished"] = 0
    state.on_object(BACKTEST, "ADDED", not_recorded)
    assert ("ns", "later") not in state.expiries


def _running_with_retries(backoff_limit: int) -> QueueState:
    """`a` holds the only slot with a Job of `backoff_limit` retries; `b` waits."""
    state = _state()
    for name in ("a", "b"):
        state.on_object(BACKTEST, "ADDED", _bt(name))
    assert _admit(state, 1) == (("ns", "a"),)
    state.on_job("ADDED", _job("a", backoff_limit=backoff_limit))
    state.on_pod("MODIFIED", _pod("a", "Running", "p1"))
    return state


def test_a_failed_pod_of_a_job_with_retries_left_keeps_the_slot() -> None:
    """The Job starts a replacement pod: the slot is the replacement's, so nothing else may
    start in it (Hyperopt workers, backoffLimit 3)."""
    state = _running_with_retries(3)
    state.on_pod("MODIFIED", _pod("a", "Failed", "p1"))
    # The Job's own count of failed pods says the same and must not free it either.
    state.on_job("MODIFIED", _job("a", backoff_limit=3, failed=1, active=1))
    state.on_pod("ADDED", _pod("a", "Running", "p2"))
    assert _admit(state, 1) == ()
    # Positive control: the replacement succeeding frees the slot at once.
    state.on_pod("MODIFIED", _pod("a", "Succeeded", "p2"))
    assert _admit(state, 1) == (("ns", "b"),)


def test_the_slot_frees_when_the_failures_exceed_the_backoff_limit() -> None:
    state = _running_with_retries(3)
    for i in range(1, 4):
        state.on_pod("MODIFIED", _pod("a", "Failed", f"p{i}"))
        assert _admit(state, 1) == (), f"freed after {i} failed pods of 4 allowed"
    state.on_pod("MODIFIED", _pod("a", "Failed", "p4"))
    assert _admit(state, 1) == (("ns", "b"),)


def test_the_same_failed_pod_seen_twice_counts_once() -> None:
    state = _running_with_retries(1)
    state.on_pod("MODIFIED", _pod("a", "Failed", "p1"))
    state.on_pod("MODIFIED", _pod("a", "Failed", "p1"))
    assert _admit(state, 1) == ()
    state.on_pod("MODIFIED", _pod("a", "Failed", "p2"))
    assert _admit(state, 1) == (("ns", "b"),)


def test_a_failed_pod_of_a_job_without_retries_frees_the_slot_at_once() -> None:
    state = _running_with_retries(0)
    state.on_pod("MODIFIED", _pod("a", "Failed", "p1"))
    assert _admit(state, 1) == (("ns", "b"),)


def test_the_jobs_failed_condition_frees_the_slot_whatever_the_pods_said() -> None:
    state = _running_with_retries(3)
    state.on_pod("MODIFIED", _pod("a", "Failed", "p1"))
    assert _admit(state, 1) == ()
    state.on_job(
        "MODIFIED",
        _job("a", backoff_limit=3, failed=1, conditions=[{"type": "Failed", "status": "True"}]),
    )
    assert _admit(state, 1) == (("ns", "b"),)
