"""A minimal informer: one list, then a watch from that list's resourceVersion, resumed from
the last event whenever the server ends the stream; a fresh list (which replaces everything
the consumer knew, so nothing deleted meanwhile survives) when the server no longer has our
resourceVersion (410) or the stream fails, and every `resync` seconds.

The admission queue keeps its own, rather than kopf's watches: it must know when its first
list is complete before it admits anything (kopf says nothing of the kind to a thread), it
needs a server-side label selector for Jobs and pods, and a relist must drop what vanished.
Objects come as raw dicts, never as client models, and without `metadata.managedFields`
(the server's field ownership, as large as the rest of a Backtest and read by nobody here):
a queue of thousands stays small. Lists come in pages of `PAGE` objects, each page trimmed
before the next is read, so a relist of 10,000 Backtests never holds them all whole at once.

Every call has a client-side timeout (kube.timeouts; a watch's read timeout is its
server-side timeoutSeconds plus a margin): a half-open connection, which delivers nothing and
never fails by itself, ends in a timeout and a fresh list on a new connection.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from tradebot import kube
from tradebot.observability.logging import logger

_log = logger(component="informer")

RawObject = dict[str, Any]
# Objects per page of a list: the API server's own default chunk for its watch cache.
PAGE = 500


def trimmed(obj: RawObject) -> RawObject:
    """The object without what no consumer reads (in place; returned for chaining)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


class Informer(threading.Thread):
    """Follows `list_fn(**params)` (a namespaced or cluster-wide list call of the Python
    client) and hands `on_list(objects)` each complete list and `on_event(type, object)` each
    change after it, in order, from this thread."""

    def __init__(
        self,
        name: str,
        list_fn: Callable[..., Any],
        on_list: Callable[[list[RawObject]], None],
        on_event: Callable[[str, RawObject], None],
        label_selector: str = "",
        resync: float = 600.0,
        watch_timeout: int = 60,
    ) -> None:
        super().__init__(daemon=True, name=f"informer-{name}")
        self.list_fn, self.on_list, self.on_event = list_fn, on_list, on_event
        self.selector, self.resync = label_selector, resync
        self.watch_timeout = watch_timeout
        self.synced = threading.Event()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                rv = self._list()
                backoff = 0.5
                self._follow(rv, time.monotonic() + self.resync)
            except Exception as e:
                # The API server restarting, a 410: list again after a short pause.
                _log.warning(
                    "watch interrupted; listing again", informer=self.name, error=str(e)[:200]
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _list(self) -> str:
        """Every page of one consistent list (the server serves all pages at the first
        page's resourceVersion; an expired continue token fails and the list starts over)."""
        items: list[RawObject] = []
        params: dict[str, Any] = {"label_selector": self.selector, "limit": PAGE}
        while True:
            response = self.list_fn(
                **params, _preload_content=False, _request_timeout=kube.timeouts()
            )
            body = json.loads(response.data)
            del response
            items.extend(trimmed(obj) for obj in body.get("items") or [])
            meta = body["metadata"]
            if not meta.get("continue"):
                break
            params["_continue"] = meta["continue"]
        self.on_list(items)
        self.synced.set()
        return str(meta["resourceVersion"])

    def _follow(self, rv: str, relist_at: float) -> None:
        from kubernetes import watch

        while not self._stop.is_set() and time.monotonic() < relist_at:
            w = watch.Watch()  # type: ignore[no-untyped-call]
            for ev in w.stream(  # type: ignore[no-untyped-call]
                self.list_fn,
                label_selector=self.selector,
                resource_version=rv,
                timeout_seconds=self.watch_timeout,
                _request_timeout=kube.watch_timeouts(self.watch_timeout),
                allow_watch_bookmarks=True,
                deserialize=False,
            ):
                if ev["type"] == "ERROR":
                    raise RuntimeError(f"watch error: {str(ev['object'])[:200]}")
                obj = ev["object"]
                rv = obj["metadata"]["resourceVersion"]
                if ev["type"] != "BOOKMARK":
                    self.on_event(ev["type"], trimmed(obj))
                if self._stop.is_set():
                    w.stop()  # type: ignore[no-untyped-call]
                    return
