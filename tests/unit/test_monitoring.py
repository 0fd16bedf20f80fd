from __future__ import annotations

import datetime as dt
from decimal import Decimal

from tradebot.domain.monitoring import daily_loss, status_update
from tradebot.freqtrade.rest import Snapshot

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def snap(balance: str, streak: int = 0) -> Snapshot:
    return Snapshot(
        state="running",
        dry_run=True,
        total_balance=Decimal(balance),
        closed_profit=Decimal("-1.5"),
        closed_profit_ratio=Decimal("-0.0015"),
        max_drawdown=Decimal(0),
        open_trades=1,
        open_profit=Decimal(0),
        trade_count=3,
        losing_streak=streak,
    )


def test_peak_and_drawdown_follow_equity_exactly():
    s = status_update({}, snap("1000"), NOW)
    assert (s["equity"], s["peakEquity"], s["drawdown"]) == (
        "1000.00000000",
        "1000.00000000",
        "0.00000000",
    )
    s = {**s, **status_update(s, snap("1100"), NOW)}
    s = {**s, **status_update(s, snap("880", streak=2), NOW)}
    assert s["peakEquity"] == "1100.00000000"
    assert s["drawdown"] == "0.20000000"
    assert s["consecutiveLosses"] == 2
    assert daily_loss(s) == Decimal("120.00000000")  # from 1000 at the day's first reading


def test_a_new_day_starts_the_daily_loss_afresh():
    s = status_update({}, snap("1000"), NOW)
    s = {**s, **status_update(s, snap("900"), NOW)}
    s = {**s, **status_update(s, snap("890"), NOW + dt.timedelta(days=1))}
    assert s["dayStartEquity"] == "890.00000000"
    assert daily_loss(s) == 0
    assert s["peakEquity"] == "1000.00000000"
