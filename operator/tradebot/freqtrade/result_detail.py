"""A backtest's result in detail: its trades, per-pair and per-exit-reason tables, daily profit
and equity curve, read from Freqtrade's result zip once so the records keep them after the
zip is gone. Pure: a statistics document in, a BacktestDetail out (exact, 8 places).
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

from tradebot.api.types import MONEY_QUANTUM
from tradebot.freqtrade.results import ResultError, figure, load_stats, strategy_stats
from tradebot.records.models import (
    BacktestDetail,
    BacktestTrade,
    BreakdownRow,
    DailyProfit,
    EquityPoint,
)

# Freqtrade's tables end with a TOTAL row; the run's metrics hold the totals already.
_TOTAL = "TOTAL"


def _instant(trade: dict[str, Any], key: str) -> dt.datetime | None:
    """The trade's `open`/`close` time: the millisecond timestamp, its text as a fallback."""
    ts = trade.get(f"{key}_timestamp")
    if isinstance(ts, (int, float)) and not isinstance(ts, bool) and math.isfinite(ts):
        return dt.datetime.fromtimestamp(ts / 1000, tz=dt.UTC)
    text = trade.get(f"{key}_date")
    if isinstance(text, str) and text:
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return None


def _required(value: object, what: str) -> Decimal:
    exact = figure(value)
    if exact is None:
        raise ResultError(f"the result's {what} is not a finite number ({value!r})")
    return exact


def _count(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return 0


def trades_of(stats: dict[str, Any]) -> list[BacktestTrade]:
    out = []
    for seq, trade in enumerate(stats.get("trades") or []):
        if not isinstance(trade, dict):
            raise ResultError(f"trade {seq} of the result is not an object")
        opened = _instant(trade, "open")
        if opened is None or not trade.get("pair"):
            raise ResultError(f"trade {seq} of the result has no pair or open date")
        out.append(
            BacktestTrade(
                seq=seq,
                pair=str(trade["pair"]),
                open_date=opened,
                close_date=_instant(trade, "close"),
                profit_ratio=_required(trade.get("profit_ratio"), f"trade {seq} profit_ratio"),
                profit_abs=_required(trade.get("profit_abs"), f"trade {seq} profit_abs"),
                exit_reason=str(trade.get("exit_reason") or ""),
                is_short=bool(trade.get("is_short")),
                stake_amount=figure(trade.get("stake_amount")),
                open_rate=figure(trade.get("open_rate")),
                close_rate=figure(trade.get("close_rate")),
                enter_tag=str(trade.get("enter_tag") or ""),
            )
        )
    return out


def breakdown(rows: object) -> list[BreakdownRow]:
    out = []
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict) or row.get("key") in (None, "", _TOTAL):
            continue
        out.append(
            BreakdownRow(
                key=str(row["key"]),
                trades=_count(row.get("trades")),
                profit_total_abs=figure(row.get("profit_total_abs")) or Decimal(0),
                profit_total=figure(row.get("profit_total")),
                profit_mean=figure(row.get("profit_mean")),
                wins=_count(row.get("wins")),
                draws=_count(row.get("draws")),
                losses=_count(row.get("losses")),
            )
        )
    return out


def daily(stats: dict[str, Any]) -> list[DailyProfit]:
    out = []
    for entry in stats.get("daily_profit") or []:
        if not (isinstance(entry, list) and len(entry) == 2):
            continue
        exact = figure(entry[1])
        try:
            day = dt.date.fromisoformat(str(entry[0]))
        except ValueError:
            continue
        if exact is not None:
            out.append(DailyProfit(day=day, profit_abs=exact))
    return out


def equity_curve(
    start: dt.datetime | None, starting_balance: Decimal, trades: list[BacktestTrade]
) -> list[EquityPoint]:
    """The wallet after each closed trade, in closing order, from the starting balance; each
    point's drawdown is the fall below the highest wallet so far, as a fraction of it."""
    closed = sorted(
        (t for t in trades if t.close_date is not None),
        key=lambda t: (t.close_date, t.seq),
    )
    first = start or (closed[0].open_date if closed else None)
    points: list[EquityPoint] = []
    equity = peak = starting_balance
    if first is not None:
        points.append(EquityPoint(at=first, equity=equity, drawdown=Decimal(0)))
    for trade in closed:
        assert trade.close_date is not None
        equity += trade.profit_abs
        peak = max(peak, equity)
        fall = (peak - equity) / peak if peak > 0 else Decimal(0)
        points.append(
            EquityPoint(at=trade.close_date, equity=equity, drawdown=fall.quantize(MONEY_QUANTUM))
        )
    return points


def detail_from_stats(stats: dict[str, Any]) -> BacktestDetail:
    """The detail of one strategy's statistics (`strategy.<name>` in the result)."""
    starting = _required(stats.get("starting_balance"), "starting_balance")
    trades = trades_of(stats)
    ts = stats.get("backtest_start_ts")
    start = (
        dt.datetime.fromtimestamp(ts / 1000, tz=dt.UTC)
        if isinstance(ts, (int, float)) and not isinstance(ts, bool) and math.isfinite(ts)
        else None
    )
    return BacktestDetail(
        starting_balance=starting,
        stake_currency=str(stats.get("stake_currency") or "?"),
        trades=tuple(trades),
        per_pair=tuple(breakdown(stats.get("results_per_pair"))),
        exit_reasons=tuple(breakdown(stats.get("exit_reason_summary"))),
        daily=tuple(daily(stats)),
        equity=tuple(equity_curve(start, starting, trades)),
    )


def load_detail(result_zip: Path, strategy: str | None = None) -> BacktestDetail:
    """The detail of `strategy` in a result zip (the zip's only strategy when None); raises
    ResultError for a file that is not a readable result."""
    document = load_stats(result_zip)
    names = sorted(document["strategy"])
    if strategy is None:
        if len(names) != 1:
            raise ResultError(
                f"{result_zip.name} holds {len(names)} strategies ({', '.join(names)}); "
                "name the one to read"
            )
        strategy = names[0]
    try:
        return detail_from_stats(strategy_stats(document, strategy))
    except ValueError as e:  # a figure the records refuse (more than 30 digits, ...)
        raise ResultError(f"{result_zip.name}: {e}") from e
