"""The exchange double as a source of history: many symbols, Binance's paging and errors, and
a real `freqtrade download-data` of a pair that is not bundled, offline."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tradebot.domain.freqtrade_trade_config import exchange_double_overrides
from tradebot.freqtrade import offline
from tradebot_testing.exchange_double import MAX_KLINES, ExchangeDouble
from tradebot_testing.listing import LISTED_MS

LARGEST = {
    "BTC/USDT",
    "ETH/USDT",
    "SOL/USDT",
    "XRP/USDT",
    "BNB/USDT",
    "ADA/USDT",
    "DOGE/USDT",
    "TRX/USDT",
    "AVAX/USDT",
    "LINK/USDT",
    "DOT/USDT",
    "LTC/USDT",
    "BCH/USDT",
    "NEAR/USDT",
    "UNI/USDT",
    "ATOM/USDT",
    "XLM/USDT",
    "ETC/USDT",
    "FIL/USDT",
    "APT/USDT",
}
DAY_MS = 86_400_000


def _get(double: ExchangeDouble, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(double.api_url + path, timeout=10) as r:  # noqa: S310
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def double() -> Any:
    with ExchangeDouble() as d:
        yield d


def test_exchange_info_lists_the_largest_usdt_pairs(double: ExchangeDouble) -> None:
    status, info = _get(double, "/exchangeInfo")
    assert status == 200
    symbols = {s["symbol"] for s in info["symbols"]}
    assert {p.replace("/", "") for p in LARGEST} <= symbols
    assert set(double.pairs) >= LARGEST


def test_klines_page_like_binance(double: ExchangeDouble) -> None:
    start = 1_704_067_200_000  # 2024-01-01
    _, default = _get(double, f"/klines?symbol=SOLUSDT&interval=1h&startTime={start}")
    assert len(default) == 500
    assert default[0][0] == start
    _, capped = _get(double, f"/klines?symbol=SOLUSDT&interval=5m&startTime={start}&limit=5000")
    assert len(capped) == MAX_KLINES
    assert [r[0] for r in capped] == [start + i * 300_000 for i in range(MAX_KLINES)]
    # The next page starts where this one ended, and continues the prices.
    nxt = capped[-1][0] + 300_000
    _, page2 = _get(double, f"/klines?symbol=SOLUSDT&interval=5m&startTime={nxt}&limit=2")
    assert page2[0][0] == nxt
    assert page2[0][1] == capped[-1][4]
    end = start + 3 * DAY_MS
    _, ranged = _get(double, f"/klines?symbol=XRPUSDT&interval=1d&startTime={start}&endTime={end}")
    assert [r[0] for r in ranged] == [start + i * DAY_MS for i in range(4)]
    _, early = _get(double, "/klines?symbol=DOGEUSDT&interval=1d&startTime=0&limit=3")
    assert early[0][0] == LISTED_MS  # listed 2020-01-01: nothing before
    for row in ranged:
        o, h, lo, c = (float(x) for x in row[1:5])
        assert lo <= min(o, c) <= max(o, c) <= h


def test_history_is_deterministic_across_instances(double: ExchangeDouble) -> None:
    query = "/klines?symbol=ADAUSDT&interval=4h&startTime=1600000000000&limit=50"
    with ExchangeDouble() as other:
        assert _get(double, query)[1] == _get(other, query)[1]


def test_binance_errors(double: ExchangeDouble) -> None:
    assert _get(double, "/klines?symbol=NOPEUSDT&interval=1h") == (
        400,
        {"code": -1121, "msg": "Invalid symbol."},
    )
    assert _get(double, "/klines?symbol=SOLUSDT&interval=7m") == (
        400,
        {"code": -1120, "msg": "Invalid interval."},
    )


def download(
    double: ExchangeDouble, tmp: Path, pairs: list[str], timeframes: list[str], timerange: str
) -> subprocess.CompletedProcess[str]:
    config = {
        "exchange": {
            "name": "binance",
            "only_from_ccxt": True,
            "pair_whitelist": [],
            **exchange_double_overrides(double.url),
        },
        "stake_currency": "USDT",
        "dry_run": True,
        "trading_mode": "spot",
        "user_data_dir": str(tmp / "user_data"),
        "dataformat_ohlcv": "feather",
    }
    (tmp / "user_data").mkdir(exist_ok=True)
    (tmp / "config.json").write_text(json.dumps(config))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tradebot.freqtrade.download",
            "--save-markets",
            str(tmp / "data" / "markets.json"),
            "download-data",
            "--config",
            str(tmp / "config.json"),
            "--datadir",
            str(tmp / "data"),
            "--pairs",
            *pairs,
            "--timeframes",
            *timeframes,
            "--timerange",
            timerange,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_freqtrade_download_data_of_a_pair_not_bundled(
    double: ExchangeDouble, tmp_path: Path
) -> None:
    import pandas as pd

    (tmp_path / "data").mkdir()
    done = download(double, tmp_path, ["SOL/USDT"], ["5m", "1h"], "20240101-20240103")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Async code raised" not in done.stderr
    frame = pd.read_feather(tmp_path / "data" / "SOL_USDT-1h.feather")
    assert frame["date"].iloc[0] == pd.Timestamp("2024-01-01", tz="UTC")
    assert frame["date"].diff().dropna().eq(pd.Timedelta("1h")).all()  # no gap
    assert len(pd.read_feather(tmp_path / "data" / "SOL_USDT-5m.feather")) >= 2 * 288
    _, rows = _get(double, "/klines?symbol=SOLUSDT&interval=1h&startTime=1704067200000&limit=1")
    assert frame["open"].iloc[0] == float(rows[0][1])
    markets = offline.load_markets(tmp_path / "data" / "markets.json")
    assert "SOL/USDT" in markets
    assert markets["SOL/USDT"]["precision"]["price"] == 0.01
    assert set(markets) >= LARGEST
    first = hashlib.sha256((tmp_path / "data" / "SOL_USDT-1h.feather").read_bytes()).digest()
    # Downloaded again elsewhere: the same bytes (deterministic history).
    again = tmp_path / "again"
    (again / "data").mkdir(parents=True)
    assert download(double, again, ["SOL/USDT"], ["1h"], "20240101-20240103").returncode == 0
    assert hashlib.sha256((again / "data" / "SOL_USDT-1h.feather").read_bytes()).digest() == first
