"""The runner's contract, run the way the container runs it: `tradebot-runner backtest` as a
subprocess on the bundled sample data, with the example Strategy and Backtest.

Its figures are checked against a direct `freqtrade backtesting` of the same config and data
(through the same offline entrypoint: there is no network here), read with Freqtrade's own
result loader rather than the runner's parser.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from tradebot.api.backtest import BacktestSpec
from tradebot.api.strategy import StrategySpec
from tradebot.api.types import MONEY_QUANTUM
from tradebot.domain.freqtrade_config import (
    PARAMETER_FILE_KEY,
    TRADEBOT_KEY,
    backtest_config,
    config_hash,
)
from tradebot.freqtrade import datasets
from tradebot.freqtrade.summary import RunSummary

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
RUN_TIMEOUT = 120


def _runner_executable() -> str:
    beside = Path(sys.executable).parent / "tradebot-runner"
    found = str(beside) if beside.is_file() else shutil.which("tradebot-runner")
    if found is None:
        pytest.fail("tradebot-runner is not installed: run `pip install -e '.[runner]'`")
    return found


@dataclass(frozen=True)
class Case:
    """The example Backtest of the example Strategy, written out as the operator would."""

    spec: BacktestSpec
    strategy: StrategySpec
    config: dict[str, Any]
    directory: Path

    @property
    def strategy_file(self) -> Path:
        return self.directory / f"{self.strategy.class_name}.py"

    @property
    def timerange(self) -> str:
        assert self.spec.timerange is not None
        return self.spec.timerange.freqtrade()

    def write(
        self, name: str, config: dict[str, Any] | None = None, code: str | None = None
    ) -> tuple[Path, Path]:
        """A config and a strategy file in their own directory, like the mounted ConfigMap."""
        target = self.directory / name
        target.mkdir()
        config_path = target / "config.json"
        config_path.write_text(json.dumps(config or self.config, indent=2, sort_keys=True))
        strategy_path = target / self.strategy_file.name
        strategy_path.write_text(code if code is not None else self.strategy.code or "")
        return config_path, strategy_path


@dataclass(frozen=True)
class RunnerResult:
    returncode: int
    summary: dict[str, Any]
    stdout: str
    stderr: str
    output: Path


def _manifest(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())["spec"]
    return spec


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    directory = tmp_path_factory.mktemp("runner")
    spec = BacktestSpec.model_validate(_manifest("backtest.yaml"))
    strategy = StrategySpec.model_validate(_manifest("strategy.yaml"))
    assert spec.data.bundled == "sample"
    config = backtest_config(
        spec,
        strategy,
        datadir=str(datasets.resolve_datadir("sample", spec.exchange)),
        user_data_dir=str(directory / "unused-user-data"),
    )
    made = Case(spec, strategy, config, directory)
    made.strategy_file.write_text(strategy.code or "")
    return made


def run_runner(
    case: Case,
    name: str,
    *,
    config: dict[str, Any] | None = None,
    code: str | None = None,
    data: str = "sample",
    timerange: str | None = "example",
) -> RunnerResult:
    config_path, strategy_path = case.write(name, config, code)
    output = case.directory / name / "out"
    summary_path = case.directory / name / "termination-log"
    command = [
        _runner_executable(),
        "backtest",
        "--config",
        str(config_path),
        "--strategy-file",
        str(strategy_path),
        "--data",
        data,
        "--output",
        str(output),
        "--summary",
        str(summary_path),
    ]
    if timerange is not None:
        command += ["--timerange", case.timerange if timerange == "example" else timerange]
    proc = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
        env={**_env(), "TRADEBOT_CORRELATION_ID": f"test-{name}"},
    )
    message = summary_path.read_text()
    assert (output / "summary.json").read_text() == message
    assert proc.stdout.strip().splitlines()[-1] == message
    summary = json.loads(message)
    RunSummary.model_validate(summary)  # the operator's reader accepts it
    return RunnerResult(proc.returncode, summary, proc.stdout, proc.stderr, output)


def _env() -> dict[str, str]:
    """The environment of a container: the checkout's data is what "sample" means, whatever
    the caller's shell says, and nothing tells Freqtrade it runs under pytest (it would skip
    setting up its logging)."""
    return {
        k: v for k, v in os.environ.items() if k not in (datasets.DATA_ROOT_ENV, "PYTEST_VERSION")
    }


@pytest.fixture(scope="module")
def first(case: Case) -> RunnerResult:
    return run_runner(case, "first")


@pytest.fixture(scope="module")
def second(case: Case) -> RunnerResult:
    return run_runner(case, "second")


@pytest.fixture(scope="module")
def direct(case: Case) -> dict[str, Any]:
    """`freqtrade backtesting` without the runner, same config, data and timerange; its
    statistics as Freqtrade's own loader reads them."""
    from freqtrade.data.btanalysis import load_backtest_stats

    work = case.directory / "direct"
    strategies = work / "user_data" / "strategies"
    strategies.mkdir(parents=True)
    shutil.copy(case.strategy_file, strategies)
    parameter_file = case.config[TRADEBOT_KEY][PARAMETER_FILE_KEY]
    (strategies / f"{case.strategy.class_name}.json").write_text(json.dumps(parameter_file))
    config_path = work / "config.json"
    config_path.write_text(json.dumps(case.config))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tradebot.freqtrade.offline",
            "backtesting",
            "--config",
            str(config_path),
            "--strategy",
            case.strategy.class_name,
            "--strategy-path",
            str(strategies),
            "--userdir",
            str(work / "user_data"),
            "--datadir",
            case.config["datadir"],
            "--timerange",
            case.timerange,
            "--cache",
            "none",
            "--export",
            "trades",
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
        cwd=work,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    stats = load_backtest_stats(work / "user_data" / "backtest_results")
    result: dict[str, Any] = stats["strategy"][case.strategy.class_name]
    return result


# ---- a good run ----------------------------------------------------------------------------
def test_runner_succeeds_with_trades(first: RunnerResult) -> None:
    assert first.returncode == 0, first.stderr[-3000:]
    summary = first.summary
    assert summary["ok"] is True
    assert "error" not in summary
    assert summary["exitCode"] == 0
    assert summary["strategy"] == "EmaRsiStrategy"
    assert summary["results"]["trades"] > 0
    assert summary["freqtradeVersion"].startswith("2026.")
    assert summary["startedAt"] <= summary["finishedAt"]


FIGURES = {
    "profitTotal": "profit_total",
    "profitTotalAbs": "profit_total_abs",
    "maxDrawdown": "max_drawdown_account",
    "maxDrawdownAbs": "max_drawdown_abs",
    "winRate": "winrate",
    "sharpe": "sharpe",
    "sortino": "sortino",
    "calmar": "calmar",
    "profitFactor": "profit_factor",
    "marketChange": "market_change",
    "startingBalance": "starting_balance",
    "finalBalance": "final_balance",
}
COUNTS = {"trades": "total_trades", "wins": "wins", "losses": "losses", "draws": "draws"}


def test_figures_match_a_direct_freqtrade_run(first: RunnerResult, direct: dict[str, Any]) -> None:
    results = first.summary["results"]
    assert direct["total_trades"] > 0
    for wire, key in FIGURES.items():
        expected = Decimal(str(direct[key])).quantize(MONEY_QUANTUM)
        assert Decimal(results[wire]) == expected, wire
        assert results[wire] == format(expected, "f"), wire  # an exact 8-place string
    for wire, key in COUNTS.items():
        assert results[wire] == direct[key], wire
    assert results["backtestStart"] == "2024-01-02T00:00:00Z"
    assert results["backtestEnd"] == "2024-02-01T00:00:00Z"
    assert direct["backtest_start"] == "2024-01-02 00:00:00"


def test_artifacts_are_the_files_on_disk(first: RunnerResult) -> None:
    artifacts = {a["name"]: a for a in first.summary["artifacts"]}
    names = set(artifacts)
    assert {"config.json", "freqtrade.log"} <= names
    assert len([n for n in names if n.endswith(".zip")]) == 1
    assert len([n for n in names if n.endswith(".meta.json")]) == 1
    for name, artifact in artifacts.items():
        content = (first.output / name).read_bytes()
        assert artifact["sha256"] == hashlib.sha256(content).hexdigest(), name
        assert artifact["size"] == len(content), name


def test_hashes_describe_the_inputs(first: RunnerResult, case: Case) -> None:
    summary = first.summary
    assert summary["configHash"] == config_hash(case.config)
    assert summary["codeHash"] == hashlib.sha256(case.strategy_file.read_bytes()).hexdigest()
    # Both pairs' candles, hashed as documented: relative path, size, content, path-sorted.
    datadir = Path(case.config["datadir"])
    digest = hashlib.sha256()
    for rel in ("BTC_USDT-5m.feather", "ETH_USDT-5m.feather"):
        content = (datadir / rel).read_bytes()
        digest.update(f"{rel}\n{len(content)}\n".encode() + content)
    assert summary["dataHash"] == digest.hexdigest()


def test_the_same_run_twice_gives_the_same_answer(
    first: RunnerResult, second: RunnerResult
) -> None:
    assert second.returncode == 0
    for key in ("results", "configHash", "dataHash", "codeHash", "strategy"):
        assert first.summary[key] == second.summary[key], key


def test_runner_logs_json_lines_with_the_correlation_id(first: RunnerResult) -> None:
    lines = [json.loads(line) for line in first.stderr.splitlines() if line.strip()]
    assert lines, "the runner logged nothing"
    assert all(line["correlation_id"] == "test-first" for line in lines)
    events = [line["event"] for line in lines]
    assert {"backtest.start", "freqtrade.command", "backtest.done"} <= set(events)
    command = next(line["argv"] for line in lines if line["event"] == "freqtrade.command")
    assert command[command.index("--cache") + 1] == "none"
    assert "backtesting" in command


# ---- failures --------------------------------------------------------------------------------
def _assert_failed(result: RunnerResult) -> str:
    assert result.returncode != 0
    assert result.summary["ok"] is False
    assert "results" not in result.summary
    error: str = result.summary["error"]
    assert "\n" not in error
    names = {a["name"] for a in result.summary["artifacts"]}
    assert "freqtrade.log" in names  # the evidence is kept
    return error


def test_strategy_with_a_syntax_error(case: Case) -> None:
    code = (case.strategy.code or "").splitlines()
    index = next(i for i, line in enumerate(code) if "def populate_indicators" in line)
    code[index] = code[index].replace("(self,", "(self,,")
    error = _assert_failed(run_runner(case, "syntax", code="\n".join(code) + "\n"))
    assert "Impossible to load Strategy 'EmaRsiStrategy'" in error
    assert f"line {index + 1}" in error


def test_pair_not_in_the_markets(case: Case) -> None:
    config = copy.deepcopy(case.config)
    config["exchange"]["pair_whitelist"] = ["BTC/USDT", "DOGE/USDT"]
    error = _assert_failed(run_runner(case, "pair", config=config))
    assert "DOGE/USDT" in error
    assert "not in the offline binance markets" in error


def test_timerange_outside_the_data(case: Case) -> None:
    error = _assert_failed(run_runner(case, "timerange", timerange="20230101-20230201"))
    assert "No data found" in error
    assert "20230101-20230201" in error
    assert "data starts at 2024-01-01" in error


def test_config_freqtrade_rejects_fails_although_freqtrade_exits_zero(case: Case) -> None:
    config = copy.deepcopy(case.config)
    config["stake_amount"] = -5
    result = run_runner(case, "schema", config=config)
    error = _assert_failed(result)
    assert result.summary["exitCode"] == 0
    assert error.startswith("Configuration error:")
    assert "minimum" in error


def test_pair_without_candles_fails_instead_of_being_dropped(case: Case) -> None:
    partial = case.directory / "partial-data"
    partial.mkdir()
    shutil.copy(Path(case.config["datadir"]) / "BTC_USDT-5m.feather", partial)
    error = _assert_failed(run_runner(case, "partial", data=str(partial)))
    assert error == f"no candles for ETH/USDT in {partial.resolve()}"


def _with_line_in_populate_indicators(case: Case, statement: str) -> tuple[str, int]:
    code = (case.strategy.code or "").splitlines()
    index = next(i for i, line in enumerate(code) if '"rsi"' in line and "_rsi(" in line)
    code.insert(index + 1, " " * 8 + statement)
    return "\n".join(code) + "\n", index + 2


def test_exception_in_the_strategy(case: Case) -> None:
    code, line = _with_line_in_populate_indicators(case, 'raise ValueError("boom")')
    error = _assert_failed(run_runner(case, "raises", code=code, timerange="20240102-20240103"))
    assert error == f"ValueError: boom (EmaRsiStrategy.py line {line}, in populate_indicators)"


def test_strategy_that_kills_the_interpreter_leaves_the_runner_standing(case: Case) -> None:
    code, _ = _with_line_in_populate_indicators(case, "import os; os.abort()")
    result = run_runner(case, "abort", code=code, timerange="20240102-20240103")
    error = _assert_failed(result)
    assert error.startswith("freqtrade was killed by SIGABRT")
    assert result.summary["exitCode"] < 0


def test_failures_before_freqtrade_starts_are_reported_too(case: Case) -> None:
    unknown_set = run_runner(case, "unknown-set", data="huge")
    assert unknown_set.returncode == 1
    assert unknown_set.summary["ok"] is False
    assert unknown_set.summary["error"] == "unknown bundled data set 'huge' (bundled: sample)"
    assert "exitCode" not in unknown_set.summary  # Freqtrade never ran

    config_path, strategy_path = case.write("not-json")
    config_path.write_text("{not json")
    output = case.directory / "not-json" / "out"
    proc = subprocess.run(
        [
            _runner_executable(),
            "backtest",
            "--config",
            str(config_path),
            "--strategy-file",
            str(strategy_path),
            "--data",
            "sample",
            "--output",
            str(output),
            "--summary",
            str(output / "summary.json"),
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
        env=_env(),
    )
    assert proc.returncode == 1
    summary = json.loads((output / "summary.json").read_text())
    assert summary["ok"] is False
    assert summary["error"].startswith(f"config {config_path} is not JSON")
    assert summary["strategy"] == "EmaRsiStrategy"  # from the file name, for the operator


def test_command_line_errors_exit_2() -> None:
    proc = subprocess.run(
        [_runner_executable(), "backtest", "--config", "x.json"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 2
    assert "--strategy-file" in proc.stderr
