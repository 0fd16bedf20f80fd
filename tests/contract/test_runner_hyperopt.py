"""`tradebot-runner hyperopt` as the container runs it: real Freqtrade hyperopt on the bundled
sample data, the example Strategy (buy_rsi_max, space buy), small epochs and a short window.

* an independent worker, checked against `freqtrade hyperopt` run directly with the same seed;
* two workers sharing one Optuna study in a real PostgreSQL;
* a worker SIGKILLed mid-study and restarted with the same index;
* a strategy with nothing to search in the chosen spaces.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError

from tests.support.postgres import LocalPostgres
from tradebot.api.backtest import BacktestSpec
from tradebot.api.strategy import StrategySpec
from tradebot.domain.freqtrade_config import PARAMETER_FILE_KEY, TRADEBOT_KEY, backtest_config
from tradebot.domain.parameters_hash import parameters_hash
from tradebot.freqtrade import datasets, hyperopt_epochs
from tradebot.freqtrade.hyperopt_summary import EpochRecord, HyperoptSummary

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TIMERANGE = "20240102-20240116"
LOSS = "SharpeHyperOptLoss"
RUN_TIMEOUT = 300
STORAGE_ENV = "TRADEBOT_STUDY_STORAGE"

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _runner_executable() -> str:
    beside = Path(sys.executable).parent / "tradebot-runner"
    found = str(beside) if beside.is_file() else shutil.which("tradebot-runner")
    if found is None:
        pytest.fail("tradebot-runner is not installed: run `pip install -e '.[runner]'`")
    return found


def _env(storage: str | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in (datasets.DATA_ROOT_ENV, "PYTEST_VERSION", STORAGE_ENV)
    }
    if storage is not None:
        env[STORAGE_ENV] = storage
    return env


def _manifest(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())["spec"]
    return spec


@dataclass(frozen=True)
class Case:
    strategy: StrategySpec
    config: dict[str, Any]
    directory: Path

    def write(self, name: str, code: str | None = None) -> tuple[Path, Path]:
        target = self.directory / name
        target.mkdir()
        config_path = target / "config.json"
        config_path.write_text(json.dumps(self.config, indent=2, sort_keys=True))
        strategy_path = target / f"{self.strategy.class_name}.py"
        strategy_path.write_text(code if code is not None else self.strategy.code or "")
        return config_path, strategy_path


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    directory = tmp_path_factory.mktemp("hyperopt")
    spec = BacktestSpec.model_validate(_manifest("backtest.yaml"))
    strategy = StrategySpec.model_validate(_manifest("strategy.yaml"))
    config = backtest_config(
        spec,
        strategy,
        datadir=str(datasets.resolve_datadir("sample", spec.exchange)),
        user_data_dir=str(directory / "unused-user-data"),
    )
    return Case(strategy, config, directory)


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[str]
    output: Path
    summary_path: Path

    def finish(self) -> Result:
        stdout, stderr = self.proc.communicate(timeout=RUN_TIMEOUT)
        message = self.summary_path.read_text()
        full = (self.output / "summary.json").read_text()
        assert stdout.strip().splitlines()[-1] == full
        summary = HyperoptSummary.model_validate_json(full)
        # The termination message is the same summary (whole, when it fits).
        assert HyperoptSummary.model_validate_json(message) == summary
        return Result(self.proc.returncode, summary, json.loads(full), stdout, stderr, self.output)


@dataclass(frozen=True)
class Result:
    returncode: int
    summary: HyperoptSummary
    raw: dict[str, Any]
    stdout: str
    stderr: str
    output: Path

    @property
    def epochs(self) -> list[EpochRecord]:
        path = self.output / "epochs.jsonl"
        return (
            [EpochRecord.model_validate_json(line) for line in path.read_text().splitlines()]
            if path.is_file()
            else []
        )


def start(
    case: Case,
    name: str,
    *,
    worker: int,
    epochs: int,
    study: str = "s",
    storage: str | None = None,
    random_state: int = 7,
    spaces: tuple[str, ...] = ("buy",),
    code: str | None = None,
    extra: tuple[str, ...] = (),
) -> Worker:
    config_path, strategy_path = case.write(name, code)
    output = case.directory / name / "out"
    summary_path = case.directory / name / "termination-log"
    command = [
        _runner_executable(),
        "hyperopt",
        "--config",
        str(config_path),
        "--strategy-file",
        str(strategy_path),
        "--data",
        "sample",
        "--output",
        str(output),
        "--timerange",
        TIMERANGE,
        "--spaces",
        *spaces,
        "--loss",
        LOSS,
        "--epochs",
        str(epochs),
        "--random-state",
        str(random_state),
        "--worker",
        str(worker),
        "--study",
        study,
        "--summary",
        str(summary_path),
        *extra,
    ]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(storage),
        start_new_session=True,
    )
    return Worker(name, proc, output, summary_path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fthypt_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _check_artifacts(result: Result) -> dict[str, Path]:
    files = {}
    for artifact in result.summary.artifacts:
        path = result.output / artifact.name
        assert path.is_file(), artifact.name
        assert artifact.sha256 == _sha256(path), artifact.name
        assert artifact.size == path.stat().st_size
        files[artifact.name] = path
    return files


def _stdout_epochs(result: Result) -> list[EpochRecord]:
    return [
        r
        for r in (hyperopt_epochs.parse_epoch_line(line) for line in result.stdout.splitlines())
        if r is not None
    ]


# ---- (a) an independent worker -------------------------------------------------------------
@pytest.fixture(scope="module")
def independent(case: Case) -> Result:
    return start(case, "independent", worker=2, epochs=8, random_state=5).finish()


@pytest.fixture(scope="module")
def direct(case: Case) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """`freqtrade hyperopt` without the runner: seed 5 + worker 2, same config and window."""
    work = case.directory / "direct"
    strategies = work / "user_data" / "strategies"
    strategies.mkdir(parents=True)
    name = case.strategy.class_name
    (strategies / f"{name}.py").write_text(case.strategy.code or "")
    (strategies / f"{name}.json").write_text(
        json.dumps(case.config[TRADEBOT_KEY][PARAMETER_FILE_KEY])
    )
    config_path = work / "config.json"
    config_path.write_text(json.dumps(case.config))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tradebot.freqtrade.offline",
            "hyperopt",
            "--config",
            str(config_path),
            "--strategy",
            name,
            "--strategy-path",
            str(strategies),
            "--userdir",
            str(work / "user_data"),
            "--datadir",
            case.config["datadir"],
            "--timerange",
            TIMERANGE,
            "--spaces",
            "buy",
            "--hyperopt-loss",
            LOSS,
            "--epochs",
            "8",
            "--job-workers",
            "1",
            "--random-state",
            "7",
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
        cwd=work,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    results = work / "user_data" / "hyperopt_results"
    latest = json.loads((results / ".last_result.json").read_text())["latest_hyperopt"]
    exported = json.loads((strategies / f"{name}.json").read_text())
    return _fthypt_lines(results / latest), exported


def test_independent_worker_reports_its_epochs(independent: Result) -> None:
    assert independent.returncode == 0, independent.stderr[-3000:]
    summary = independent.summary
    assert summary.ok
    assert summary.error is None
    assert (summary.worker, summary.storage, summary.strategy) == (
        2,
        "independent",
        "EmaRsiStrategy",
    )
    assert summary.epochs_done == 8
    assert summary.study_epochs_done is None
    epochs = independent.epochs
    assert [e.epoch for e in epochs] == list(range(1, 9))
    assert {e.worker for e in epochs} == {2}
    # Each epoch on stdout as it finished, the same records as the file.
    assert _stdout_epochs(independent) == epochs
    assert summary.code_hash
    assert summary.config_hash
    assert summary.data_hash


def test_independent_artifacts_and_best(independent: Result) -> None:
    files = _check_artifacts(independent)
    fthypt = [p for n, p in files.items() if n.endswith(".fthypt")]
    assert len(fthypt) == 1
    assert {"EmaRsiStrategy.json", "config.json", "freqtrade.log"} <= set(files)
    lines = _fthypt_lines(fthypt[0])
    epochs = independent.epochs
    assert [Decimal(str(line["loss"])).quantize(Decimal("1E-8")) for line in lines] == [
        e.loss for e in epochs
    ]

    best = independent.summary.best
    assert best is not None
    assert best.loss == min(e.loss for e in epochs)
    assert best.epoch == min(epochs, key=lambda e: (e.loss, e.epoch)).epoch
    text = files["EmaRsiStrategy.json"].read_text()
    assert best.parameters == text
    exported = json.loads(text)
    assert set(exported) == {"strategy_name", "params", "ft_stratparam_v", "export_time"}
    assert best.parameters_hash == parameters_hash(exported["params"])
    line = lines[best.epoch - 1]
    assert exported["params"]["buy"] == line["params_details"]["buy"]
    assert best.results is not None
    metrics = line["results_metrics"]
    assert best.results.trades == metrics["total_trades"]
    assert best.results.profit_total == Decimal(str(metrics["profit_total"])).quantize(
        Decimal("1E-8")
    )
    assert best.results.max_drawdown == Decimal(str(metrics["max_drawdown_account"])).quantize(
        Decimal("1E-8")
    )
    # Every epoch's hash is that of its own parameters as the file would hold them.
    for epoch, fline in zip(epochs, lines, strict=True):
        assert epoch.trades == fline["results_metrics"]["total_trades"]
        if epoch.epoch == best.epoch:
            assert epoch.parameters_hash == best.parameters_hash


def test_independent_worker_matches_freqtrade_run_directly(
    independent: Result, direct: tuple[list[dict[str, Any]], dict[str, Any]]
) -> None:
    lines, exported = direct
    assert [Decimal(str(line["loss"])).quantize(Decimal("1E-8")) for line in lines] == [
        e.loss for e in independent.epochs
    ]
    assert independent.summary.best is not None
    ours = json.loads(independent.summary.best.parameters)
    assert {k: v for k, v in ours.items() if k != "export_time"} == {
        k: v for k, v in exported.items() if k != "export_time"
    }


# ---- (d) nothing to search -----------------------------------------------------------------
def test_no_parameters_in_the_spaces_is_refused_naming_them(case: Case) -> None:
    code = (
        (case.strategy.code or "")
        .replace('    buy_rsi_max = IntParameter(50, 80, default=70, space="buy")\n', "")
        .replace("self.buy_rsi_max.value", "70")
    )
    assert code != case.strategy.code
    result = start(
        case, "no-parameters", worker=0, epochs=3, spaces=("buy", "sell"), code=code
    ).finish()
    assert result.returncode == 1
    assert not result.summary.ok
    assert result.summary.error == (
        "strategy EmaRsiStrategy has no hyperoptable parameters in the chosen space(s) buy, sell"
    )
    # Refused before Freqtrade started: no epoch, no log of it.
    assert result.epochs == []
    assert not (result.output / "freqtrade.log").exists()
    assert result.summary.best is None


# ---- (b) two workers, one study ------------------------------------------------------------
def _storage_url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+psycopg://", 1)


def _trials(url: str, study: str) -> list[FrozenTrial]:
    return optuna.load_study(study_name=study, storage=url).get_trials(deepcopy=False)


def _check_study(url: str, study: str, results: list[Result], planned: int) -> None:
    trials = _trials(url, study)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == planned
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # No trial counted twice: each COMPLETE trial is one epoch of exactly one worker, and no
    # point was evaluated twice.
    numbers = sorted(t.number for t in complete)
    assert len(set(numbers)) == planned
    reported = [e.epoch for r in results for e in r.epochs]
    assert sorted(reported) == [n + 1 for n in numbers]
    params = [json.dumps(t.params, sort_keys=True) for t in complete]
    assert len(set(params)) == planned
    by_number = {t.number: t for t in complete}
    for result in results:
        for epoch in result.epochs:
            trial = by_number[epoch.epoch - 1]
            assert (
                trial.user_attrs[hyperopt_epochs.ATTR_WORKER]
                == epoch.worker
                == result.summary.worker
            )
            assert epoch.loss == Decimal(str(trial.value)).quantize(Decimal("1E-8"))
    best = min(complete, key=lambda t: (t.value, t.number))
    best_loss = Decimal(str(best.value)).quantize(Decimal("1E-8"))
    for result in results:
        # Each worker reports the study as it last saw it: the last to finish saw it whole.
        assert result.summary.study_epochs_done is not None
        assert result.summary.epochs_done <= result.summary.study_epochs_done <= planned
        assert result.summary.best is not None
        assert result.summary.best.loss >= best_loss
    last = max(results, key=lambda r: r.summary.finished_at or datetime.min.replace(tzinfo=UTC))
    assert last.summary.study_epochs_done == planned
    reported_best = last.summary.best
    assert reported_best is not None
    assert reported_best.epoch == best.number + 1
    assert reported_best.loss == best_loss
    exported = json.loads(reported_best.parameters)
    assert exported["params"]["buy"] == best.params
    assert reported_best.parameters_hash == parameters_hash(exported["params"])
    assert reported_best.results is not None
    assert (
        reported_best.results.trades == best.user_attrs[hyperopt_epochs.ATTR_STATS]["total_trades"]
    )


def _no_secret(result: Result, url: str) -> None:
    host_part = url.split("@", 1)[-1]
    texts = [result.stdout, result.stderr, json.dumps(result.raw)]
    texts += [
        p.read_text(errors="replace")
        for p in result.output.iterdir()
        if p.suffix in (".log", ".json", ".jsonl")
    ]
    for text in texts:
        assert url not in text
        assert host_part not in text


@pytest.fixture
def storage(postgres_server: LocalPostgres) -> Iterator[str]:
    with postgres_server.scratch_database("study_") as dsn:
        yield _storage_url(dsn)


def test_two_workers_share_one_study(case: Case, storage: str) -> None:
    workers = [
        start(
            case,
            f"shared-{i}",
            worker=i,
            epochs=5,
            storage=storage,
            study="two",
            random_state=11,
            extra=("--sampler", "TPESampler"),
        )
        for i in (0, 1)
    ]
    results = [w.finish() for w in workers]
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.summary.ok
        assert result.summary.storage == "shared"
        assert result.summary.epochs_done == 5
        assert _stdout_epochs(result) == result.epochs
        assert "Using optuna sampler TPESampler" in (result.output / "freqtrade.log").read_text()
        _check_artifacts(result)
        _no_secret(result, storage)
    _check_study(storage, "two", results, planned=10)


# ---- (c) a worker killed mid-study ---------------------------------------------------------
def _own_trials(url: str, study: str, index: int) -> list[FrozenTrial]:
    try:
        return [
            t for t in _trials(url, study) if t.user_attrs.get(hyperopt_epochs.ATTR_WORKER) == index
        ]
    except (KeyError, optuna.exceptions.StorageInternalError, SQLAlchemyError):
        return []  # the study or its tables are not there yet


def _kill_mid_epoch(url: str, study: str, worker: Worker, index: int, min_done: int) -> None:
    """SIGKILL the worker's whole process group at a moment it has `min_done` COMPLETE trials
    and one RUNNING: frozen first (SIGSTOP), so the RUNNING trial seen is the one it dies in."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        assert worker.proc.poll() is None, "the worker ended before it could be killed"
        trials = _own_trials(url, study, index)
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        if len(done) >= min_done and any(t.state == TrialState.RUNNING for t in trials):
            os.killpg(worker.proc.pid, signal.SIGSTOP)
            if any(t.state == TrialState.RUNNING for t in _own_trials(url, study, index)):
                os.killpg(worker.proc.pid, signal.SIGKILL)
                return
            os.killpg(worker.proc.pid, signal.SIGCONT)
        time.sleep(0.03)
    pytest.fail("the worker never reached the middle of an epoch")


def test_killed_worker_restarts_and_no_trial_counts_twice(case: Case, storage: str) -> None:
    killed = start(
        case, "killed", worker=0, epochs=6, storage=storage, study="kill", random_state=21
    )
    other = start(case, "other", worker=1, epochs=4, storage=storage, study="kill", random_state=21)
    _kill_mid_epoch(storage, "kill", killed, 0, min_done=2)
    killed.proc.communicate(timeout=60)
    assert killed.proc.returncode == -signal.SIGKILL
    # What the kill left: a trial RUNNING that nobody will ever tell.
    left = [
        t for t in _trials(storage, "kill") if t.user_attrs.get(hyperopt_epochs.ATTR_WORKER) == 0
    ]
    stale = [t for t in left if t.state == TrialState.RUNNING]
    done_before = len([t for t in left if t.state == TrialState.COMPLETE])
    assert len(stale) == 1
    assert 2 <= done_before < 6

    restarted = start(
        case, "restarted", worker=0, epochs=6, storage=storage, study="kill", random_state=21
    ).finish()
    result_other = other.finish()
    for result in (restarted, result_other):
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.summary.ok
    assert restarted.summary.stale_trials_failed == 1
    assert restarted.summary.epochs_owed == 6 - done_before
    assert restarted.summary.epochs_done == 6
    assert result_other.summary.epochs_done == 4
    # The restarted worker repeats the epochs its killed run completed, then adds its own.
    assert len(restarted.epochs) == 6
    trials = {t.number: t for t in _trials(storage, "kill")}
    assert trials[stale[0].number].state == TrialState.FAIL
    assert trials[stale[0].number].user_attrs[hyperopt_epochs.ATTR_DROPPED] == "stale"
    _check_study(storage, "kill", [restarted, result_other], planned=10)


# ---- a space smaller than the epochs ---------------------------------------------------------
def test_duplicates_are_failed_not_left_running(case: Case, storage: str) -> None:
    code = (case.strategy.code or "").replace(
        "IntParameter(50, 80, default=70", "IntParameter(50, 53, default=52"
    )
    assert code != case.strategy.code
    result = start(
        case, "small-space", worker=0, epochs=6, storage=storage, study="small", code=code
    ).finish()
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.summary.ok
    trials = _trials(storage, "small")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    # Four points exist: each evaluated once, every further proposal failed as a duplicate.
    assert sorted(t.params["buy_rsi_max"] for t in complete) == [50, 51, 52, 53]
    assert result.summary.epochs_done == 4
    assert [e.epoch for e in result.epochs] == sorted(t.number + 1 for t in complete)
    assert failed
    assert {t.user_attrs[hyperopt_epochs.ATTR_DROPPED] for t in failed} == {"duplicate"}
    assert result.summary.duplicates_dropped == len(failed)
    assert not [t for t in trials if t.state not in (TrialState.COMPLETE, TrialState.FAIL)]
