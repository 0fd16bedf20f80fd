"""Steps this process wrote a moment ago, so that a kopf timer firing again before kopf's
watch has brought back that write does not do the step again.

Under a flood kopf's view of thousands of new Backtests lags its own patches by seconds; a
2-s timer then found each one still `Pending` and queued it again (one Backtest was queued ten
times in two minutes: ten Strategy reads, patches and record writes, and the memory of all
those rounds at once). This is only a shortcut: an entry lasts `ttl` seconds, a new process
starts empty, and the step it skips is idempotent, so a lost or stale entry costs one round
again, never a missed step.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class Recently:
    """Keys marked with a version within the last `ttl` seconds (monotonic clock), pruned as
    marks come."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._at: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def mark(self, key: str, version: str) -> None:
        now = self._clock()
        with self._lock:
            self._at.pop(key, None)
            self._at[key] = (version, now)
            # Oldest first: stop at the first entry still young.
            while self._at:
                oldest, (_, at) = next(iter(self._at.items()))
                if now - at <= self.ttl:
                    break
                del self._at[oldest]

    def seen(self, key: str, version: str) -> bool:
        """Whether `key` was marked at this very `version` within the ttl."""
        with self._lock:
            entry = self._at.get(key)
        if entry is None:
            return False
        marked, at = entry
        return marked == version and self._clock() - at <= self.ttl

    def forget(self, key: str) -> None:
        with self._lock:
            self._at.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._at)
