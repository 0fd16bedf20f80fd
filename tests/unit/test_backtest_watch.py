"""What drives the Backtest controller: which informer events wake a Backtest, what the watch
keeps (and lets go of), the ticker's safety-net rounds, and that wake-ups are neither lost nor
run twice at once."""

from __future__ import annotations

import threading
import time
from typing import Any

from tradebot.controllers.backtest_watch import KOPF_FINALIZER, BacktestWatch, done, rv_number


def _pod(name: str, phase: str, backtest: str = "bt", rv: str = "1") -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": name,
            "uid": f"uid-{name}",
            "resourceVersion": rv,
            "labels": {
                "tradebot.dev/kind": "backtest",
                "tradebot.dev/backtest": backtest,
                "job-name": f"job-{backtest}",
            },
        },
        "status": {"phase": phase},
    }


def _job(backtest: str = "bt", finished: bool = False) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": f"job-{backtest}",
            "uid": f"uid-job-{backtest}",
            "labels": {"tradebot.dev/kind": "backtest", "tradebot.dev/backtest": backtest},
        },
        "status": {"succeeded": 1} if finished else {},
    }


def _backtest(
    name: str = "bt", phase: str | None = "Running", rv: str = "5", **status: Any
) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": name, "uid": f"uid-{name}", "resourceVersion": rv},
        "spec": {},
        "status": {"phase": phase, **status},
    }


class Recorder:
    def __init__(self, watch: BacktestWatch) -> None:
        self.calls: list[tuple[str, str]] = []
        self.urgent: list[bool] = []
        self.done = threading.Event()
        watch.handler = self

    def __call__(self, namespace: str, name: str, urgent: bool) -> None:
        self.calls.append((namespace, name))
        self.urgent.append(urgent)
        self.done.set()


def _woken(watch: BacktestWatch, what: str, type_: str, obj: dict[str, Any]) -> bool:
    """Whether the event woke the Backtest (the pool runs a wake-up at once: the positive
    cases beside each negative one show it does within the wait)."""
    rec = Recorder(watch)
    watch.on_event(what, type_, obj)
    return rec.done.wait(0.5) and rec.calls == [("ns", "bt")]


def test_a_pod_that_starts_or_finishes_wakes_its_backtest_once_per_phase() -> None:
    w = BacktestWatch()
    w.on_list("pods", "ns", [])
    assert not _woken(w, "pods", "ADDED", _pod("p", "Pending"))
    assert _woken(w, "pods", "MODIFIED", _pod("p", "Running"))
    assert not _woken(w, "pods", "MODIFIED", _pod("p", "Running", rv="2"))  # same phase
    assert _woken(w, "pods", "MODIFIED", _pod("p", "Succeeded", rv="3"))
    assert w.pod("ns", "job-bt") is not None
    w.on_event("pods", "DELETED", _pod("p", "Succeeded", rv="4"))
    assert w.pod("ns", "job-bt") is None


def test_pods_of_other_kinds_are_not_kept_or_woken() -> None:
    w = BacktestWatch()
    other = _pod("p", "Succeeded")
    other["metadata"]["labels"]["tradebot.dev/kind"] = "hyperopt"
    assert not _woken(w, "pods", "MODIFIED", other)
    assert w.pod("ns", "job-bt") is None


def test_a_job_finishing_or_gone_wakes_only_a_backtest_still_running() -> None:
    w = BacktestWatch()
    w.on_event("jobs", "ADDED", _job())
    # Not known as Running (finished and cleaned up by the controller itself): nothing.
    assert not _woken(w, "jobs", "MODIFIED", _job(finished=True))
    assert not _woken(w, "jobs", "DELETED", _job(finished=True))
    # Running: a Job deleted under it (drained) wakes it, and so does its Job finishing.
    w.on_event("backtests", "MODIFIED", _backtest())
    w.on_event("jobs", "ADDED", _job())
    assert _woken(w, "jobs", "MODIFIED", _job(finished=True))
    assert _woken(w, "jobs", "DELETED", _job(finished=True))
    assert w.job("ns", "job-bt") is None


def test_only_backtests_being_run_are_kept_and_the_newest_copy_wins() -> None:
    w = BacktestWatch()
    w.on_event("backtests", "ADDED", _backtest(phase="Queued", rv="3"))
    assert w.backtest("ns", "bt") is None  # a queue of thousands is not copied
    w.on_event("backtests", "MODIFIED", _backtest(rv="7"))
    w.keep(_backtest(rv="9", message="written by the controller"))
    w.on_event("backtests", "MODIFIED", _backtest(rv="8"))  # the watch, behind the write
    kept = w.backtest("ns", "bt")
    assert kept is not None
    assert rv_number(kept) == 9
    finished = _backtest(
        phase="Succeeded",
        rv="10",
        cleanedUp=True,
        conditions=[{"type": "Recorded", "status": "True"}],
    )
    assert done(finished)
    w.on_event("backtests", "MODIFIED", finished)
    assert w.backtest("ns", "bt") is None


def test_a_list_replaces_what_was_known_in_its_namespace_only() -> None:
    w = BacktestWatch()
    assert not w.synced("jobs")
    w.on_event("jobs", "ADDED", _job("a"))
    other = _job("b")
    other["metadata"]["namespace"] = "elsewhere"
    w.on_event("jobs", "ADDED", other)
    w.on_list("jobs", "ns", [])
    assert w.synced("jobs")
    assert w.job("ns", "job-a") is None  # deleted while the watch was away
    assert w.job("elsewhere", "job-b") is not None
    w.on_start()  # a new admission loop: nothing an earlier one saw counts
    assert not w.synced("jobs")
    assert w.job("elsewhere", "job-b") is None
    w.on_stop()


def test_a_wake_up_during_a_step_runs_it_again_and_steps_never_overlap() -> None:
    w = BacktestWatch()
    started, release = threading.Event(), threading.Event()
    running, overlaps, calls = [0], [0], [0]
    lock = threading.Lock()

    def step(namespace: str, name: str, urgent: bool) -> None:
        with w.holding(namespace, name):
            with lock:
                running[0] += 1
                overlaps[0] = max(overlaps[0], running[0])
                calls[0] += 1
            started.set()
            release.wait(5)
            with lock:
                running[0] -= 1

    w.on_event("backtests", "MODIFIED", _backtest())  # kept: running
    w.handler = step
    w.wake("ns", "bt")
    assert started.wait(5)
    w.wake("ns", "bt")  # during the step: must run again after it
    w.wake("ns", "bt")  # pending already: the same wake-up
    release.set()
    deadline = time.monotonic() + 5
    while calls[0] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert calls[0] == 2
    assert overlaps[0] == 1
    assert w.recently("ns", "bt", 60.0)
    assert not w.recently("ns", "other", 60.0)


def test_a_failing_step_does_not_stop_later_wake_ups() -> None:
    w = BacktestWatch()
    calls: list[str] = []
    ran = threading.Event()

    def step(namespace: str, name: str, urgent: bool) -> None:
        calls.append(name)
        if name == "boom":
            raise RuntimeError("the API server went away")
        ran.set()

    w.handler = step
    w.wake("ns", "boom")
    w.wake("ns", "fine")
    assert ran.wait(5)
    assert "boom" in calls
    assert "fine" in calls


def test_a_new_backtest_or_a_changed_spec_wakes_it_and_a_queued_one_is_let_go() -> None:
    w = BacktestWatch()
    new = _backtest(phase=None, rv="1")
    new["metadata"]["generation"] = 1
    assert _woken(w, "backtests", "ADDED", new)
    pending = _backtest(phase="Pending", rv="2")
    pending["metadata"]["generation"] = 1
    # Its own step's write (Pending, same spec) does not wake it again: the ticker retries.
    assert not _woken(w, "backtests", "MODIFIED", pending)
    assert w.backtest("ns", "bt") is not None
    edited = _backtest(phase="Pending", rv="3")
    edited["metadata"]["generation"] = 2
    assert _woken(w, "backtests", "MODIFIED", edited)
    # Queued: the admission loop's; nothing is kept of it here.
    assert not _woken(w, "backtests", "MODIFIED", _backtest(phase="Queued", rv="4"))
    assert w.backtest("ns", "bt") is None


def test_an_older_copy_than_a_write_that_let_it_go_is_not_taken_back() -> None:
    w = BacktestWatch()
    w.on_event("backtests", "ADDED", _backtest(phase=None, rv="1"))
    assert w.backtest("ns", "bt") is not None
    w.keep(_backtest(phase="Queued", rv="5"))  # the controller queued it
    assert w.backtest("ns", "bt") is None
    # The informer, behind the write, still delivers a copy from before it.
    assert not _woken(w, "backtests", "MODIFIED", _backtest(phase=None, rv="3"))
    assert w.backtest("ns", "bt") is None
    # Once it caught up, later copies count again (positive control).
    w.on_event("backtests", "MODIFIED", _backtest(phase="Queued", rv="5"))
    assert _woken(w, "backtests", "MODIFIED", _backtest(phase="Pending", rv="6"))
    assert w.backtest("ns", "bt") is not None


def test_the_ticker_steps_what_is_kept_until_the_loop_stops() -> None:
    w = BacktestWatch(interval=0.05)
    w.on_start()
    w.on_event("backtests", "MODIFIED", _backtest(phase="Pending", rv="2"))
    rec = Recorder(w)
    assert rec.done.wait(2), "the ticker never stepped the Pending Backtest"
    assert rec.urgent[0] is False
    w.on_stop()
    time.sleep(0.1)  # a round already running finishes
    count = len(rec.calls)
    time.sleep(0.3)
    assert len(rec.calls) == count
    w.wake("ns", "bt")  # stopped: nothing may start from here any more
    time.sleep(0.1)
    assert len(rec.calls) == count


def test_a_wake_up_made_while_a_safety_net_round_waits_makes_it_urgent() -> None:
    w = BacktestWatch(workers=1)
    w.on_event("backtests", "MODIFIED", _backtest())
    gate, seen = threading.Event(), []
    blocker_started = threading.Event()

    def step(namespace: str, name: str, urgent: bool) -> None:
        if name == "blocker":
            blocker_started.set()
            gate.wait(5)
        seen.append((name, urgent))

    w.on_event("backtests", "MODIFIED", _backtest("blocker"))
    w.handler = step
    w.wake("ns", "blocker")  # takes the only worker of the "run" pool
    assert blocker_started.wait(5)
    w.wake("ns", "bt", urgent=False)
    w.wake("ns", "bt")
    gate.set()
    deadline = time.monotonic() + 5
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == [("blocker", True), ("bt", True)]


def test_steps_leave_no_lock_behind() -> None:
    w = BacktestWatch()
    # Reentrant: the pool's run and the handler both hold it.
    with w.holding("ns", "bt"), w.holding("ns", "bt"):
        assert w._locks
    assert not w._locks


def test_a_deleted_backtest_held_by_kopfs_old_finalizer_is_released() -> None:
    w = BacktestWatch()
    released: list[str] = []
    w.release = lambda obj: released.append(obj["metadata"]["name"])
    deleting = _backtest("old", phase="Queued", rv="8")
    deleting["metadata"]["deletionTimestamp"] = "2026-11-29T00:00:00Z"
    deleting["metadata"]["finalizers"] = [KOPF_FINALIZER]
    w.on_event("backtests", "MODIFIED", deleting)
    plain = _backtest("new", phase="Queued", rv="9")
    plain["metadata"]["deletionTimestamp"] = "2026-11-29T00:00:00Z"
    w.on_event("backtests", "MODIFIED", plain)
    kept = _backtest("kept", phase="Queued", rv="10")
    kept["metadata"]["finalizers"] = [KOPF_FINALIZER]  # not being deleted: left alone
    w.on_list("backtests", "ns", [kept, deleting])
    assert released == ["old", "old"]
