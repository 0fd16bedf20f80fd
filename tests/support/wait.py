from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None],
    timeout: float = 30.0,
    interval: float = 0.25,
    what: str = "condition",
    describe: Callable[[], object] | None = None,
) -> T:
    """Polls `probe` until it returns something truthy; fails with `what` after `timeout`
    (and what `describe` says of the state then, for the failure message)."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    state = f"; {describe()}" if describe is not None else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r}){state}")
