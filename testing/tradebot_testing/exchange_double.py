"""A local exchange double: a test double of Binance spot's public REST API, on loopback.

The exchange is the one boundary a test here cannot reach (there is no network). This server
answers the endpoints ccxt calls for a dry-run `freqtrade trade` (exchangeInfo, time, ping,
klines, tickers, depth), so a real bot runs on this machine and its REST API answers, and a
test can script price moves to make it win or lose.

It lists the bundled pairs (BTC/USDT, ETH/USDT) and about twenty more of the largest USDT
spot pairs (tradebot_testing.listing), each with history from 2020-01-01 to now in every
timeframe from 5m to 1d, served by startTime/endTime and paged as Binance pages klines (limit
default 500, at most 1000; a startTime before the listing gives the first candles), with
Binance's errors for an unknown symbol (-1121) and a bad interval (-1120). The other pairs'
prices are closed-form functions of time (see listing.py); the bundled ones replay candles:

Bundled pairs replay a candle set (default `sample`) mapped onto the wall clock: the candle at
ANCHOR_INDEX is the current (still forming) period, earlier candles are the closed periods
before it, later ones the periods to come (the series wraps around). Within the forming period
the price walks linearly from the candle's open to its close. A per-pair price factor, a
piecewise-linear function of time scripted through the control API, multiplies everything
from the moment it is set: klines, tickers and depth all derive from this one series, so the
bot's limit orders fill against the same prices it sees in its candles.

    python -m tradebot_testing.exchange_double --port 8765 [--data sample]

Control API (same server): `POST /double/price {"pair": "BTC/USDT", "factor": 0.8}` or
`{"pair": "BTC/USDT", "move": -0.2, "over_seconds": 10}`; `GET /double/state`;
`POST /double/outage {"after_klines": N}` (after N more klines answers the exchange goes dark:
every API request has its connection dropped unanswered, as if the server had stopped) and
`POST /double/outage {"end": true}`.
See docs/exchange-double.md.
"""

from __future__ import annotations

import argparse
import bisect
import importlib
import json
import math
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tradebot.freqtrade import datasets, offline
from tradebot_testing.listing import LISTED_MS, LISTINGS, SyntheticSeries

PERIOD_MS = 5 * 60 * 1000  # the bundled candles are 5m
ANCHOR_INDEX = 2000  # candle of the current period: 2000 closed candles of history before it
DEFAULT_KLINES = 500
MAX_KLINES = 1000
DEPTH_LEVELS = 20
SPREAD = 0.0001  # best bid/ask are this fraction below/above the last price
API_PREFIX = "/api/v3"

_INTERVALS_MS = {
    "5m": 5,
    "15m": 15,
    "30m": 30,
    "1h": 60,
    "2h": 120,
    "4h": 240,
    "6h": 360,
    "8h": 480,
    "12h": 720,
    "1d": 1440,
}


class ExchangeDoubleError(Exception):
    pass


def _log(event: str, **fields: Any) -> None:
    record = {"ts": round(time.time(), 3), "logger": "exchange_double", "event": event, **fields}
    sys.stderr.write(json.dumps(record, default=str) + "\n")
    sys.stderr.flush()


def _fmt(value: float, places: int = 8) -> str:
    return f"{value:.{places}f}"


@dataclass
class _Market:
    """One pair: its exchangeInfo symbol and its raw candles (open, high, low, close, volume)."""

    pair: str
    symbol: str
    info: dict[str, Any]
    tick: float
    candles: list[tuple[float, float, float, float, float]]
    series: SyntheticSeries | None = None  # set: prices are synthetic, `candles` is empty


@dataclass
class _Factor:
    """Piecewise-linear price factor over time (ms): breakpoints (t, factor), flat outside."""

    points: list[tuple[int, float]] = field(default_factory=lambda: [(0, 1.0)])

    def at(self, t_ms: int) -> float:
        times = [p[0] for p in self.points]
        i = bisect.bisect_right(times, t_ms) - 1
        if i < 0:
            return self.points[0][1]
        if i == len(self.points) - 1:
            return self.points[i][1]
        (t0, f0), (t1, f1) = self.points[i], self.points[i + 1]
        if t1 == t0:
            return f1
        return f0 + (f1 - f0) * (t_ms - t0) / (t1 - t0)

    def script(self, now_ms: int, target: float, over_ms: int) -> None:
        current = self.at(now_ms)
        kept = [p for p in self.points if p[0] < now_ms]
        kept.append((now_ms, current))
        kept.append((now_ms + max(over_ms, 0), target))
        self.points = kept


def _load_markets() -> dict[str, dict[str, Any]]:
    """The bundled ccxt markets: each keeps Binance's raw exchangeInfo symbol as `info`, so the
    exchangeInfo served here is exactly what the markets file was generated from."""
    return offline.load_markets(offline.markets_file("binance"))


def _read_candles(path: Path) -> list[tuple[float, float, float, float, float]]:
    feather: Any = importlib.import_module("pyarrow.feather")
    columns = feather.read_table(str(path)).to_pydict()
    return [
        (float(o), float(h), float(lo), float(c), float(v))
        for o, h, lo, c, v in zip(
            columns["open"],
            columns["high"],
            columns["low"],
            columns["close"],
            columns["volume"],
            strict=True,
        )
    ]


class ExchangeDouble:
    """The exchange double. `with ExchangeDouble() as ex: ... ex.url ...`"""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        data: str = "sample",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._host = host
        self._port = port
        self._clock = clock
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.calls: Counter[str] = Counter()
        self.unknown: Counter[str] = Counter()
        datadir = datasets.resolve_datadir(data, "binance")
        markets = _load_markets()
        self._markets: dict[str, _Market] = {}
        for pair, market in sorted(markets.items()):
            path = datadir / f"{pair.replace('/', '_')}-5m.feather"
            if not path.is_file():
                continue
            info = dict(market["info"])
            tick = float(market["precision"]["price"])
            self._markets[pair] = _Market(pair, str(market["id"]), info, tick, _read_candles(path))
        if not self._markets:
            raise ExchangeDoubleError(f"no 5m candles in {datadir} for any bundled market")
        for listing in LISTINGS:
            if listing.pair not in self._markets:
                series = SyntheticSeries(listing)
                self._markets[listing.pair] = _Market(
                    listing.pair, listing.symbol, listing.info(), series.tick, [], series
                )
        # None: serving; an int: klines answers left before the outage; 0: dark.
        self._outage_after: int | None = None
        self._by_symbol = {m.symbol: m for m in self._markets.values()}
        self._factors = {pair: _Factor() for pair in self._markets}
        # The current 5m period at start-up is the anchor candle; the mapping stays fixed.
        self._anchor_ms = self._now_ms() // PERIOD_MS * PERIOD_MS

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> ExchangeDouble:
        if self._server is not None:
            return self
        double = self

        class Handler(_Handler):
            exchange = double

        self._server = ThreadingHTTPServer((self._host, self._port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="exchange-double", daemon=True
        )
        self._thread.start()
        _log("exchange_double.start", url=self.url, pairs=sorted(self._markets))
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None
        _log("exchange_double.stop", calls=dict(self.calls))

    def __enter__(self) -> ExchangeDouble:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise ExchangeDoubleError("the exchange double is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:PORT (the Binance API is under /api/v3)."""
        return f"http://{self._host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + API_PREFIX

    @property
    def pairs(self) -> list[str]:
        return sorted(self._markets)

    # ---- control --------------------------------------------------------------------------
    def _market(self, pair: str) -> _Market:
        market = self._markets.get(pair)
        if market is None:
            raise ExchangeDoubleError(f"unknown pair {pair!r} (known: {', '.join(self.pairs)})")
        return market

    def set_price_factor(self, pair: str, factor: float, over_seconds: float = 0.0) -> float:
        """From now on, prices of `pair` are the replayed ones times `factor` (reached linearly
        over `over_seconds`). Returns the factor."""
        self._market(pair)
        if not math.isfinite(factor) or factor <= 0:
            raise ExchangeDoubleError(f"factor must be a positive number, not {factor!r}")
        with self._lock:
            self._factors[pair].script(self._now_ms(), factor, int(over_seconds * 1000))
        _log("exchange_double.price", pair=pair, factor=factor, over_seconds=over_seconds)
        return factor

    def move(self, pair: str, fraction: float, over_seconds: float = 0.0) -> float:
        """Moves the price of `pair` by `fraction` (-0.2 is 20 % down) from its current factor.
        Returns the new factor."""
        self._market(pair)
        with self._lock:
            current = self._factors[pair].at(self._now_ms())
        return self.set_price_factor(pair, current * (1 + fraction), over_seconds)

    def price(self, pair: str) -> float:
        """The last price of `pair` now."""
        return float(self._ticker(self._market(pair), self._now_ms())["last"])

    def outage(self, after_klines: int = 0) -> None:
        """After `after_klines` more klines answers, drop every API request unanswered (the
        client sees the connection reset, as if the exchange had stopped) until end_outage()."""
        with self._lock:
            self._outage_after = max(after_klines, 0)
        _log("exchange_double.outage", after_klines=after_klines)

    def end_outage(self) -> None:
        with self._lock:
            self._outage_after = None
        _log("exchange_double.outage_end")

    def _admit(self, name: str) -> bool:
        """Whether an API request is answered (False: drop it, the exchange is dark)."""
        with self._lock:
            if self._outage_after is None:
                return True
            if self._outage_after > 0 and name == "klines":
                self._outage_after -= 1
                return True
            return self._outage_after > 0

    def state(self) -> dict[str, Any]:
        now = self._now_ms()
        with self._lock:
            factors = {
                p: {"now": f.at(now), "points": list(f.points)} for p, f in self._factors.items()
            }
        return {
            "now_ms": now,
            "anchor_ms": self._anchor_ms,
            "anchor_index": ANCHOR_INDEX,
            "pairs": {
                p: {"symbol": m.symbol, "last": self._ticker(m, now)["last"], "factor": factors[p]}
                for p, m in self._markets.items()
            },
            "calls": dict(self.calls),
            "unknown": dict(self.unknown),
        }

    # ---- the price series -----------------------------------------------------------------
    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _raw(self, market: _Market, open_ms: int) -> tuple[float, float, float, float, float]:
        index = (ANCHOR_INDEX + (open_ms - self._anchor_ms) // PERIOD_MS) % len(market.candles)
        return market.candles[index]

    def _candle(
        self, market: _Market, open_ms: int, now_ms: int, step_ms: int = PERIOD_MS
    ) -> tuple[float, float, float, float, float]:
        """The 5m candle opening at open_ms as seen at now_ms (the forming one is partial);
        for a synthetic market the candle of any `step_ms`."""
        end = open_ms + step_ms
        if market.series is not None:
            # The forming candle is the one from its open to now: its close is today's price.
            o, h, lo, c, v = market.series.candle(open_ms, max(min(end, now_ms) - open_ms, 1))
        else:
            o, h, lo, c, v = self._raw(market, open_ms)
            elapsed = min(max((now_ms - open_ms) / PERIOD_MS, 0.0), 1.0)
            if now_ms < end:  # forming: walk from open to close, extremes so far
                c = o + (c - o) * elapsed
                h, lo = max(o, c), min(o, c)
                v = v * elapsed
        with self._lock:
            factor = self._factors[market.pair]
            f_open = factor.at(open_ms)
            f_close = factor.at(min(end, now_ms))
        op, cl = o * f_open, c * f_close
        hi = max(h * max(f_open, f_close), op, cl)
        low = min(lo * min(f_open, f_close), op, cl)
        rnd = _rounder(market.tick)
        return rnd(op), rnd(hi), rnd(low), rnd(cl), v

    def _candles(
        self,
        market: _Market,
        step_ms: int,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
        now_ms: int,
    ) -> list[list[Any]]:
        # Binance: the candles whose open time lies in [startTime, endTime], the first `limit`
        # of them from startTime, or the last `limit` up to endTime (or now) without one.
        current = now_ms // step_ms * step_ms
        last = current if end_ms is None else min(current, end_ms // step_ms * step_ms)
        first = (
            last - (limit - 1) * step_ms if start_ms is None else -(-start_ms // step_ms) * step_ms
        )
        first = max(first, -(-LISTED_MS // step_ms) * step_ms)
        rows: list[list[Any]] = []
        t = first
        while t <= last and len(rows) < limit:
            if market.series is not None:
                parts = [self._candle(market, t, now_ms, step_ms)]
            else:
                parts = [
                    self._candle(market, t + k, now_ms)
                    for k in range(0, step_ms, PERIOD_MS)
                    if t + k <= now_ms
                ]
            o, c = parts[0][0], parts[-1][3]
            h = max(p[1] for p in parts)
            lo = min(p[2] for p in parts)
            v = sum(p[4] for p in parts)
            rows.append(
                [
                    t,
                    _fmt(o),
                    _fmt(h),
                    _fmt(lo),
                    _fmt(c),
                    _fmt(v),
                    t + step_ms - 1,
                    _fmt(v * c),
                    100 * len(parts),
                    _fmt(v / 2),
                    _fmt(v * c / 2),
                    "0",
                ]
            )
            t += step_ms
        return rows

    def _ticker(self, market: _Market, now_ms: int) -> dict[str, Any]:
        last = self._candle(market, now_ms // PERIOD_MS * PERIOD_MS, now_ms)[3]
        # Hourly candles are enough for a synthetic market's day (24 rows instead of 288).
        step = PERIOD_MS if market.series is None else 3_600_000
        day = self._candles(market, step, now_ms - 86_400_000, None, 86_400_000 // step + 1, now_ms)
        opened = float(day[0][1])
        spread = max(market.tick, round(last * SPREAD / market.tick) * market.tick)
        return {
            "last": last,
            "open": opened,
            "high": max(float(r[2]) for r in day),
            "low": min(float(r[3]) for r in day),
            "volume": sum(float(r[5]) for r in day),
            "bid": _rounder(market.tick)(last - spread),
            "ask": _rounder(market.tick)(last + spread),
            "open_ms": now_ms - 86_400_000,
        }

    # ---- Binance payloads -----------------------------------------------------------------
    def exchange_info(self) -> dict[str, Any]:
        return {
            "timezone": "UTC",
            "serverTime": self._now_ms(),
            "rateLimits": [],
            "exchangeFilters": [],
            "symbols": [m.info for m in self._markets.values()],
        }

    def ticker_24hr(self, market: _Market) -> dict[str, Any]:
        now = self._now_ms()
        t = self._ticker(market, now)
        change = t["last"] - t["open"]
        return {
            "symbol": market.symbol,
            "priceChange": _fmt(change),
            "priceChangePercent": _fmt(100 * change / t["open"], 3),
            "weightedAvgPrice": _fmt((t["high"] + t["low"]) / 2),
            "prevClosePrice": _fmt(t["open"]),
            "lastPrice": _fmt(t["last"]),
            "lastQty": "0.01000000",
            "bidPrice": _fmt(t["bid"]),
            "bidQty": "10.00000000",
            "askPrice": _fmt(t["ask"]),
            "askQty": "10.00000000",
            "openPrice": _fmt(t["open"]),
            "highPrice": _fmt(t["high"]),
            "lowPrice": _fmt(t["low"]),
            "volume": _fmt(t["volume"]),
            "quoteVolume": _fmt(t["volume"] * t["last"]),
            "openTime": t["open_ms"],
            "closeTime": now,
            "firstId": 1,
            "lastId": 1000,
            "count": 1000,
        }

    def book_ticker(self, market: _Market) -> dict[str, Any]:
        t = self._ticker(market, self._now_ms())
        return {
            "symbol": market.symbol,
            "bidPrice": _fmt(t["bid"]),
            "bidQty": "10.00000000",
            "askPrice": _fmt(t["ask"]),
            "askQty": "10.00000000",
        }

    def depth(self, market: _Market, limit: int) -> dict[str, Any]:
        t = self._ticker(market, self._now_ms())
        rnd = _rounder(market.tick)
        levels = max(1, min(limit, DEPTH_LEVELS))
        return {
            "lastUpdateId": self._now_ms(),
            "bids": [[_fmt(rnd(t["bid"] - i * market.tick)), "10.00000000"] for i in range(levels)],
            "asks": [[_fmt(rnd(t["ask"] + i * market.tick)), "10.00000000"] for i in range(levels)],
        }

    def klines(self, market: _Market, query: dict[str, str]) -> list[list[Any]]:
        interval = query.get("interval")
        if interval is None:
            raise _BadRequest(
                -1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed."
            )
        if interval not in _INTERVALS_MS:
            # Binance's answer; 1s..3m and 3d..1M are real intervals the double does not serve.
            raise _BadRequest(-1120, "Invalid interval.")
        limit = min(max(int(query.get("limit", DEFAULT_KLINES)), 1), MAX_KLINES)
        start = int(query["startTime"]) if "startTime" in query else None
        end = int(query["endTime"]) if "endTime" in query else None
        return self._candles(
            market, _INTERVALS_MS[interval] * 60_000, start, end, limit, self._now_ms()
        )


def _rounder(tick: float) -> Callable[[float], float]:
    places = max(0, round(-math.log10(tick)))

    def rnd(value: float) -> float:
        return round(round(value / tick) * tick, places)

    return rnd


class _BadRequest(Exception):
    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status


class _Handler(BaseHTTPRequestHandler):
    exchange: ExchangeDouble
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are counted, and unknown ones logged, instead

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _query(self) -> tuple[str, dict[str, str]]:
        parts = urlsplit(self.path)
        return parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()}

    def _symbol(self, query: dict[str, str]) -> _Market:
        symbol = query.get("symbol")
        if not symbol:
            raise _BadRequest(
                -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
            )
        market = self.exchange._by_symbol.get(symbol or "")
        if market is None:
            raise _BadRequest(-1121, "Invalid symbol.")
        return market

    def _markets_asked(self, query: dict[str, str]) -> list[_Market] | _Market:
        if "symbol" in query:
            return self._symbol(query)
        if "symbols" in query:
            wanted = json.loads(query["symbols"])
            return [self._symbol({"symbol": s}) for s in wanted]
        return list(self.exchange._markets.values())

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        path, query = self._query()
        ex = self.exchange
        key = f"{method} {path}"
        if path.startswith(API_PREFIX + "/") and not ex._admit(path[len(API_PREFIX) + 1 :]):
            ex.calls["dropped " + key] += 1
            self.close_connection = True
            self.connection.close()
            return
        try:
            body = self._route(method, path, query)
        except _BadRequest as e:
            ex.calls[key] += 1
            self._send(e.status, {"code": e.code, "msg": e.msg})
            return
        except (ExchangeDoubleError, ValueError, KeyError, TypeError) as e:
            ex.calls[key] += 1
            self._send(400, {"code": -1100, "msg": str(e)})
            return
        if body is _NOT_FOUND:
            ex.unknown[key] += 1
            _log("exchange_double.unknown", method=method, path=path, query=query)
            self._send(
                404, {"code": -1, "msg": f"{method} {path} is not served by the exchange double"}
            )
            return
        ex.calls[key] += 1
        self._send(200, body)

    def _route(self, method: str, path: str, query: dict[str, str]) -> Any:
        ex = self.exchange
        if method == "GET" and path.startswith(API_PREFIX + "/"):
            name = path[len(API_PREFIX) + 1 :]
            if name == "ping":
                return {}
            if name == "time":
                return {"serverTime": ex._now_ms()}
            if name == "exchangeInfo":
                return ex.exchange_info()
            if name == "klines":
                return ex.klines(self._symbol(query), query)
            if name == "depth":
                return ex.depth(self._symbol(query), int(query.get("limit", DEPTH_LEVELS)))
            if name in ("ticker/24hr", "ticker/bookTicker", "ticker/price"):
                asked = self._markets_asked(query)
                one = not isinstance(asked, list)
                markets = [asked] if isinstance(asked, _Market) else asked
                if name == "ticker/24hr":
                    out = [ex.ticker_24hr(m) for m in markets]
                elif name == "ticker/bookTicker":
                    out = [ex.book_ticker(m) for m in markets]
                else:
                    out = [{"symbol": m.symbol, "price": _fmt(ex.price(m.pair))} for m in markets]
                return out[0] if one else out
        if method == "GET" and path == "/double/state":
            return ex.state()
        if method == "POST" and path == "/double/outage":
            length = int(self.headers.get("Content-Length") or 0)
            request = json.loads(self.rfile.read(length) or b"{}")
            if request.get("end"):
                ex.end_outage()
            else:
                ex.outage(int(request.get("after_klines", 0)))
            return {"outage": ex._outage_after}
        if method == "POST" and path == "/double/price":
            length = int(self.headers.get("Content-Length") or 0)
            request = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(request, dict) or "pair" not in request:
                raise ValueError(
                    'expected {"pair": ..., "factor": F} or {"pair": ..., "move": FRACTION}'
                )
            over = float(request.get("over_seconds", 0))
            if "factor" in request:
                factor = ex.set_price_factor(str(request["pair"]), float(request["factor"]), over)
            elif "move" in request:
                factor = ex.move(str(request["pair"]), float(request["move"]), over)
            else:
                raise ValueError("give factor or move")
            return {
                "pair": request["pair"],
                "factor": factor,
                "price": ex.price(str(request["pair"])),
            }
        return _NOT_FOUND


_NOT_FOUND = object()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tradebot_testing.exchange_double",
        description="Serve a local exchange double (Binance spot REST) until killed.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--data", default="sample", help="bundled candle set name or Freqtrade data directory"
    )
    args = parser.parse_args(argv)
    double = ExchangeDouble(host=args.host, port=args.port, data=args.data).start()
    stopped = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    stopped.wait()
    double.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
