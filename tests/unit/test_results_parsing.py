"""Reading Freqtrade's output: the result zip into exact figures, the log into one reason.

fixtures/backtest-result-ema-rsi-2d.zip is a real result: `tradebot-runner backtest` of
examples/strategy.yaml on the bundled sample data, timerange 20240102-20240104 (renamed from
Freqtrade's backtest-result-<timestamp>.zip).
"""

from __future__ import annotations

import json
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest

from tradebot.freqtrade import freqtrade_log
from tradebot.freqtrade.results import (
    ResultError,
    figure,
    latest_result,
    load_stats,
    meta_file,
    parse_result,
    results_from_stats,
    strategy_stats,
)

FIXTURE = Path(__file__).parent / "fixtures" / "backtest-result-ema-rsi-2d.zip"


def test_fixture_zip_parses_to_exact_figures() -> None:
    results = parse_result(FIXTURE, "EmaRsiStrategy")
    assert results.to_wire() == {
        "profitTotal": "0.00124795",
        "profitTotalAbs": "1.24795317",
        "maxDrawdown": "0.00352568",
        "maxDrawdownAbs": "3.53409640",
        "trades": 12,
        "wins": 4,
        "losses": 8,
        "draws": 0,
        "winRate": "0.33333333",
        "sharpe": "10.52850531",
        "sortino": "40.83971304",
        "calmar": "338.12049797",
        "profitFactor": "1.23435986",
        "marketChange": "0.00908463",
        "startingBalance": "1000.00000000",
        "finalBalance": "1001.24795317",
        "backtestStart": "2024-01-02T00:00:00Z",
        "backtestEnd": "2024-01-04T00:00:00Z",
    }


def test_fixture_figures_are_the_files_own_numbers_quantized() -> None:
    stats = strategy_stats(load_stats(FIXTURE), "EmaRsiStrategy")
    results = parse_result(FIXTURE, "EmaRsiStrategy")
    assert results.profit_total == Decimal(str(stats["profit_total"])).quantize(Decimal("1e-8"))
    assert results.max_drawdown == Decimal(str(stats["max_drawdown_account"])).quantize(
        Decimal("1e-8")
    )
    assert results.trades == stats["total_trades"] == len(stats["trades"])
    assert results.wins + results.losses + results.draws == results.trades  # type: ignore[operator]


def test_unknown_strategy_in_result_is_an_error() -> None:
    with pytest.raises(ResultError, match=r"no statistics for strategy 'Other'.*EmaRsiStrategy"):
        parse_result(FIXTURE, "Other")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0.1, Decimal("0.10000000")),
        (0.0012479531699999998, Decimal("0.00124795")),
        (-21.933722389524863, Decimal("-21.93372239")),
        (1000, Decimal("1000.00000000")),
        ("33.353", Decimal("33.35300000")),
        (0.000000005, Decimal("0E-8")),  # half to even
    ],
)
def test_figure_goes_through_the_floats_repr(raw: object, expected: Decimal) -> None:
    assert figure(raw) == expected


@pytest.mark.parametrize(
    "raw", [None, float("nan"), float("inf"), float("-inf"), True, "n/a", "NaN", [1], {}]
)
def test_no_finite_number_is_no_figure(raw: object) -> None:
    assert figure(raw) is None


def test_infinite_and_missing_ratios_stay_unset() -> None:
    results = results_from_stats(
        {
            "total_trades": 3,
            "wins": 3,
            "losses": 0,
            "draws": 0,
            "profit_total": 0.05,
            "sharpe": float("inf"),
            "sortino": float("nan"),
            "calmar": None,
            "backtest_start": "2024-01-02 00:00:00",
        }
    )
    assert results.sharpe is None
    assert results.sortino is None
    assert results.calmar is None
    assert results.profit_factor is None  # absent
    assert results.profit_total == Decimal("0.05")
    assert results.trades == 3
    assert results.backtest_start == "2024-01-02 00:00:00"  # no _ts: Freqtrade's own text
    assert "sharpe" not in results.to_wire()


def test_results_file_with_nan_literals(tmp_path: Path) -> None:
    # Freqtrade's JSON writer emits NaN/Infinity literals; they must not break parsing.
    document = (
        '{"strategy": {"S": {"total_trades": 0, "sharpe": NaN, "calmar": Infinity, '
        '"profit_total": 0.0}}, "strategy_comparison": []}'
    )
    path = tmp_path / "backtest-result-x.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("backtest-result-x.json", document)
        z.writestr("backtest-result-x_config.json", "{}")
    results = parse_result(path, "S")
    assert results.sharpe is None
    assert results.calmar is None
    assert results.trades == 0
    assert results.profit_total == Decimal(0)


def test_zip_without_statistics_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "r.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("r_config.json", "{}")
    with pytest.raises(ResultError, match="no backtest statistics"):
        load_stats(path)
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(ResultError, match=r"cannot read bad\.zip"):
        load_stats(tmp_path / "bad.zip")


def test_latest_result_follows_freqtrades_marker(tmp_path: Path) -> None:
    with pytest.raises(ResultError, match="wrote no result"):
        latest_result(tmp_path)
    (tmp_path / ".last_result.json").write_text(json.dumps({"latest_backtest": "b.zip"}))
    with pytest.raises(ResultError, match=r"names b\.zip, which does not exist"):
        latest_result(tmp_path)
    (tmp_path / "b.zip").write_bytes(b"")
    assert latest_result(tmp_path) == tmp_path / "b.zip"
    assert meta_file(tmp_path / "b.zip") == tmp_path / "b.meta.json"
    (tmp_path / ".last_result.json").write_text("[]")
    with pytest.raises(ResultError, match="not Freqtrade's result marker"):
        latest_result(tmp_path)


# ---- the log -------------------------------------------------------------------------------
def _log(*lines: str) -> str:
    return (
        "\n".join(
            f"2026-01-01 00:00:0{i % 10},123 - {line}" if " - " in line else line
            for i, line in enumerate(lines)
        )
        + "\n"
    )


def test_clean_log_has_no_reason() -> None:
    text = _log(
        "freqtrade - INFO - freqtrade 2026.9",
        "freqtrade.data.history.datahandlers.idatahandler - WARNING - something minor",
    )
    assert freqtrade_log.failure_reason(text) is None


def test_strategy_import_failure_gives_the_cause() -> None:
    text = _log(
        "freqtrade.resolvers.iresolver - WARNING - Could not import /s/S.py due to "
        "'invalid syntax (S.py, line 25)'",
        "freqtrade.resolvers.iresolver - WARNING - Could not import /s/S.py due to "
        "'invalid syntax (S.py, line 25)'",
        "freqtrade - ERROR - Impossible to load Strategy 'S'. This class does not exist or "
        "contains Python code errors.",
    )
    reason = freqtrade_log.failure_reason(text)
    assert reason is not None
    assert reason.startswith("Impossible to load Strategy 'S'")
    assert reason.endswith("Cause: invalid syntax (S.py, line 25)")  # once, not per attempt


def test_no_data_gives_the_requested_and_the_available_range() -> None:
    text = _log(
        "freqtrade.data.history.datahandlers.idatahandler - WARNING - BTC/USDT, spot, 5m, "
        "data starts at 2024-01-01 00:00:00",
        "freqtrade.data.history.datahandlers.idatahandler - WARNING - No history for BTC/USDT, "
        "spot, 5m found. Use `freqtrade download-data` to download the data",
        "freqtrade - ERROR - No data found. Terminating.",
    )
    assert freqtrade_log.failure_reason(text, timerange="20230101-20230201") == (
        "No data found. Terminating. Requested timerange: 20230101-20230201. "
        "The data has: BTC/USDT, spot, 5m, data starts at 2024-01-01 00:00:00"
    )


def test_configuration_error_is_reported_although_freqtrade_exits_zero() -> None:
    text = _log(
        "freqtrade.configuration.config_validation - CRITICAL - Invalid configuration. "
        "Reason: -5 is less than the minimum of 0.0001",
        "",
        "Failed validating 'minimum' in schema['properties']['stake_amount']:",
        "freqtrade - ERROR - Configuration error: -5 is less than the minimum of 0.0001",
        "Please make sure to review the documentation at https://www.freqtrade.io/en/stable.",
    )
    assert freqtrade_log.failure_reason(text) == (
        "Configuration error: -5 is less than the minimum of 0.0001"
    )


def test_fatal_exception_gives_the_exception_and_the_strategy_line() -> None:
    text = _log(
        "freqtrade - ERROR - Fatal exception!",
        "Traceback (most recent call last):",
        '  File "/venv/freqtrade/optimize/backtesting.py", line 300, in _run',
        "    self.strategy.advise_all_indicators(data)",
        '  File "/tmp/run/user_data/strategies/S.py", line 31, in populate_indicators',
        "    raise ValueError('boom')",
        '  File "/venv/pandas/core/frame.py", line 10, in x',
        "ValueError: boom",
    )
    assert freqtrade_log.failure_reason(text, strategy_file="S.py") == (
        "ValueError: boom (S.py line 31, in populate_indicators)"
    )


def test_reason_is_one_bounded_line() -> None:
    text = _log("freqtrade - ERROR - " + "x " * 2000)
    reason = freqtrade_log.failure_reason(text)
    assert reason is not None
    assert "\n" not in reason
    assert len(reason) <= freqtrade_log.MAX_REASON


def test_output_that_is_no_log_falls_back_to_its_last_line() -> None:
    assert freqtrade_log.last_line("Traceback ...\nImportError: no freqtrade\n\n") == (
        "ImportError: no freqtrade"
    )
    assert freqtrade_log.last_line("") is None
