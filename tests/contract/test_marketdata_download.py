"""The MarketData download run (tradebot.freqtrade.marketdata) with real Freqtrade against the
exchange double: staged, checked, moved; a failure names the pair and leaves nothing partial;
a refresh fetches only the new candles."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tradebot.api.marketdata import MarketDataSpec
from tradebot.domain import market_data
from tradebot.freqtrade import marketdata, offline
from tradebot_testing.exchange_double import ExchangeDouble


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return dt.datetime.now(dt.UTC).timestamp() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def double(clock: Clock) -> Iterator[ExchangeDouble]:
    with ExchangeDouble(clock=clock) as d:
        yield d


def _spec(
    pairs: list[str], timeframes: list[str], start: str, end: str | None = None
) -> MarketDataSpec:
    timerange = {"start": start, **({"end": end} if end else {})}
    return MarketDataSpec.model_validate(
        {
            "pairs": pairs,
            "timeframes": timeframes,
            "timerange": timerange,
            "storage": {"claimName": "data"},
        }
    )


def test_downloads_names_an_unknown_pair_and_keeps_the_others(
    double: ExchangeDouble, tmp_path: Path
) -> None:
    spec = _spec(["SOL/USDT", "NOPE/USDT", "ADA/USDT"], ["1h", "4h"], "2024-03-01", "2024-03-05")
    result = marketdata.run(spec, tmp_path, double.url)
    assert not result["ok"]
    assert list(result["problems"]) == ["NOPE/USDT"]
    assert "NOPE/USDT is not listed on binance" in result["problems"]["NOPE/USDT"][0]
    got = {(s["pair"], s["timeframe"]): s for s in result["series"]}
    assert set(got) == {
        ("SOL/USDT", "1h"),
        ("SOL/USDT", "4h"),
        ("ADA/USDT", "1h"),
        ("ADA/USDT", "4h"),
    }
    sol = got[("SOL/USDT", "1h")]
    assert sol["first"] == "2024-03-01T00:00:00+00:00"
    assert sol["candles"] >= 4 * 24
    assert sol["sha256"] == marketdata.sha256(tmp_path / "SOL_USDT-1h.feather")
    assert "SOL/USDT" in offline.load_markets(tmp_path / market_data.MARKETS_FILE)
    assert (
        json.loads((tmp_path / market_data.RESULT_FILE).read_text())["series"] == result["series"]
    )
    assert not list(tmp_path.glob(market_data.STAGING_PREFIX + "*"))


def test_an_outage_mid_download_leaves_nothing_partial(
    double: ExchangeDouble, tmp_path: Path
) -> None:
    spec = _spec(["XRP/USDT"], ["5m"], "2024-01-01", "2024-02-15")  # 13 pages of klines
    double.outage(after_klines=4)
    result = marketdata.run(spec, tmp_path, double.url)
    assert not result["ok"]
    assert "XRP/USDT" in result["problems"]
    assert result["series"] == []
    assert not (tmp_path / "XRP_USDT-5m.feather").exists()
    assert double.calls["dropped GET /api/v3/klines"] > 0  # the outage really happened
    double.end_outage()
    healed = marketdata.run(spec, tmp_path, double.url)
    assert healed["ok"], healed
    frame = pd.read_feather(tmp_path / "XRP_USDT-5m.feather")
    assert frame["date"].diff().dropna().eq(pd.Timedelta("5m")).all()
    assert len(frame) >= 45 * 288


def test_a_refresh_adds_only_new_candles(
    double: ExchangeDouble, clock: Clock, tmp_path: Path
) -> None:
    clock.offset = -3 * 3600  # the exchange is 3 h behind: its newest candles come later
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).strftime("%Y-%m-%d")
    spec = _spec(["DOGE/USDT"], ["5m"], start)
    first = marketdata.run(spec, tmp_path, double.url)
    assert first["ok"], first
    before = pd.read_feather(tmp_path / "DOGE_USDT-5m.feather")
    klines_before = double.calls["GET /api/v3/klines"]
    clock.offset = 0
    second = marketdata.run(spec, tmp_path, double.url)
    assert second["ok"], second
    after = pd.read_feather(tmp_path / "DOGE_USDT-5m.feather")
    added = len(after) - len(before)
    assert 30 <= added <= 37  # about 3 h of 5m candles
    # The old candles are the same rows (the last one may have been forming then).
    pd.testing.assert_frame_equal(after.iloc[: len(before) - 1], before.iloc[:-1])
    assert double.calls["GET /api/v3/klines"] - klines_before <= 2  # one page, not 2 days
