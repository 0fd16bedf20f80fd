"""A Hyperopt's parameter set, as a Strategy with spec.parametersFrom hands it to a Backtest,
run by the real runner and real Freqtrade: every section of the exported file (buy, roi,
stoploss, trailing) is what Freqtrade ran with, and another set gives another result."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.contract.test_runner_backtest import Case, RunnerResult, run_runner
from tradebot.api.backtest import BacktestSpec
from tradebot.api.strategy import StrategySpec
from tradebot.domain.freqtrade_config import backtest_config
from tradebot.domain.strategy_parameters import run_parameter_file
from tradebot.freqtrade import datasets

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _exported(params: dict[str, Any]) -> str:
    """The file `freqtrade hyperopt` writes: Hyperopt status.best.parameters."""
    return json.dumps(
        {
            "strategy_name": "EmaRsiStrategy",
            "params": params,
            "ft_stratparam_v": 1,
            "export_time": "2026-11-29 10:00:00.000000+00:00",
        },
        indent=4,
    )


TIGHT = {
    "buy": {"buy_rsi_max": 60},
    "roi": {"0": 0.011, "30": 0.004, "120": 0},
    "stoploss": {"stoploss": -0.017},
    "trailing": {
        "trailing_stop": True,
        "trailing_stop_positive": 0.003,
        "trailing_stop_positive_offset": 0.008,
        "trailing_only_offset_is_reached": True,
    },
}
LOOSE = {
    "buy": {"buy_rsi_max": 78},
    "roi": {"0": 0.2},
    "stoploss": {"stoploss": -0.3},
    "trailing": {"trailing_stop": False},
}


def _case(tmp_path: Path, params: dict[str, Any]) -> Case:
    import yaml

    spec = BacktestSpec.model_validate(
        yaml.safe_load((EXAMPLES / "backtest.yaml").read_text())["spec"]
    )
    raw = yaml.safe_load((EXAMPLES / "strategy.yaml").read_text())["spec"]
    del raw["parameters"]
    raw["parametersFrom"] = {"hyperoptRef": {"name": "search"}}
    strategy = StrategySpec.model_validate(raw)
    # What the Strategy controller resolved into status, as the queue reads it.
    resolved = {"spec": strategy.to_wire(), "status": {"parameters": _exported(params)}}
    config = backtest_config(
        spec,
        strategy,
        datadir=str(datasets.resolve_datadir("sample", spec.exchange)),
        user_data_dir=str(tmp_path / "unused-user-data"),
        parameter_file=run_parameter_file(resolved),
    )
    made = Case(spec, strategy, config, tmp_path)
    made.strategy_file.write_text(strategy.code or "")
    return made


def _ran_with(result: RunnerResult) -> dict[str, Any]:
    """The strategy settings Freqtrade reports it ran with, from its own result file."""
    assert result.returncode == 0, result.stderr[-3000:]
    archive = next(result.output.glob("*.zip"))
    with zipfile.ZipFile(archive) as z:
        name = next(
            n
            for n in z.namelist()
            if n.endswith(".json") and "_config" not in n and "_market_change" not in n
        )
        stats = json.loads(z.read(name))
    found: dict[str, Any] = stats["strategy"]["EmaRsiStrategy"]
    return found


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> RunnerResult:
    return run_runner(_case(tmp_path_factory.mktemp("tight"), TIGHT), "run")


@pytest.fixture(scope="module")
def loose(tmp_path_factory: pytest.TempPathFactory) -> RunnerResult:
    return run_runner(_case(tmp_path_factory.mktemp("loose"), LOOSE), "run")


def test_freqtrade_runs_every_section_of_the_hyperopt_set(tight: RunnerResult) -> None:
    ran = _ran_with(tight)
    assert ran["stoploss"] == -0.017
    assert ran["minimal_roi"] == {"0": 0.011, "30": 0.004, "120": 0}
    assert ran["trailing_stop"] is True
    assert ran["trailing_stop_positive"] == 0.003
    assert ran["trailing_stop_positive_offset"] == 0.008
    assert tight.summary["results"]["trades"] > 0


def test_another_set_is_another_result(tight: RunnerResult, loose: RunnerResult) -> None:
    ran = _ran_with(loose)
    assert (ran["stoploss"], ran["minimal_roi"], ran["trailing_stop"]) == (-0.3, {"0": 0.2}, False)
    assert tight.summary["configHash"] != loose.summary["configHash"]
    assert tight.summary["results"] != loose.summary["results"]
