"""The CircuitBreaker state machine. Pure: the controller passes the spec, the state from
status, the readings of the selected bots and the reset token from the annotation, and applies
the decision. The decision depends on nothing else, so an operator restarted half-way derives
the same state from status again.

    Closed --limit crossed--> Open --new reset token--> Closed
                               |--cooldown (auto)--> HalfOpen --limit crossed--> Open
                                                     HalfOpen --probation passed--> Closed

Nothing but a reset leaves Open, and while Open no selected bot may run: a bot is never
restarted by the operator's own retry, a restarted operator, or a bot that appears later.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Literal

from tradebot.api.circuitbreaker import CircuitBreakerSpec, CircuitBreakerStatus
from tradebot.api.types import parse_duration
from tradebot.domain.time import format_time, utc

BreakerStateName = Literal["Closed", "Open", "HalfOpen"]
CLOSED: BreakerStateName = "Closed"
OPEN: BreakerStateName = "Open"
HALF_OPEN: BreakerStateName = "HalfOpen"
_DISPLAY = Decimal("0.0001")


@dataclass(frozen=True)
class BotReading:
    """One selected bot now. The caller measures the windows (peak equity, daily loss,
    consecutive losses, incidents) from the breaker's last reset at the earliest, so a reset
    starts them afresh instead of tripping again on the figures that tripped it."""

    name: str
    equity: Decimal
    peak_equity: Decimal
    daily_loss: Decimal
    consecutive_losses: int
    incidents_in_window: int
    last_heartbeat: dt.datetime | None
    # When the bot's pod started; None when it has no running pod. Staleness is measured only
    # for running bots, from the later of this and the last heartbeat: a bot the breaker
    # stopped sends nothing, and that silence must not trip it again after a reset.
    running_since: dt.datetime | None

    @property
    def drawdown(self) -> Decimal:
        if self.peak_equity <= 0:
            return Decimal(0)
        return (self.peak_equity - self.equity) / self.peak_equity


@dataclass(frozen=True)
class BreakerState:
    """What status holds, and so all the memory the state machine has."""

    state: BreakerStateName = CLOSED
    tripped_at: dt.datetime | None = None
    reason: str | None = None
    affected_bots: tuple[str, ...] = ()
    last_reset_token: str | None = None
    # The manual-trip token last used up (annotation tradebot.dev/trip).
    last_trip_token: str | None = None

    @classmethod
    def from_status(cls, status: CircuitBreakerStatus | None) -> BreakerState:
        if status is None:
            return cls()
        return cls(
            state=status.state or CLOSED,
            tripped_at=status.tripped_at,
            reason=status.reason,
            affected_bots=tuple(status.affected_bots or ()),
            last_reset_token=status.last_reset_token,
            last_trip_token=status.last_trip_token,
        )


@dataclass(frozen=True)
class BreakerDecision:
    state: BreakerState
    # Tripped by this evaluation (Closed/HalfOpen -> Open).
    tripped: bool
    # Closed by a person's reset token in this evaluation.
    reset: bool
    # Bots that must not run (spec.action says how: stop them or stop their entries).
    stop_bots: tuple[str, ...]
    bots_allowed_to_run: tuple[str, ...]
    record_incident: bool
    # The kinds of limit a trip crossed, sorted ("manual" for the kill switch); () otherwise.
    limits: tuple[str, ...] = ()

    @property
    def reason(self) -> str | None:
        return self.state.reason if self.tripped else None


def _num(value: Decimal) -> str:
    return format(value.normalize(), "f")


Limit = Literal[
    "drawdown", "dailyLoss", "consecutiveLosses", "incidents", "staleHeartbeat", "manual"
]


@dataclass(frozen=True)
class Crossing:
    bot: str
    limit: Limit
    message: str


def stale_since(
    last_heartbeat: dt.datetime | None,
    running_since: dt.datetime | None,
    watching_since: dt.datetime | None,
) -> dt.datetime | None:
    """From when a running bot's silence counts: its last heartbeat, its pod's start, or when
    this process began watching, whichever is latest. A heartbeat is written by the operator
    (a monitoring round), so an operator outage leaves every bot's heartbeat as old as the
    outage: only silence this process has itself watched for the whole window is a bot's
    own. None for a bot that is not running."""
    if running_since is None:
        return None
    marks = [utc(t) for t in (last_heartbeat, running_since, watching_since) if t is not None]
    return max(marks)


def limits_crossed(
    spec: CircuitBreakerSpec,
    readings: Sequence[BotReading],
    now: dt.datetime,
    watching_since: dt.datetime | None = None,
) -> list[Crossing]:
    """Every limit crossed, by bot name. `watching_since`: when this process began watching
    the bots (see `stale_since`); None counts heartbeats written by anyone."""
    limits = spec.limits
    stale_after = (
        parse_duration(limits.stale_heartbeat) if limits.stale_heartbeat is not None else None
    )
    found: list[Crossing] = []
    for r in sorted(readings, key=lambda r: r.name):

        def cross(limit: Limit, text: str, bot: str = r.name) -> None:
            found.append(Crossing(bot, limit, f"bot {bot}: {text}"))

        if limits.max_drawdown is not None and r.drawdown >= limits.max_drawdown:
            cross(
                "drawdown",
                f"drawdown {r.drawdown.quantize(_DISPLAY)} >= {_num(limits.max_drawdown)}",
            )
        if limits.max_daily_loss is not None and r.daily_loss >= limits.max_daily_loss:
            cross("dailyLoss", f"daily loss {_num(r.daily_loss)} >= {_num(limits.max_daily_loss)}")
        if (
            limits.max_consecutive_losses is not None
            and r.consecutive_losses >= limits.max_consecutive_losses
        ):
            cross(
                "consecutiveLosses",
                f"consecutive losses {r.consecutive_losses} >= {limits.max_consecutive_losses}",
            )
        if limits.max_incidents is not None and r.incidents_in_window >= limits.max_incidents:
            cross("incidents", f"incidents {r.incidents_in_window} >= {limits.max_incidents}")
        since = stale_since(r.last_heartbeat, r.running_since, watching_since)
        if stale_after is not None and since is not None:
            silent = utc(now) - since
            if silent > stale_after:
                cross(
                    "staleHeartbeat",
                    f"no heartbeat for {int(silent.total_seconds())}s > {limits.stale_heartbeat}",
                )
    return found


def crossings(
    spec: CircuitBreakerSpec, readings: Sequence[BotReading], now: dt.datetime
) -> list[str]:
    """One message per limit crossed, e.g. "bot a: drawdown 0.2150 >= 0.15"."""
    return [c.message for c in limits_crossed(spec, readings, now)]


def trip_figures(readings: Sequence[BotReading]) -> dict[str, Decimal]:
    """The selected bots' figures at a trip, exact to 8 places, for the incident record."""
    quantum = Decimal("0.00000001")
    figures: dict[str, Decimal] = {}
    for r in sorted(readings, key=lambda r: r.name):
        figures[f"{r.name}.equity"] = r.equity.quantize(quantum)
        figures[f"{r.name}.peakEquity"] = r.peak_equity.quantize(quantum)
        figures[f"{r.name}.drawdown"] = r.drawdown.quantize(quantum)
        figures[f"{r.name}.dailyLoss"] = r.daily_loss.quantize(quantum)
        figures[f"{r.name}.consecutiveLosses"] = Decimal(r.consecutive_losses)
        figures[f"{r.name}.incidents"] = Decimal(r.incidents_in_window)
    return figures


def _names(readings: Sequence[BotReading]) -> tuple[str, ...]:
    return tuple(sorted({r.name for r in readings}))


def evaluate(
    spec: CircuitBreakerSpec,
    state: BreakerState,
    readings: Sequence[BotReading],
    now: dt.datetime,
    reset_token_requested: str | None,
    *,
    trip_token_requested: str | None = None,
    watching_since: dt.datetime | None = None,
) -> BreakerDecision:
    now = utc(now)
    names = _names(readings)
    # A token is consumed whatever the state, so that an annotation left behind from an earlier
    # reset cannot silently reset a later trip.
    new_token = (
        reset_token_requested is not None and reset_token_requested != state.last_reset_token
    )
    if new_token:
        state = replace(state, last_reset_token=reset_token_requested)
    # A person's trip (the kill switch) wins over everything, a reset in the same round too.
    new_trip = trip_token_requested is not None and trip_token_requested != state.last_trip_token
    if new_trip:
        state = replace(state, last_trip_token=trip_token_requested)

    def trip(messages: list[str], limits: set[str]) -> BreakerDecision:
        still_stopped = state.affected_bots if state.state != CLOSED else ()
        affected = tuple(sorted({*names, *still_stopped}))
        opened = replace(
            state, state=OPEN, tripped_at=now, reason="; ".join(messages), affected_bots=affected
        )
        return BreakerDecision(
            opened,
            tripped=True,
            reset=False,
            stop_bots=affected,
            bots_allowed_to_run=(),
            record_incident=True,
            limits=tuple(sorted(limits)),
        )

    def running(new: BreakerState, *, reset: bool = False) -> BreakerDecision:
        return BreakerDecision(
            new,
            tripped=False,
            reset=reset,
            stop_bots=(),
            bots_allowed_to_run=names,
            record_incident=False,
        )

    if new_trip:
        # Also when Open: the kill switch starts the trip (and its cooldown) afresh.
        return trip([f"tripped by hand (token {trip_token_requested})"], {"manual"})
    if state.state == OPEN:
        if new_token:
            return running(
                BreakerState(
                    CLOSED,
                    last_reset_token=state.last_reset_token,
                    last_trip_token=state.last_trip_token,
                ),
                reset=True,
            )
        half_open_at = _half_open_at(spec, state)
        if half_open_at is not None and now >= half_open_at:
            return running(replace(state, state=HALF_OPEN))
        stopped = tuple(sorted({*names, *state.affected_bots}))
        return BreakerDecision(
            replace(state, affected_bots=stopped),
            tripped=False,
            reset=False,
            stop_bots=stopped,
            bots_allowed_to_run=(),
            record_incident=False,
        )

    found = limits_crossed(spec, readings, now, watching_since)
    if found:
        return trip([c.message for c in found], {c.limit for c in found})
    if state.state == HALF_OPEN:
        closed = BreakerState(
            CLOSED, last_reset_token=state.last_reset_token, last_trip_token=state.last_trip_token
        )
        if new_token:
            return running(closed, reset=True)
        # Probation lasts as long as the cooldown: bots just let run again have had no time to
        # cross a limit, so one quiet evaluation proves nothing. Its end follows from trippedAt,
        # so a restarted operator finds the same end.
        half_open_at = _half_open_at(spec, state)
        cooldown = parse_duration(spec.reset.cooldown or "0s")
        if half_open_at is None or now >= half_open_at + cooldown:
            return running(closed)
        return running(state)
    return running(state)


def _half_open_at(spec: CircuitBreakerSpec, state: BreakerState) -> dt.datetime | None:
    """When an auto-reset breaker goes half-open: trippedAt plus the cooldown; never for
    manual reset."""
    if spec.reset.mode != "auto" or spec.reset.cooldown is None or state.tripped_at is None:
        return None
    return utc(state.tripped_at) + parse_duration(spec.reset.cooldown)


def to_status(state: BreakerState) -> dict[str, object]:
    """The status fields this state machine owns (camelCase, as patched)."""
    return {
        "state": state.state,
        "trippedAt": None if state.tripped_at is None else format_time(state.tripped_at),
        "reason": state.reason,
        "affectedBots": list(state.affected_bots) or None,
        "lastResetToken": state.last_reset_token,
        "lastTripToken": state.last_trip_token,
    }
