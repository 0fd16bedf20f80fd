#!/usr/bin/env python3
"""Generates the runner's bundled offline inputs: the "sample" candle data set and the binance
spot markets file. Both are committed; rerun this only to change them, then update the sums in
user_data/README.md (user_data/data/SHA256SUMS is rewritten here).

    .venv/bin/python hack/gen-sample-data.py            # both
    .venv/bin/python hack/gen-sample-data.py --check    # regenerate in a temp dir, compare sums

The candles are synthetic (there is no exchange to download from): a random walk whose drift
switches between bull, bear and sideways regimes (a Markov chain) and whose volatility clusters
(GARCH(1,1) with fat-tailed shocks), BTC and ETH correlated. Everything derives from SEED, so
the same library versions give byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
DATA_ROOT = ROOT / "user_data" / "data"
MARKETS_FILE = ROOT / "operator" / "tradebot" / "freqtrade" / "markets" / "binance.json"

SEED = 20240101
START = pd.Timestamp("2024-01-01T00:00:00Z")
CANDLES = 10_000
TIMEFRAME = "5m"
STEP = pd.Timedelta(minutes=5)
SUBSTEPS = 5  # one-minute steps inside each candle give it a high and a low
CORRELATION = 0.8  # BTC and ETH five-minute returns move together, as they do
REGIME_DRIFT = {"bull": 5e-5, "bear": -5e-5, "sideways": 0.0}  # per candle, log return
REGIME_MEAN_CANDLES = 700  # about 2.4 days per regime
SHOCK_DOF = 5  # Student-t: fat tails without absurd outliers


@dataclass(frozen=True)
class Asset:
    pair: str
    start_price: float
    candle_vol: float  # unconditional std of one candle's log return
    base_volume: float  # typical volume of one candle, in the base currency
    price_places: int  # the market's tick size
    amount_places: int  # the market's step size


ASSETS = (
    Asset("BTC/USDT", 42283.58, 0.0016, 120.0, 2, 5),
    Asset("ETH/USDT", 2281.87, 0.0021, 1500.0, 2, 4),
)


def _regimes(rng: np.random.Generator, n: int) -> np.ndarray:
    names = list(REGIME_DRIFT)
    drift = np.empty(n)
    state = 2  # sideways first
    for i in range(n):
        if rng.random() < 1 / REGIME_MEAN_CANDLES:
            state = int(rng.choice([s for s in range(len(names)) if s != state]))
        drift[i] = REGIME_DRIFT[names[state]]
    return drift


def _shocks(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Unit-variance Student-t shocks, shape (n, SUBSTEPS, k), correlated across assets."""
    t = rng.standard_t(SHOCK_DOF, size=(n, SUBSTEPS, k)) / np.sqrt(SHOCK_DOF / (SHOCK_DOF - 2))
    corr = np.full((k, k), CORRELATION)
    np.fill_diagonal(corr, 1.0)
    return np.asarray(t @ np.linalg.cholesky(corr).T)


def _garch(shocks: np.ndarray, target: float) -> np.ndarray:
    """Per-candle volatility following GARCH(1,1), driven by the candle's own shocks."""
    alpha, beta = 0.09, 0.89
    omega = target**2 * (1 - alpha - beta)
    var = target**2
    sigma = np.empty(len(shocks))
    candle_shock = shocks.sum(axis=1) / np.sqrt(SUBSTEPS)
    for i, z in enumerate(candle_shock):
        sigma[i] = np.sqrt(var)
        var = omega + alpha * var * z**2 + beta * var
    return sigma


def candles(
    asset: Asset, shocks: np.ndarray, drift: np.ndarray, rng: np.random.Generator
) -> pd.DataFrame:
    n = len(shocks)
    sigma = _garch(shocks, asset.candle_vol)
    steps = drift[:, None] / SUBSTEPS + shocks * (sigma[:, None] / np.sqrt(SUBSTEPS))
    path = asset.start_price * np.exp(np.cumsum(steps.ravel())).reshape(n, SUBSTEPS)
    close = path[:, -1]
    opened = np.concatenate([[asset.start_price], close[:-1]])
    # Wicks reach a little past the one-minute path, as ticks between the steps would.
    wick = np.abs(rng.normal(0, 0.25, size=(n, 2))) * sigma[:, None]
    high = np.maximum(path.max(axis=1), opened) * (1 + wick[:, 0])
    low = np.minimum(path.min(axis=1), opened) * (1 - wick[:, 1])

    dates = pd.date_range(START, periods=n, freq=STEP)
    hour = dates.hour.to_numpy() + dates.minute.to_numpy() / 60
    # Busiest when Europe and the US overlap (about 14-16 UTC), quietest in the Asian night.
    season = 1 + 0.35 * np.sin(2 * np.pi * (hour - 8) / 24)
    candle_shock = np.abs(shocks.sum(axis=1)) / np.sqrt(SUBSTEPS)
    activity = (sigma / asset.candle_vol) * (0.6 + 0.4 * candle_shock)
    volume = asset.base_volume * season * activity * rng.lognormal(0, 0.35, n)

    p = asset.price_places
    frame = pd.DataFrame(
        {
            "date": dates,
            "open": np.round(opened, p),
            "high": np.round(high, p),
            "low": np.round(low, p),
            "close": np.round(close, p),
            "volume": np.round(volume, asset.amount_places),
        }
    )
    # Rounding must not leave a body outside its wicks.
    frame["high"] = frame[["open", "high", "close"]].max(axis=1)
    frame["low"] = frame[["open", "low", "close"]].min(axis=1)
    return frame


def write_candles(data_root: Path) -> list[Path]:
    from freqtrade.data.history import get_datahandler
    from freqtrade.enums import CandleType

    rng = np.random.default_rng(SEED)
    drift = _regimes(rng, CANDLES)
    shocks = _shocks(rng, CANDLES, len(ASSETS))
    (data_root / "binance").mkdir(parents=True, exist_ok=True)
    handler = get_datahandler(data_root / "binance", "feather")
    written = []
    for k, asset in enumerate(ASSETS):
        # ETH follows the shared regime a little harder than BTC, as a higher-beta asset.
        frame = candles(asset, shocks[:, :, k], drift * (1 + 0.15 * k), rng)
        handler.ohlcv_store(asset.pair, TIMEFRAME, frame, CandleType.SPOT)
        written.append(
            data_root / "binance" / f"{asset.pair.replace('/', '_')}-{TIMEFRAME}.feather"
        )
    return written


# ---- markets ------------------------------------------------------------------------------
def _symbol(
    base: str,
    quote: str,
    tick: str,
    min_price: str,
    max_price: str,
    step: str,
    min_qty: str,
    max_qty: str,
    market_max_qty: str,
) -> dict[str, Any]:
    """One symbol as Binance's GET /api/v3/exchangeInfo describes it (spot)."""
    return {
        "symbol": base + quote,
        "status": "TRADING",
        "baseAsset": base,
        "baseAssetPrecision": 8,
        "quoteAsset": quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": [
            "LIMIT",
            "LIMIT_MAKER",
            "MARKET",
            "STOP_LOSS",
            "STOP_LOSS_LIMIT",
            "TAKE_PROFIT",
            "TAKE_PROFIT_LIMIT",
        ],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "amendAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": True,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": min_price,
                "maxPrice": max_price,
                "tickSize": tick,
            },
            {"filterType": "LOT_SIZE", "minQty": min_qty, "maxQty": max_qty, "stepSize": step},
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": "0.00000000",
                "maxQty": market_max_qty,
                "stepSize": "0.00000000",
            },
            {
                "filterType": "TRAILING_DELTA",
                "minTrailingAboveDelta": 10,
                "maxTrailingAboveDelta": 2000,
                "minTrailingBelowDelta": 10,
                "maxTrailingBelowDelta": 2000,
            },
            {
                "filterType": "PERCENT_PRICE_BY_SIDE",
                "bidMultiplierUp": "5",
                "bidMultiplierDown": "0.2",
                "askMultiplierUp": "5",
                "askMultiplierDown": "0.2",
                "avgPriceMins": 5,
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": "5.00000000",
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
        "permissions": [],
        "permissionSets": [["SPOT", "MARGIN"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


# Hand-written from Binance's published spot rules (early 2024): tick 0.01 USDT, BTC in steps
# of 0.00001, ETH in steps of 0.0001, at least 5 USDT per order. Fees are ccxt's binance
# defaults (0.1 % maker and taker).
EXCHANGE_INFO: dict[str, Any] = {
    "timezone": "UTC",
    "serverTime": 1704067200000,
    "rateLimits": [],
    "exchangeFilters": [],
    "symbols": [
        _symbol(
            "BTC",
            "USDT",
            "0.01000000",
            "0.01000000",
            "1000000.00000000",
            "0.00001000",
            "0.00001000",
            "9000.00000000",
            "76.52454118",
        ),
        _symbol(
            "ETH",
            "USDT",
            "0.01000000",
            "0.01000000",
            "1000000.00000000",
            "0.00010000",
            "0.00010000",
            "9000.00000000",
            "2131.87536361",
        ),
    ],
}


def markets_json() -> str:
    """Lets ccxt itself turn the exchangeInfo into its unified markets, exactly as it would
    from the live endpoint, so Freqtrade reads the same shape it gets online."""
    import ccxt

    exchange = ccxt.binance({"options": {"fetchMarkets": {"types": ["spot"]}}})

    def exchange_info(params: dict[str, Any] | None = None) -> dict[str, Any]:
        return json.loads(json.dumps(EXCHANGE_INFO))

    exchange.publicGetExchangeInfo = exchange_info
    markets = exchange.load_markets()
    return (
        json.dumps({"ccxt_version": ccxt.__version__, "markets": markets}, indent=1, sort_keys=True)
        + "\n"
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_sums(data_root: Path, files: list[Path]) -> str:
    lines = [f"{sha256(f)}  {f.relative_to(data_root).as_posix()}\n" for f in sorted(files)]
    text = "".join(lines)
    (data_root / "SHA256SUMS").write_text(text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="regenerate into a temp dir and compare with the committed files",
    )
    args = parser.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            files = write_candles(Path(tmp))
            fresh = write_sums(Path(tmp), files)
            same_markets = markets_json() == MARKETS_FILE.read_text()
        committed = (DATA_ROOT / "SHA256SUMS").read_text()
        print(fresh, end="")
        ok = fresh == committed and same_markets
        print("identical" if ok else "DIFFERENT (library versions?)", file=sys.stderr)
        return 0 if ok else 1
    files = write_candles(DATA_ROOT)
    print(write_sums(DATA_ROOT, files), end="")
    MARKETS_FILE.parent.mkdir(parents=True, exist_ok=True)
    MARKETS_FILE.write_text(markets_json())
    print(f"{sha256(MARKETS_FILE)}  {MARKETS_FILE.relative_to(ROOT).as_posix()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
