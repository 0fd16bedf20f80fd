"""Reading Freqtrade's backtest result files into the API's exact figures.

Freqtrade writes `backtest_results/.last_result.json`, naming the newest
`backtest-result-<ts>.zip`; the zip holds `<same stem>.json` with `strategy.<name>.<stat>`.
Read with the standard library only, so the runner never imports Freqtrade itself.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import zipfile
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from tradebot.api.backtest import BacktestResults
from tradebot.api.types import MONEY_QUANTUM
from tradebot.domain.time import format_time

LAST_RESULT = ".last_result.json"

# API field -> key in Freqtrade's per-strategy statistics.
FIGURES = {
    "profit_total": "profit_total",
    "profit_total_abs": "profit_total_abs",
    # The account drawdown (relative to the starting balance plus profit so far), the figure
    # Freqtrade reports as "Max % of account underwater".
    "max_drawdown": "max_drawdown_account",
    "max_drawdown_abs": "max_drawdown_abs",
    "win_rate": "winrate",
    "sharpe": "sharpe",
    "sortino": "sortino",
    "calmar": "calmar",
    "profit_factor": "profit_factor",
    "market_change": "market_change",
    "starting_balance": "starting_balance",
    "final_balance": "final_balance",
}
COUNTS = {"trades": "total_trades", "wins": "wins", "losses": "losses", "draws": "draws"}


class ResultError(Exception):
    """The result file is missing or not what Freqtrade writes."""


def figure(value: object) -> Decimal | None:
    """An exact 8-place Decimal, or None where Freqtrade has no finite number (a Sharpe ratio
    of a run without losses is inf, a ratio of no trades can be NaN or missing)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if not isinstance(value, (int, float, str, Decimal)):
        return None
    try:
        # str() first: the float's shortest repr is what Freqtrade meant; Decimal(float) would
        # carry its binary expansion instead.
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    return number.quantize(MONEY_QUANTUM)


def _count(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _instant(stats: dict[str, Any], key: str) -> str | None:
    """ISO 8601 UTC from Freqtrade's millisecond timestamp, its text form as a fallback."""
    ts = stats.get(f"{key}_ts")
    if isinstance(ts, (int, float)) and not isinstance(ts, bool) and math.isfinite(ts):
        instant = dt.datetime.fromtimestamp(ts / 1000, tz=dt.UTC)
        return format_time(instant)
    text = stats.get(key)
    return text if isinstance(text, str) and text else None


def results_from_stats(stats: dict[str, Any]) -> BacktestResults:
    """The API figures from one strategy's statistics (`strategy.<name>` in the result)."""
    values: dict[str, Any] = {field: figure(stats.get(key)) for field, key in FIGURES.items()}
    values.update({field: _count(stats.get(key)) for field, key in COUNTS.items()})
    values["backtest_start"] = _instant(stats, "backtest_start")
    values["backtest_end"] = _instant(stats, "backtest_end")
    return BacktestResults(**values)


def latest_result(results_dir: Path) -> Path:
    """The zip `.last_result.json` names."""
    marker = results_dir / LAST_RESULT
    try:
        name = json.loads(marker.read_text())["latest_backtest"]
    except FileNotFoundError as e:
        raise ResultError(f"Freqtrade wrote no result ({marker} is missing)") from e
    except (ValueError, KeyError, TypeError) as e:
        raise ResultError(f"{marker} is not Freqtrade's result marker: {e}") from e
    path = results_dir / Path(str(name)).name
    if not path.is_file():
        raise ResultError(f"{marker} names {name}, which does not exist")
    return path


def meta_file(result_zip: Path) -> Path:
    """The `<stem>.meta.json` Freqtrade writes beside the zip."""
    return result_zip.with_suffix(".meta.json")


def _is_stats(document: object) -> bool:
    return (
        isinstance(document, dict)
        and isinstance(document.get("strategy"), dict)
        and "strategy_comparison" in document
    )


def load_stats(result_zip: Path) -> dict[str, Any]:
    """The whole statistics document from a result zip.

    Freqtrade names it `<zip stem>.json`; a renamed zip (an artifact kept under another name)
    still holds exactly one JSON member of that shape beside the config and parameter files.
    """
    try:
        with zipfile.ZipFile(result_zip) as archive:
            names = [n for n in archive.namelist() if n.endswith(".json")]
            own = result_zip.with_suffix(".json").name
            ordered = ([own] if own in names else []) + [n for n in names if n != own]
            for name in ordered:
                try:
                    # Freqtrade writes NaN and Infinity literals, which json accepts.
                    document = json.loads(archive.read(name))
                except ValueError:
                    continue
                if _is_stats(document):
                    return dict(document)
    except (OSError, zipfile.BadZipFile) as e:
        raise ResultError(f"cannot read {result_zip.name}: {e}") from e
    raise ResultError(f"{result_zip.name} holds no backtest statistics")


def strategy_stats(document: dict[str, Any], strategy: str) -> dict[str, Any]:
    strategies: dict[str, Any] = document["strategy"]
    stats = strategies.get(strategy)
    if not isinstance(stats, dict):
        raise ResultError(
            f"the result has no statistics for strategy {strategy!r} "
            f"(has: {', '.join(sorted(strategies)) or 'none'})"
        )
    return stats


def parse_result(result_zip: Path, strategy: str) -> BacktestResults:
    return results_from_stats(strategy_stats(load_stats(result_zip), strategy))
