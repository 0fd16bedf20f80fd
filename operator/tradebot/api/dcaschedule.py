"""DcaSchedule: buy a fixed stake of a pair every interval through a LiveBot's forced entry."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field, field_validator, model_validator

from tradebot.api.base import ApiModel, StatusModel, cel, with_rules
from tradebot.api.kind import AGE, Kind, PrinterColumn
from tradebot.api.types import (
    Duration,
    Figure,
    LocalObjectReference,
    Money,
    Pair,
    ResourceStatus,
    parse_duration,
)
from tradebot.domain.cron import CronError
from tradebot.domain.cron import parse as parse_cron

MIN_EVERY_SECONDS = 10


class DcaTiming(ApiModel):
    """When to buy: exactly one of `cron` and `every`."""

    model_config = with_rules(
        cel(
            "has(self.cron) != has(self.every)",
            "schedule needs exactly one of cron (e.g. '0 8 * * 1') and every (e.g. 24h)",
        ),
    )

    cron: str | None = Field(
        default=None,
        min_length=6,
        max_length=128,
        description="A 5-field cron expression in UTC (minute hour day-of-month month "
        "day-of-week), or @daily, @weekly, @monthly, @hourly.",
    )
    every: Duration | None = Field(
        default=None,
        description="An interval (at least 10s): slots are its multiples since "
        "the Unix epoch, so 24h buys at 00:00 UTC.",
    )

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_cron(value)
            except CronError as e:
                raise ValueError(f"schedule.cron: {e}") from None
        return value

    @field_validator("every")
    @classmethod
    def _every(cls, value: str | None) -> str | None:
        if value is not None and parse_duration(value).total_seconds() < MIN_EVERY_SECONDS:
            raise ValueError(f"schedule.every: {value!r} is shorter than {MIN_EVERY_SECONDS}s")
        return value

    @model_validator(mode="after")
    def _one(self) -> DcaTiming:
        if (self.cron is None) == (self.every is None):
            raise ValueError(
                "schedule needs exactly one of cron (e.g. '0 8 * * 1') and every (e.g. 24h)"
            )
        return self


class DcaScheduleSpec(ApiModel):
    """A fixed stake of one pair, bought at market on a schedule by a dryRun or testnet
    LiveBot (a live bot takes no forced entries), within the bot's limits."""

    model_config = with_rules(
        cel(
            "type(self.stakeAmount) == int ? self.stakeAmount > 0 : "
            "!self.stakeAmount.matches('^0*[.]?0*$')",
            "stakeAmount must be greater than 0",
            ".stakeAmount",
        ),
    )

    bot_ref: LocalObjectReference = Field(description="The LiveBot that buys.")
    pair: Pair = Field(description="The pair to buy; one of the bot's pairs.")
    stake_amount: Money = Field(description="Stake of each buy, in the bot's stake currency.")
    schedule: DcaTiming = Field(description="When to buy.")
    suspend: bool = Field(
        default=False, description="Skip every slot while true (each is recorded as Skipped)."
    )
    starting_deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        le=31536000,
        description="A slot not bought within this many seconds is recorded as Missed, never "
        "bought late; unset, a slot may be bought until the next one is due.",
    )

    @model_validator(mode="after")
    def _positive(self) -> DcaScheduleSpec:
        if self.stake_amount <= 0:
            raise ValueError("stakeAmount must be greater than 0")
        return self


DcaOutcome = Literal["Bought", "Skipped", "Missed", "Failed", "Unconfirmed"]


class DcaSlot(StatusModel):
    """One slot's outcome."""

    slot: dt.datetime = Field(description="The scheduled time.")
    outcome: DcaOutcome
    reason: str = ""
    message: str = ""
    entry_tag: str | None = Field(default=None, description="Freqtrade entry tag of the buy.")
    trade_id: int | None = None
    amount: Figure | None = Field(default=None, description="Base currency bought.")
    price: Figure | None = None
    cost: Figure | None = Field(default=None, description="Stake currency spent.")
    missed_before: int | None = Field(
        default=None,
        description="Slots missed since the previous one handled (operator or bot down).",
    )
    at: dt.datetime | None = Field(default=None, description="When it was recorded.")


class DcaPending(StatusModel):
    """A buy written down before the bot is called: after a restart, the bot's trades are
    searched for its entry tag before the slot is tried again."""

    slot: dt.datetime
    entry_tag: str
    attempts: int
    intended_at: dt.datetime


class DcaScheduleStatus(ResourceStatus):
    phase: Literal["Active", "Waiting", "Suspended", "Invalid"] | None = None
    last_slot: dt.datetime | None = Field(default=None, description="The latest slot handled.")
    next_slot: dt.datetime | None = None
    pending: DcaPending | None = None
    buys: int | None = Field(default=None, description="Slots bought.")
    bought_stake: Figure | None = Field(default=None, description="Stake spent on them.")
    last_buy_at: dt.datetime | None = None
    history: list[DcaSlot] | None = Field(
        default=None, description="The latest slots, newest first (at most 20)."
    )


KIND = Kind(
    kind="DcaSchedule",
    plural="dcaschedules",
    short_names=("dca",),
    spec=DcaScheduleSpec,
    status=DcaScheduleStatus,
    description="Buys a fixed stake of a pair on a schedule through a LiveBot.",
    columns=(
        PrinterColumn("Bot", ".spec.botRef.name"),
        PrinterColumn("Pair", ".spec.pair"),
        PrinterColumn("Stake", ".spec.stakeAmount"),
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Buys", ".status.buys", "integer"),
        PrinterColumn("Last", ".status.lastSlot", "date"),
        PrinterColumn("Next", ".status.nextSlot", "date", priority=1),
        AGE,
    ),
)
