"""The Backtest controller's fast path: which informer events wake a Backtest, what the watch
keeps, and that wake-ups are neither lost nor run twice at once."""

from __future__ import annotations

import threading
import time
from typing import Any

from tradebot.controllers.backtest_watch import BacktestWatch, done, rv_number


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
        self.done = threading.Event()
        watch.handler = self

    def __call__(self, namespace: str, name: str) -> None:
        self.calls.append((namespace, name))
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


def test_a_wake_up_during_a_step_runs_it_again_and_steps_never_overlap() -> None:
    w = BacktestWatch()
    started, release = threading.Event(), threading.Event()
    running, overlaps, calls = [0], [0], [0]
    lock = threading.Lock()

    def step(namespace: str, name: str) -> None:
        with w.holding(namespace, name):
            with lock:
                running[0] += 1
                overlaps[0] = max(overlaps[0], running[0])
                calls[0] += 1
            started.set()
            release.wait(5)
            with lock:
                running[0] -= 1

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

    def step(namespace: str, name: str) -> None:
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
