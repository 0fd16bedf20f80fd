"""`tradebot report`: what was run, on which data and code, with which results."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from tradebot.commands.common import (
    add_dsn_argument,
    explain,
    fail,
    missing_database,
    resolve_dsn,
)
from tradebot.records.errors import RecordsError
from tradebot.reports.render import FORMATS
from tradebot.reports.since import FORMS


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = sub.add_parser(
        "report",
        help="report recorded runs per strategy (Markdown or JSON)",
        description="Report the recorded runs per strategy: each run's metrics exactly as "
        "stored (8 decimal places), data window, config, data and code hashes, artifacts "
        "(sha256, size) and incidents. Runs are matched to strategies by code hash; runs of "
        "unregistered code are listed apart. In JSON every number is a string.",
    )
    report.add_argument(
        "--format", choices=FORMATS, default="markdown", help="output format (default: %(default)s)"
    )
    report.add_argument(
        "--since",
        metavar="WHEN",
        help=f"only runs and incidents created since WHEN: {FORMS}; a time without a zone is UTC",
    )
    report.add_argument(
        "--strategy", metavar="NAME", help="only runs of this Strategy's code versions"
    )
    report.add_argument("--namespace", "-n", metavar="NS", help="only this namespace")
    report.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="write the report to FILE instead of standard output",
    )
    report.add_argument(
        "--html",
        type=Path,
        metavar="DIR",
        help="write the fleet page's Strategy and run pages as static HTML into DIR "
        "(index.html, one page per strategy and per backtest or hyperopt run, plotly.js "
        "beside them: opens with no server and no network)",
    )
    add_dsn_argument(report)
    report.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from tradebot.records import open_store
    from tradebot.reports.collect import collect
    from tradebot.reports.model import Filters
    from tradebot.reports.render import render
    from tradebot.reports.since import parse_since

    now = dt.datetime.now(dt.UTC)
    try:
        since = parse_since(args.since, now) if args.since else None
    except ValueError as exc:
        return fail("report", str(exc), 2)
    if args.output is not None and not args.output.parent.is_dir():
        return fail(
            "report",
            f"cannot write {args.output}: directory {args.output.parent} does not exist",
            2,
        )
    dsn = resolve_dsn(args.dsn)
    missing = missing_database(dsn)
    if missing is not None:
        return fail("report", missing)
    if args.html is not None:
        return _html(dsn, args.html, args.namespace)
    filters = Filters(since=since, namespace=args.namespace, strategy=args.strategy)
    try:
        with open_store(dsn) as store:
            text = render(collect(store, dsn, filters, now), args.format)
    except (RecordsError, ValueError) as exc:
        return fail("report", explain(exc))
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _html(dsn: str, directory: Path, namespace: str | None) -> int:
    from tradebot.records import open_store
    from tradebot.ui.static import write_site

    try:
        with open_store(dsn) as store:
            written = write_site(store, dsn, directory, namespace=namespace)
    except (RecordsError, ValueError, OSError) as exc:
        return fail("report", explain(exc))
    print(f"wrote {len(written)} files to {directory} (open {directory / 'index.html'})")
    return 0
