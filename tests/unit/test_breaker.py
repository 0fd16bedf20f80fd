"""The CircuitBreaker state machine."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradebot.api.circuitbreaker import CircuitBreakerSpec, CircuitBreakerStatus
from tradebot.api.types import parse_duration
from tradebot.domain.breaker import (
    BotReading,
    BreakerState,
    crossings,
    evaluate,
    stale_since,
    to_status,
)

T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)


def spec(reset: dict[str, Any] | None = None, **limits: Any) -> CircuitBreakerSpec:
    return CircuitBreakerSpec.model_validate(
        {
            "selector": {},
            "limits": limits
            or {
                "maxDrawdown": 0.15,
                "maxDailyLoss": "50",
                "maxConsecutiveLosses": 5,
                "maxIncidents": 3,
                "staleHeartbeat": "5m",
            },
            "reset": reset or {"mode": "manual"},
        }
    )


AUTO = {"mode": "auto", "cooldown": "1h"}


def reading(
    name: str = "a",
    equity: str = "1000",
    peak: str = "1000",
    loss: str = "0",
    losses: int = 0,
    incidents: int = 0,
    heartbeat: dt.datetime | None = T0,
    since: dt.datetime | None = T0 - dt.timedelta(hours=1),
) -> BotReading:
    return BotReading(
        name, Decimal(equity), Decimal(peak), Decimal(loss), losses, incidents, heartbeat, since
    )


def open_state(token: str | None = None) -> BreakerState:
    return BreakerState("Open", T0, "bot a: drawdown 0.2000 >= 0.15", ("a", "b"), token)


@pytest.mark.parametrize(
    ("r", "reason"),
    [
        (reading(equity="785", peak="1000"), "bot a: drawdown 0.2150 >= 0.15"),
        (reading(equity="850", peak="1000"), "bot a: drawdown 0.1500 >= 0.15"),
        (reading(loss="50"), "bot a: daily loss 50 >= 50"),
        (reading(losses=5), "bot a: consecutive losses 5 >= 5"),
        (reading(incidents=3), "bot a: incidents 3 >= 3"),
        (reading(heartbeat=T0 - dt.timedelta(minutes=6)), "bot a: no heartbeat for 360s > 5m"),
        (
            reading(heartbeat=None, since=T0 - dt.timedelta(minutes=10)),
            "bot a: no heartbeat for 600s > 5m",
        ),
    ],
)
def test_each_limit_trips(r: BotReading, reason: str):
    d = evaluate(spec(), BreakerState(), [r, reading("b")], T0, None)
    assert d.tripped
    assert d.record_incident
    assert d.state.state == "Open"
    assert d.state.tripped_at == T0
    assert d.reason == reason
    assert d.stop_bots == ("a", "b")
    assert d.bots_allowed_to_run == ()


@pytest.mark.parametrize(
    "r",
    [
        reading(equity="850.01", peak="1000"),
        reading(loss="49.99999999"),
        reading(losses=4),
        reading(incidents=2),
        reading(heartbeat=T0 - dt.timedelta(minutes=5)),
        reading(heartbeat=None, since=T0 - dt.timedelta(minutes=5)),
        # Not running (stopped): its silence is not staleness.
        reading(heartbeat=T0 - dt.timedelta(days=1), since=None),
        reading(equity="0", peak="0"),
        reading(equity="2000", peak="1000"),
    ],
)
def test_below_limits_stays_closed(r: BotReading):
    d = evaluate(spec(), BreakerState(), [r], T0, None)
    assert not d.tripped
    assert d.state == BreakerState()
    assert d.bots_allowed_to_run == ("a",)
    assert d.stop_bots == ()


def test_unset_limits_do_not_trip():
    s = spec(maxDailyLoss="10")
    assert not evaluate(s, BreakerState(), [reading(equity="1", losses=99)], T0, None).tripped


def test_reason_lists_every_crossing():
    d = evaluate(
        spec(), BreakerState(), [reading("b", losses=9), reading("a", loss="60")], T0, None
    )
    assert d.reason == "bot a: daily loss 60 >= 50; bot b: consecutive losses 9 >= 5"


def test_open_stays_open_and_stops_everyone():
    d = evaluate(
        spec(), open_state(), [reading("a"), reading("c")], T0 + dt.timedelta(days=30), None
    )
    assert d.state.state == "Open"
    assert not d.tripped
    assert not d.record_incident
    assert d.stop_bots == ("a", "b", "c")
    assert d.bots_allowed_to_run == ()
    assert d.state.tripped_at == T0


def test_manual_reset_needs_a_new_token():
    old = open_state(token="t1")
    assert evaluate(spec(), old, [reading()], T0, "t1").state.state == "Open"
    d = evaluate(spec(), old, [reading()], T0, "t2")
    assert d.reset
    assert d.state == BreakerState("Closed", last_reset_token="t2")
    assert d.bots_allowed_to_run == ("a",)


def test_token_left_behind_cannot_reset_a_later_trip():
    d1 = evaluate(spec(), BreakerState(), [reading()], T0, "t1")
    assert d1.state.last_reset_token == "t1"
    d2 = evaluate(spec(), d1.state, [reading(losses=9)], T0, "t1")
    assert d2.tripped
    d3 = evaluate(spec(), d2.state, [reading()], T0 + dt.timedelta(hours=1), "t1")
    assert d3.state.state == "Open"


def test_manual_mode_never_half_opens():
    d = evaluate(spec(), open_state(), [reading()], T0 + dt.timedelta(days=365), None)
    assert d.state.state == "Open"


def test_auto_reset_cycle():
    s = spec(reset=AUTO)
    state = open_state()
    assert (
        evaluate(s, state, [reading()], T0 + dt.timedelta(minutes=59), None).state.state == "Open"
    )
    half = evaluate(s, state, [reading()], T0 + dt.timedelta(hours=1), None)
    assert half.state.state == "HalfOpen"
    assert half.bots_allowed_to_run == ("a",)
    # Probation: still half-open until the cooldown passed again.
    mid = evaluate(
        s,
        half.state,
        [reading(heartbeat=T0 + dt.timedelta(minutes=90))],
        T0 + dt.timedelta(minutes=90),
        None,
    )
    assert mid.state.state == "HalfOpen"
    closed = evaluate(
        s,
        mid.state,
        [reading(heartbeat=T0 + dt.timedelta(hours=2))],
        T0 + dt.timedelta(hours=2),
        None,
    )
    assert closed.state == BreakerState("Closed")


def test_half_open_trips_again_on_a_crossing():
    s = spec(reset=AUTO)
    half = BreakerState("HalfOpen", T0, "x", ("a", "b"))
    d = evaluate(s, half, [reading(losses=7)], T0 + dt.timedelta(minutes=61), None)
    assert d.tripped
    assert d.record_incident
    assert d.state.state == "Open"
    assert d.state.tripped_at == T0 + dt.timedelta(minutes=61)
    assert d.stop_bots == ("a", "b")


def test_half_open_manual_token_closes():
    half = BreakerState("HalfOpen", T0, "x", ("a",))
    later = T0 + dt.timedelta(minutes=61)
    d = evaluate(spec(reset=AUTO), half, [reading(heartbeat=later)], later, "t")
    assert d.reset
    assert d.state.state == "Closed"


def test_state_round_trips_through_status():
    state = open_state(token="t1")
    status = CircuitBreakerStatus.model_validate(to_status(state))
    assert BreakerState.from_status(status) == state  # the token travels in status too
    assert BreakerState.from_status(None) == BreakerState()
    assert to_status(BreakerState())["trippedAt"] is None


def test_crossings_is_sorted_by_bot():
    found = crossings(spec(), [reading("z", losses=9), reading("b", losses=9)], T0)
    assert [f.split(":")[0] for f in found] == ["bot b", "bot z"]


# ---- properties over arbitrary sequences ---------------------------------------------------

_readings = st.builds(
    BotReading,
    name=st.sampled_from(["a", "b", "c"]),
    equity=st.decimals(min_value=0, max_value=2000, places=2),
    peak_equity=st.decimals(min_value=0, max_value=2000, places=2),
    daily_loss=st.decimals(min_value=0, max_value=100, places=2),
    consecutive_losses=st.integers(0, 8),
    incidents_in_window=st.integers(0, 5),
    last_heartbeat=st.none() | st.just(T0),
    running_since=st.none() | st.just(T0),
)
_steps = st.lists(
    st.tuples(
        st.lists(_readings, max_size=3),
        st.integers(0, 3 * 3600),  # seconds since the previous step
        st.none() | st.sampled_from(["t1", "t2", "t3"]),
        st.none() | st.sampled_from(["k1", "k2"]),  # the kill switch's token
    ),
    max_size=25,
)
_specs = st.sampled_from(
    [
        spec(),
        spec(reset=AUTO),
        spec(reset={"mode": "auto", "cooldown": "30s"}),
        spec(maxDrawdown=0.1),
        spec(staleHeartbeat="10m"),
    ]
)


@settings(max_examples=300)
@given(s=_specs, steps=_steps)
def test_open_lets_nothing_run_and_is_left_only_by_a_valid_reset(
    s: CircuitBreakerSpec, steps: list[tuple[list[BotReading], int, str | None, str | None]]
):
    state = BreakerState()
    now = T0
    for readings, gap, token, trip in steps:
        now += dt.timedelta(seconds=gap)
        d = evaluate(s, state, readings, now, token, trip_token_requested=trip)
        # Pure: the same inputs give the same decision, also from the status round trip.
        assert evaluate(s, state, readings, now, token, trip_token_requested=trip) == d
        restored = BreakerState.from_status(CircuitBreakerStatus.model_validate(to_status(state)))
        assert evaluate(s, restored, readings, now, token, trip_token_requested=trip) == d
        if trip is not None and trip != state.last_trip_token:
            # A new kill-switch token always leaves the breaker Open.
            assert d.state.state == "Open"
        if d.state.state == "Open":
            assert d.bots_allowed_to_run == ()
            assert {r.name for r in readings} <= set(d.stop_bots)
        else:
            assert d.stop_bots == ()
        if state.state == "Open" and d.state.state != "Open":
            new_token = (
                token is not None
                and token != state.last_reset_token
                and (trip is None or trip == state.last_trip_token)
            )
            cooled = (
                s.reset.mode == "auto"
                and state.tripped_at is not None
                and now - state.tripped_at >= parse_duration(s.reset.cooldown or "")
                and d.state.state == "HalfOpen"
            )
            assert (new_token and d.state.state == "Closed" and d.reset) or cooled
        if d.tripped:
            assert d.record_incident
            assert d.state.state == "Open"
            assert d.reason
        state = d.state


# An operator outage: the last heartbeat any leader wrote is an hour old, the bot was healthy
# all along (nobody watched it). Staleness counts from when this process began watching.
OUTAGE_HEARTBEAT = T0 - dt.timedelta(hours=1)


def test_a_heartbeat_from_before_an_outage_does_not_trip_a_bot_this_process_just_began_watching():
    bot = reading(heartbeat=OUTAGE_HEARTBEAT, since=T0 - dt.timedelta(hours=2))
    restarted = T0 - dt.timedelta(minutes=1)
    decision = evaluate(spec(), BreakerState(), [bot], T0, None, watching_since=restarted)
    assert not decision.tripped
    # Positive control: the same reading without the watch start trips (the old false trip).
    assert evaluate(spec(), BreakerState(), [bot], T0, None).tripped


def test_a_bot_silent_for_the_whole_window_this_process_watched_trips():
    bot = reading(heartbeat=OUTAGE_HEARTBEAT, since=T0 - dt.timedelta(hours=2))
    restarted = T0 - dt.timedelta(minutes=6)
    decision = evaluate(spec(), BreakerState(), [bot], T0, None, watching_since=restarted)
    assert decision.tripped
    assert decision.reason == "bot a: no heartbeat for 360s > 5m"


def test_a_heartbeat_after_the_watch_start_counts_from_the_heartbeat():
    restarted = T0 - dt.timedelta(minutes=20)
    fresh = reading(heartbeat=T0 - dt.timedelta(minutes=4), since=T0 - dt.timedelta(hours=2))
    silent = reading(heartbeat=T0 - dt.timedelta(minutes=6), since=T0 - dt.timedelta(hours=2))
    assert not evaluate(spec(), BreakerState(), [fresh], T0, None, watching_since=restarted).tripped
    assert evaluate(spec(), BreakerState(), [silent], T0, None, watching_since=restarted).tripped


def test_a_stopped_bot_is_never_stale_whatever_the_watch_start():
    assert stale_since(OUTAGE_HEARTBEAT, None, T0) is None
    assert stale_since(OUTAGE_HEARTBEAT, T0 - dt.timedelta(hours=2), T0) == T0
