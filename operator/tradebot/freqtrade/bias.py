"""Findings of Freqtrade's bias analyses, read from what the offline entrypoint recorded.

`freqtrade lookahead-analysis` and `freqtrade recursive-analysis` print tables meant for a
terminal (rich, wrapped at its width, colours); lookahead-analysis can export a CSV, but only
of the strategies it found conclusive, and recursive-analysis exports nothing. So the offline
entrypoint (offline.py, --record-analysis) records the figures the tables are printed from,
as JSON lines, and this module reads them. Pure: no Freqtrade import, no I/O beyond the caller
handing over the parsed lines. The console output and the CSV are kept as artifacts too.

Record lines (one per table Freqtrade printed):

    {"analysis": "lookahead", "minimumTradeAmount": 10, "strategies": [{"strategy": "S",
     "hasBias": true, "totalSignals": 21, "biasedEntrySignals": 21, "biasedExitSignals": 0,
     "biasedIndicators": ["future"], "failed": false}]}
    {"analysis": "recursive", "pair": "BTC/USDT", "startupCandles": [30],
     "strategies": [{"strategy": "S", "indicators": {"cum": {"30": "0.125"}}}]}
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from tradebot.api.backtest import (
    BiasFindings,
    IndicatorDifference,
    LookaheadFindings,
    RecursiveFindings,
)
from tradebot.api.types import MONEY_QUANTUM

# Kept in status (and so in a termination message of at most 4096 bytes): the largest first.
MAX_NAMES = 8
MAX_SUMMARY = 100
# A difference against a value of 0 is unbounded; it is shown as this (100000000 = 10^10 %).
DIFFERENCE_CAP = Decimal(100_000_000)
_PERCENT = re.compile(r"^\s*(-?[0-9.]+(?:[eE][-+]?[0-9]+)?|-?inf|nan)\s*%?\s*$", re.IGNORECASE)


class BiasRecordError(ValueError):
    """The record is not what the offline entrypoint writes."""


def read_records(text: str) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            raise BiasRecordError(f"analysis record line {number} is not JSON: {e}") from e
        if not isinstance(record, dict):
            raise BiasRecordError(f"analysis record line {number} is not an object")
        records.append(record)
    return records


def _entry(records: Iterable[Mapping[str, Any]], analysis: str, strategy: str) -> Mapping[str, Any]:
    found: Mapping[str, Any] | None = None
    for record in records:
        if record.get("analysis") != analysis:
            continue
        for entry in record.get("strategies") or ():
            if isinstance(entry, Mapping) and entry.get("strategy") == strategy:
                found = entry  # the last table printed is the one that counts
    if found is None:
        raise BiasRecordError(f"the {analysis} analysis reported nothing for strategy {strategy}")
    return found


def _count(entry: Mapping[str, Any], key: str) -> int:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise BiasRecordError(f"{key} is not a count: {value!r}")
    return int(value)


def parse_lookahead(
    records: Iterable[Mapping[str, Any]], strategy: str, minimum_trade_amount: int
) -> LookaheadFindings:
    """The lookahead findings of `strategy`. Clean only when Freqtrade checked at least the
    minimum of signals and found neither a biased signal nor a biased indicator: too few
    signals or an error while checking is no evidence either way."""
    entry = _entry(records, "lookahead", strategy)
    signals = _count(entry, "totalSignals")
    if signals < minimum_trade_amount:
        return LookaheadFindings(
            clean=False,
            signals=signals,
            inconclusive=f"too few signals to check: {signals} of the {minimum_trade_amount} "
            "needed (a longer timerange or more pairs give more)",
        )
    if entry.get("failed"):
        return LookaheadFindings(
            clean=False,
            signals=signals,
            inconclusive="Freqtrade reported an error while checking (see the console artifact)",
        )
    indicators = [str(i) for i in entry.get("biasedIndicators") or ()]
    entries = _count(entry, "biasedEntrySignals")
    exits = _count(entry, "biasedExitSignals")
    has_bias = bool(entry.get("hasBias"))
    return LookaheadFindings(
        clean=not has_bias and not indicators and entries == 0 and exits == 0,
        has_bias=has_bias,
        signals=signals,
        biased_entry_signals=entries,
        biased_exit_signals=exits,
        biased_indicators=indicators[:MAX_NAMES] or None,
    )


def percent_ratio(text: object) -> Decimal:
    """A recorded difference as an absolute ratio to 8 places: Freqtrade 2026 records the
    ratio itself ("0.12345"), older ones a percentage ("12.345%"). Unbounded or not
    comparable (against 0, inf, nan: Freqtrade's "nan") as DIFFERENCE_CAP: a difference that
    cannot be measured is not a small one."""
    if isinstance(text, bool):
        raise BiasRecordError(f"not a difference: {text!r}")
    match = _PERCENT.match(str(text))
    if match is None:
        raise BiasRecordError(f"not a difference: {text!r}")
    try:
        value = abs(Decimal(match.group(1)))
    except InvalidOperation as e:
        raise BiasRecordError(f"not a difference: {text!r}") from e
    if str(text).strip().endswith("%"):
        value /= 100
    if value.is_nan() or value > DIFFERENCE_CAP:
        return DIFFERENCE_CAP
    return value.quantize(MONEY_QUANTUM)


def parse_recursive(records: Iterable[Mapping[str, Any]], strategy: str) -> RecursiveFindings:
    """Per indicator the largest difference over the startup candle counts compared."""
    records = list(records)
    entry = _entry(records, "recursive", strategy)
    record = next(r for r in reversed(records) if r.get("analysis") == "recursive")
    indicators = entry.get("indicators") or {}
    if not isinstance(indicators, Mapping):
        raise BiasRecordError("recursive indicators is not an object")
    differences = []
    for name, by_startup in indicators.items():
        if not isinstance(by_startup, Mapping) or not by_startup:
            continue
        difference = max(percent_ratio(v) for v in by_startup.values())
        # Freqtrade lists an indicator whose last value differs in the last bits of a float
        # (a rolling mean summed in another order) with a difference of 0: no finding.
        if difference > 0:
            differences.append(IndicatorDifference(name=str(name), difference=difference))
    differences.sort(key=lambda d: (-d.difference, d.name))
    startups = record.get("startupCandles")
    return RecursiveFindings(
        pair=str(record["pair"]) if record.get("pair") else None,
        startup_candles=[int(s) for s in startups] if isinstance(startups, list) else None,
        max_difference=differences[0].difference if differences else Decimal(0),
        indicators=differences[:MAX_NAMES] or None,
    )


def percent(ratio: Decimal) -> str:
    """0.032 -> "3.2%"."""
    text = format((ratio * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP).normalize(), "f")
    return f"{text}%"


def summary(lookahead: LookaheadFindings | None, recursive: RecursiveFindings | None) -> str:
    """One short line for the BIAS column: "clean", or what is wrong, worst first."""
    parts = []
    if lookahead is not None:
        if lookahead.inconclusive:
            parts.append("lookahead: inconclusive")
        elif not lookahead.clean:
            named = lookahead.biased_indicators or []
            if not named:
                named = [
                    f"{n} {what} signals"
                    for n, what in (
                        (lookahead.biased_entry_signals, "entry"),
                        (lookahead.biased_exit_signals, "exit"),
                    )
                    if n
                ]
            parts.append("lookahead: " + (", ".join(named) or "biased"))
    if recursive is not None and recursive.max_difference > 0:
        worst = recursive.indicators[0].name if recursive.indicators else ""
        parts.append(f"recursive {percent(recursive.max_difference)}: {worst}".rstrip(": "))
    text = "; ".join(parts) or "clean"
    return text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 3] + "..."


def findings(
    lookahead: LookaheadFindings | None, recursive: RecursiveFindings | None
) -> BiasFindings:
    return BiasFindings(
        summary=summary(lookahead, recursive), lookahead=lookahead, recursive=recursive
    )
