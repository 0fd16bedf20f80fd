"""The bias analyses of `tradebot-runner backtest --lookahead-analysis --recursive-analysis`:
Freqtrade's own `lookahead-analysis` and `recursive-analysis`, run after the backtest on the
same config, strategy copy, data and markets, each in a subprocess through the offline
entrypoint (which records their figures, see bias.py). Their console output, log, CSV and
record are kept as artifacts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from structlog.typing import FilteringBoundLogger

from tradebot.api.backtest import BacktestResults, BiasFindings
from tradebot.freqtrade import bias, freqtrade_log, run_files

# Freqtrade's own defaults for these options.
DEFAULT_MINIMUM_TRADE_AMOUNT = 10
DEFAULT_TARGETED_TRADE_AMOUNT = 20
RECORD_NAME = "bias-analysis.jsonl"
LOOKAHEAD_CSV = "lookahead-analysis.csv"


class AnalysisError(Exception):
    """An analysis did not produce findings; the message is for a person."""


@dataclass(frozen=True)
class Analysed:
    findings: BiasFindings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lookahead-analysis",
        action="store_true",
        help="after the backtest, run `freqtrade lookahead-analysis` on the same inputs",
    )
    parser.add_argument(
        "--recursive-analysis",
        action="store_true",
        help="after the backtest, run `freqtrade recursive-analysis` on the same inputs",
    )
    parser.add_argument(
        "--minimum-trade-amount",
        type=int,
        default=DEFAULT_MINIMUM_TRADE_AMOUNT,
        help="signals lookahead-analysis needs to be conclusive (default %(default)s)",
    )
    parser.add_argument(
        "--targeted-trade-amount",
        type=int,
        default=DEFAULT_TARGETED_TRADE_AMOUNT,
        help="signals lookahead-analysis checks at most (default %(default)s)",
    )
    parser.add_argument(
        "--startup-candle",
        type=int,
        action="append",
        default=None,
        help="startup candle count recursive-analysis compares (repeatable; "
        "Freqtrade's list when left out)",
    )


def wanted(args: argparse.Namespace) -> bool:
    return bool(args.lookahead_analysis or args.recursive_analysis)


def _day(text: str | None) -> str | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text).strftime("%Y%m%d")
    except ValueError:
        return None


def analysis_timerange(timerange: str | None, results: BacktestResults | None) -> str:
    """The analyses insist on a timerange; without one, the window the backtest covered (the
    day after its last candle, so the last day is in)."""
    if timerange:
        return timerange
    start = _day(results.backtest_start if results else None)
    end_text = results.backtest_end if results else None
    end = None
    if end_text:
        try:
            end = (dt.datetime.fromisoformat(end_text) + dt.timedelta(days=1)).strftime("%Y%m%d")
        except ValueError:
            end = None
    if start is None or end is None:
        raise AnalysisError("the analyses need a timerange and the backtest reported none")
    return f"{start}-{end}"


def analysis_commands(
    args: argparse.Namespace,
    *,
    strategy: str,
    strategy_path: Path,
    userdir: Path,
    datadir: Path,
    timerange: str,
    record: Path,
) -> list[tuple[str, list[str]]]:
    """(name, argv) of each analysis asked for, in the order they run."""
    base = [sys.executable, "-m", "tradebot.freqtrade.offline", "--record-analysis", str(record)]
    if args.markets:
        base += ["--markets", str(args.markets.resolve())]

    def common(name: str) -> list[str]:
        return [
            "--config",
            str(args.config.resolve()),
            "--strategy",
            strategy,
            "--strategy-path",
            str(strategy_path),
            "--userdir",
            str(userdir),
            "--datadir",
            str(datadir),
            "--timerange",
            timerange,
            "--logfile",
            str((args.output / f"{name}-analysis.log").resolve()),
        ]

    commands = []
    if args.lookahead_analysis:
        commands.append(
            (
                "lookahead",
                [
                    *base,
                    "lookahead-analysis",
                    *common("lookahead"),
                    "--minimum-trade-amount",
                    str(args.minimum_trade_amount),
                    "--targeted-trade-amount",
                    str(max(args.targeted_trade_amount, args.minimum_trade_amount)),
                    "--lookahead-analysis-exportfilename",
                    str((args.output / LOOKAHEAD_CSV).resolve()),
                ],
            )
        )
    if args.recursive_analysis:
        startups = sorted(set(args.startup_candle or ()))
        commands.append(
            (
                "recursive",
                [
                    *base,
                    "recursive-analysis",
                    *common("recursive"),
                    *(["--startup-candle", *map(str, startups)] if startups else []),
                ],
            )
        )
    return commands


def run_analyses(
    args: argparse.Namespace,
    *,
    strategy: str,
    strategy_file: str,
    strategy_path: Path,
    userdir: Path,
    datadir: Path,
    work: Path,
    results: BacktestResults | None,
    log: FilteringBoundLogger,
) -> Analysed:
    """Runs the analyses asked for; AnalysisError when one produced no findings (its files are
    still in the output directory for _finish to keep)."""
    output: Path = args.output
    record = output / RECORD_NAME
    record.unlink(missing_ok=True)
    (output / LOOKAHEAD_CSV).unlink(missing_ok=True)
    timerange = analysis_timerange(args.timerange, results)
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_VERSION"}

    for name, command in analysis_commands(
        args,
        strategy=strategy,
        strategy_path=strategy_path,
        userdir=userdir,
        datadir=datadir,
        timerange=timerange,
        record=record,
    ):
        log.info("analysis.command", analysis=name, argv=command)
        console = output / f"{name}-console.log"
        log_path = output / f"{name}-analysis.log"
        log_path.unlink(missing_ok=True)
        with console.open("wb") as out:
            proc = subprocess.run(
                command, stdout=out, stderr=subprocess.STDOUT, cwd=work, env=env, check=False
            )
        log.info("analysis.exit", analysis=name, exit_code=proc.returncode)
        recorded = record.read_text() if record.is_file() else ""
        if f'"analysis": "{name}"' in recorded:
            # Its table was printed: what it logged on the way (a signal it could not
            # re-run, say) is in the findings or the console artifact, not a failure.
            continue
        text = log_path.read_text(errors="replace") if log_path.is_file() else ""
        reason = freqtrade_log.failure_reason(
            text, strategy_file=strategy_file, timerange=timerange
        )
        if reason is None:
            last = freqtrade_log.last_line(console.read_text(errors="replace")) or "none"
            reason = f"exited with {proc.returncode} and reported no findings; last output: {last}"
        raise AnalysisError(f"{name} analysis failed: {reason}")
    records = bias.read_records(record.read_text()) if record.is_file() else []
    try:
        lookahead = (
            bias.parse_lookahead(records, strategy, args.minimum_trade_amount)
            if args.lookahead_analysis
            else None
        )
        recursive = bias.parse_recursive(records, strategy) if args.recursive_analysis else None
    except bias.BiasRecordError as e:
        raise AnalysisError(str(e)) from e
    found = bias.findings(lookahead, recursive).model_copy(update={"checked_at": run_files.now()})
    log.info("analysis.findings", findings=found.to_wire())
    return Analysed(found)


def artifact_files(output: Path) -> list[Path]:
    """The analyses' files in the output directory, to keep as artifacts (a failed run's
    too). Their console output holds their log too; the log files stay beside them unlisted,
    since every artifact listed takes about 150 of the summary's 4096 bytes."""
    names = [RECORD_NAME, LOOKAHEAD_CSV, "lookahead-console.log", "recursive-console.log"]
    return [output / n for n in names if (output / n).is_file()]
