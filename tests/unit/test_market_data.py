"""Pure MarketData decisions: the download's arguments, what its log blames, coverage of a
Backtest, backoff."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from tradebot.api.backtest import BacktestSpec
from tradebot.api.marketdata import MarketDataSpec
from tradebot.api.types import Timerange
from tradebot.domain import market_data as md

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
T = dt.datetime


def _spec(**extra: object) -> MarketDataSpec:
    wire: dict[str, object] = {
        "pairs": ["SOL/USDT", "ADA/USDT"],
        "timeframes": ["5m", "1h"],
        "storage": {"claimName": "candles"},
    }
    return MarketDataSpec.model_validate({**wire, **extra})


def test_spec_needs_one_window_and_one_storage() -> None:
    with pytest.raises(ValidationError, match="timerange or days"):
        _spec()
    with pytest.raises(ValidationError, match="timerange or days"):
        _spec(days=3, timerange={"start": "2024-01-01"})
    with pytest.raises(ValidationError, match=r"claimName or storage\.volumeClaimTemplate"):
        _spec(days=3, storage={"claimName": "a", "volumeClaimTemplate": {}})
    assert (
        _spec(days=3, storage={"volumeClaimTemplate": {}}).storage.volume_claim_template is not None
    )
    with pytest.raises(ValidationError):
        _spec(days=3, tradingMode="futures")


def test_backtest_takes_exactly_one_data_source() -> None:
    base = {"strategyRef": {"name": "s"}, "pairs": ["SOL/USDT"]}
    spec = BacktestSpec.model_validate({**base, "data": {"marketDataRef": {"name": "majors"}}})
    assert spec.data.market_data_ref is not None
    with pytest.raises(ValidationError, match=r"exactly one of data\.bundled"):
        BacktestSpec.model_validate(
            {**base, "data": {"bundled": "sample", "marketDataRef": {"name": "m"}}}
        )


def test_download_args() -> None:
    args = md.download_args(
        _spec(timerange={"start": "2024-01-01", "end": "2024-02-01"}), "/c.json", "/d"
    )
    assert args[:5] == ["download-data", "--config", "/c.json", "--datadir", "/d"]
    assert args[args.index("--pairs") + 1 : args.index("--timeframes")] == ["SOL/USDT", "ADA/USDT"]
    assert args[-2:] == ["--timerange", "20240101-20240201"]
    assert md.download_args(_spec(days=7), "/c", "/d")[-2:] == ["--days", "7"]
    config = md.download_config("binance", "spot", "/u")
    assert config["exchange"]["only_from_ccxt"] is True  # no data.binance.vision
    assert config["dataformat_ohlcv"] == "feather"


def test_log_problems_are_blamed_on_the_series_being_downloaded() -> None:
    log = md.parse_download_log(
        [
            'x - INFO - Download history data for "SOL/USDT", 5m, spot and store in /d.',
            "x - INFO - Downloaded data for SOL/USDT, 5m, spot with length 10.",
            'x - INFO - Download history data for "ADA/USDT", 1h, spot and store in /d.',
            "x - WARNING - Async code raised an exception: NetworkError('down')",
            "x - INFO - Skipping pair NOPE/USDT...",
        ]
    )
    assert log.problems == {
        ("ADA/USDT", "1h"): ["x - WARNING - Async code raised an exception: NetworkError('down')"]
    }
    assert log.failed("ADA/USDT", "1h")
    assert not log.failed("SOL/USDT", "5m")
    assert log.unknown_pairs == ["NOPE/USDT"]
    assert log.failed("NOPE/USDT", "5m")


def test_uncovered_names_pair_timeframe_and_missing_part() -> None:
    series = [
        md.Series(
            "SOL/USDT",
            "5m",
            T(2024, 1, 1, tzinfo=dt.UTC),
            T(2024, 1, 31, 23, 55, tzinfo=dt.UTC),
            8928,
        ),
        md.Series(
            "ADA/USDT", "5m", T(2024, 1, 10, tzinfo=dt.UTC), T(2024, 1, 20, tzinfo=dt.UTC), 100
        ),
    ]
    full = Timerange(start="2024-01-01", end="2024-02-01")
    assert md.uncovered(series, ["SOL/USDT"], "5m", full, NOW) == []
    missing = md.uncovered(series, ["SOL/USDT", "ADA/USDT", "XRP/USDT"], "5m", full, NOW)
    assert missing == [
        "ADA/USDT 5m: 2024-01-01 00:00 to 2024-01-10 00:00 (data starts at 2024-01-10 00:00)",
        "ADA/USDT 5m: 2024-01-20 00:05 to 2024-02-01 00:00 (data ends at 2024-01-20 00:00)",
        "XRP/USDT 5m: not downloaded",
    ]
    assert md.uncovered(series, ["SOL/USDT"], "1h", None, NOW) == ["SOL/USDT 1h: not downloaded"]
    assert md.uncovered(series, ["ADA/USDT"], "5m", None, NOW) == []


def test_coverage_backoff_refresh() -> None:
    series = [
        md.Series("A/USDT", "5m", T(2024, 1, 1, tzinfo=dt.UTC), T(2024, 3, 1, tzinfo=dt.UTC), 1),
        md.Series("B/USDT", "5m", T(2024, 1, 2, tzinfo=dt.UTC), T(2024, 2, 1, tzinfo=dt.UTC), 1),
    ]
    assert md.coverage(series) == "2024-01-02 00:00..2024-02-01 00:00"
    assert [md.backoff(n).total_seconds() for n in (1, 2, 3)] == [10, 20, 40]
    assert md.backoff(50) == md.BACKOFF_CAP
    assert md.next_refresh("1h", NOW) == NOW + dt.timedelta(hours=1)
    assert md.next_refresh(None, NOW) is None
    assert md.data_file("SOL/USDT", "5m") == "SOL_USDT-5m.feather"


def test_backtest_job_on_market_data_mounts_its_claim_and_markets() -> None:
    import dataclasses

    from tests.support.manifests import example

    from tradebot.domain.jobs import BacktestRun, job
    from tradebot.settings import Settings

    wire = example("Backtest", "ema-rsi-sample")["spec"]
    spec = BacktestSpec.model_validate(
        {**wire, "pairs": ["SOL/USDT"], "data": {"marketDataRef": {"name": "majors"}}}
    )
    run = BacktestRun(
        "ns", "bt", "0123456789abcdef", spec, "s", "S", "", {}, "r", "r", data_claim="md-majors"
    )
    pod = job(run, Settings())["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert args[args.index("--data") + 1] == "/data/marketdata/majors"
    assert args[args.index("--markets") + 1] == "/data/marketdata/majors/markets.json"
    assert {
        "name": "data",
        "persistentVolumeClaim": {"claimName": "md-majors", "readOnly": True},
    } in pod["volumes"]
    bundled = dataclasses.replace(run, spec=BacktestSpec.model_validate(wire), data_claim=None)
    bundled_args = job(bundled, Settings())["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--markets" not in bundled_args  # the bundled markets only for data.bundled


def test_termination_message_fits_and_keeps_problems() -> None:
    from tradebot.freqtrade.marketdata import termination_message

    series = [
        {
            "pair": f"P{i}/USDT",
            "timeframe": "5m",
            "file": f"P{i}_USDT-5m.feather",
            "candles": 1000,
            "first": "2024-01-01T00:00:00+00:00",
            "last": "2024-02-01T00:00:00+00:00",
            "sha256": "a" * 64,
        }
        for i in range(100)
    ]
    message = termination_message(
        {
            "ok": False,
            "exitCode": 0,
            "series": series,
            "problems": {"NOPE/USDT": ["not listed"]},
            "errors": [],
        }
    )
    import json

    brief = json.loads(message)
    assert len(message) <= 4000
    assert brief["truncated"] is True
    assert 0 < len(brief["series"]) < 100
    assert brief["problems"] == {"NOPE/USDT": ["not listed"]}
