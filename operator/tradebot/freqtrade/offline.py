"""Freqtrade's own command line, with exchange markets from a bundled file.

    python -m tradebot.freqtrade.offline [--markets FILE] [--record-data FILE] <freqtrade args>

Freqtrade loads the exchange's markets over the network whenever it builds an Exchange, and
no setting skips that; a backtest needs nothing else from the exchange. So before handing over
to `freqtrade.main.main`, this replaces the one coroutine that fetches markets with one that
reads a ccxt unified markets file (markets/<exchange id>.json in this package unless --markets
names one). Everything after that is unmodified Freqtrade.

--record-data FILE appends one JSON line per candle file Freqtrade loads, so the caller can
hash exactly the data a result came from.

--record-analysis FILE appends one JSON line per result table `lookahead-analysis` or
`recursive-analysis` prints, with the figures it is printed from (see bias.py for why and for
the format); the table itself is printed unchanged.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from pathlib import Path
from typing import Any

MARKETS_DIR = Path(__file__).resolve().parent / "markets"
# Whitelist entries made only of these are plain pairs; anything else is a Freqtrade regex,
# which matches whatever the markets offer and so cannot be "missing".
_PLAIN_PAIR = re.compile(r"^[A-Za-z0-9]+/[A-Za-z0-9]+(:[A-Za-z0-9]+)?$")


class OfflineMarketsError(Exception):
    pass


def markets_file(exchange_id: str, override: Path | None = None) -> Path:
    if override is not None:
        return override
    path = MARKETS_DIR / f"{exchange_id}.json"
    if not path.is_file():
        have = sorted(p.stem for p in MARKETS_DIR.glob("*.json"))
        raise OfflineMarketsError(
            f"no offline markets for exchange {exchange_id!r} (bundled: {', '.join(have)})"
        )
    return path


def load_markets(path: Path) -> dict[str, Any]:
    """The ccxt unified markets, by symbol."""
    document = json.loads(path.read_text())
    markets = document.get("markets") if isinstance(document, dict) else None
    if not isinstance(markets, dict) or not markets:
        raise OfflineMarketsError(f'{path} holds no markets (expected {{"markets": {{...}}}})')
    return markets


def is_plain_pair(entry: str) -> bool:
    return bool(_PLAIN_PAIR.match(entry))


def missing_pairs(whitelist: list[str], markets: dict[str, Any]) -> list[str]:
    return [p for p in whitelist if is_plain_pair(p) and p not in markets]


def _freqtrade(module: str) -> Any:
    """A Freqtrade module, imported when needed: importing Freqtrade takes about a second and
    the helpers above are used without it. (Freqtrade ships no type information, so what it
    offers is Any either way.)"""
    return importlib.import_module(f"freqtrade.{module}")


def _install(markets_override: Path | None, record: Path | None) -> None:
    exchange_class = _freqtrade("exchange.exchange").Exchange
    handler_class = _freqtrade("data.history.datahandlers.idatahandler").IDataHandler
    operational_exception = _freqtrade("exceptions").OperationalException

    async def reload_markets_offline(self: Any, reload: bool = False) -> None:
        exchange_id = str(self._api_async.id)
        try:
            path = markets_file(exchange_id, markets_override)
            markets = load_markets(path)
        except (OfflineMarketsError, OSError, ValueError) as e:
            raise operational_exception(f"Offline markets: {e}") from e
        whitelist = list(self._config.get("exchange", {}).get("pair_whitelist", []))
        missing = missing_pairs(whitelist, markets)
        if missing:
            # Freqtrade would only warn and drop such a pair from the whitelist; a backtest
            # that silently trades fewer pairs than it was asked to is worse than none.
            raise operational_exception(
                f"Pair(s) {', '.join(missing)} not in the offline {exchange_id} markets "
                f"({path.name}: {', '.join(sorted(markets))})"
            )
        self._api_async.set_markets(markets)

    exchange_class._api_reload_markets = reload_markets_offline

    if record is not None:
        original_load = handler_class.ohlcv_load

        def ohlcv_load_recorded(
            self: Any, pair: str, timeframe: str, candle_type: Any, **kwargs: Any
        ) -> Any:
            frame = original_load(self, pair, timeframe, candle_type, **kwargs)
            candidates = (
                self._pair_data_filename(self._datadir, pair, timeframe, candle_type),
                self._pair_data_filename(
                    self._datadir, pair, timeframe, candle_type, no_timeframe_modify=True
                ),
            )
            used = next((c for c in candidates if c.is_file()), None)
            if used is not None:
                with record.open("a") as out:
                    out.write(
                        json.dumps(
                            {"pair": pair, "timeframe": timeframe, "path": str(used.resolve())}
                        )
                        + "\n"
                    )
            return frame

        handler_class.ohlcv_load = ohlcv_load_recorded


def _lookahead_line(config: Any, instances: Any) -> dict[str, Any]:
    strategies = []
    for inst in instances:
        analysis = inst.current_analysis
        strategies.append(
            {
                "strategy": str(inst.strategy_obj["name"]),
                "hasBias": bool(analysis.has_bias),
                "totalSignals": int(analysis.total_signals),
                "biasedEntrySignals": int(analysis.false_entry_signals),
                "biasedExitSignals": int(analysis.false_exit_signals),
                "biasedIndicators": [str(i) for i in analysis.false_indicators],
                "failed": bool(inst.failed_bias_check),
            }
        )
    return {
        "analysis": "lookahead",
        "minimumTradeAmount": int(config.get("minimum_trade_amount") or 0),
        "strategies": strategies,
    }


def _recursive_line(instances: Any) -> dict[str, Any]:
    startups = [int(c) for c in instances[0]._startup_candle] if instances else []
    # Freqtrade checks one pair: the first of the whitelist (pair_to_used where it says so).
    pair = getattr(instances[0], "pair_to_used", None) if instances else None
    if pair is None and instances:
        pairs = instances[0].local_config.get("pairs") or [None]
        pair = pairs[0]
    return {
        "analysis": "recursive",
        "pair": str(pair) if pair else None,
        "startupCandles": startups,
        "strategies": [
            {
                "strategy": str(inst.strategy_obj["name"]),
                "indicators": {
                    # A ratio (Freqtrade 2026: a float, nan when not comparable) or, from
                    # older Freqtrade, a percentage text: kept as text either way.
                    str(name): {str(k): str(v) for k, v in values.items()}
                    for name, values in inst.dict_recursive.items()
                },
            }
            for inst in instances
        ],
    }


def _install_analysis_record(record: Path) -> None:
    def append(line: dict[str, Any]) -> None:
        with record.open("a") as out:
            out.write(json.dumps(line) + "\n")

    lookahead = _freqtrade("optimize.analysis.lookahead_helpers").LookaheadAnalysisSubFunctions
    print_lookahead = lookahead.text_table_lookahead_analysis_instances

    def lookahead_table(config: Any, instances: Any, *args: Any, **kwargs: Any) -> Any:
        append(_lookahead_line(config, instances))
        return print_lookahead(config, instances, *args, **kwargs)

    lookahead.text_table_lookahead_analysis_instances = staticmethod(lookahead_table)

    recursive = _freqtrade("optimize.analysis.recursive_helpers").RecursiveAnalysisSubFunctions
    print_recursive = recursive.text_table_recursive_analysis_instances

    def recursive_table(instances: Any, *args: Any, **kwargs: Any) -> Any:
        append(_recursive_line(instances))
        return print_recursive(instances, *args, **kwargs)

    recursive.text_table_recursive_analysis_instances = staticmethod(recursive_table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tradebot.freqtrade.offline",
        description="Run Freqtrade with exchange markets from a file instead of the network.",
    )
    parser.add_argument(
        "--markets",
        type=Path,
        default=None,
        help="ccxt markets JSON (default: the bundled one for the exchange)",
    )
    parser.add_argument(
        "--record-data",
        type=Path,
        default=None,
        help="append a JSON line per candle file loaded to this file",
    )
    parser.add_argument(
        "--record-analysis",
        type=Path,
        default=None,
        help="append a JSON line per bias analysis table printed to this file",
    )
    parser.add_argument(
        "freqtrade_args",
        nargs=argparse.REMAINDER,
        help="Freqtrade's own arguments, e.g. backtesting --config ...",
    )
    args = parser.parse_args(argv)
    _install(args.markets, args.record_data)
    if args.record_analysis is not None:
        _install_analysis_record(args.record_analysis)

    try:
        _freqtrade("main").main(args.freqtrade_args)
    except SystemExit as e:
        # Freqtrade always leaves through sys.exit; None means success to it, and also
        # what it returns after a configuration error (callers must check the log).
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
