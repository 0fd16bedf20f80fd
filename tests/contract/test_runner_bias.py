"""The bias analyses' contract: `tradebot-runner backtest --lookahead-analysis
--recursive-analysis` as the container runs it, real Freqtrade on the bundled data, on a
strategy with a planted lookahead (`shift(-1)`), one with a planted recursive dependence
(`cumsum()` from the first candle) and their clean twin as the positive control. The findings
the summary carries must name the planted indicator, and only it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from tradebot.api.backtest import BacktestSpec, BiasFindings
from tradebot.api.strategy import StrategySpec
from tradebot.domain.freqtrade_config import backtest_config
from tradebot.freqtrade import datasets
from tradebot.freqtrade.summary import RunSummary
from tradebot_testing import bias_strategies

TIMERANGE = "20240110-20240113"
RUN_TIMEOUT = 1200  # minutes on a loaded shared machine; about 30 s idle
# Each test's fixture is a run of its own (pytest-timeout counts the setup).
pytestmark = pytest.mark.timeout(RUN_TIMEOUT + 60)


@dataclass(frozen=True)
class Ran:
    returncode: int
    summary: RunSummary
    output: Path
    stderr: str

    @property
    def bias(self) -> BiasFindings:
        assert self.summary.bias is not None, self.summary.error or self.stderr[-2000:]
        return self.summary.bias


def _runner() -> str:
    beside = Path(sys.executable).parent / "tradebot-runner"
    found = str(beside) if beside.is_file() else shutil.which("tradebot-runner")
    if found is None:
        pytest.fail("tradebot-runner is not installed: run `pip install -e '.[runner]'`")
    return found


def run_analysed(directory: Path, class_name: str, code: str, *extra: str) -> Ran:
    """The runner on `code` as a Backtest with both analyses would run it."""
    spec = BacktestSpec.model_validate(
        {
            "strategyRef": {"name": "s"},
            "pairs": ["BTC/USDT", "ETH/USDT"],
            "stakeAmount": "100",
            "maxOpenTrades": 2,
            "fee": 0.001,
            "analyses": {"lookahead": True, "recursive": True},
        }
    )
    strategy = StrategySpec.model_validate({"className": class_name, "code": code})
    config = backtest_config(
        spec,
        strategy,
        datadir=str(datasets.resolve_datadir("sample", spec.exchange)),
        user_data_dir=str(directory / "unused"),
    )
    work = directory / class_name
    work.mkdir()
    (work / "config.json").write_text(json.dumps(config))
    (work / f"{class_name}.py").write_text(code)
    output = work / "out"
    command = [
        _runner(),
        "backtest",
        "--config",
        str(work / "config.json"),
        "--strategy-file",
        str(work / f"{class_name}.py"),
        "--data",
        "sample",
        "--output",
        str(output),
        "--summary",
        str(work / "termination-log"),
        "--timerange",
        TIMERANGE,
        "--lookahead-analysis",
        "--recursive-analysis",
        "--startup-candle",
        "30",
        # Few signals, each a backtest of its own; more than the minimum, as Freqtrade's CSV
        # export leaves out a strategy with exactly the minimum.
        "--minimum-trade-amount",
        "8",
        "--targeted-trade-amount",
        "10",
        *extra,
    ]
    env = {
        k: v for k, v in os.environ.items() if k not in (datasets.DATA_ROOT_ENV, "PYTEST_VERSION")
    }
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False, env=env
    )
    message = (work / "termination-log").read_text()
    summary = RunSummary.model_validate_json(message)
    return Ran(proc.returncode, summary, output, proc.stderr)


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bias")


@pytest.fixture(scope="module")
def lookahead_biased(directory: Path) -> Ran:
    return run_analysed(directory, *bias_strategies.LOOKAHEAD_BIASED)


@pytest.fixture(scope="module")
def recursive_biased(directory: Path) -> Ran:
    return run_analysed(directory, *bias_strategies.RECURSIVE_BIASED)


@pytest.fixture(scope="module")
def clean(directory: Path) -> Ran:
    return run_analysed(directory, *bias_strategies.CLEAN)


def test_clean_twin_is_clean_with_enough_signals(clean: Ran) -> None:
    assert clean.returncode == 0, clean.summary.error
    found = clean.bias
    assert found.lookahead is not None
    assert found.recursive is not None
    assert found.lookahead.clean, found.lookahead
    assert (found.lookahead.signals or 0) >= 8  # conclusive, not merely quiet
    assert found.lookahead.biased_indicators is None
    assert found.recursive.max_difference == 0
    assert found.summary == "clean"
    assert clean.summary.results is not None  # the backtest ran too


def test_planted_lookahead_is_found_and_named(lookahead_biased: Ran) -> None:
    assert lookahead_biased.returncode == 0, lookahead_biased.summary.error
    look = lookahead_biased.bias.lookahead
    assert look is not None
    assert not look.clean
    assert look.has_bias
    # The planted indicator first; Freqtrade also lists the signal column it feeds.
    named = look.biased_indicators or []
    assert named[0] == bias_strategies.LOOKAHEAD_INDICATOR, named
    assert bias_strategies.RECURSIVE_INDICATOR not in named
    assert lookahead_biased.bias.recursive is not None
    assert lookahead_biased.bias.recursive.max_difference == 0  # not recursive
    assert lookahead_biased.bias.summary.startswith(
        f"lookahead: {bias_strategies.LOOKAHEAD_INDICATOR}"
    )
    # It "knew" the next close: the backtest looks excellent, which is the point.
    results = lookahead_biased.summary.results
    assert results is not None
    assert (results.profit_total or 0) > 0


def test_planted_recursive_dependence_is_found_and_named(recursive_biased: Ran) -> None:
    assert recursive_biased.returncode == 0, recursive_biased.summary.error
    found = recursive_biased.bias
    assert found.lookahead is not None
    assert found.lookahead.clean
    rec = found.recursive
    assert rec is not None
    assert rec.indicators is not None
    assert [i.name for i in rec.indicators] == [bias_strategies.RECURSIVE_INDICATOR]
    assert rec.max_difference > Decimal("0.01")
    assert rec.startup_candles == [30]
    assert rec.pair == "BTC/USDT"
    assert found.summary.startswith("recursive ")


def test_outputs_are_kept_as_artifacts(lookahead_biased: Ran) -> None:
    names = {a.name for a in lookahead_biased.summary.artifacts}
    assert {
        "bias-analysis.jsonl",
        "lookahead-analysis.csv",
        "lookahead-console.log",
        "recursive-console.log",
    } <= names
    for artifact in lookahead_biased.summary.artifacts:
        assert (lookahead_biased.output / artifact.name).stat().st_size == artifact.size
    # Freqtrade's own CSV export agrees with the findings read from the record.
    csv = (lookahead_biased.output / "lookahead-analysis.csv").read_text()
    assert bias_strategies.LOOKAHEAD_INDICATOR in csv
    assert "True" in csv
