"""Which operator replica acts: the leader Lease's decisions (create, acquire, renew, wait),
expiry on the follower's own clock, the leader's renew deadline and the timing rules."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradebot.domain.leader_election import (
    LeaderRecord,
    Observed,
    check_timing,
    decide,
    must_stop,
    observe,
    released,
    work_stalled,
)

WALL = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
EARLIER = WALL - dt.timedelta(minutes=5)


def held(holder: str | None, duration: int | None = 10, transitions: int = 3) -> LeaderRecord:
    return LeaderRecord(holder, duration, EARLIER, EARLIER, transitions)


# (what was seen and since when, now, expected action, expected holder, transitions written)
CASES = [
    ("no lease", None, 100.0, "create", "me", 0),
    ("mine: renew", Observed(held("me"), 0.0), 100.0, "renew", "me", 3),
    ("mine even if stale: renew", Observed(held("me"), 0.0), 1000.0, "renew", "me", 3),
    ("other, fresh", Observed(held("other"), 95.0), 100.0, "wait", "other", None),
    ("other, just before expiry", Observed(held("other"), 90.01), 100.0, "wait", "other", None),
    ("other, expired", Observed(held("other"), 90.0), 100.0, "acquire", "me", 4),
    ("other, long expired", Observed(held("other"), 0.0), 100.0, "acquire", "me", 4),
    ("released (no holder)", Observed(held(None, 1), 99.9), 100.0, "acquire", "me", 4),
    # A Lease without its own duration is judged by ours (10 s here).
    (
        "other, no duration, fresh",
        Observed(held("other", None), 95.0),
        100.0,
        "wait",
        "other",
        None,
    ),
    ("other, no duration, expired", Observed(held("other", None), 89.0), 100.0, "acquire", "me", 4),
    # Its own duration wins over ours.
    ("other, longer own duration", Observed(held("other", 60), 50.0), 100.0, "wait", "other", None),
]


@pytest.mark.parametrize(
    ("seen", "now", "action", "holder", "transitions"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decide(
    seen: Observed | None, now: float, action: str, holder: str, transitions: int | None
) -> None:
    d = decide("me", seen, now, WALL, 10)
    assert (d.action, d.holder) == (action, holder)
    if transitions is None:
        assert d.record is None
        assert d.expires_in > 0
    else:
        assert d.record is not None
        assert d.record.holder == "me"
        assert d.record.transitions == transitions
        assert d.record.renew_time == WALL
        assert d.record.lease_duration_seconds == 10


def test_renew_keeps_the_acquire_time_and_takeover_sets_it() -> None:
    renewed = decide("me", Observed(held("me"), 0.0), 1.0, WALL, 10).record
    taken = decide("me", Observed(held("other"), 0.0), 100.0, WALL, 10).record
    assert renewed is not None
    assert taken is not None
    assert renewed.acquire_time == EARLIER
    assert taken.acquire_time == WALL


def test_wait_says_when_the_holder_expires() -> None:
    d = decide("me", Observed(held("other"), 95.0), 100.0, WALL, 10)
    assert d.expires_in == pytest.approx(5.0)


def test_expiry_counts_from_the_last_change_seen_not_from_renew_time() -> None:
    # renewTime is far in the past (another machine's clock): what counts is that the record
    # changed 1 s ago here.
    first = observe(None, held("other"), 10.0)
    renewed = LeaderRecord("other", 10, EARLIER, EARLIER + dt.timedelta(seconds=2), 3)
    second = observe(first, renewed, 99.0)
    assert second.since == 99.0
    assert decide("me", second, 100.0, WALL, 10).action == "wait"
    # Unchanged records keep the time first seen: a holder that stopped renewing expires.
    same = observe(second, renewed, 109.5)
    assert same.since == 99.0
    assert decide("me", same, 109.5, WALL, 10).action == "acquire"


@pytest.mark.parametrize(
    ("last", "now", "stop"),
    [
        (0.0, 6.99, False),
        (0.0, 7.0, True),
        (0.0, 30.0, True),
        (10.0, 12.0, False),
    ],
)
def test_must_stop_at_the_renew_deadline(last: float, now: float, stop: bool) -> None:
    assert must_stop(last, now, 7.0) is stop


@given(
    since=st.floats(0, 1e6),
    renew_start=st.floats(0, 1e6),
    deadline=st.integers(2, 30),
    margin=st.integers(1, 30),
)
def test_the_leader_stops_before_any_follower_takes_over(
    since: float, renew_start: float, deadline: int, margin: int
) -> None:
    # A follower saw the leader's last renewal at `since`, no earlier than that write started.
    renew_start = min(renew_start, since)
    duration = deadline + margin
    record = held("leader", duration)
    seen = Observed(record, since)
    # The earliest moment the follower may acquire ...
    takeover = since + duration
    assert decide("follower", seen, takeover - 1e-3, WALL, duration).action == "wait"
    assert decide("follower", seen, takeover, WALL, duration).action == "acquire"
    # ... comes after the leader has had to stop.
    assert must_stop(renew_start, takeover, deadline)


def test_released_has_no_holder_and_is_acquired_at_once() -> None:
    out = released(held("me"), WALL)
    assert out.holder is None
    assert out.renew_time == WALL
    assert decide("other", Observed(out, 50.0), 50.0, WALL, 10).action == "acquire"


def test_manifest_round_trip() -> None:
    record = LeaderRecord("pod-a_1234", 10, EARLIER, WALL, 7)
    spec = record.spec()
    assert spec["renewTime"] == "2026-11-29T12:00:00.000000Z"
    assert LeaderRecord.from_manifest({"spec": spec}) == record
    assert LeaderRecord.from_manifest({"spec": {}}) == LeaderRecord(None)


@pytest.mark.parametrize(
    ("timing", "problem"),
    [
        ((10, 7, 2), None),
        ((15, 10, 2), None),
        ((7, 7, 2), "must exceed the renew deadline"),
        ((10, 2.4, 2), "1.2 x the retry period"),
    ],
)
def test_check_timing(timing: tuple[float, float, float], problem: str | None) -> None:
    found = check_timing(*timing)
    assert (found is None) if problem is None else (problem in (found or ""))


@pytest.mark.parametrize(
    ("beat", "now", "stalled"),
    [
        (None, 1000.0, False),  # no work loop yet (start-up, or stopped for shutdown)
        (100.0, 219.0, False),
        (100.0, 220.0, False),  # exactly the bound: not yet
        (100.0, 220.5, True),
    ],
)
def test_work_stalled_after_the_bound(beat: float | None, now: float, stalled: bool) -> None:
    assert work_stalled(beat, now, 120.0) is stalled
