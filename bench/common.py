"""What every benchmark shares, so that its figures can be trusted: watches that resume from
their last resourceVersion and fail loudly instead of ending, loops with deadlines, the
machine's load next to the figures, and one JSON object as the last line with `--json`.

A watch that silently ended would make "at most N at once" hold vacuously and leave a loop
waiting on it forever; here an error is kept and raised by `check()`, which every wait calls.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from kubernetes.client.exceptions import ApiException

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


class WatchFailed(RuntimeError):
    """A benchmark's watch could not go on without missing events."""


class Follow(threading.Thread):
    """Follows one list function (e.g. CoreV1Api.list_namespaced_pod) from a thread: lists
    once, then watches from that list's resourceVersion, resuming from the last event seen
    whenever the server ends the stream. Raw events (no model objects), each handed to
    `on_event(type, object_dict, monotonic_time)` with the time taken as it arrived.

    A 410 Gone (the server no longer has the events after our resourceVersion) or any other
    error ends the watch with `error` set: `check()` raises it in the caller's thread."""

    def __init__(
        self,
        list_fn: Callable[..., Any],
        namespace: str,
        on_event: Callable[[str, dict[str, Any], float], None],
        label_selector: str = "",
    ) -> None:
        super().__init__(daemon=True, name=f"follow-{namespace}")
        self.list_fn, self.namespace, self.on_event = list_fn, namespace, on_event
        self.selector = label_selector
        self.error: BaseException | None = None
        self.listed = threading.Event()
        self._stopped = threading.Event()
        self.resumes = 0

    def start_and_wait(self, timeout: float = 60) -> Follow:
        self.start()
        if not self.listed.wait(timeout):
            self.check()
            raise WatchFailed(f"the initial list of {self.namespace} took over {timeout} s")
        self.check()
        return self

    def stop(self) -> None:
        self._stopped.set()

    def check(self) -> None:
        if self.error is not None:
            raise WatchFailed(f"watch of {self.namespace} failed: {self.error!r}") from self.error

    def run(self) -> None:
        from kubernetes import watch

        try:
            listed = self.list_fn(
                self.namespace, label_selector=self.selector, _preload_content=False
            )
            body = json.loads(listed.data)
            now = time.monotonic()
            for obj in body.get("items") or []:
                self.on_event("ADDED", obj, now)
            rv = body["metadata"]["resourceVersion"]
            self.listed.set()
            while not self._stopped.is_set():
                w = watch.Watch()
                # Short server timeouts: the loop sees `stop()` within seconds.
                for ev in w.stream(
                    self.list_fn,
                    self.namespace,
                    label_selector=self.selector,
                    resource_version=rv,
                    timeout_seconds=5,
                    allow_watch_bookmarks=True,
                    deserialize=False,
                ):
                    now = time.monotonic()
                    if ev["type"] == "ERROR":
                        raise WatchFailed(f"watch error event: {ev['object']}")
                    obj = ev["object"]
                    rv = obj["metadata"]["resourceVersion"]
                    if ev["type"] != "BOOKMARK":
                        self.on_event(ev["type"], obj, now)
                    if self._stopped.is_set():
                        w.stop()
                        break
                self.resumes += 1
        except ApiException as e:
            self.error = WatchFailed(f"HTTP {e.status} {e.reason}") if e.status == 410 else e
        except BaseException as e:  # kept for check(); a benchmark must not go on without it
            self.error = e
        finally:
            self.listed.set()


def wait_until(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    watches: tuple[Follow, ...] = (),
    interval: float = 0.1,
) -> T:
    """Polls `probe` until truthy; raises if `timeout` passes or a watch has failed."""
    deadline = time.monotonic() + timeout
    while True:
        for w in watches:
            w.check()
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def pct(values: list[float], q: float) -> float:
    """The q-quantile by nearest rank (no interpolation: a p99 of 100 values is a value seen)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def machine() -> dict[str, Any]:
    """The load next to the figures: on a shared machine they are only as fair as this."""
    load = os.getloadavg()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = bool(
        subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    return {
        "cpus": os.cpu_count(),
        "load1": round(load[0], 2),
        "load5": round(load[1], 2),
        "commit": commit + ("+dirty" if dirty else ""),
    }


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def emit(result: dict[str, Any], as_json: bool) -> None:
    """The last line of output: one JSON object (ratio, goal, met, raw figures)."""
    # What the caller measured at the start (its commit, the load before) wins over now.
    now = machine()
    result = {
        **result,
        "machine": {**now, "load1_after": now["load1"], **result.get("machine", {})},
    }
    if as_json:
        print(json.dumps(result, sort_keys=True, default=str), flush=True)
    else:
        print(
            f"goal: {result.get('goal')}: {'met' if result.get('met') else 'NOT met'} "
            f"(ratio {result.get('ratio')})",
            flush=True,
        )
