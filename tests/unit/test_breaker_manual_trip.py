"""The kill switch (a manual trip token), the kinds of limit a trip names, and the figures an
incident keeps."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from tests.unit.test_breaker import T0, open_state, reading, spec

from tradebot.domain.breaker import (
    BreakerState,
    evaluate,
    limits_crossed,
    to_status,
    trip_figures,
)


def test_a_new_trip_token_trips_a_quiet_breaker():
    d = evaluate(
        spec(),
        BreakerState(),
        [reading("a"), reading("b")],
        T0,
        None,
        trip_token_requested="kill-1",
    )
    assert d.tripped
    assert d.state.state == "Open"
    assert d.stop_bots == ("a", "b")
    assert d.state.reason == "tripped by hand (token kill-1)"
    assert d.limits == ("manual",)
    assert to_status(d.state)["lastTripToken"] == "kill-1"


def test_a_used_trip_token_does_not_trip_again_after_a_reset():
    tripped = evaluate(
        spec(), BreakerState(), [reading()], T0, None, trip_token_requested="kill-1"
    ).state
    reset = evaluate(spec(), tripped, [reading()], T0, "r1", trip_token_requested="kill-1")
    assert reset.reset
    assert reset.state.state == "Closed"
    again = evaluate(
        spec(),
        reset.state,
        [reading()],
        T0 + dt.timedelta(seconds=1),
        "r1",
        trip_token_requested="kill-1",
    )
    assert not again.tripped
    assert again.state.state == "Closed"


def test_a_trip_token_wins_over_a_reset_token_in_the_same_round():
    d = evaluate(
        spec(),
        open_state(),
        [reading()],
        T0 + dt.timedelta(hours=1),
        "r-new",
        trip_token_requested="kill-2",
    )
    assert d.state.state == "Open"
    assert d.tripped
    assert d.state.tripped_at == T0 + dt.timedelta(hours=1)
    assert d.stop_bots == ("a", "b")
    assert not d.reset
    # Both tokens are used up: neither acts again later.
    assert d.state.last_reset_token == "r-new"
    assert d.state.last_trip_token == "kill-2"


def test_a_trip_token_trips_a_half_open_breaker():
    half = BreakerState("HalfOpen", T0, "old", ("a",))
    d = evaluate(
        spec(reset={"mode": "auto", "cooldown": "1h"}),
        half,
        [reading("b")],
        T0 + dt.timedelta(minutes=61),
        None,
        trip_token_requested="k",
    )
    assert d.tripped
    assert d.stop_bots == ("a", "b")


def test_limits_crossed_names_each_kind():
    found = limits_crossed(
        spec(),
        [
            reading("a", equity="700", peak="1000"),
            reading("b", losses=9),
            reading("c", heartbeat=T0 - dt.timedelta(minutes=9)),
        ],
        T0,
    )
    assert [(c.bot, c.limit) for c in found] == [
        ("a", "drawdown"),
        ("b", "consecutiveLosses"),
        ("c", "staleHeartbeat"),
    ]
    d = evaluate(
        spec(),
        BreakerState(),
        [reading("a", equity="700", peak="1000"), reading("b", losses=9)],
        T0,
        None,
    )
    assert d.limits == ("consecutiveLosses", "drawdown")


def test_trip_figures_are_exact_to_eight_places():
    figures = trip_figures([reading("a", equity="700", peak="900", loss="12.5", losses=2)])
    assert figures["a.drawdown"] == Decimal("0.22222222")
    assert figures["a.equity"] == Decimal("700.00000000")
    assert figures["a.dailyLoss"] == Decimal("12.50000000")
    assert figures["a.consecutiveLosses"] == Decimal(2)
    assert all(v.as_tuple().exponent in (-8, 0) for v in figures.values())
