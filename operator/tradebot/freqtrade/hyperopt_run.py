"""tradebot-runner hyperopt: one worker of a Freqtrade hyperopt search, in a Hyperopt's Job.

    tradebot-runner hyperopt --config PATH --strategy-file PATH --data NAME_OR_DIR
                             --output DIR --timerange RANGE [--markets PATH]
                             --spaces S [S ...] --loss NAME --epochs N
                             [--sampler NAME] [--random-state N] [--min-trades N]
                             [--jobs N] [--summary PATH]
                             --worker INDEX --study NAME

Arguments (the controller's side of the contract):

* --config, --strategy-file, --data, --markets, --output: as for `tradebot-runner backtest`
  (the config is a backtest config: the operator's generated Freqtrade config).
* --timerange: the training window, Freqtrade's format (required: a search always has one).
* --spaces: Freqtrade spaces (buy sell enter exit roi stoploss trailing protection trades).
  A chosen space the strategy has no parameter for is skipped (Freqtrade's
  --ignore-missing-spaces); when none of the chosen spaces has one, the worker refuses to
  start: exit 1, the summary's error names the spaces.
* --loss: Freqtrade's loss class name (e.g. SharpeHyperOptLoss).
* --epochs N: THIS worker's share of the search's epochs (the controller splits the total).
* --sampler: an Optuna sampler Freqtrade knows (TPESampler, NSGAIIISampler, ...); default:
  the strategy's own (Freqtrade's default NSGAIIISampler).
* --random-state N: the search's seed; this worker uses N + INDEX (so no two workers propose
  the same points). Left out: Freqtrade picks a random seed.
* --min-trades N: Freqtrade's --min-trades.
* --jobs N: Freqtrade's --job-workers inside this worker; default 1 (the search's parallelism
  is its worker pods).
* --worker INDEX: this worker's index, 0-based, stable across restarts of its pod.
* --study NAME: the Optuna study's name, the same for all workers of one Hyperopt.

Environment:

* TRADEBOT_STUDY_STORAGE: the shared study's storage URL (`postgresql+psycopg://...`). A
  secret: never logged, never written to the summary. Set -> shared mode: every worker asks
  and tells trials of the one study `--study NAME`. Unset -> independent mode: Freqtrade's
  own in-memory study, seed randomState + INDEX; the operator merges the workers' results.
* TRADEBOT_CORRELATION_ID: as for backtest (added to every log line).

Shared mode guarantees: each trial carries the user attribute `tradebot_worker` = INDEX. A
restarted worker (same INDEX) first fails its own trials left RUNNING by the killed pod, then
runs only the epochs it still owes (its share minus its COMPLETE trials); duplicates Freqtrade
drops are told FAIL, never left RUNNING. Its epochs.jsonl and stdout repeat the epochs its
earlier runs completed (same epoch numbers: keyed by epoch, they are idempotent).

Output:

* DIR/summary.json, the termination message (/dev/termination-log when writable, or
  --summary PATH) and the last stdout line: a HyperoptSummary (hyperopt_summary.py).
  `best` is the best epoch of the whole study (shared) or of this worker (independent); its
  `parameters` is Freqtrade's parameter file text exactly (`<Strategy>.json`), its results
  the epoch's in-sample figures (8 decimals, like a Backtest's).
* DIR/epochs.jsonl: one EpochRecord JSON per epoch of this worker; and on stdout, as each
  epoch finishes, one line `EPOCH_PREFIX + EpochRecord JSON`. `epoch` is the Optuna trial
  number + 1 (shared) or this worker's own epoch number (independent).
* Artifacts (in the summary with sha256 and size): Freqtrade's `.fthypt` epochs file,
  `<Strategy>.json` (the best parameters), config.json, freqtrade.log, freqtrade-console.log.

Exit status: 0 when the worker ran its epochs (or owed none) and read them back, 1 otherwise
(the summary's error says why), 2 for a command line that does not parse.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from structlog.typing import FilteringBoundLogger

from tradebot.api.backtest import Artifact
from tradebot.api.hyperopt import LOSS_FUNCTIONS
from tradebot.domain.freqtrade_config import config_hash
from tradebot.freqtrade import (
    datasets,
    freqtrade_log,
    hyperopt_epochs,
    offline,
    parameters,
    run_files,
)
from tradebot.freqtrade.hyperopt_summary import (
    EPOCH_PREFIX,
    EPOCHS_NAME,
    BestEpoch,
    EpochRecord,
    HyperoptSummary,
)
from tradebot.freqtrade.study_storage import STORAGE_ENV, redact
from tradebot.freqtrade.summary import TERMINATION_MESSAGE_LIMIT

LOG_NAME = "freqtrade.log"
CONSOLE_NAME = "freqtrade-console.log"
CONFIG_NAME = "config.json"
SUMMARY_NAME = run_files.SUMMARY_NAME
LAST_RESULT = ".last_result.json"
POLL_S = 0.2
# Spaces made of the strategy's own parameters; the others are Freqtrade's built-in ones.
PARAMETER_SPACES = {"buy", "sell", "enter", "exit", "protection"}
SPACES = ("buy", "sell", "enter", "exit", "roi", "stoploss", "trailing", "protection", "trades")
SAMPLERS = (
    "TPESampler",
    "GPSampler",
    "CmaEsSampler",
    "NSGAIISampler",
    "NSGAIIISampler",
    "QMCSampler",
)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _index(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `hyperopt` subcommand on the runner's parser."""
    ho = commands.add_parser(
        "hyperopt",
        help="run one worker of a `freqtrade hyperopt` search",
        description="Run one worker of a Freqtrade hyperopt search; with "
        f"${STORAGE_ENV} set, the workers share one Optuna study.",
    )
    run_files.add_run_inputs(ho)
    ho.add_argument("--output", type=Path, required=True, help="artifact directory")
    ho.add_argument(
        "--timerange",
        required=True,
        help="training window, Freqtrade's format, e.g. 20240102-20240201",
    )
    ho.add_argument(
        "--markets",
        type=Path,
        default=None,
        help="the exchange's markets saved with the data (default: bundled)",
    )
    ho.add_argument(
        "--spaces",
        nargs="+",
        choices=SPACES,
        required=True,
        metavar="SPACE",
        help=f"spaces to search: {' '.join(SPACES)}",
    )
    ho.add_argument(
        "--loss",
        required=True,
        choices=LOSS_FUNCTIONS,
        metavar="NAME",
        help="Freqtrade loss class, e.g. SharpeHyperOptLoss",
    )
    ho.add_argument(
        "--epochs", type=_positive, required=True, help="this worker's share of the epochs"
    )
    ho.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default=None,
        metavar="NAME",
        help=f"Optuna sampler ({', '.join(SAMPLERS)}); default: the strategy's",
    )
    ho.add_argument(
        "--random-state",
        type=_positive,
        default=None,
        help="the search's seed; this worker uses it + --worker",
    )
    ho.add_argument("--min-trades", type=_positive, default=None, help="Freqtrade's --min-trades")
    ho.add_argument(
        "--jobs",
        type=_positive,
        default=1,
        help="Freqtrade's parallel jobs inside this worker (default 1)",
    )
    ho.add_argument(
        "--summary",
        type=Path,
        default=None,
        help="where to write the summary JSON as well as OUTPUT/summary.json "
        "(default: /dev/termination-log when writable)",
    )
    ho.add_argument(
        "--worker",
        type=_index,
        required=True,
        help="this worker's index (0-based, stable across restarts)",
    )
    ho.add_argument(
        "--study", required=True, help="the Optuna study name shared by the search's workers"
    )


class HyperoptError(Exception):
    """A failure the summary reports; its message is the one line a person reads."""


@dataclass
class Run:
    strategy: str
    worker: int
    storage: str
    started_at: dt.datetime
    code_hash: str | None = None
    config_hash: str | None = None
    data_hash: str | None = None
    exit_code: int | None = None
    epochs_done: int = 0
    study_epochs_done: int | None = None
    best: BestEpoch | None = None
    epochs_owed: int | None = None
    duplicates_dropped: int | None = None
    stale_trials_failed: int | None = None
    artifacts: list[Artifact] = field(default_factory=list)

    def summary(self, error: str | None) -> HyperoptSummary:
        return HyperoptSummary(
            ok=error is None,
            error=error,
            exit_code=self.exit_code,
            strategy=self.strategy,
            worker=self.worker,
            storage=self.storage,
            epochs_done=self.epochs_done,
            study_epochs_done=self.study_epochs_done,
            best=self.best,
            artifacts=self.artifacts,
            code_hash=self.code_hash,
            config_hash=self.config_hash,
            data_hash=self.data_hash,
            freqtrade_version=run_files.freqtrade_version(),
            started_at=self.started_at,
            finished_at=run_files.now(),
            epochs_owed=self.epochs_owed,
            duplicates_dropped=self.duplicates_dropped,
            stale_trials_failed=self.stale_trials_failed,
        )


def _load_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(), parse_constant=run_files.no_constants)
    except OSError as e:
        raise HyperoptError(f"cannot read config {path}: {e.strerror}") from e
    except ValueError as e:
        raise HyperoptError(f"config {path} is not JSON: {e}") from e
    if (
        not isinstance(config, dict)
        or not isinstance(config.get("strategy"), str)
        or not config["strategy"]
    ):
        raise HyperoptError(f"config {path} is not a JSON object naming a strategy")
    exchange = config.get("exchange")
    if not isinstance(exchange, dict) or not isinstance(exchange.get("name"), str):
        raise HyperoptError("config has no exchange.name")
    return config


def searchable_spaces(code: str, class_name: str) -> set[str] | None:
    """The parameter spaces (buy, sell, ...) the strategy class has hyperopt parameters in,
    its same-file base classes included; None when it inherits from a class this file does
    not define (other than IStrategy), whose parameters cannot be seen from here."""
    tree = ast.parse(code)
    classes = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    spaces: set[str] = set()
    pending, seen = [class_name], set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        if name not in classes:
            return None
        found = parameters.hyperopt_parameters(code, name)
        spaces.update(p["space"] for p in found.values() if isinstance(p.get("space"), str))
        for base in classes[name].bases:
            base_name = ast.unparse(base).rsplit(".", 1)[-1]
            if base_name != "IStrategy":
                pending.append(base_name)
    return spaces


def check_spaces(code: str, class_name: str, spaces: list[str]) -> None:
    """Refuse a search with nothing to search: every chosen space is a parameter space and the
    strategy has no parameter in any of them (roi, stoploss, trailing and trades always have
    Freqtrade's own dimensions)."""
    if not set(spaces) <= PARAMETER_SPACES:
        return
    try:
        found = searchable_spaces(code, class_name)
    except SyntaxError:
        return  # Freqtrade reports the strategy's syntax error with its line
    if found is None or found & set(spaces):
        return
    have = f" (it has parameters in: {', '.join(sorted(found))})" if found else ""
    raise HyperoptError(
        f"strategy {class_name} has no hyperoptable parameters in the chosen "
        f"space(s) {', '.join(spaces)}{have}"
    )


def freqtrade_arguments(
    args: argparse.Namespace, strategy: str, strategy_dir: Path, userdir: Path, datadir: Path
) -> list[str]:
    """`freqtrade hyperopt`'s arguments, all but --epochs (the worker decides what it owes)."""
    command = [
        "hyperopt",
        "--config",
        str(args.config.resolve()),
        "--strategy",
        strategy,
        "--strategy-path",
        str(strategy_dir),
        "--userdir",
        str(userdir),
        "--datadir",
        str(datadir),
        "--timerange",
        args.timerange,
        "--spaces",
        *args.spaces,
        "--hyperopt-loss",
        args.loss,
        "--job-workers",
        str(args.jobs),
        # A chosen space without parameters is skipped, not fatal; a search with none at all
        # was refused before this (check_spaces).
        "--ignore-missing-spaces",
        # Each worker's own best is not the search's: the worker exports the study's best.
        "--disable-param-export",
        "--logfile",
        str((args.output / LOG_NAME).resolve()),
    ]
    if args.random_state is not None:
        command += ["--random-state", str(args.random_state + args.worker)]
    if args.min_trades is not None:
        command += ["--min-trades", str(args.min_trades)]
    return command


class _EpochTail:
    """Prints each epoch record the worker appends to epochs.jsonl, as it appears."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def poll(self) -> None:
        if not self.path.is_file():
            return
        with self.path.open("rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        self.offset += len(chunk)
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            if line.strip():
                print(EPOCH_PREFIX + line.decode(), flush=True)


def _run_worker(
    args: argparse.Namespace,
    config: dict[str, Any],
    datadir: Path,
    work: Path,
    run: Run,
    log: FilteringBoundLogger,
    url: str | None,
) -> None:
    userdir = work / "user_data"
    strategy_copy = run_files.prepare_strategy(config, args.strategy_file, userdir / "strategies")
    record = work / "data-used.jsonl"
    result_path = work / "result.json"
    epochs_path = args.output / EPOCHS_NAME
    epochs_path.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "tradebot.freqtrade.hyperopt_entry",
        "--worker",
        str(args.worker),
        "--share",
        str(args.epochs),
        "--strategy",
        run.strategy,
        "--study",
        args.study,
        "--epochs-file",
        str(epochs_path.resolve()),
        "--result",
        str(result_path),
        "--export-dir",
        str(args.output.resolve()),
        "--record-data",
        str(record),
        *(["--sampler", args.sampler] if args.sampler else []),
        *(["--markets", str(args.markets.resolve())] if args.markets else []),
        "--",
        *freqtrade_arguments(args, run.strategy, strategy_copy.parent, userdir, datadir),
    ]
    log.info("freqtrade.command", argv=command, storage=run.storage)
    log_path = args.output / LOG_NAME
    log_path.unlink(missing_ok=True)
    console_path = args.output / CONSOLE_NAME
    # As for a backtest: Freqtrade skips its log file when it believes it runs under pytest.
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_VERSION"}
    tail = _EpochTail(epochs_path)
    with console_path.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=work, env=env)
        while proc.poll() is None:
            tail.poll()
            time.sleep(POLL_S)
        tail.poll()
    run.exit_code = proc.returncode
    log.info("freqtrade.exit", exit_code=proc.returncode, log=str(log_path))
    _read_result(args, result_path, run, url)
    _check_freqtrade(args, proc.returncode, log_path, console_path, strategy_copy, url)
    if run.epochs_owed != 0:
        _check_data(config, record, datadir, args, run)
    _keep_artifacts(userdir, args.output, run)


def _read_result(args: argparse.Namespace, path: Path, run: Run, url: str | None) -> None:
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return  # the subprocess died before writing it; the exit code and log say why
    run.epochs_done = int(result.get("epochs_done") or 0)
    run.study_epochs_done = result.get("study_epochs_done")
    run.epochs_owed = _int(result.get("owed"))
    run.duplicates_dropped = _int(result.get("duplicates_dropped"))
    run.stale_trials_failed = _int(result.get("stale_trials_failed"))
    best = result.get("best")
    if isinstance(best, dict) and best.get("parameters_file"):
        record = EpochRecord.model_validate(best["record"])
        text = (args.output / best["parameters_file"]).read_text()
        run.best = hyperopt_epochs.best_epoch(record, text, best.get("stats") or {})
    if result.get("error"):
        raise HyperoptError(redact(str(result["error"]), url))


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _check_freqtrade(
    args: argparse.Namespace,
    returncode: int,
    log_path: Path,
    console_path: Path,
    strategy_copy: Path,
    url: str | None,
) -> None:
    text = log_path.read_text(errors="replace") if log_path.is_file() else ""
    console = console_path.read_text(errors="replace")
    reason = freqtrade_log.failure_reason(
        text, strategy_file=strategy_copy.name, timerange=args.timerange
    )
    if reason is None and returncode != 0:
        reason = (
            f"{_exit_description(returncode)}; its last output: "
            f"{freqtrade_log.last_line(console) or 'none'}"
        )
    if reason is not None:
        raise HyperoptError(redact(reason, url))


def _exit_description(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"the worker was killed by {name}"
    return f"the worker exited with {returncode}"


def _check_data(
    config: dict[str, Any], record: Path, datadir: Path, args: argparse.Namespace, run: Run
) -> None:
    used: dict[str, list[Path]] = {}
    if record.is_file():
        for line in record.read_text().splitlines():
            entry = json.loads(line)
            used.setdefault(entry["pair"], []).append(Path(entry["path"]))
    whitelist = config["exchange"].get("pair_whitelist", [])
    unfed = [p for p in whitelist if offline.is_plain_pair(p) and p not in used]
    if unfed:
        raise HyperoptError(f"no candles for {', '.join(unfed)} in {datadir}")
    inputs = [p for paths in used.values() for p in paths]
    if args.markets:
        inputs.append(args.markets)
    run.data_hash = datasets.data_hash(inputs, datadir)


def _keep_artifacts(userdir: Path, output: Path, run: Run) -> None:
    results_dir = userdir / "hyperopt_results"
    try:
        latest = json.loads((results_dir / LAST_RESULT).read_text())["latest_hyperopt"]
    except (OSError, ValueError, KeyError, TypeError):
        latest = None
    if isinstance(latest, str) and (results_dir / Path(latest).name).is_file():
        target = output / Path(latest).name
        shutil.copyfile(results_dir / Path(latest).name, target)
        run.artifacts.append(run_files.artifact(target))


def hyperopt(args: argparse.Namespace, log: FilteringBoundLogger) -> tuple[HyperoptSummary, int]:
    output: Path = args.output
    url = os.environ.get(STORAGE_ENV) or None
    run = Run(
        strategy=args.strategy_file.stem,
        worker=args.worker,
        storage="shared" if url else "independent",
        started_at=run_files.now(),
    )
    try:
        output.mkdir(parents=True, exist_ok=True)
        config = _load_config(args.config)
        run.strategy = config["strategy"]
        run.config_hash = config_hash(config)
        if args.config.resolve() != (output / CONFIG_NAME).resolve():
            shutil.copyfile(args.config, output / CONFIG_NAME)
        try:
            code = args.strategy_file.read_text()
            run.code_hash = run_files.sha256_file(args.strategy_file)
        except OSError as e:
            raise HyperoptError(
                f"cannot read strategy file {args.strategy_file}: {e.strerror}"
            ) from e
        check_spaces(code, run.strategy, args.spaces)
        try:
            datadir = datasets.resolve_datadir(args.data, config["exchange"]["name"])
        except datasets.DataError as e:
            raise HyperoptError(str(e)) from e
        log.info(
            "hyperopt.start",
            strategy=run.strategy,
            worker=args.worker,
            storage=run.storage,
            study=args.study,
            epochs=args.epochs,
            config_hash=run.config_hash,
            code_hash=run.code_hash,
            datadir=str(datadir),
            timerange=args.timerange,
        )
        with tempfile.TemporaryDirectory(prefix="tradebot-hyperopt-") as tmp:
            _run_worker(args, config, datadir, Path(tmp), run, log, url)
    except HyperoptError as e:
        error = str(e)
    except OSError as e:
        error = redact(f"{e.filename or 'I/O'}: {e.strerror or e}", url)
    except Exception as e:
        log.error("runner.crashed", error=redact(f"{type(e).__name__}: {e}", url))
        error = redact(f"runner error: {type(e).__name__}: {e}", url)
    else:
        log.info(
            "hyperopt.done",
            epochs_done=run.epochs_done,
            study_epochs_done=run.study_epochs_done,
            best_loss=str(run.best.loss) if run.best else None,
        )
        return _finish(run, None, output), 0
    log.error("hyperopt.failed", error=error, exit_code=run.exit_code)
    # As for a backtest: a failed worker's best would be read as the search's result (the
    # study keeps it for the workers that succeed).
    run.best = None
    return _finish(run, error, output), 1


def _finish(run: Run, error: str | None, output: Path) -> HyperoptSummary:
    names = {a.name for a in run.artifacts}
    kept = [output / CONFIG_NAME, output / LOG_NAME, output / CONSOLE_NAME]
    if run.best is not None:
        kept.insert(0, output / f"{run.strategy}.json")
    for path in kept:
        if path.is_file() and path.name not in names:
            run.artifacts.append(run_files.artifact(path))
    return run.summary(error)


def to_message(summary: HyperoptSummary) -> str:
    """The summary for the termination message (4096 bytes at most): when the whole does not
    fit, the artifacts go first, then the best epoch's figures, then the error's tail (the
    full summary is DIR/summary.json and the log's last line)."""

    def dump(s: HyperoptSummary) -> str:
        return s.model_dump_json(by_alias=True, exclude_none=True)

    text = dump(summary)
    if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT:
        return text
    summary = summary.model_copy(update={"artifacts": [], "truncated": True})
    if len(dump(summary).encode()) > TERMINATION_MESSAGE_LIMIT and summary.best is not None:
        summary = summary.model_copy(
            update={"best": summary.best.model_copy(update={"results": None})}
        )
    text = dump(summary)
    overflow = len(text.encode()) - TERMINATION_MESSAGE_LIMIT
    if overflow > 0 and summary.error:
        keep = max(0, len(summary.error) - overflow - 20)
        summary = summary.model_copy(update={"error": summary.error[:keep] + " [truncated]"})
        text = dump(summary)
    return text


def main(args: argparse.Namespace, log: FilteringBoundLogger) -> int:
    """`tradebot-runner hyperopt`, after its arguments are parsed."""
    summary, code = hyperopt(args, log)
    full = summary.model_dump_json(by_alias=True, exclude_none=True)
    message = to_message(summary)
    try:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / SUMMARY_NAME).write_text(full)
    except OSError as e:
        log.error("summary.write_failed", path=str(args.output), error=e.strerror)
    target = run_files.summary_target(args.summary, args.output)
    if target.resolve() != (args.output / SUMMARY_NAME).resolve():
        try:
            target.write_text(message)
        except OSError as e:
            log.error("summary.write_failed", path=str(target), error=e.strerror)
    print(full, flush=True)
    return code
