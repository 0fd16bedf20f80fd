"""What the controllers share for the life of the operator process: settings, the records
store and the admission lock. Reconciliation state is never kept here: it lives in the
cluster and in the records."""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import functools
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from tradebot.observability.logging import logger
from tradebot.settings import Settings

if TYPE_CHECKING:  # imported when first used: the records need psycopg
    from tradebot.records.buffered import BufferedStore

_log = logger(component="runtime")


class FleetStops:
    """Namespaces where a breaker is stopping its bots right now, and how many breakers. Only
    a priority: rounds that start meanwhile wait for the next tick (stops first, bookkeeping
    after); lost with the process, and nothing is decided from it."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    @contextmanager
    def stopping(self, namespace: str) -> Iterator[None]:
        with self._lock:
            self._counts[namespace] += 1
        try:
            yield
        finally:
            with self._lock:
                self._counts[namespace] -= 1
                if self._counts[namespace] <= 0:
                    del self._counts[namespace]

    def in_progress(self, namespace: str) -> bool:
        return namespace in self._counts


class Pacer:
    """When each running bot last had a full round, and what it saw then. Only a pacer: if it
    is lost (a restart), the next round is a full one; nothing is decided from it."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, Hashable]] = {}
        self._lock = threading.Lock()

    def recently(self, uid: str, seen: Hashable, running: bool, interval: float) -> bool:
        """True while a running bot that saw the same `seen` had its round within
        `interval` seconds; otherwise the round counts as started now."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(uid)
            if running and last is not None and last[1] == seen and now - last[0] < interval:
                return True
            self._last[uid] = (now, seen)
        return False

    def forget(self, uid: str) -> None:
        with self._lock:
            self._last.pop(uid, None)


class Liveness:
    """When each guarded work loop (the admission loop) last completed a turn: the leader
    renews its Lease only while the oldest of them is recent (controllers/leadership.py)."""

    def __init__(self) -> None:
        self._beats: dict[str, float] = {}
        self._lock = threading.Lock()

    def beat(self, loop: str) -> None:
        with self._lock:
            self._beats[loop] = time.monotonic()

    def forget(self, loop: str) -> None:
        with self._lock:
            self._beats.pop(loop, None)

    def oldest(self) -> float | None:
        """The oldest loop's last turn (monotonic); None while no loop runs."""
        with self._lock:
            return min(self._beats.values(), default=None)


class Background(Protocol):
    """A loop of the operator's own that runs beside kopf's handlers."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Runtime:
    settings: Settings
    admission_lock: threading.Lock = field(default_factory=threading.Lock)
    fleet: FleetStops = field(default_factory=FleetStops)
    # The Backtest queue's admission loop while the operator runs (controllers/queue.py).
    admission_loop: Background | None = None
    # The watch of bot pods whose IPs a breaker's stops use (controllers/bot_endpoints.py).
    bot_pod_watch: Background | None = None
    # The watch of bot ConfigMaps and NetworkPolicies drift is found against
    # (controllers/bot_drift.py).
    bot_companion_watch: Background | None = None
    pacer: Pacer = field(default_factory=Pacer)
    liveness: Liveness = field(default_factory=Liveness)
    # When this process began acting (kopf's start-up, after winning the Lease): a heartbeat
    # counts as stale only after this process has watched the bot for the whole window
    # (domain/breaker.py stale_since), not because an outage left status old.
    watching_since: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    # Set when a backtest slot frees (a Job deleted): the admission loop runs its next pass
    # now rather than at the tick. Here, not in the queue module, so the Backtest controller
    # wakes the loop without importing it.
    admission_wakeup: threading.Event = field(default_factory=threading.Event)
    # Whether the last `close` saw all guarded work end within its bound (cli.py releases
    # the leader Lease only then).
    stopped_in_time: bool = True
    # kopf's own pool of sync handlers (its settings.execution.executor): kopf never shuts it
    # down, so its handlers may still run when kopf.run returns (stop_handlers).
    handler_executor: ThreadPoolExecutor | None = None
    _shutdown_deadline: float | None = None
    _store: BufferedStore | None = None
    _store_lock: threading.Lock = field(default_factory=threading.Lock)
    _pools: dict[str, ThreadPoolExecutor] = field(default_factory=dict)
    _pools_lock: threading.Lock = field(default_factory=threading.Lock)

    def pool(self, name: str, size: int) -> ThreadPoolExecutor:
        """The operator's own thread pool `name`, created on first use: handlers that may wait
        on the network need more threads than kopf's default, and each kind its own."""
        with self._pools_lock:
            if name not in self._pools:
                self._pools[name] = ThreadPoolExecutor(max_workers=size, thread_name_prefix=name)
            return self._pools[name]

    def store(self) -> BufferedStore:
        """The records store, opened on first use. Never None: while the database is down
        (or not migrated yet) its writes wait in the outbox file and its flusher delivers
        them later. Raises OutboxError only if the outbox file itself cannot be opened."""
        from tradebot.records.buffered import BufferedStore

        with self._store_lock:
            if self._store is None:
                dsn = self.settings.database_dsn
                if dsn.startswith("sqlite://"):
                    # The zero-setup default: its directory is ours to create.
                    Path(dsn.removeprefix("sqlite://")).parent.mkdir(parents=True, exist_ok=True)
                store = BufferedStore.open(
                    dsn, self.settings.records_outbox, adopt=self.settings.outbox_family
                )
                if not store.connected:
                    _log.warning(
                        "records database unavailable at start; writes wait in the outbox",
                        outbox=str(store.outbox_path),
                        pending=store.pending,
                    )
                store.start_flusher(self.settings.outbox_flush_interval_seconds)
                self._store = store
            return self._store

    def close(self, timeout: float = 0.0) -> bool:
        """Stops the operator's pools (queued work is cancelled) and closes the records store.
        Waits up to `timeout` seconds for the work already running on the pools to end: True
        when it has (or `timeout` is 0 and nothing runs), so that a leader gives its Lease up
        only once nothing of its own still writes (cli.py)."""
        with self._pools_lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
        self._shutdown_deadline = time.monotonic() + timeout
        stopped = join_threads(
            [t for pool in pools for t in list(pool._threads)], self._shutdown_deadline
        )
        with self._store_lock:
            if self._store is not None:
                self._store.close()
                self._store = None
        return stopped

    def stop_handlers(self, timeout: float) -> bool:
        """After kopf.run has returned: stops kopf's handler pool and waits for the handlers
        still running on it, until the deadline `close` set (else `timeout` from now). True
        when none runs any more."""
        executor = self.handler_executor
        if executor is None:
            return True
        executor.shutdown(wait=False, cancel_futures=True)
        deadline = self._shutdown_deadline or time.monotonic() + timeout
        return join_threads(list(executor._threads), deadline)


def join_threads(threads: list[threading.Thread], deadline: float) -> bool:
    """Waits for `threads` until the monotonic `deadline`; True when all have ended."""
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in threads)


_runtime: Runtime | None = None


def get() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime(Settings.from_env())
    return _runtime


async def in_thread(
    pool: ThreadPoolExecutor, handler: Callable[..., None], **kwargs: object
) -> None:
    """Runs a sync handler on `pool` from an async kopf handler. kopf's context (its settings,
    for Events and patches) travels with the call, as kopf does for the sync handlers it runs
    in its own pool."""
    context = contextvars.copy_context()
    await asyncio.get_running_loop().run_in_executor(
        pool, functools.partial(context.run, functools.partial(handler, **kwargs))
    )


def install(runtime: Runtime) -> None:
    global _runtime
    _runtime = runtime
