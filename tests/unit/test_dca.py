"""DCA slots and decisions (domain/dca.py): which slot is due, what is bought, skipped,
missed or looked up, and what status records."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from tradebot.domain import dca
from tradebot.domain.cron import parse

UID = "0123456789abcdef"
T0 = dt.datetime(2026, 11, 29, 16, 0, tzinfo=dt.UTC)  # a multiple of 15 s and of 60 s


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


BOT = dca.BotView(
    phase="Running",
    mode="dryRun",
    pairs=("BTC/USDT", "ETH/USDT"),
    suspended=False,
    max_stake_per_trade=Decimal("100"),
    max_open_trades=2,
    breaker=None,
)
STATE = dca.BotState(running=True, position_adjustment=True, open_stakes={})


def obs(**changes: Any) -> dca.Observation:
    base = dca.Observation(
        now=at(20),
        uid=UID,
        created=at(-100),
        schedule=dca.Every(15),
        pair="BTC/USDT",
        stake=Decimal("25"),
        suspend=False,
        starting_deadline=None,
        last_slot=at(0),
        pending=None,
        bot=BOT,
        bot_state=STATE,
    )
    return replace(base, **changes)


def test_every_slots_are_multiples_of_the_interval_since_the_epoch() -> None:
    every = dca.Every(24 * 3600)
    assert every.latest_at_or_before(at(3600)) == dt.datetime(2026, 11, 29, tzinfo=dt.UTC)
    assert every.next_after(at(3600)) == dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    assert dca.Every(15).latest_at_or_before(at(29.9)) == at(15)
    assert dca.Every(15).next_after(at(15)) == at(30)


def test_schedule_of_and_entry_tags() -> None:
    assert dca.schedule_of(None, "1h30m") == dca.Every(5400)
    assert dca.schedule_of("0 8 * * 1", None) == parse("0 8 * * 1")
    assert dca.entry_tag(UID, at(15)) == f"dca-01234567-{int(at(15).timestamp())}"


def test_slots_missed_between() -> None:
    assert dca.slots_missed(dca.Every(15), at(0), at(60)) == 3  # 15, 30, 45
    assert dca.slots_missed(dca.Every(15), at(0), at(15)) == 0
    assert dca.slots_missed(dca.Every(15), at(0), at(10**6), cap=50) == 50


def tag(seconds: float) -> str:
    return dca.entry_tag(UID, at(seconds))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        # Nothing due: the slot at 15 s is not reached, or already handled, or before creation.
        ({"now": at(10)}, dca.Idle(at(15))),
        ({"last_slot": at(15)}, dca.Idle(at(30))),
        ({"last_slot": None, "created": at(16)}, dca.Idle(at(30))),
        # Due: bought (the intent and the call are the controller's).
        ({}, dca.Buy(at(15), tag(15), 1)),
        ({"last_slot": None}, dca.Buy(at(15), tag(15), 1, missed_before=7)),  # -90 ... 0
        # Only the latest of several missed slots may be bought; the others are counted.
        ({"now": at(62)}, dca.Buy(at(60), tag(60), 1, missed_before=3)),
        (
            {"starting_deadline": dt.timedelta(seconds=3)},
            dca.Record(
                at(15),
                "Missed",
                "PastDeadline",
                "5s late, beyond startingDeadlineSeconds (3s): not bought late",
            ),
        ),
    ],
)
def test_which_slot(changes: dict[str, Any], expected: dca.Decision) -> None:
    assert dca.decide(obs(**changes)) == expected


@pytest.mark.parametrize(
    ("changes", "outcome", "reason"),
    [
        ({"suspend": True}, "Skipped", "Suspended"),
        ({"bot": replace(BOT, breaker="main-fleet")}, "Skipped", "BreakerOpen"),
        ({"bot": replace(BOT, phase="Tripped")}, "Skipped", "BreakerOpen"),
        ({"bot": replace(BOT, suspended=True)}, "Skipped", "BotSuspended"),
        ({"bot": replace(BOT, phase="Suspended")}, "Skipped", "BotSuspended"),
        ({"bot": replace(BOT, mode="live")}, "Skipped", "LiveBot"),
        ({"pair": "SOL/USDT"}, "Skipped", "PairNotTraded"),
        ({"stake": Decimal("100.00000001")}, "Skipped", "AboveLimit"),
        ({"bot_state": replace(STATE, running=False)}, "Skipped", "TraderStopped"),
        (
            {
                "bot_state": replace(
                    STATE, position_adjustment=False, open_stakes={"BTC/USDT": Decimal(25)}
                )
            },
            "Skipped",
            "PositionOpen",
        ),
        (
            {"bot_state": replace(STATE, open_stakes={"BTC/USDT": Decimal("75.00000001")})},
            "Skipped",
            "AboveLimit",
        ),
        (
            {
                "bot_state": replace(
                    STATE, open_stakes={"ETH/USDT": Decimal(1), "XRP/USDT": Decimal(1)}
                )
            },
            "Skipped",
            "MaxOpenTrades",
        ),
    ],
)
def test_refusals_are_recorded_with_a_reason(
    changes: dict[str, Any], outcome: str, reason: str
) -> None:
    decision = dca.decide(obs(**changes))
    assert isinstance(decision, dca.Record), decision
    assert (decision.slot, decision.outcome, decision.reason) == (at(15), outcome, reason)


def test_a_breaker_wins_over_everything_the_bot_would_allow() -> None:
    # The bot itself would take the order (running, position adjustment on): the breaker
    # still holds it.
    tripped = obs(bot=replace(BOT, breaker="main-fleet", phase="Running"))
    assert isinstance(dca.decide(tripped), dca.Record)
    assert isinstance(dca.decide(replace(tripped, bot=BOT)), dca.Buy)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"bot_state": replace(STATE, open_stakes={"BTC/USDT": Decimal(75)})},
            dca.Buy(at(15), tag(15), 1),
        ),  # exactly at the limit
        (
            {"bot_state": replace(STATE, open_stakes={"ETH/USDT": Decimal(1)})},
            dca.Buy(at(15), tag(15), 1),
        ),
        (
            {
                "bot": replace(BOT, max_stake_per_trade=None),
                "bot_state": replace(STATE, open_stakes={"BTC/USDT": Decimal(10**6)}),
            },
            dca.Buy(at(15), tag(15), 1),
        ),
    ],
)
def test_within_limits_buys(changes: dict[str, Any], expected: dca.Decision) -> None:
    assert dca.decide(obs(**changes)) == expected


def test_the_bot_is_asked_only_when_the_cluster_allows_a_buy() -> None:
    assert dca.decide(obs(bot_state=None)) == dca.AskBot(None)
    assert isinstance(dca.decide(obs(bot_state=None, suspend=True)), dca.Record)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"bot": None}, "BotNotRunning"),
        ({"bot": replace(BOT, phase="Pending")}, "BotNotRunning"),
        ({"bot_state": dca.BotState(error="connection refused")}, "BotUnreachable"),
    ],
)
def test_a_bot_not_running_makes_the_slot_wait(changes: dict[str, Any], reason: str) -> None:
    decision = dca.decide(obs(**changes))
    assert isinstance(decision, dca.Wait)
    assert (decision.slot, decision.reason) == (at(15), reason)


ORDER = dca.TaggedOrder(
    trade_id=7, amount=Decimal("0.00025"), price=Decimal("100000"), cost=Decimal("25")
)


def pending(attempts: int = 1, intended: float = 0.5, slot: float = 0) -> dca.Pending:
    return dca.Pending(at(slot), tag(slot), attempts, at(intended))


def pending_obs(**changes: Any) -> dca.Observation:
    """A slot at 0 of an every-60s schedule, intended at 0.5 s, not confirmed."""
    return obs(**{"schedule": dca.Every(60), "pending": pending(), "last_slot": at(-60), **changes})


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        # Always asked first, whatever else holds.
        ({"bot_state": None, "suspend": True}, dca.AskBot(tag(0))),
        # Found: bought, however late, whatever holds the bot now.
        (
            {
                "bot_state": replace(STATE, found=ORDER),
                "now": at(100),
                "bot": replace(BOT, breaker="cb"),
            },
            dca.Record(
                at(0), "Bought", "Bought", "bought 25.00000000 of BTC/USDT (trade 7)", tag(0), ORDER
            ),
        ),
        # Not found yet: wait for a request that may still be in flight.
        (
            {"now": at(30)},
            dca.Wait(
                at(0),
                "Confirming",
                "waiting to see whether the buy of slot 2026-11-29T16:00:00Z reached the bot",
            ),
        ),
        # Not found after settling: the same slot again (same tag), within the limits.
        ({"now": at(31)}, dca.Buy(at(0), tag(0), 2)),
        (
            {"now": at(31), "bot": replace(BOT, breaker="cb")},
            dca.Record(
                at(0),
                "Skipped",
                "BreakerOpen",
                "CircuitBreaker cb holds the bot: no buy until it is reset",
            ),
        ),
    ],
)
def test_a_pending_slot_is_looked_up_before_anything_else(
    changes: dict[str, Any], expected: dca.Decision
) -> None:
    assert dca.decide(pending_obs(**changes)) == expected


def test_a_pending_slot_is_never_retried_forever_nor_late() -> None:
    tries_used = dca.decide(pending_obs(pending=pending(attempts=3), now=at(40)))
    assert isinstance(tries_used, dca.Record)
    assert (tries_used.outcome, tries_used.reason) == ("Failed", "NotPlaced")
    superseded = dca.decide(pending_obs(now=at(61)))
    assert isinstance(superseded, dca.Record)
    assert superseded.outcome == "Failed"
    assert "not bought late" in superseded.message
    late = dca.decide(pending_obs(now=at(40), starting_deadline=dt.timedelta(seconds=35)))
    assert isinstance(late, dca.Record)
    assert late.outcome == "Failed"
    # Within the deadline: tried again.
    assert isinstance(
        dca.decide(pending_obs(now=at(40), starting_deadline=dt.timedelta(seconds=45))), dca.Buy
    )


def test_an_unreachable_bot_leaves_the_slot_unconfirmed_once_a_newer_one_is_due() -> None:
    down = dca.BotState(error="timed out")
    waiting = dca.decide(pending_obs(now=at(59), bot_state=down))
    assert isinstance(waiting, dca.Wait)
    unknown = dca.decide(pending_obs(now=at(60), bot_state=down))
    assert isinstance(unknown, dca.Record)
    assert unknown.outcome == "Unconfirmed"
    assert tag(0) in unknown.message


def freqtrade_trade(**order: Any) -> dict[str, Any]:
    return {
        "trade_id": 3,
        "pair": "BTC/USDT",
        "enter_tag": "dca-first",
        "stake_amount": Decimal("50"),
        "orders": [
            {
                "ft_order_tag": "dca-first",
                "ft_is_entry": True,
                "filled": Decimal(1),
                "safe_price": Decimal(25),
                "cost": Decimal(25),
            },
            {"ft_order_tag": "exit_signal", "ft_is_entry": False},
            order,
        ],
    }


def test_tagged_orders_are_found_in_freqtrade_trades() -> None:
    trades = [
        freqtrade_trade(
            ft_order_tag=tag(15),
            ft_is_entry=True,
            filled=Decimal("0.00025"),
            safe_price=Decimal("100000"),
            cost=Decimal("25.00000001"),
        )
    ]
    found = dca.tagged_order(trades, tag(15))
    assert found == dca.TaggedOrder(
        3, Decimal("0.00025"), Decimal("100000"), Decimal("25.00000001")
    )
    assert dca.tagged_order(trades, tag(30)) is None
    assert dca.tagged_order(trades, "exit_signal") is None  # an exit is no buy
    # As the REST API returns orders: no ft_is_entry, the side tells.
    api_shape = [
        {
            "trade_id": 4,
            "is_short": False,
            "orders": [
                {"ft_order_tag": tag(15), "ft_order_side": "sell", "cost": Decimal(1)},
                {
                    "ft_order_tag": tag(15),
                    "ft_order_side": "buy",
                    "filled": Decimal(2),
                    "safe_price": Decimal(3),
                    "cost": Decimal(6),
                },
            ],
        }
    ]
    assert dca.tagged_order(api_shape, tag(15)) == dca.TaggedOrder(
        4, Decimal(2), Decimal(3), Decimal(6)
    )
    assert dca.open_stakes(trades) == {"BTC/USDT": Decimal(50)}


def test_recorded_status_is_bounded_newest_first_with_exact_totals() -> None:
    status: dict[str, object] = {
        "history": [{"slot": f"old-{i}"} for i in range(20)],
        "buys": 2,
        "boughtStake": "50.00000000",
        "pending": {"slot": "x"},
    }
    record = dca.Record(at(15), "Bought", "Bought", "bought", tag(15), ORDER)
    update = dca.recorded_status(status, record, Decimal(25), at(16))
    history = update["history"]
    assert isinstance(history, list)
    assert len(history) == dca.HISTORY_LENGTH
    assert history[0] == {
        "slot": "2026-11-29T16:00:15Z",
        "outcome": "Bought",
        "reason": "Bought",
        "message": "bought",
        "at": "2026-11-29T16:00:16Z",
        "entryTag": tag(15),
        "tradeId": 7,
        "amount": "0.00025000",
        "price": "100000.00000000",
        "cost": "25.00000000",
    }
    assert history[1] == {"slot": "old-0"}
    assert update["pending"] is None
    assert update["lastSlot"] == "2026-11-29T16:00:15Z"
    assert (update["buys"], update["boughtStake"]) == (3, "75.00000000")
    skipped = dca.recorded_status(
        status, dca.Record(at(15), "Skipped", "Suspended", "s"), Decimal(25), at(16)
    )
    assert "buys" not in skipped
