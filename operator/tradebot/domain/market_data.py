"""Pure decisions about MarketData: what to ask `freqtrade download-data` for, what its log
says went wrong and for which series, whether downloaded candles cover a Backtest, and when to
try again. No I/O, no clock: callers pass `now`."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tradebot.api.marketdata import MarketDataSpec
from tradebot.api.types import Timerange, parse_duration

MARKETS_FILE = "markets.json"
RESULT_FILE = ".tradebot-marketdata.json"  # the last download's result, in the data directory
STAGING_PREFIX = ".download-"  # a download in progress: never read as data
DATA_FORMAT = "feather"
BACKOFF_BASE = dt.timedelta(seconds=10)
BACKOFF_CAP = dt.timedelta(minutes=15)

VOLUME_ROOT = "marketdata"  # MarketData NAME lives in marketdata/NAME/ of its volume


def volume_path(name: str) -> str:
    """The MarketData's directory inside its volume (several may share one claim)."""
    return f"{VOLUME_ROOT}/{name}"


_TIMEFRAME_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2_592_000}


def timeframe_seconds(timeframe: str) -> int:
    return int(timeframe[:-1]) * _TIMEFRAME_UNITS[timeframe[-1]]


def data_file(pair: str, timeframe: str) -> str:
    """Freqtrade's file name for spot candles of `pair` in `timeframe` (feather)."""
    return f"{pair.replace('/', '_').replace(':', '_')}-{timeframe}.{DATA_FORMAT}"


# ---- what to ask for ------------------------------------------------------------------------
def download_config(
    exchange: str,
    trading_mode: str,
    user_data_dir: str,
    exchange_overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The config `freqtrade download-data` runs with: no keys (public candles only), and
    candles only from the exchange's REST API (ccxt): Freqtrade's fast path for Binance reads
    data.binance.vision, a second source the operator cannot point at a double or a proxy."""
    return {
        "exchange": {
            "name": exchange,
            "key": "",
            "secret": "",
            "pair_whitelist": [],
            "only_from_ccxt": True,
            **dict(exchange_overrides or {}),
        },
        "stake_currency": "USDT",
        "dry_run": True,
        "trading_mode": trading_mode,
        "margin_mode": "",
        "user_data_dir": user_data_dir,
        "dataformat_ohlcv": DATA_FORMAT,
    }


def download_args(spec: MarketDataSpec, config_path: str, datadir: str) -> list[str]:
    """`freqtrade download-data` arguments. Freqtrade itself continues files already in
    `datadir` from their last candle (incremental); the runner leaves out a file that starts
    after the requested start, so a widened timerange is downloaded whole."""
    args = [
        "download-data",
        "--config",
        config_path,
        "--datadir",
        datadir,
        "--pairs",
        *spec.pairs,
        "--timeframes",
        *spec.timeframes,
        "--data-format-ohlcv",
        DATA_FORMAT,
        "--trading-mode",
        spec.trading_mode,
    ]
    if spec.timerange is not None:
        args += ["--timerange", spec.timerange.freqtrade()]
    else:
        assert spec.days is not None
        args += ["--days", str(spec.days)]
    return args


# ---- what the log says ----------------------------------------------------------------------
_START = re.compile(r'Download history data for "([^"]+)", (\S+?),')
_SKIPPED = re.compile(r"Skipping pair (\S+?)\.\.\.")
_PROBLEM = re.compile(
    r"Async code raised an exception|Failed to download history data|"
    r" - ERROR - "
)


@dataclass
class DownloadLog:
    """Problems Freqtrade logged, attributed to the series it was downloading at the time.
    Freqtrade logs and goes on when a page of candles fails (and then stores the file with a
    hole in it), so its exit code cannot tell a complete download from a partial one."""

    problems: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    unknown_pairs: list[str] = field(default_factory=list)
    general: list[str] = field(default_factory=list)

    def failed(self, pair: str, timeframe: str) -> bool:
        return (pair, timeframe) in self.problems or pair in self.unknown_pairs


def parse_download_log(lines: Iterable[str]) -> DownloadLog:
    out = DownloadLog()
    current: tuple[str, str] | None = None
    for line in lines:
        started = _START.search(line)
        if started:
            current = (started.group(1), started.group(2))
            continue
        skipped = _SKIPPED.search(line)
        if skipped and skipped.group(1) not in out.unknown_pairs:
            out.unknown_pairs.append(skipped.group(1))
            continue
        if _PROBLEM.search(line):
            text = line.strip()[-300:]
            if current is None:
                out.general.append(text)
            else:
                out.problems.setdefault(current, []).append(text)
    return out


# ---- coverage -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Series:
    """One downloaded file as the status reports it."""

    pair: str
    timeframe: str
    first: dt.datetime | None
    last: dt.datetime | None
    candles: int


def window(
    spec_timerange: Timerange | None, days: int | None, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime | None]:
    """The requested [start, end) in UTC (end None: up to now)."""
    if spec_timerange is not None:
        start = dt.datetime.fromisoformat(spec_timerange.start).replace(tzinfo=dt.UTC)
        end = (
            dt.datetime.fromisoformat(spec_timerange.end).replace(tzinfo=dt.UTC)
            if spec_timerange.end
            else None
        )
        return start, end
    assert days is not None
    return (now - dt.timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0), None


def uncovered(
    series: Sequence[Series],
    pairs: Sequence[str],
    timeframe: str,
    timerange: Timerange | None,
    now: dt.datetime,
    tolerance: dt.timedelta = dt.timedelta(0),
) -> list[str]:
    """What of a Backtest (pairs x timeframe over timerange) the series do not cover, each as
    a phrase naming the pair, timeframe and missing part; empty when all is covered. Without a
    timerange, any candles of each pair count (the Backtest takes what there is)."""
    by_key = {(s.pair, s.timeframe): s for s in series}
    missing: list[str] = []
    step = dt.timedelta(seconds=timeframe_seconds(timeframe))
    for pair in pairs:
        s = by_key.get((pair, timeframe))
        if s is None or not s.candles or s.first is None or s.last is None:
            missing.append(f"{pair} {timeframe}: not downloaded")
            continue
        if timerange is None:
            continue
        start, end = window(timerange, None, now)
        if s.first > start + tolerance:
            missing.append(
                f"{pair} {timeframe}: {start:%Y-%m-%d %H:%M} to "
                f"{s.first:%Y-%m-%d %H:%M} (data starts at {s.first:%Y-%m-%d %H:%M})"
            )
        # The last candle needed opens one step before the end (end exclusive); an open end
        # is "up to now", which a refresh keeps chasing: it is not waited for.
        if end is not None and s.last + step < min(end, now) - tolerance:
            missing.append(
                f"{pair} {timeframe}: {s.last + step:%Y-%m-%d %H:%M} to "
                f"{min(end, now):%Y-%m-%d %H:%M} (data ends at "
                f"{s.last:%Y-%m-%d %H:%M})"
            )
    return missing


def coverage(series: Sequence[Series]) -> str | None:
    """The window every series has: latest first to earliest last candle."""
    known = [s for s in series if s.first is not None and s.last is not None]
    if not known or len(known) < len(series):
        return None
    first = max(s.first for s in known if s.first is not None)
    last = min(s.last for s in known if s.last is not None)
    return f"{first:%Y-%m-%d %H:%M}..{last:%Y-%m-%d %H:%M}"


# ---- when ----------------------------------------------------------------------------------
def backoff(attempts: int) -> dt.timedelta:
    """Wait before retry number `attempts` (1 is the first retry): doubling, capped."""
    doublings = min(max(attempts - 1, 0), 20)  # 2**20 x 10 s is far past the cap already
    wait: dt.timedelta = BACKOFF_BASE * (2**doublings)
    return min(wait, BACKOFF_CAP)


def next_refresh(refresh: str | None, last: dt.datetime | None) -> dt.datetime | None:
    if refresh is None or last is None:
        return None
    return last + parse_duration(refresh)


def requested(spec: MarketDataSpec) -> list[tuple[str, str]]:
    return [(p, t) for p in spec.pairs for t in spec.timeframes]
