"""tradebot-runner: runs one `freqtrade backtesting` in the Job's container and reports it.
(`tradebot-runner hyperopt`, one worker of a hyperopt search, is hyperopt_run.py.)

    tradebot-runner backtest --config PATH --strategy-file PATH --data NAME_OR_DIR
                             --output DIR [--timerange RANGE] [--summary PATH]
                             [--enable-protections]
                             [--lookahead-analysis] [--recursive-analysis]
                             [--minimum-trade-amount N] [--targeted-trade-amount N]
                             [--startup-candle N ...]

With --lookahead-analysis / --recursive-analysis it runs Freqtrade's bias analyses after the
backtest, on the same inputs (bias_run.py), and the summary carries their findings.

It builds nothing itself: the operator generated the config; this runs Freqtrade on it, in a
subprocess of the same Python (a strategy that crashes the interpreter cannot take the report
down with it, and the exact command is logged), with markets from a bundled file instead of
the network (see offline.py). Then it keeps Freqtrade's result and log as artifacts and writes
a RunSummary: to the termination message and to DIR/summary.json.

Exit status: 0 when the backtest produced a result, 1 when it did not (the summary says why),
2 for a command line that does not parse.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from structlog.typing import FilteringBoundLogger

from tradebot.api.backtest import Artifact, BacktestResults, BiasFindings
from tradebot.artifacts import store, uploader
from tradebot.domain.freqtrade_config import config_hash
from tradebot.freqtrade import (
    bias_run,
    datasets,
    freqtrade_log,
    hyperopt_run,
    offline,
    results,
    run_files,
)
from tradebot.freqtrade.summary import RunSummary
from tradebot.observability.logging import configure_logging, logger
from tradebot.settings import Settings

CORRELATION_ENV = "TRADEBOT_CORRELATION_ID"
# Set on a Job's runner (kubernetes executor) with an artifact store: the run's files go there.
RUN_ID_ENV = "TRADEBOT_RUN_ID"
LOG_NAME = "freqtrade.log"
CONSOLE_NAME = "freqtrade-console.log"
CONFIG_NAME = "config.json"
SUMMARY_NAME = run_files.SUMMARY_NAME


class RunError(Exception):
    """A failure the summary reports; its message is the one line a person reads."""


@dataclass
class Run:
    """What one run learned, gathered as it goes so a failure still reports what is known."""

    strategy: str
    started_at: dt.datetime
    code_hash: str | None = None
    config_hash: str | None = None
    data_hash: str | None = None
    exit_code: int | None = None
    results: BacktestResults | None = None
    artifacts: list[Artifact] = field(default_factory=list)
    bias: BiasFindings | None = None

    def summary(self, error: str | None) -> RunSummary:
        return RunSummary(
            ok=error is None,
            error=error,
            exit_code=self.exit_code,
            strategy=self.strategy,
            results=self.results,
            bias=self.bias,
            artifacts=self.artifacts,
            code_hash=self.code_hash,
            config_hash=self.config_hash,
            data_hash=self.data_hash,
            freqtrade_version=run_files.freqtrade_version(),
            started_at=self.started_at,
            finished_at=run_files.now(),
        )


def _logger() -> FilteringBoundLogger:
    """JSON lines on stderr; stdout stays free for the summary."""
    configure_logging()
    correlation_id = os.environ.get(CORRELATION_ENV)
    return logger(correlation_id=correlation_id) if correlation_id else logger()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tradebot-runner",
        description="Run a Freqtrade backtest offline and report it as a RunSummary.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    bt = commands.add_parser("backtest", help="run `freqtrade backtesting` on a config")
    run_files.add_run_inputs(bt)
    bt.add_argument(
        "--timerange",
        default=None,
        help="Freqtrade timerange, e.g. 20240102-20240201 (default: all data)",
    )
    bt.add_argument(
        "--markets",
        type=Path,
        default=None,
        help="the exchange's markets saved with the data (a MarketData's "
        "markets.json); default: the bundled markets file",
    )
    bt.add_argument("--output", type=Path, required=True, help="artifact directory")
    bt.add_argument(
        "--summary",
        type=Path,
        default=None,
        help=f"where to write the summary JSON as well as OUTPUT/{SUMMARY_NAME} "
        f"(default: {run_files.TERMINATION_LOG} when writable)",
    )
    bt.add_argument(
        "--enable-protections", action="store_true", help="apply the strategy's protections"
    )
    bias_run.add_arguments(bt)
    hyperopt_run.add_parser(commands)
    return parser


def _load_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(), parse_constant=run_files.no_constants)
    except OSError as e:
        raise RunError(f"cannot read config {path}: {e.strerror}") from e
    except ValueError as e:
        raise RunError(f"config {path} is not JSON: {e}") from e
    if not isinstance(config, dict):
        raise RunError(f"config {path} is not a JSON object")
    if not isinstance(config.get("strategy"), str) or not config["strategy"]:
        raise RunError(f"config {path} names no strategy")
    return config


def _exchange(config: dict[str, Any]) -> str:
    exchange = config.get("exchange")
    name = exchange.get("name") if isinstance(exchange, dict) else None
    if not isinstance(name, str) or not name:
        raise RunError("config has no exchange.name")
    return name


def _used_files(record: Path) -> dict[str, list[Path]]:
    """Candle files Freqtrade loaded, by pair, from the offline entrypoint's record."""
    used: dict[str, list[Path]] = {}
    if not record.is_file():
        return used
    for line in record.read_text().splitlines():
        entry = json.loads(line)
        used.setdefault(entry["pair"], []).append(Path(entry["path"]))
    return used


def backtest(args: argparse.Namespace, log: FilteringBoundLogger) -> tuple[RunSummary, int]:
    output: Path = args.output
    run = Run(strategy=args.strategy_file.stem, started_at=run_files.now())
    try:
        output.mkdir(parents=True, exist_ok=True)
        config = _load_config(args.config)
        run.strategy = config["strategy"]
        run.config_hash = config_hash(config)
        if args.config.resolve() != (output / CONFIG_NAME).resolve():
            shutil.copyfile(args.config, output / CONFIG_NAME)
        try:
            run.code_hash = run_files.sha256_file(args.strategy_file)
        except OSError as e:
            raise RunError(f"cannot read strategy file {args.strategy_file}: {e.strerror}") from e
        try:
            datadir = datasets.resolve_datadir(args.data, _exchange(config))
        except datasets.DataError as e:
            raise RunError(str(e)) from e
        log.info(
            "backtest.start",
            strategy=run.strategy,
            config_hash=run.config_hash,
            code_hash=run.code_hash,
            datadir=str(datadir),
            timerange=args.timerange,
        )
        with tempfile.TemporaryDirectory(prefix="tradebot-run-") as tmp:
            _run_freqtrade(args, config, datadir, Path(tmp), run, log)
    except RunError as e:
        error = str(e)
    except OSError as e:
        error = f"{e.filename or 'I/O'}: {e.strerror or e}"
    except Exception as e:
        # A bug here must still end in a summary, or the operator learns nothing.
        log.exception("runner.crashed")
        error = f"runner error: {type(e).__name__}: {e}"
    else:
        log.info(
            "backtest.done",
            trades=run.results.trades if run.results else None,
            profit_total=str(run.results.profit_total) if run.results else None,
        )
        return _finish(run, None, output), 0
    log.error("backtest.failed", error=error, exit_code=run.exit_code)
    # Figures of a run that failed a check would be read as the Backtest's result.
    run.results = None
    run.bias = None
    return _finish(run, error, output), 1


def _finish(run: Run, error: str | None, output: Path) -> RunSummary:
    log_file = output / LOG_NAME
    names = {a.name for a in run.artifacts}
    # The logs and the config are worth keeping from a failed run too.
    for path in (
        output / CONFIG_NAME,
        log_file,
        output / CONSOLE_NAME,
        *bias_run.artifact_files(output),
    ):
        if path.is_file() and path.name not in names:
            run.artifacts.append(run_files.artifact(path))
    return run.summary(error)


def _exit_description(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"freqtrade was killed by {name}"
    return f"freqtrade exited with {returncode}"


def _run_freqtrade(
    args: argparse.Namespace,
    config: dict[str, Any],
    datadir: Path,
    work: Path,
    run: Run,
    log: FilteringBoundLogger,
) -> None:
    userdir = work / "user_data"
    strategy_copy = run_files.prepare_strategy(config, args.strategy_file, userdir / "strategies")
    record = work / "data-used.jsonl"
    command = [
        sys.executable,
        "-m",
        "tradebot.freqtrade.offline",
        "--record-data",
        str(record),
        *(["--markets", str(args.markets.resolve())] if args.markets else []),
        "backtesting",
        "--config",
        str(args.config.resolve()),
        "--strategy",
        run.strategy,
        "--strategy-path",
        str(strategy_copy.parent),
        "--userdir",
        str(userdir),
        "--datadir",
        str(datadir),
        # The default day cache can hand back an earlier identical result without running.
        "--cache",
        "none",
        "--export",
        "trades",
        # Freqtrade's console wraps long lines at its width; its log file keeps each record
        # whole, which is what the failure reason is read from.
        "--logfile",
        str((args.output / LOG_NAME).resolve()),
    ]
    if args.timerange:
        command += ["--timerange", args.timerange]
    if args.enable_protections:
        command.append("--enable-protections")
    log.info("freqtrade.command", argv=command)
    log_path = args.output / LOG_NAME
    log_path.unlink(missing_ok=True)  # a retry into the same directory starts a fresh log
    console_path = args.output / CONSOLE_NAME
    # Freqtrade skips its logging setup (and so the log file) when it believes it runs under
    # pytest, which it tells by this variable; a run must log the same wherever it starts from.
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_VERSION"}
    with console_path.open("wb") as out:
        proc = subprocess.run(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=work, env=env, check=False
        )
    run.exit_code = proc.returncode
    log.info("freqtrade.exit", exit_code=proc.returncode, log=str(log_path))
    text = log_path.read_text(errors="replace") if log_path.is_file() else ""
    # What went wrong before Freqtrade set its logging up shows only on its console.
    console = console_path.read_text(errors="replace")

    # Freqtrade's exit code alone proves nothing (a config error exits 0), so success is: an
    # error-free log and a result file for this strategy.
    reason = freqtrade_log.failure_reason(
        text, strategy_file=strategy_copy.name, timerange=args.timerange
    )
    if reason is None and proc.returncode != 0:
        reason = (
            f"{_exit_description(proc.returncode)}; its last output: "
            f"{freqtrade_log.last_line(console) or 'none'}"
        )
    if reason is not None:
        raise RunError(reason)
    try:
        result_zip = results.latest_result(userdir / "backtest_results")
        run.results = results.parse_result(result_zip, run.strategy)
    except results.ResultError as e:
        raise RunError(str(e)) from e

    used = _used_files(record)
    whitelist = config["exchange"].get("pair_whitelist", [])
    unfed = [p for p in whitelist if offline.is_plain_pair(p) and p not in used]
    if unfed:
        # Freqtrade skips a pair without candles and backtests the rest; a result that leaves
        # out pairs the Backtest asked for would misdescribe it.
        raise RunError(f"no candles for {', '.join(unfed)} in {datadir}")
    # The markets file is data the result depends on too (precision, limits, fees) when it
    # came with the candles; the bundled one is part of the runner, like its code.
    inputs = [p for paths in used.values() for p in paths]
    if args.markets:
        inputs.append(args.markets)
    run.data_hash = datasets.data_hash(inputs, datadir)

    for source in (result_zip, results.meta_file(result_zip)):
        if source.is_file():
            target = args.output / source.name
            shutil.copyfile(source, target)
            run.artifacts.append(run_files.artifact(target))

    if bias_run.wanted(args):
        try:
            run.bias = bias_run.run_analyses(
                args,
                strategy=run.strategy,
                strategy_file=strategy_copy.name,
                strategy_path=strategy_copy.parent,
                userdir=userdir,
                datadir=datadir,
                work=work,
                results=run.results,
                log=log,
            ).findings
        except bias_run.AnalysisError as e:
            raise RunError(str(e)) from e


def _write_summary(
    summary: RunSummary, output: Path, target: Path, log: FilteringBoundLogger
) -> None:
    message = summary.to_message()
    paths = [output / SUMMARY_NAME]
    if target.resolve() != paths[0].resolve():
        paths.append(target)
    for path in paths:
        try:
            path.write_text(message)
        except OSError as e:
            log.error("summary.write_failed", path=str(path), error=e.strerror)


def _keep_artifacts(
    summary: RunSummary, code: int, output: Path, log: FilteringBoundLogger
) -> tuple[RunSummary, int]:
    """With an artifact store configured (the Job's TRADEBOT_ARTIFACTS_* and TRADEBOT_RUN_ID),
    each artifact goes there and gets its path; a file that cannot be kept fails the run, since
    its record would name a place that holds nothing."""
    run_id = os.environ.get(RUN_ID_ENV)
    if not run_id or not summary.artifacts:
        return summary, code
    if os.environ.get(uploader.HANDOFF_ENV):
        return _hand_over_artifacts(summary, code, output, log)
    try:
        # The claim, when that is the store, is this run's output directory already (subPath).
        found = store.from_settings(Settings.from_env())
        if found is None:
            return summary, code
        kept = [
            a.model_copy(update={"path": found.put(run_id, output / a.name).path})
            for a in summary.artifacts
        ]
    except (store.StoreError, ValueError, OSError) as e:
        log.error("artifacts.not_kept", error=str(e))
        return summary.model_copy(
            update={
                "ok": False,
                "results": None,
                "error": f"artifacts not kept: {e}"
                + (f"; {summary.error}" if summary.error else ""),
            }
        ), 1
    log.info("artifacts.kept", paths=[a.path for a in kept])
    return summary.model_copy(update={"artifacts": kept}), code


def _hand_over_artifacts(
    summary: RunSummary, code: int, output: Path, log: FilteringBoundLogger
) -> tuple[RunSummary, int]:
    """With a bucket, this container has no credentials (it ran the strategy): the Job's upload
    step uploads (artifacts/uploader.py) and answers with each artifact's record."""
    timeout = float(os.environ.get("TRADEBOT_ARTIFACTS_HANDOFF_TIMEOUT", "600"))
    answer = uploader.hand_over(output, [a.name for a in summary.artifacts], timeout)
    paths = {
        str(r.get("name")): str(r.get("path"))
        for r in answer.get("artifacts") or []
        if isinstance(r, dict)
    }
    missing = [a.name for a in summary.artifacts if a.name not in paths]
    error = answer.get("error") or (f"no upload of {', '.join(missing)}" if missing else None)
    if error:
        log.error("artifacts.not_kept", error=str(error))
        return summary.model_copy(
            update={
                "ok": False,
                "results": None,
                "error": f"artifacts not kept: {error}"
                + (f"; {summary.error}" if summary.error else ""),
            }
        ), 1
    kept = [a.model_copy(update={"path": paths[a.name]}) for a in summary.artifacts]
    log.info("artifacts.kept", paths=[a.path for a in kept])
    return summary.model_copy(update={"artifacts": kept}), code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    log = _logger()
    if args.command == "hyperopt":
        return hyperopt_run.main(args, log)
    summary, code = backtest(args, log)
    summary, code = _keep_artifacts(summary, code, args.output, log)
    try:
        args.output.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        log.error("output.unwritable", path=str(args.output), error=e.strerror)
    _write_summary(summary, args.output, run_files.summary_target(args.summary, args.output), log)
    # Also on stdout: with terminationMessagePolicy FallbackToLogsOnError the log tail is the
    # message whenever the file stayed empty.
    print(summary.to_message(), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
