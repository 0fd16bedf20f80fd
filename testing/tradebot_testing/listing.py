"""The symbols the exchange double lists besides the bundled ones, and their synthetic history.

The double must let a test download and backtest the pairs a trader cares about (the largest
USDT spot pairs), from 2020 to now, in every timeframe, with no network. Storing that much
history is out of the question (several GB), so each symbol's price is a closed-form function
of time: a sum of slow and fast waves in log space, their periods, amplitudes and phases drawn
once from the symbol's name. The same symbol gives the same candles on every machine, any
candle can be computed on its own (so klines are served by startTime/endTime without a
cumulative walk), and a candle's open is the previous candle's close.

High and low are sampled, not exact: a 1h candle's high is close to, not always equal to, the
largest high of its 5m candles. Freqtrade never checks that, and no test here relies on it.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

# 2020-01-01T00:00:00Z: every synthetic symbol is "listed" then; Binance answers a startTime
# before a symbol's listing with its first candles, and so does the double.
LISTED_MS = 1_577_836_800_000
FIVE_MINUTES_MS = 5 * 60 * 1000

# The 20 largest USDT spot pairs on Binance (by volume, late 2026) besides BTC and ETH, which
# the bundled candle set replays. Price level, tick size and lot step roughly as Binance has
# them, so amounts and prices round the way a trader sees them.
#            base     price    tick          step
_TABLE: tuple[tuple[str, float, str, str], ...] = (
    ("BTC", 60000.0, "0.01000000", "0.00001000"),
    ("ETH", 3000.0, "0.01000000", "0.00010000"),
    ("SOL", 150.0, "0.01000000", "0.00100000"),
    ("XRP", 0.6, "0.00010000", "0.10000000"),
    ("BNB", 550.0, "0.01000000", "0.00100000"),
    ("ADA", 0.45, "0.00010000", "0.10000000"),
    ("DOGE", 0.12, "0.00001000", "1.00000000"),
    ("TRX", 0.15, "0.00001000", "0.10000000"),
    ("AVAX", 30.0, "0.01000000", "0.01000000"),
    ("LINK", 15.0, "0.01000000", "0.01000000"),
    ("DOT", 6.0, "0.00100000", "0.01000000"),
    ("LTC", 80.0, "0.01000000", "0.00100000"),
    ("BCH", 400.0, "0.10000000", "0.00100000"),
    ("NEAR", 5.0, "0.00100000", "0.10000000"),
    ("UNI", 8.0, "0.00100000", "0.01000000"),
    ("ATOM", 7.0, "0.00100000", "0.01000000"),
    ("XLM", 0.1, "0.00001000", "1.00000000"),
    ("ETC", 25.0, "0.01000000", "0.01000000"),
    ("FIL", 5.0, "0.00100000", "0.01000000"),
    ("APT", 9.0, "0.00010000", "0.01000000"),
    ("ARB", 0.8, "0.00010000", "0.10000000"),
    ("SUI", 1.5, "0.00010000", "0.10000000"),
    ("PEPE", 0.00001, "0.00000001", "1.00000000"),
    ("SHIB", 0.00002, "0.00000001", "1.00000000"),
)
QUOTE = "USDT"

# Waves in log space: period (days) and amplitude. The slow ones give bull and bear years, the
# fast ones the intraday moves a 5m strategy trades on.
_WAVES: tuple[tuple[float, float], ...] = (
    (700.0, 0.55),
    (190.0, 0.25),
    (41.0, 0.10),
    (9.0, 0.05),
    (1.7, 0.025),
    (0.31, 0.012),
    (0.07, 0.006),
    (0.013, 0.003),
)
_DAY_MS = 86_400_000
_SAMPLES = 8  # points inside a candle its high and low are taken from


def symbol_info(base: str, tick: str, step: str, quote: str = QUOTE) -> dict[str, Any]:
    """One symbol as Binance's GET /api/v3/exchangeInfo describes it (spot), the same shape as
    the bundled markets file was generated from (hack/gen-sample-data.py)."""
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
                "minPrice": tick,
                "maxPrice": "1000000.00000000",
                "tickSize": tick,
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": step,
                "maxQty": "90000000.00000000",
                "stepSize": step,
            },
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": "0.00000000",
                "maxQty": "1000000.00000000",
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


def _unit(seed: bytes) -> float:
    """A number in [0, 1) drawn from `seed`."""
    return int.from_bytes(hashlib.blake2b(seed, digest_size=8).digest(), "big") / 2.0**64


@dataclass(frozen=True)
class Listing:
    base: str
    price: float
    tick: str
    step: str

    @property
    def pair(self) -> str:
        return f"{self.base}/{QUOTE}"

    @property
    def symbol(self) -> str:
        return self.base + QUOTE

    def info(self) -> dict[str, Any]:
        return symbol_info(self.base, self.tick, self.step)


LISTINGS: tuple[Listing, ...] = tuple(Listing(b, p, t, s) for b, p, t, s in _TABLE)


class SyntheticSeries:
    """The deterministic price history of one symbol: `candle(open_ms, step_ms)`."""

    def __init__(self, listing: Listing) -> None:
        name = listing.symbol.encode()
        self.tick = float(listing.tick)
        self._base = listing.price
        self._waves = [
            (
                2 * math.pi / (days * _DAY_MS),
                amp * (0.6 + 0.8 * _unit(name + b"a%d" % i)),
                2 * math.pi * _unit(name + b"p%d" % i),
            )
            for i, (days, amp) in enumerate(_WAVES)
        ]
        self._volume = 1e6 / listing.price * (0.5 + _unit(name + b"v"))
        self._name = name

    def price(self, t_ms: int) -> float:
        return self._base * math.exp(sum(a * math.sin(w * t_ms + p) for w, a, p in self._waves))

    def candle(self, open_ms: int, step_ms: int) -> tuple[float, float, float, float, float]:
        """(open, high, low, close, volume) of the candle [open_ms, open_ms + step_ms)."""
        points = [self.price(open_ms + step_ms * k // _SAMPLES) for k in range(_SAMPLES + 1)]
        wick = 0.0015 * math.sqrt(step_ms / FIVE_MINUTES_MS)
        bucket = b"%d:%d" % (open_ms, step_ms)
        high = max(points) * (1 + wick * _unit(self._name + b"h" + bucket))
        low = min(points) * (1 - wick * _unit(self._name + b"l" + bucket))
        volume = (
            self._volume
            * step_ms
            / FIVE_MINUTES_MS
            * (0.3 + 1.4 * _unit(self._name + b"q" + bucket))
        )
        return points[0], high, low, points[-1], volume
