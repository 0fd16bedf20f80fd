"""Backtest admission, table-driven: limits, priorities, GPU capacity, restart."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradebot.domain.queue import (
    GpuNeed,
    Limits,
    QueuedBacktest,
    RunningBacktest,
    decide,
    gpu_free,
)

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def q(
    name: str,
    *,
    ns: str = "a",
    strategy: str = "s",
    priority: int = 0,
    age: int = 0,
    gpu: tuple[str, int] | None = None,
) -> QueuedBacktest:
    return QueuedBacktest(
        ns, name, strategy, priority, T0 + dt.timedelta(seconds=age), GpuNeed(*gpu) if gpu else None
    )


def r(name: str, *, ns: str = "a", strategy: str = "s") -> RunningBacktest:
    return RunningBacktest(ns, name, strategy)


WIDE = Limits(total=10, per_namespace=10, per_strategy=10)


@pytest.mark.parametrize(
    ("queued", "running", "limits", "gpus", "admitted"),
    [
        # total limit: oldest first
        ([q("b", age=2), q("a", age=1), q("c", age=3)], [], Limits(2, 10, 10), {}, ["a", "b"]),
        # running count toward the limit
        ([q("a"), q("b", age=1)], [r("x")], Limits(2, 10, 10), {}, ["a"]),
        # priority beats age
        ([q("old", age=0), q("urgent", priority=5, age=9)], [], Limits(1, 10, 10), {}, ["urgent"]),
        # per namespace: the other namespace backfills
        (
            [q("a1", ns="a"), q("a2", ns="a", age=1), q("b1", ns="b", age=2)],
            [],
            Limits(10, 1, 10),
            {},
            ["a1", "b1"],
        ),
        # per strategy
        (
            [q("x1", strategy="x"), q("x2", strategy="x", age=1), q("y1", strategy="y", age=2)],
            [r("x0", strategy="x")],
            Limits(10, 10, 2),
            {},
            ["x1", "y1"],
        ),
        # GPU: only what is free; a blocked GPU head blocks later GPU ones of that vendor only
        (
            [
                q("g1", gpu=("amd", 4)),
                q("g2", gpu=("amd", 1), age=1),
                q("cpu", age=2),
                q("n1", gpu=("nvidia", 1), age=3),
            ],
            [],
            WIDE,
            {"amd": 3, "nvidia": 2},
            ["cpu", "n1"],
        ),
        (
            [
                q("g1", gpu=("amd", 2)),
                q("g2", gpu=("amd", 2), age=1),
                q("g3", gpu=("amd", 2), age=2),
            ],
            [],
            WIDE,
            {"amd": 4},
            ["g1", "g2"],
        ),
        # no GPUs of that vendor at all
        ([q("g", gpu=("nvidia", 1))], [], WIDE, {"amd": 8}, []),
        # hold: nothing starts
        ([q("a")], [], Limits(10, 10, 10, hold=True), {}, []),
        # limit zero
        ([q("a")], [], Limits(0, 10, 10), {}, []),
    ],
)
def test_admission(queued, running, limits, gpus, admitted):
    decision = decide(queued, running, limits, gpus)
    assert [name for _, name in decision.admit] == admitted
    waiting = [x for x in queued if x.name not in admitted]
    assert sorted(decision.positions.values()) == list(range(1, len(waiting) + 1))
    assert set(decision.waiting_for) == {x.key for x in waiting}


def test_positions_follow_order_and_reasons_are_given():
    d = decide([q("c", age=3), q("a", age=1), q("b", age=2)], [], Limits(1, 10, 10), {})
    assert d.admit == (("a", "a"),)
    assert d.positions == {("a", "b"): 1, ("a", "c"): 2}
    assert "cluster-wide limit of 1" in d.waiting_for[("a", "b")]


def test_restart_gives_the_same_decision():
    """The decision depends only on the snapshot: an operator restarted mid-queue, seeing the
    same cluster, admits exactly the same Backtests (and the admitted ones are then running)."""
    queued = [q(f"b{i}", age=i, priority=i % 3) for i in range(8)]
    first = decide(queued, [], Limits(3, 10, 10), {})
    again = decide(list(reversed(queued)), [], Limits(3, 10, 10), {})
    assert first == again
    now_running = [r(name) for _, name in first.admit]
    rest = [x for x in queued if x.key not in first.admit]
    assert decide(rest, now_running, Limits(3, 10, 10), {}).admit == ()


def test_gpu_free():
    assert gpu_free({"amd.com/gpu": 8, "nvidia.com/gpu": 2}, {"amd.com/gpu": 3}) == {
        "amd.com/gpu": 5,
        "nvidia.com/gpu": 2,
    }
    assert gpu_free({"amd.com/gpu": 1}, {"amd.com/gpu": 4}) == {"amd.com/gpu": 0}


@given(
    st.lists(
        st.tuples(
            st.sampled_from("abc"),
            st.sampled_from("xy"),
            st.integers(-2, 2),
            st.sampled_from([None, 1, 2, 4]),
        ),
        max_size=25,
    ),
    st.integers(0, 6),
    st.integers(0, 4),
    st.integers(0, 4),
    st.integers(0, 8),
)
def test_limits_are_never_exceeded(entries, total, per_ns, per_strategy, amd):
    queued = [
        q(f"b{i}", ns=ns, strategy=s, priority=p, age=i, gpu=("amd", g) if g else None)
        for i, (ns, s, p, g) in enumerate(entries)
    ]
    d = decide(queued, [], Limits(total, per_ns, per_strategy), {"amd": amd})
    chosen = [x for x in queued if x.key in d.admit]
    assert len(chosen) <= total
    for ns in "abc":
        assert sum(x.namespace == ns for x in chosen) <= per_ns
        for s in "xy":
            assert sum(x.namespace == ns and x.strategy == s for x in chosen) <= per_strategy
    assert sum(x.gpu.count for x in chosen if x.gpu) <= amd


@pytest.mark.parametrize(
    ("old", "new", "write"),
    [
        (None, 500, True),
        (3, 2, True),
        (2, 2, False),
        (20, 19, True),
        (500, 499, False),
        (500, 451, False),
        (500, 450, True),
        (30, 27, True),
        (30, 28, False),
    ],
)
def test_positions_far_back_are_written_in_steps(old, new, write):
    from tradebot.domain.queue import position_worth_writing

    assert position_worth_writing(old, new) is write


# --- the event-driven queue's pieces: the kept order and the early-stopping pass ------------

from hypothesis import settings as hsettings  # noqa: E402

from tradebot.domain.queue import WaitingOrder, next_admissions  # noqa: E402

_items = st.builds(
    q,
    st.sampled_from([f"b{i}" for i in range(12)]),
    ns=st.sampled_from(["a", "b"]),
    strategy=st.sampled_from(["s", "t"]),
    priority=st.integers(-2, 2),
    age=st.integers(0, 5),
    gpu=st.one_of(st.none(), st.tuples(st.sampled_from(["amd", "nvidia"]), st.integers(1, 3))),
)


@hsettings(max_examples=200)
@given(
    st.lists(st.tuples(st.booleans(), _items), max_size=40),
    st.lists(
        st.builds(
            r,
            st.sampled_from(["x", "y", "z"]),
            ns=st.sampled_from(["a", "b"]),
            strategy=st.sampled_from(["s", "t"]),
        ),
        max_size=4,
    ),
    st.integers(0, 6),
    st.integers(0, 4),
    st.integers(0, 4),
    st.dictionaries(st.sampled_from(["amd", "nvidia"]), st.integers(0, 4)),
)
def test_kept_order_and_early_pass_agree_with_decide(ops, running, total, per_ns, per_s, gpus):
    """Items added, replaced and removed in any order: the kept order is `order()` of what is
    left, and the early-stopping pass admits exactly what the full `decide` admits."""
    kept = WaitingOrder()
    model: dict[tuple[str, str], QueuedBacktest] = {}
    for add, item in ops:
        if add:
            kept.upsert(item)
            model[item.key] = item
        else:
            kept.remove(item.key)
            model.pop(item.key, None)
    from tradebot.domain.queue import order

    assert list(kept) == order(list(model.values()))
    assert len(kept) == len(model)
    assert kept.any_gpu() == any(i.gpu for i in model.values())
    limits = Limits(total, per_ns, per_s)
    assert (
        next_admissions(iter(kept), running, limits, gpus)
        == decide(list(model.values()), running, limits, gpus).admit
    )


def test_the_early_pass_looks_no_further_than_the_free_slots() -> None:
    looked: list[str] = []

    def watched():
        for i in range(10_000):
            looked.append(f"b{i}")
            yield q(f"b{i}", age=i)

    admitted = next_admissions(watched(), [r("x")], Limits(3, 10, 10), {})
    assert admitted == (("a", "b0"), ("a", "b1"))
    assert len(looked) <= 3


def test_a_hold_admits_nothing_from_the_kept_order() -> None:
    kept = WaitingOrder()
    kept.upsert(q("a"))
    assert next_admissions(iter(kept), [], Limits(10, 10, 10, hold=True), {}) == ()
    assert next_admissions(iter(kept), [], Limits(10, 10, 10), {}) == (("a", "a"),)
