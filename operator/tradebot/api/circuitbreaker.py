"""CircuitBreaker: trips on losses, stale heartbeats or incidents, and stops bots in scope."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field, model_validator

from tradebot.api.base import ApiModel, cel, with_rules
from tradebot.api.kind import AGE, Kind, PrinterColumn
from tradebot.api.types import Duration, Fraction, LabelSelector, Money, ResourceStatus

_LIMIT_FIELDS = (
    "maxDrawdown",
    "maxDailyLoss",
    "maxConsecutiveLosses",
    "maxIncidents",
    "staleHeartbeat",
)


class BreakerLimits(ApiModel):
    """Any one limit crossed trips the breaker. At least one must be set."""

    model_config = with_rules(
        cel(
            " || ".join(f"has(self.{f})" for f in _LIMIT_FIELDS),
            "limits needs at least one of " + ", ".join(_LIMIT_FIELDS),
        ),
    )

    max_drawdown: Fraction | None = Field(
        default=None, description="Drawdown from peak equity (0.1 = 10 %)."
    )
    max_daily_loss: Money | None = Field(
        default=None, description="Loss since 00:00 UTC, stake currency."
    )
    max_consecutive_losses: int | None = Field(
        default=None, ge=1, le=10000, description="Losing trades in a row."
    )
    max_incidents: int | None = Field(
        default=None, ge=1, le=10000, description="Incidents (errors, crashes) per day."
    )
    stale_heartbeat: Duration | None = Field(
        default=None, description="No heartbeat for this long."
    )

    @model_validator(mode="after")
    def _one(self) -> BreakerLimits:
        if all(getattr(self, f) is None for f in type(self).model_fields):
            raise ValueError("limits needs at least one of " + ", ".join(_LIMIT_FIELDS))
        return self


class ResetPolicy(ApiModel):
    """How an open breaker closes again."""

    model_config = with_rules(
        cel("self.mode != 'auto' || has(self.cooldown)", "reset.mode auto requires reset.cooldown"),
    )

    mode: Literal["manual", "auto"] = Field(
        default="manual",
        description="manual: a person resets it (annotation or "
        "`tradebot breaker reset`); auto: after the cooldown, half-open.",
    )
    cooldown: Duration | None = Field(default=None, description="Wait before auto reset.")

    @model_validator(mode="after")
    def _cooldown(self) -> ResetPolicy:
        if self.mode == "auto" and self.cooldown is None:
            raise ValueError("reset.mode auto requires reset.cooldown")
        return self


class CircuitBreakerSpec(ApiModel):
    """Which bots it watches, when it trips and what it does then."""

    selector: LabelSelector = Field(
        description="LiveBots in this namespace it watches; {} watches all."
    )
    limits: BreakerLimits = Field(description="When to trip.")
    action: Literal["stop", "stopEntries"] = Field(
        default="stop",
        description="stop: the bot's /stop, then its pod is removed; "
        "stopEntries: /stopentry, open trades exit as the strategy says (a bot whose API "
        "does not answer is stopped instead).",
    )
    force_exit: bool = Field(
        default=False,
        description="Escalation: on a trip, first close every open trade at "
        "market (/forceexit all).",
    )
    reset: ResetPolicy = Field(
        default_factory=ResetPolicy,
        # The API server checks a default against the CEL rules as written: {} has no mode.
        json_schema_extra={"default": {"mode": "manual"}},
        description="How it resets.",
    )


class PendingIncident(ApiModel):
    """A trip whose incident is not recorded yet, written with the Open state itself."""

    id: str
    tripped_at: dt.datetime
    reason: str | None = None
    affected_bots: list[str] | None = None


class CircuitBreakerStatus(ResourceStatus):
    state: Literal["Closed", "Open", "HalfOpen"] | None = None
    tripped_at: dt.datetime | None = None
    reason: str | None = None
    affected_bots: list[str] | None = None
    last_reset_token: str | None = Field(
        default=None, description="The reset token last used up, so it cannot reset twice."
    )
    last_trip_token: str | None = Field(
        default=None,
        description="The trip token last used up (annotation "
        "tradebot.dev/trip), so it cannot trip twice.",
    )
    trip_limits: list[str] | None = Field(
        default=None,
        description="The kinds of limit the current trip crossed (drawdown, "
        "dailyLoss, consecutiveLosses, incidents, staleHeartbeat, manual).",
    )
    trip_figures: dict[str, str] | None = Field(
        default=None,
        description="The selected bots' figures when it tripped (exact "
        "decimals), as the incident records them.",
    )
    incident_id: str | None = Field(
        default=None, description="The incident recorded for the current trip."
    )
    pending_incident: PendingIncident | None = Field(
        default=None,
        description="A trip whose incident is not recorded yet (written in the same patch as "
        "Open, cleared once recorded): a reset or a restart in between never loses it.",
    )


KIND = Kind(
    kind="CircuitBreaker",
    plural="circuitbreakers",
    short_names=("cb",),
    spec=CircuitBreakerSpec,
    status=CircuitBreakerStatus,
    description="Stops the LiveBots it selects when they lose too much or go silent.",
    columns=(
        PrinterColumn("State", ".status.state"),
        PrinterColumn("Action", ".spec.action"),
        PrinterColumn("Reason", ".status.reason"),
        PrinterColumn("Tripped", ".status.trippedAt", "date"),
        AGE,
    ),
)
