"""The breaker's losing streak counts back from the most recently closed trade, whatever order
the bot's API answered in."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tradebot.freqtrade.rest import losing_streak


def _trade(i: int, profit: str) -> dict[str, Any]:
    return {
        "trade_id": i,
        "close_date": f"2026-11-{1 + i // 24:02d} {i % 24:02d}:30:00",
        "profit_abs": profit,
        "is_open": False,
    }


def test_the_streak_starts_at_the_newest_trade():
    trades = [_trade(i, "5") for i in range(10)] + [_trade(i, "-1") for i in range(10, 13)]
    assert losing_streak(trades) == 3
    # Control: a win after the losses ends the streak at zero.
    assert losing_streak([*trades, _trade(13, "0.5")]) == 0


@given(st.permutations(list(range(30))))
def test_the_order_of_the_answer_does_not_matter(order: list[int]):
    # Oldest 25 are wins, newest 5 losses: oldest-first or newest-first alike give 5.
    trades = [_trade(i, "-2" if i >= 25 else "3") for i in order]
    assert losing_streak(trades) == 5
