"""`freqtrade download-data`, saving the exchange's markets beside the candles.

    python -m tradebot.freqtrade.download --save-markets FILE <freqtrade download-data args>

A backtest of downloaded candles needs the markets of the exchange they came from (precision,
limits, fees), and a backtest must not reach the exchange. Freqtrade loads those markets
anyway to download; this wraps the one coroutine that fetches them so that, once loaded, they
are also written to FILE (a ccxt unified markets JSON, the shape `offline.load_markets`
reads). Everything else is unmodified Freqtrade: the candles, the incremental update of files
already there, the paging, the retries.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any


def _install(save_markets: Path) -> None:
    exchange_class: Any = importlib.import_module("freqtrade.exchange.exchange").Exchange
    original = exchange_class._api_reload_markets

    async def reload_and_save(self: Any, reload: bool = False) -> Any:
        result = await original(self, reload=reload)
        markets = self._api_async.markets
        if markets:
            ccxt: Any = importlib.import_module("ccxt")
            tmp = save_markets.with_name(save_markets.name + ".tmp")
            tmp.write_text(
                json.dumps(
                    {"ccxt_version": ccxt.__version__, "markets": markets},
                    sort_keys=True,
                    default=str,
                )
            )
            os.replace(tmp, save_markets)
        return result

    exchange_class._api_reload_markets = reload_and_save


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tradebot.freqtrade.download",
        description="Run freqtrade download-data and save the exchange's markets to a file.",
    )
    parser.add_argument(
        "--save-markets",
        type=Path,
        required=True,
        help="where to write the exchange's ccxt markets (JSON)",
    )
    parser.add_argument(
        "freqtrade_args",
        nargs=argparse.REMAINDER,
        help="Freqtrade's own arguments: download-data --config ...",
    )
    args = parser.parse_args(argv)
    _install(args.save_markets)
    try:
        importlib.import_module("freqtrade.main").main(args.freqtrade_args)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
