"""What one monitoring round of a bot writes to its status (pure: the snapshot is passed in).

Drawdown is measured against the bot's peak equity (total balance from /balance), not only
closed-trade profit, so an open losing position counts while it is open.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tradebot.api.types import MONEY_QUANTUM, format_money
from tradebot.domain.time import format_time


@dataclass(frozen=True)
class Snapshot:
    """What monitoring reads from a bot in one round."""

    state: str
    dry_run: bool
    total_balance: Decimal
    closed_profit: Decimal
    closed_profit_ratio: Decimal
    max_drawdown: Decimal
    open_trades: int
    open_profit: Decimal
    trade_count: int
    losing_streak: int


def figure(status: Mapping[str, Any], key: str) -> Decimal | None:
    """A money figure as status holds it (text, exact), None when absent."""
    value = status.get(key)
    return Decimal(str(value)) if value not in (None, "") else None


def status_update(status: dict[str, Any], snap: Snapshot, now: dt.datetime) -> dict[str, Any]:
    equity = snap.total_balance.quantize(MONEY_QUANTUM)
    peak = max(equity, figure(status, "peakEquity") or equity)
    day = now.astimezone(dt.UTC).date().isoformat()
    day_start = figure(status, "dayStartEquity") if status.get("day") == day else None
    day_start = equity if day_start is None else day_start
    drawdown = ((peak - equity) / peak).quantize(MONEY_QUANTUM) if peak > 0 else Decimal(0)
    return {
        "equity": format_money(equity),
        "peakEquity": format_money(peak),
        "day": day,
        "dayStartEquity": format_money(day_start),
        "drawdown": format_money(drawdown),
        "profit": format_money(snap.closed_profit),
        "profitRatio": format_money(snap.closed_profit_ratio.quantize(MONEY_QUANTUM)),
        "openTrades": snap.open_trades,
        "consecutiveLosses": snap.losing_streak,
        "lastHeartbeat": format_time(now.replace(microsecond=0)),
    }


def daily_loss(status: dict[str, Any]) -> Decimal:
    """Loss since the first reading of the UTC day (0 when in profit)."""
    start, equity = figure(status, "dayStartEquity"), figure(status, "equity")
    if start is None or equity is None:
        return Decimal(0)
    return max(Decimal(0), start - equity)
