"""What a DcaSchedule does at one tick (pure: no I/O, no clock; `now` comes in).

Slots are the schedule's firing times: for `every`, the multiples of the interval since the
Unix epoch (UTC), so `every: 24h` fires at 00:00 UTC; for `cron`, the cron expression's times
in UTC. Like a CronJob, only slots after the schedule's creation count, at most one slot is
acted on per tick, and a slot that was missed (the operator or the bot was down) is never
bought late in a burst: only the latest slot may be bought, the older ones are counted as
missed.

A buy is made at most once per slot, across operator restarts: the controller writes the
slot's intent (its entry tag) to status before it calls the bot, and a slot found with an
intent but no outcome is first looked up in the bot's trades by that tag. The decision order:

    pending intent (look up; bought / wait / retry / give up) >
    nothing due > missed (past startingDeadlineSeconds) > schedule suspended > bot held
    (breaker, suspend) > mode live > pair or stake outside the bot's limits > bot not running
    (wait) > the bot's own state (open trade, position adjustment, max open trades) > buy
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from tradebot.api.types import format_money, parse_duration
from tradebot.domain.cron import Cron
from tradebot.domain.cron import parse as parse_cron
from tradebot.domain.time import format_time

# An intent whose order is not in the bot's trades this long after it was written is taken as
# not placed (the request never reached the bot, or the operator stopped before sending it),
# and the slot may be tried again: longer than any force-entry request the controller waits
# for, so a request still in flight is never doubled.
SETTLE = dt.timedelta(seconds=30)
MAX_ATTEMPTS = 3
HISTORY_LENGTH = 20

Outcome = Literal["Bought", "Skipped", "Missed", "Failed", "Unconfirmed"]


@dataclass(frozen=True)
class Every:
    seconds: int

    def latest_at_or_before(self, moment: dt.datetime) -> dt.datetime | None:
        epoch = int(moment.timestamp())
        return dt.datetime.fromtimestamp(epoch - epoch % self.seconds, dt.UTC)

    def next_after(self, moment: dt.datetime) -> dt.datetime | None:
        epoch = int(moment.timestamp())
        return dt.datetime.fromtimestamp(epoch - epoch % self.seconds + self.seconds, dt.UTC)


Schedule = Cron | Every


def schedule_of(cron: str | None, every: str | None) -> Schedule:
    """The schedule of a spec (exactly one of the two is set; the API checks that)."""
    if cron is not None:
        return parse_cron(cron)
    assert every is not None
    seconds = int(parse_duration(every).total_seconds())
    if seconds < 1:
        raise ValueError(f"every: {every!r} is shorter than a second")
    return Every(seconds)


def entry_tag(schedule_uid: str, slot: dt.datetime) -> str:
    """The Freqtrade entry tag of one slot's buy: unique per schedule and slot, so the bot's
    own trades tell whether the slot was bought."""
    return f"dca-{schedule_uid[:8]}-{int(slot.timestamp())}"


def slots_missed(
    schedule: Schedule, after: dt.datetime, before: dt.datetime, cap: int = 1000
) -> int:
    """How many slots lie strictly between `after` and `before` (at most `cap`)."""
    count, moment = 0, schedule.next_after(after)
    while moment is not None and moment < before and count < cap:
        count += 1
        moment = schedule.next_after(moment)
    return count


# ---- what the controller observed ---------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """A slot whose buy was intended (status.pending) and whose outcome is not recorded."""

    slot: dt.datetime
    entry_tag: str
    attempts: int
    intended_at: dt.datetime


@dataclass(frozen=True)
class BotView:
    """The LiveBot as the API server has it, and the breakers holding it."""

    phase: str | None
    mode: str
    pairs: tuple[str, ...]
    suspended: bool
    max_stake_per_trade: Decimal | None
    max_open_trades: int
    breaker: str | None  # an Open CircuitBreaker that holds the bot


@dataclass(frozen=True)
class TaggedOrder:
    """The entry order carrying a slot's tag, as the bot's API reports it."""

    trade_id: int
    amount: Decimal
    price: Decimal
    cost: Decimal


@dataclass(frozen=True)
class BotState:
    """What the bot's REST API says now; `error` when it did not answer."""

    error: str | None = None
    running: bool = False
    position_adjustment: bool = False
    open_stakes: dict[str, Decimal] = field(default_factory=dict)  # pair -> open stake
    found: TaggedOrder | None = None  # the looked-up tag's order, if any


@dataclass(frozen=True)
class Observation:
    now: dt.datetime
    uid: str  # the schedule's: part of each slot's entry tag
    created: dt.datetime
    schedule: Schedule
    pair: str
    stake: Decimal
    suspend: bool
    starting_deadline: dt.timedelta | None
    last_slot: dt.datetime | None
    pending: Pending | None
    bot: BotView | None  # None: no such LiveBot
    bot_state: BotState | None = None  # None: not asked yet


# ---- what to do ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Idle:
    """Nothing due. `next_slot` for status."""

    next_slot: dt.datetime | None


@dataclass(frozen=True)
class AskBot:
    """Decide again once the bot's API was asked (state, open trades, the tag's order)."""

    tag: str | None


@dataclass(frozen=True)
class Wait:
    """A slot is due but cannot be decided now; the next tick tries again."""

    slot: dt.datetime
    reason: str
    message: str


@dataclass(frozen=True)
class Record:
    """The slot's outcome: a history entry, and the slot handled (status.lastSlot)."""

    slot: dt.datetime
    outcome: Outcome
    reason: str
    message: str
    tag: str | None = None
    order: TaggedOrder | None = None
    missed_before: int = 0


@dataclass(frozen=True)
class Buy:
    """Write the intent (attempt `attempt`), then force-enter at market with `tag`."""

    slot: dt.datetime
    tag: str
    attempt: int
    missed_before: int = 0


Decision = Idle | AskBot | Wait | Record | Buy


def bought(
    slot: dt.datetime,
    tag: str,
    order: TaggedOrder,
    stake: Decimal,
    pair: str,
    missed_before: int = 0,
) -> Record:
    return Record(
        slot,
        "Bought",
        "Bought",
        f"bought {format_money(stake)} of {pair} (trade {order.trade_id})",
        tag,
        order,
        missed_before,
    )


def due_slot(o: Observation) -> dt.datetime | None:
    """The latest slot at or before now that is after creation and not yet handled."""
    slot = o.schedule.latest_at_or_before(o.now)
    if slot is None or slot <= o.created:
        return None
    if o.last_slot is not None and slot <= o.last_slot:
        return None
    return slot


def decide(o: Observation) -> Decision:
    if o.pending is not None:
        return _resolve(o, o.pending)
    slot = due_slot(o)
    if slot is None:
        return Idle(o.schedule.next_after(o.now))
    since = max([m for m in (o.last_slot, o.created) if m is not None])
    missed = slots_missed(o.schedule, since, slot)
    if o.starting_deadline is not None and o.now - slot > o.starting_deadline:
        late = int((o.now - slot).total_seconds())
        return Record(
            slot,
            "Missed",
            "PastDeadline",
            f"{late}s late, beyond startingDeadlineSeconds "
            f"({int(o.starting_deadline.total_seconds())}s): not bought late",
            missed_before=missed,
        )
    return _buy_or_not(o, slot, entry_tag(o.uid, slot), 1, missed)


def _resolve(o: Observation, p: Pending) -> Decision:
    state = o.bot_state
    if state is None:
        return AskBot(p.entry_tag)
    superseded = (o.schedule.latest_at_or_before(o.now) or p.slot) > p.slot
    if state.error is not None:
        if superseded:
            return Record(
                p.slot,
                "Unconfirmed",
                "BotUnreachable",
                f"the bot's API did not answer ({state.error}) and a newer slot is "
                f"due: whether slot {format_time(p.slot)} was bought is unknown; "
                f"look for entry tag {p.entry_tag} in the bot's trades",
                p.entry_tag,
            )
        return Wait(
            p.slot,
            "BotUnreachable",
            f"the buy of slot {format_time(p.slot)} is unconfirmed and the bot's API "
            f"does not answer ({state.error})",
        )
    if state.found is not None:
        return bought(p.slot, p.entry_tag, state.found, o.stake, o.pair)
    if o.now - p.intended_at < SETTLE:
        return Wait(
            p.slot,
            "Confirming",
            f"waiting to see whether the buy of slot {format_time(p.slot)} reached the bot",
        )
    if p.attempts >= MAX_ATTEMPTS:
        return Record(
            p.slot,
            "Failed",
            "NotPlaced",
            f"{p.attempts} attempts and no order tagged {p.entry_tag} in the bot's trades",
            p.entry_tag,
        )
    if superseded or (o.starting_deadline is not None and o.now - p.slot > o.starting_deadline):
        return Record(
            p.slot,
            "Failed",
            "NotPlaced",
            f"no order tagged {p.entry_tag} in the bot's trades, and the slot has "
            "passed: not bought late",
            p.entry_tag,
        )
    return _buy_or_not(o, p.slot, p.entry_tag, p.attempts + 1, 0)


def _buy_or_not(o: Observation, slot: dt.datetime, tag: str, attempt: int, missed: int) -> Decision:
    def skip(reason: str, message: str) -> Record:
        return Record(slot, "Skipped", reason, message, missed_before=missed)

    if o.suspend:
        return skip("Suspended", "spec.suspend is true")
    bot = o.bot
    if bot is not None and bot.breaker is not None:
        return skip(
            "BreakerOpen", f"CircuitBreaker {bot.breaker} holds the bot: no buy until it is reset"
        )
    if bot is not None and bot.phase == "Tripped":
        return skip("BreakerOpen", "the bot is Tripped: no buy until its breaker is reset")
    if bot is not None and (bot.suspended or bot.phase == "Suspended"):
        return skip("BotSuspended", "the LiveBot is suspended")
    if bot is not None and bot.mode == "live":
        return skip(
            "LiveBot",
            "a live bot takes no forced entries (force_entry_enable is off "
            "for real money): DCA runs on dryRun and testnet bots",
        )
    if bot is not None and o.pair not in bot.pairs:
        return skip(
            "PairNotTraded", f"{o.pair} is not one of the bot's pairs ({', '.join(bot.pairs)})"
        )
    limit = bot.max_stake_per_trade if bot is not None else None
    if limit is not None and o.stake > limit:
        return skip(
            "AboveLimit",
            f"stake {format_money(o.stake)} is above the bot's "
            f"limits.maxStakePerTrade {format_money(limit)}",
        )
    if bot is None or bot.phase != "Running":
        seen = "missing" if bot is None else bot.phase or "not started"
        return Wait(
            slot, "BotNotRunning", f"the LiveBot is {seen}; slot {format_time(slot)} waits for it"
        )
    state = o.bot_state
    if state is None:
        return AskBot(None)
    if state.error is not None:
        return Wait(slot, "BotUnreachable", f"the bot's API does not answer: {state.error}")
    if not state.running:
        return skip("TraderStopped", "the bot's trader is not running")
    held = state.open_stakes.get(o.pair)
    if held is not None:
        if not state.position_adjustment:
            return skip(
                "PositionOpen",
                f"the bot holds an open {o.pair} trade and its "
                "strategy does not enable position adjustment, so Freqtrade cannot add "
                "to it (set position_adjustment_enable = True for DCA into one trade)",
            )
        if limit is not None and held + o.stake > limit:
            return skip(
                "AboveLimit",
                f"the open {o.pair} trade's stake would be "
                f"{format_money(held + o.stake)}, above the bot's "
                f"limits.maxStakePerTrade {format_money(limit)}",
            )
    elif len(state.open_stakes) >= bot.max_open_trades:
        return skip(
            "MaxOpenTrades",
            f"the bot has {len(state.open_stakes)} open trades, its "
            f"maximum ({bot.max_open_trades})",
        )
    return Buy(slot, tag, attempt, missed)


def _decimal(value: object) -> Decimal:
    if value is None or isinstance(value, bool):
        return Decimal(0)
    return value if isinstance(value, Decimal) else Decimal(str(value))


def tagged_order(trades: list[dict[str, object]], tag: str) -> TaggedOrder | None:
    """The entry order tagged `tag` among Freqtrade trades as its API returns them (a trade
    with its `orders`). A DCA buy into an open trade is an entry order of that trade, whose
    own enter_tag stays the first entry's: the order's ft_order_tag is what identifies it."""
    for trade in trades:
        orders = trade.get("orders")
        # The REST API's order schema has no ft_is_entry: the side tells (spot: buy).
        entry_side = "sell" if trade.get("is_short") else "buy"
        for order in orders if isinstance(orders, list) else []:
            if (
                isinstance(order, dict)
                and order.get("ft_order_tag") == tag
                and order.get("ft_is_entry", order.get("ft_order_side") == entry_side)
            ):
                trade_id = trade.get("trade_id")
                return TaggedOrder(
                    trade_id=int(trade_id) if isinstance(trade_id, (int, str)) else 0,
                    amount=_decimal(order.get("filled") or order.get("amount")),
                    price=_decimal(order.get("safe_price") or order.get("average")),
                    cost=_decimal(order.get("cost")),
                )
    return None


def open_stakes(trades: list[dict[str, object]]) -> dict[str, Decimal]:
    """Open trades' stake by pair, from the bot's /status."""
    stakes: dict[str, Decimal] = {}
    for trade in trades:
        pair = str(trade.get("pair"))
        stakes[pair] = stakes.get(pair, Decimal(0)) + _decimal(trade.get("stake_amount"))
    return stakes


def history_entry(record: Record, stake: Decimal, at: dt.datetime) -> dict[str, object]:
    """The status.history item of a recorded slot (wire form: camelCase, money as strings)."""
    entry: dict[str, object] = {
        "slot": format_time(record.slot),
        "outcome": record.outcome,
        "reason": record.reason,
        "message": record.message,
        "at": format_time(at),
    }
    if record.tag is not None:
        entry["entryTag"] = record.tag
    if record.missed_before:
        entry["missedBefore"] = record.missed_before
    if record.order is not None:
        entry.update(
            tradeId=record.order.trade_id,
            amount=format_money(record.order.amount),
            price=format_money(record.order.price),
            cost=format_money(record.order.cost or stake),
        )
    return entry


def recorded_status(
    status: dict[str, object], record: Record, stake: Decimal, at: dt.datetime
) -> dict[str, object]:
    """The status fields a recorded slot changes: the history (newest first, bounded), the
    slot handled, the intent cleared and, for a buy, the totals."""
    history = status.get("history")
    earlier = [h for h in history if isinstance(h, dict)] if isinstance(history, list) else []
    update: dict[str, object] = {
        "history": [history_entry(record, stake, at), *earlier][:HISTORY_LENGTH],
        "lastSlot": format_time(record.slot),
        "pending": None,
    }
    if record.outcome == "Bought":
        spent = record.order.cost if record.order is not None and record.order.cost else stake
        total = _decimal(status.get("boughtStake")) + spent
        update.update(
            buys=int(str(status.get("buys") or 0)) + 1,
            boughtStake=format_money(total),
            lastBuyAt=format_time(at),
        )
    return update
