"""What the controllers share for the life of the operator process: settings, the records
store and the admission lock. Reconciliation state is never kept here: it lives in the
cluster and in the records."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tradebot.observability.logging import logger
from tradebot.settings import Settings

_log = logger(component="runtime")


@dataclass
class Runtime:
    settings: Settings
    admission_lock: threading.Lock = field(default_factory=threading.Lock)
    _store: Any = None
    _store_lock: threading.Lock = field(default_factory=threading.Lock)

    def store(self) -> Any:  # a BufferedStore, imported lazily
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
                store = BufferedStore.open(dsn, self.settings.records_outbox)
                if not store.connected:
                    _log.warning("records database unavailable at start; writes wait in the "
                                 "outbox", outbox=str(store.outbox_path), pending=store.pending)
                store.start_flusher(self.settings.outbox_flush_interval_seconds)
                self._store = store
            return self._store

    def close(self) -> None:
        with self._store_lock:
            if self._store is not None:
                self._store.close()
                self._store = None


_runtime: Runtime | None = None


def get() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime(Settings.from_env())
    return _runtime


async def in_thread(pool: ThreadPoolExecutor, handler: Callable[..., None], **kwargs: Any
                    ) -> None:
    """Runs a sync handler on `pool` from an async kopf handler. kopf's context (its settings,
    for Events and patches) travels with the call, as kopf does for the sync handlers it runs
    in its own pool."""
    context = contextvars.copy_context()
    await asyncio.get_running_loop().run_in_executor(
        pool, functools.partial(context.run, functools.partial(handler, **kwargs)))


def install(runtime: Runtime) -> None:
    global _runtime
    _runtime = runtime
