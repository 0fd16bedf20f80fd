"""Backtest admission: which queued Backtests may start now. Pure: the caller passes a snapshot
of the cluster (queued Backtests, running Jobs, free GPUs) and applies the decision.

Order is priority (higher first), then age (older first), then namespace/name. A Backtest
held back only by a per-namespace or per-strategy limit does not block others behind it; a
GPU Backtest held back by capacity does block later ones of the same GPU vendor, so a large
request is not starved by small ones.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

Key = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class GpuNeed:
    vendor: str
    count: int


@dataclass(frozen=True)
class QueuedBacktest:
    namespace: str
    name: str
    strategy: str
    priority: int
    created: dt.datetime
    gpu: GpuNeed | None = None

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class RunningBacktest:
    namespace: str
    name: str
    strategy: str


@dataclass(frozen=True)
class Limits:
    total: int
    per_namespace: int
    per_strategy: int
    hold: bool = False


@dataclass(frozen=True)
class Decision:
    admit: tuple[Key, ...]
    # 1-based place of each Backtest that stays queued.
    positions: dict[Key, int] = field(default_factory=dict)
    # Why each one that stays queued waits, for its status.
    waiting_for: dict[Key, str] = field(default_factory=dict)


def order(queued: list[QueuedBacktest]) -> list[QueuedBacktest]:
    return sorted(queued, key=lambda q: (-q.priority, q.created, q.namespace, q.name))


def decide(
    queued: list[QueuedBacktest],
    running: list[RunningBacktest],
    limits: Limits,
    gpu_free: dict[str, int],
) -> Decision:
    total = len(running)
    per_ns = Counter(r.namespace for r in running)
    per_strategy = Counter((r.namespace, r.strategy) for r in running)
    free = dict(gpu_free)
    blocked_vendors: set[str] = set()
    admit: list[Key] = []
    waiting: dict[Key, str] = {}

    for q in order(queued):
        reason = None
        if limits.hold:
            reason = "the queue is on hold"
        elif total >= limits.total:
            reason = f"cluster-wide limit of {limits.total} running backtests"
        elif per_ns[q.namespace] >= limits.per_namespace:
            reason = f"limit of {limits.per_namespace} running backtests in namespace {q.namespace}"
        elif per_strategy[(q.namespace, q.strategy)] >= limits.per_strategy:
            reason = f"limit of {limits.per_strategy} running backtests of strategy {q.strategy}"
        elif q.gpu is not None:
            if q.gpu.vendor in blocked_vendors:
                reason = f"an earlier {q.gpu.vendor} GPU backtest waits for capacity"
            elif free.get(q.gpu.vendor, 0) < q.gpu.count:
                reason = (
                    f"{q.gpu.count} free {q.gpu.vendor} GPU(s); "
                    f"{free.get(q.gpu.vendor, 0)} free now"
                )
                blocked_vendors.add(q.gpu.vendor)
        if reason is not None:
            waiting[q.key] = reason
            continue
        admit.append(q.key)
        total += 1
        per_ns[q.namespace] += 1
        per_strategy[(q.namespace, q.strategy)] += 1
        if q.gpu is not None:
            free[q.gpu.vendor] -= q.gpu.count

    positions = {
        key: i + 1 for i, key in enumerate(q.key for q in order(queued) if q.key in waiting)
    }
    return Decision(admit=tuple(admit), positions=positions, waiting_for=waiting)


def next_admissions(
    ordered: Iterable[QueuedBacktest],
    running: list[RunningBacktest],
    limits: Limits,
    gpu_free: dict[str, int],
) -> tuple[Key, ...]:
    """What `decide` would admit, from waiting items already in admission order, looking no
    further than needed: once the cluster-wide limit is reached nothing behind can start, so a
    pass costs the number of items looked at, not the length of the queue."""
    if limits.hold:
        return ()
    total = len(running)
    per_ns = Counter(r.namespace for r in running)
    per_strategy = Counter((r.namespace, r.strategy) for r in running)
    free = dict(gpu_free)
    blocked_vendors: set[str] = set()
    admit: list[Key] = []
    for q in ordered:
        if total >= limits.total:
            break
        if (
            per_ns[q.namespace] >= limits.per_namespace
            or per_strategy[(q.namespace, q.strategy)] >= limits.per_strategy
        ):
            continue
        if q.gpu is not None:
            if q.gpu.vendor in blocked_vendors:
                continue
            if free.get(q.gpu.vendor, 0) < q.gpu.count:
                blocked_vendors.add(q.gpu.vendor)
                continue
            free[q.gpu.vendor] -= q.gpu.count
        admit.append(q.key)
        total += 1
        per_ns[q.namespace] += 1
        per_strategy[(q.namespace, q.strategy)] += 1
    return tuple(admit)


class WaitingOrder:
    """The waiting items in admission order (priority, age, namespace/name), kept sorted as
    they come and go: an upsert or removal is a binary search and a list shift, iteration is
    in order, and nothing is sorted per pass."""

    def __init__(self) -> None:
        self._sort_keys: list[tuple[int, dt.datetime, str, str]] = []
        self._items: dict[Key, QueuedBacktest] = {}
        self._gpu = 0
        self._per_namespace: Counter[str] = Counter()

    @staticmethod
    def _sort_key(q: QueuedBacktest) -> tuple[int, dt.datetime, str, str]:
        return (-q.priority, q.created, q.namespace, q.name)

    def upsert(self, q: QueuedBacktest) -> bool:
        """Adds or replaces `q`; True when it was not waiting before."""
        old = self._items.get(q.key)
        if old == q:
            return False
        if old is not None:
            self.remove(old.key)
        bisect.insort(self._sort_keys, self._sort_key(q))
        self._items[q.key] = q
        self._gpu += q.gpu is not None
        self._per_namespace[q.namespace] += 1
        return old is None

    def remove(self, key: Key) -> bool:
        q = self._items.pop(key, None)
        if q is None:
            return False
        self._gpu -= q.gpu is not None
        self._per_namespace[q.namespace] -= 1
        sk = self._sort_key(q)
        i = bisect.bisect_left(self._sort_keys, sk)
        if i < len(self._sort_keys) and self._sort_keys[i] == sk:
            del self._sort_keys[i]
        return True

    def __contains__(self, key: Key) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[QueuedBacktest]:
        for _, _, ns, name in self._sort_keys:
            yield self._items[(ns, name)]

    def get(self, key: Key) -> QueuedBacktest | None:
        return self._items.get(key)

    def in_namespace(self, namespace: str) -> int:
        return self._per_namespace[namespace]

    def any_gpu(self) -> bool:
        return self._gpu > 0


def gpu_free(allocatable: dict[str, int], in_use: dict[str, int]) -> dict[str, int]:
    """Free GPUs per vendor resource: allocatable on nodes minus requested by live pods."""
    return {res: max(0, n - in_use.get(res, 0)) for res, n in allocatable.items()}


EXACT_POSITIONS = 20


def position_worth_writing(old: int | None, new: int) -> bool:
    """Every admission moves everyone behind it up by one; rewriting thousands of statuses for
    that would cost more than the queue itself. Positions near the head are kept exact, the
    rest are rewritten when they have moved by a tenth."""
    if old is None or new <= EXACT_POSITIONS:
        return old != new
    return abs(old - new) >= max(1, old // 10)
