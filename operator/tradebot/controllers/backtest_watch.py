"""What drives the Backtest controller (kopf does not: it would keep a body, a memory and a
finalizer per Backtest, and a flood of 10,000 waiting ones cost more memory than the goal):
the Backtests, their Jobs and pods as the admission queue's informers see them (no watch of
its own), and two small pools that step a Backtest when something it waits for happens.

- A new Backtest (or a changed spec) is stepped at once (Pending or Queued), on the "first"
  pool; a Queued one belongs to the admission loop and is not kept here.
- A running one is advanced as soon as its pod is Running or finished, its Job finished or
  gone, or its local runner exited, on the "run" pool (apart, so a flood of new Backtests
  never delays a slot being freed).
- A ticker wakes every Backtest still kept here each `interval` seconds: the safety net (a
  Pending one waiting for its Strategy or data; a running one nothing woke).

Nothing here is state the controller depends on: the objects are copies of the cluster's, and
a lost wake-up (a crash, a full pool) only means the ticker does the same step later. Every
write made from them is conditional on the Backtest's resourceVersion, so a stale copy costs
a retry, never a wrong or doubled write.
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
from tradebot.domain.naming import LABEL_BACKTEST, LABEL_KIND, named
from tradebot.observability.logging import logger

_log = logger(component="backtest-watch")

Key = tuple[str, str]  # (namespace, name)
TERMINAL = ("Succeeded", "Failed")
_ACTIVE = ("Running", *TERMINAL)
# What kopf put on every Backtest while it ran their timer (before this module drove them):
# nothing removes it any more but this, when such a Backtest is deleted.
KOPF_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"


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


def needs_steps(obj: RawObject) -> bool:
    """Whether the controller has anything to do for this Backtest: not a Queued one (the
    admission loop's), not one finished, recorded and cleaned up, not one being deleted."""
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return (obj.get("status") or {}).get("phase") != "Queued" and not done(obj)


class BacktestWatch:
    """Fed by the queue's informers (`queue.Watcher`); `handler(namespace, name, urgent)` is
    the controller's step, run on a pool (`urgent`: something it waits for happened; not
    urgent: the ticker's safety-net round)."""

    def __init__(self, workers: int = 4, first_workers: int = 8, interval: float = 2.0) -> None:
        self._lock = threading.Lock()
        self.jobs: dict[Key, RawObject] = {}  # (namespace, Job name)
        self.pods: dict[Key, RawObject] = {}  # (namespace, Job name) -> its pod
        # Only Backtests with steps to take (`needs_steps`): a queue of thousands is not
        # copied here.
        self.backtests: dict[Key, RawObject] = {}
        # A Backtest left behind by a write of ours, with that write's version: an older copy
        # the informer still delivers is not taken back (cleared once it caught up).
        self._floor: dict[Key, int] = {}
        self._synced: set[str] = set()
        self._pending: dict[Key, bool] = {}  # -> urgent
        # Reentrant: the pool's run holds it while the handler takes it again. With a count
        # of holders, so that an entry goes when nobody holds it (a flood passes through).
        self._locks: dict[Key, tuple[threading.RLock, list[int]]] = {}
        self._last: dict[Key, float] = {}
        self._workers, self._first_workers = workers, first_workers
        self.interval = interval
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        self.handler: Callable[[str, str, bool], None] | None = None
        # Removes KOPF_FINALIZER from a Backtest being deleted.
        self.release: Callable[[RawObject], None] | None = None

    # --- what the informers say -----------------------------------------------------------
    def on_start(self) -> None:
        """A new admission loop starts its informers: forget everything an earlier one saw,
        and start the ticker."""
        with self._lock:
            self.jobs.clear()
            self.pods.clear()
            self.backtests.clear()
            self._floor.clear()
            self._synced.clear()
            self._last.clear()
            self._stop = threading.Event()
            self._ticker = threading.Thread(
                target=self._tick, args=(self._stop,), name="backtest-ticker", daemon=True
            )
            self._ticker.start()

    def on_stop(self) -> None:
        """The admission loop stops (this process is no longer the leader, or exits): no round
        may start from here any more."""
        with self._lock:
            self._stop.set()
            ticker, self._ticker = self._ticker, None
            pools, self._pools = self._pools, {}
            self._pending.clear()
        for pool in pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
        if ticker is not None:
            ticker.join(timeout=5)

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
                new = [k for k, o in self.backtests.items() if not _phase(o)]
            releases = [o for o in objs if _held(o)]
        except Exception as e:  # never the informer's problem
            _log.warning("watch list not taken", what=what, error=str(e))
            return
        if what != "backtests":
            return
        for key in new:
            self.wake(*key)
        for obj in releases:
            self._release(obj)

    def on_event(self, what: str, type_: str, obj: RawObject) -> None:
        try:
            wake = self._event(what, type_, obj)
        except Exception as e:
            _log.warning("watch event not taken", what=what, error=str(e))
            return
        if wake is not None:
            self.wake(*wake)
        if what == "backtests" and type_ != "DELETED" and _held(obj):
            self._release(obj)

    def _table(self, what: str) -> dict[Key, RawObject] | None:
        return {"jobs": self.jobs, "pods": self.pods, "backtests": self.backtests}.get(what)

    def _put(self, what: str, obj: RawObject) -> Key | None:
        """Keeps the object; returns the (namespace, Backtest name) it belongs to."""
        meta = obj["metadata"]
        ns = meta["namespace"]
        if what == "backtests":
            key = (ns, meta["name"])
            version = rv_number(obj)
            if version < self._floor.get(key, -1):
                return key  # older than what we wrote: the informer has not caught up
            self._floor.pop(key, None)
            if needs_steps(obj):
                if version >= rv_number(self.backtests.get(key)):
                    self.backtests[key] = obj
            else:
                self.backtests.pop(key, None)
                self._last.pop(key, None)
            return key
        labels = meta.get("labels") or {}
        backtest = named(meta, LABEL_BACKTEST)  # the label may be a hash of a long name
        if labels.get(LABEL_KIND) != "backtest" or not backtest:
            return None
        job = meta["name"] if what == "jobs" else labels.get("job-name")
        if job is None:
            return None
        (self.jobs if what == "jobs" else self.pods)[(ns, job)] = obj
        return (ns, backtest)

    def _event(self, what: str, type_: str, obj: RawObject) -> Key | None:
        """Records the change; returns the Backtest to step now, if the change is one that
        moves a Backtest on (new or its spec changed; its pod Running or finished; its Job
        finished or gone under a running one)."""
        with self._lock:
            table = self._table(what)
            if table is None:
                return None
            meta = obj["metadata"]
            own = meta["name"] if what != "pods" else (meta.get("labels") or {}).get("job-name")
            before = table.get((meta["namespace"], own or ""))
            if type_ == "DELETED":
                if what == "backtests":
                    gone = (meta["namespace"], meta["name"])
                    self.backtests.pop(gone, None)
                    self._last.pop(gone, None)
                    self._floor.pop(gone, None)
                    return None
                if before is not None and before["metadata"].get("uid") == meta.get("uid"):
                    del table[(meta["namespace"], own or "")]
                # A Job gone under a running Backtest (deleted by hand, drained): requeue it.
                # One the controller deleted itself after the final status needs nothing.
                key = self._owner(obj)
                return key if what == "jobs" and key and self._running(key) else None
            key = self._put(what, obj)
            if key is None:
                return None
            if what == "backtests":
                kept = self.backtests.get(key)
                changed = _generation(obj) != _generation(before)
                fresh = kept is obj and (not _phase(obj) or changed or before is None)
                return key if fresh and _phase(obj) not in _ACTIVE else None
            if what == "pods":
                phase = pod_phase(obj)
                moved = phase in ("Running", *TERMINAL) and phase != pod_phase(before)
                return key if moved else None
            # The pod's finish came first; the Job's, a second later, only if that was missed.
            finished = _job_finished(obj) and not _job_finished(before)
            return key if finished and self._running(key) else None

    def _owner(self, obj: RawObject) -> Key | None:
        name = named(obj["metadata"], LABEL_BACKTEST)
        return (obj["metadata"]["namespace"], name) if name else None

    def _running(self, key: Key) -> bool:
        """Whether the watch's copy of the Backtest says Running (not finished yet)."""
        return _phase(self.backtests.get(key)) == "Running"

    def _release(self, obj: RawObject) -> None:
        if self.release is None:
            return
        try:
            self.release(obj)
        except Exception as e:  # the next event of it, or the next list, tries again
            _log.warning("finalizer not removed", name=obj["metadata"]["name"], error=str(e))

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
            key = self._put("backtests", obj)
            if key is not None and key not in self.backtests:
                self._floor[key] = rv_number(obj)

    # --- running the controller's step --------------------------------------------------------
    def wake(self, namespace: str, name: str, urgent: bool = True) -> None:
        """Step this Backtest soon, on its pool; a wake-up while one is pending is the same
        one (it has not read anything yet), made urgent if this one is."""
        key = (namespace, name)
        with self._lock:
            if self.handler is None or self._stop.is_set():
                return
            if key in self._pending:
                self._pending[key] = self._pending[key] or urgent
                return
            self._pending[key] = urgent
            lane = "run" if _phase(self.backtests.get(key)) in _ACTIVE else "first"
            pool = self._pools.get(lane)
            if pool is None:
                workers = self._workers if lane == "run" else self._first_workers
                pool = self._pools[lane] = ThreadPoolExecutor(
                    workers, thread_name_prefix=f"backtest-{lane}"
                )
        try:
            pool.submit(self._run, key)
        except RuntimeError:  # shut down meanwhile (on_stop)
            with self._lock:
                self._pending.pop(key, None)

    def _run(self, key: Key) -> None:
        with self.holding(*key):
            with self._lock:
                # Cleared once this step has its turn and before it reads anything: a wake-up
                # meanwhile runs it again after it; one before, while it waited, is this one.
                urgent = self._pending.pop(key, True)
                handler = None if self._stop.is_set() else self.handler
            if handler is None:
                return
            try:
                handler(key[0], key[1], urgent)
            except Exception as e:
                # The ticker's round does the same step later.
                _log.warning("backtest step failed", namespace=key[0], name=key[1], error=str(e))

    def _tick(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            with self._lock:
                keys = list(self.backtests)
            for key in keys:
                self.wake(*key, urgent=False)

    @contextmanager
    def holding(self, namespace: str, name: str) -> Iterator[None]:
        """One step at a time per Backtest, whether the ticker or an event runs it."""
        key = (namespace, name)
        with self._lock:
            lock, holders = self._locks.setdefault(key, (threading.RLock(), [0]))
            holders[0] += 1
        try:
            with lock:
                yield
        finally:
            with self._lock:
                holders[0] -= 1
                if holders[0] == 0 and self._locks.get(key, (None,))[0] is lock:
                    del self._locks[key]
                if key in self.backtests:  # when its last step ended (not kept for others)
                    self._last[key] = time.monotonic()

    def recently(self, namespace: str, name: str, interval: float) -> bool:
        """Whether a step ended for this Backtest within `interval` seconds (the ticker's rounds
        are then a safety net only, not the way a running Backtest moves on)."""
        with self._lock:
            last = self._last.get((namespace, name))
        return last is not None and time.monotonic() - last < interval


def _phase(obj: RawObject | None) -> str | None:
    return ((obj or {}).get("status") or {}).get("phase")


def _generation(obj: RawObject | None) -> object:
    return ((obj or {}).get("metadata") or {}).get("generation")


def _held(obj: RawObject) -> bool:
    """Being deleted, and held by the finalizer kopf once put on every Backtest."""
    meta = obj.get("metadata") or {}
    return bool(meta.get("deletionTimestamp")) and KOPF_FINALIZER in (meta.get("finalizers") or [])


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
