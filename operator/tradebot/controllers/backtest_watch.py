"""What the Backtest controller's fast path knows and when it runs: the backtest Jobs, their
pods and the Backtests being run, as the admission queue's informers see them (no watch of
its own), and a small pool that advances a Backtest as soon as something it waits for
happens (its pod Running or finished, its Job finished or gone, its local runner exited)
instead of at the next 2-s timer round.

Nothing here is state the controller depends on: the objects are copies of the cluster's,
used to spare reads on the hot path, and a lost wake-up (a crash, a full pool) only means
the timer's round does the same step later. Every write made from them is conditional on the
Backtest's resourceVersion, so a stale copy costs a retry, never a wrong or doubled write.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from tradebot.controllers import queue
from tradebot.controllers.informer import RawObject
from tradebot.domain.naming import LABEL_BACKTEST, LABEL_KIND
from tradebot.observability.logging import logger

_log = logger(component="backtest-watch")

Key = tuple[str, str]  # (namespace, name)
TERMINAL = ("Succeeded", "Failed")
_ACTIVE = ("Running", *TERMINAL)


def rv_number(obj: RawObject | None) -> int:
    """The object's resourceVersion as a number, to tell the newer of two copies apart (etcd
    revisions; -1 for none or an unreadable one, which never wins)."""
    try:
        return int(((obj or {}).get("metadata") or {}).get("resourceVersion") or -1)
    except ValueError:
        return -1


def done(obj: RawObject) -> bool:
    """Finished, recorded and cleaned up: nothing left for the controller to do."""
    status = obj.get("status") or {}
    recorded = any(
        c.get("type") == "Recorded" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return status.get("phase") in TERMINAL and recorded and bool(status.get("cleanedUp"))


def pod_phase(pod: Mapping[str, Any] | None) -> str | None:
    return ((pod or {}).get("status") or {}).get("phase")


class BacktestWatch:
    """Fed by the queue's informers (`queue.Watcher`); `handler(namespace, name)` is the
    controller's step, run on the pool."""

    def __init__(self, workers: int = 4) -> None:
        self._lock = threading.Lock()
        self.jobs: dict[Key, RawObject] = {}  # (namespace, Job name)
        self.pods: dict[Key, RawObject] = {}  # (namespace, Job name) -> its pod
        # Only Backtests being run or finishing: a queue of thousands is not copied here.
        self.backtests: dict[Key, RawObject] = {}
        self._synced: set[str] = set()
        self._pending: set[Key] = set()
        # Reentrant: the pool's run holds it while the handler takes it again.
        self._locks: dict[Key, threading.RLock] = {}
        self._last: dict[Key, float] = {}
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self.handler: Callable[[str, str], None] | None = None

    # --- what the informers say -----------------------------------------------------------
    def on_start(self) -> None:
        """A new admission loop starts its informers: forget everything an earlier one saw."""
        with self._lock:
            self.jobs.clear()
            self.pods.clear()
            self.backtests.clear()
            self._synced.clear()
            self._last.clear()

    def on_list(self, what: str, namespace: str | None, objs: list[RawObject]) -> None:
        try:
            with self._lock:
                table = self._table(what)
                if table is None:
                    return
                for key in [k for k in table if namespace is None or k[0] == namespace]:
                    del table[key]
                for obj in objs:
                    self._put(what, obj)
                self._synced.add(what)
        except Exception as e:  # never the informer's problem
            _log.warning("watch list not taken", what=what, error=str(e))

    def on_event(self, what: str, type_: str, obj: RawObject) -> None:
        try:
            wake = self._event(what, type_, obj)
        except Exception as e:
            _log.warning("watch event not taken", what=what, error=str(e))
            return
        if wake is not None:
            self.wake(*wake)

    def _table(self, what: str) -> dict[Key, RawObject] | None:
        return {"jobs": self.jobs, "pods": self.pods, "backtests": self.backtests}.get(what)

    def _put(self, what: str, obj: RawObject) -> Key | None:
        """Keeps the object; returns the (namespace, Backtest name) it belongs to."""
        meta = obj["metadata"]
        ns = meta["namespace"]
        if what == "backtests":
            key = (ns, meta["name"])
            if (obj.get("status") or {}).get("phase") in _ACTIVE and not done(obj):
                if rv_number(obj) >= rv_number(self.backtests.get(key)):
                    self.backtests[key] = obj
            else:
                self.backtests.pop(key, None)
            return key
        labels = meta.get("labels") or {}
        if labels.get(LABEL_KIND) != "backtest" or LABEL_BACKTEST not in labels:
            return None
        job = meta["name"] if what == "jobs" else labels.get("job-name")
        if job is None:
            return None
        (self.jobs if what == "jobs" else self.pods)[(ns, job)] = obj
        return (ns, labels[LABEL_BACKTEST])

    def _event(self, what: str, type_: str, obj: RawObject) -> Key | None:
        """Records the change; returns the Backtest to advance now, if it is one that moves a
        Backtest on (a pod Running or finished, a Job finished or gone under a running one)."""
        with self._lock:
            table = self._table(what)
            if table is None:
                return None
            meta = obj["metadata"]
            own = meta["name"] if what != "pods" else (meta.get("labels") or {}).get("job-name")
            before = table.get((meta["namespace"], own or ""))
            if type_ == "DELETED":
                if what == "backtests":
                    self.backtests.pop((meta["namespace"], meta["name"]), None)
                    self._last.pop((meta["namespace"], meta["name"]), None)
                    self._locks.pop((meta["namespace"], meta["name"]), None)
                    return None
                if before is not None and before["metadata"].get("uid") == meta.get("uid"):
                    del table[(meta["namespace"], own or "")]
                # A Job gone under a running Backtest (deleted by hand, drained): requeue it.
                # One the controller deleted itself after the final status needs nothing.
                key = self._owner(obj)
                return key if what == "jobs" and key and self._running(key) else None
            key = self._put(what, obj)
            if key is None or what == "backtests":
                return None
            if what == "pods":
                phase = pod_phase(obj)
                moved = phase in ("Running", *TERMINAL) and phase != pod_phase(before)
                return key if moved else None
            # The pod's finish came first; the Job's, a second later, only if that was missed.
            finished = _job_finished(obj) and not _job_finished(before)
            return key if finished and self._running(key) else None

    def _owner(self, obj: RawObject) -> Key | None:
        name = (obj["metadata"].get("labels") or {}).get(LABEL_BACKTEST)
        return (obj["metadata"]["namespace"], name) if name else None

    def _running(self, key: Key) -> bool:
        """Whether the watch's copy of the Backtest says Running (not finished yet)."""
        return ((self.backtests.get(key) or {}).get("status") or {}).get("phase") == "Running"

    # --- reads for the controller -----------------------------------------------------------
    def synced(self, what: str) -> bool:
        with self._lock:
            return what in self._synced

    def job(self, namespace: str, job_name: str) -> RawObject | None:
        with self._lock:
            return self.jobs.get((namespace, job_name))

    def pod(self, namespace: str, job_name: str) -> RawObject | None:
        with self._lock:
            return self.pods.get((namespace, job_name))

    def backtest(self, namespace: str, name: str) -> RawObject | None:
        with self._lock:
            return self.backtests.get((namespace, name))

    def keep(self, obj: RawObject) -> None:
        """A Backtest as a write of the controller's own returned it (newer than the watch's
        copy until the watch catches up)."""
        with self._lock:
            self._put("backtests", obj)

    # --- running the controller's step --------------------------------------------------------
    def wake(self, namespace: str, name: str) -> None:
        """Advance this Backtest soon, on the pool; a wake-up while one is pending is the same
        one (it has not read anything yet)."""
        key = (namespace, name)
        with self._lock:
            if key in self._pending or self.handler is None:
                return
            self._pending.add(key)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="backtest-fast")
            pool = self._pool
        pool.submit(self._run, key)

    def _run(self, key: Key) -> None:
        with self.holding(*key):
            with self._lock:
                # Cleared once this step has its turn and before it reads anything: a wake-up
                # meanwhile runs it again after it; one before, while it waited, is this one.
                self._pending.discard(key)
                handler = self.handler
            if handler is None:
                return
            try:
                handler(*key)
            except Exception as e:
                # The timer's round does the same step later.
                _log.warning("fast path failed", namespace=key[0], name=key[1], error=str(e))

    @contextmanager
    def holding(self, namespace: str, name: str) -> Iterator[None]:
        """One step at a time per Backtest, whether the timer or the fast path runs it."""
        key = (namespace, name)
        with self._lock:
            lock = self._locks.setdefault(key, threading.RLock())
            self._last[key] = time.monotonic()
        with lock:
            yield

    def recently(self, namespace: str, name: str, interval: float) -> bool:
        """Whether a step ran for this Backtest within `interval` seconds (the timer's rounds
        are then a safety net only, not the way a running Backtest moves on)."""
        with self._lock:
            last = self._last.get((namespace, name))
        return last is not None and time.monotonic() - last < interval


def _job_finished(job: RawObject | None) -> bool:
    s = (job or {}).get("status") or {}
    if s.get("succeeded") or s.get("failed"):
        return True
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in s.get("conditions") or []
    )


WATCH = BacktestWatch()
queue.WATCHERS.append(WATCH)
