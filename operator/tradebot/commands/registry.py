"""`tradebot registry`: the registered strategy versions, and one strategy file's interface."""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import Any

from tradebot.commands.common import (
    add_dsn_argument,
    explain,
    fail,
    missing_database,
    resolve_dsn,
)
from tradebot.records.errors import RecordsError

FORMATS = ("table", "json")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    registry = sub.add_parser(
        "registry",
        help="list registered strategy versions; introspect a strategy file",
        description="Without an action: list every strategy version the operator registered "
        "(namespace, name, class, code hash, first and last seen, and the interface: "
        "timeframe, can_short, stoploss, minimal ROI, freqai, hyperopt parameters). "
        "`introspect FILE.py` prints a strategy file's interface without running its code.",
    )
    registry.add_argument(
        "--format", choices=FORMATS, default="table", help="output format (default: %(default)s)"
    )
    registry.add_argument("--namespace", "-n", metavar="NS", help="only this namespace")
    add_dsn_argument(registry)
    registry.set_defaults(handler=_list)
    actions = registry.add_subparsers(dest="registry_action", metavar="ACTION")

    listing = actions.add_parser(
        "list",
        help="list registered strategy versions (default)",
        description="The same as `tradebot registry`.",
    )
    listing.add_argument(
        "--format", choices=FORMATS, default="table", help="output format (default: %(default)s)"
    )
    listing.add_argument("--namespace", "-n", metavar="NS", help="only this namespace")
    add_dsn_argument(listing)
    listing.set_defaults(handler=_list)

    introspect = actions.add_parser(
        "introspect",
        help="print a strategy file's interface (parsed, never imported)",
        description="Parse FILE.py as the operator does when a Strategy is applied (the code "
        "is never imported or run) and print the strategy's interface, code hash and hyperopt "
        "parameters. Exit 1 with the reason when the file is not a usable strategy.",
    )
    introspect.add_argument("file", type=Path, metavar="FILE.py", help="strategy source file")
    introspect.add_argument(
        "--class",
        dest="class_name",
        metavar="NAME",
        help="the strategy class (default: the file's only IStrategy subclass)",
    )
    introspect.add_argument(
        "--format", choices=FORMATS, default="table", help="output format (default: %(default)s)"
    )
    introspect.set_defaults(handler=_introspect)

    docs = actions.add_parser(
        "docs",
        help="write the strategy registry as Markdown",
        description="Write every registered strategy version as Markdown: class, timeframe, "
        "indicators, entry and exit signals, hyperopt parameters with their ranges, code hash, "
        "and the figures of its latest succeeded backtest in the records.",
    )
    docs.add_argument(
        "-o", "--output", type=Path, metavar="FILE", help="file to write (default: stdout)"
    )
    docs.add_argument("--namespace", "-n", metavar="NS", help="only this namespace")
    add_dsn_argument(docs)
    docs.set_defaults(handler=_docs)


def _list(args: argparse.Namespace) -> int:
    from tradebot.records.reporting import list_strategies
    from tradebot.reports.registry import render_registry

    dsn = resolve_dsn(args.dsn)
    missing = missing_database(dsn)
    if missing is not None:
        return fail("registry", missing)
    try:
        records = list_strategies(dsn, namespace=args.namespace)
    except (RecordsError, ValueError) as exc:
        return fail("registry", explain(exc))
    sys.stdout.write(render_registry(records, args.format))
    return 0


def _docs(args: argparse.Namespace) -> int:
    from tradebot.records import open_store
    from tradebot.records.reporting import list_strategies, metrics_of_runs
    from tradebot.reports.strategy_docs import latest_backtests, render_markdown

    dsn = resolve_dsn(args.dsn)
    missing = missing_database(dsn)
    if missing is not None:
        return fail("registry", missing)
    try:
        records = list_strategies(dsn, namespace=args.namespace)
        with open_store(dsn) as store:
            # Backtests of any namespace count: a strategy is often backtested elsewhere
            # (or imported with `tradebot records import`) before it runs here.
            latest = latest_backtests(store.list_runs(kind="backtest"))
        metrics = metrics_of_runs(dsn)
    except (RecordsError, ValueError) as exc:
        return fail("registry", explain(exc))
    text = render_markdown(records, latest, metrics)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
        print(f"wrote {args.output} ({len(records)} strategy versions)")
    return 0


def _introspect(args: argparse.Namespace) -> int:
    from tradebot.reports.registry import render_interface

    try:
        code = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return fail("registry introspect", f"cannot read {args.file}: {exc}")
    try:
        document = introspect_file(code, args.class_name)
    except ValueError as exc:
        return fail("registry introspect", f"{args.file}: {exc}")
    sys.stdout.write(render_interface({"file": str(args.file), **document}, args.format))
    return 0


def introspect_file(code: str, class_name: str | None) -> dict[str, Any]:
    """The introspection of `class_name` in `code` (or of its only strategy class), as JSON
    without floats; ValueError (IntrospectionError) naming the problem."""
    from tradebot.freqtrade.introspect import IntrospectionError, introspect
    from tradebot.freqtrade.parameters import hyperopt_parameters

    if class_name is None:
        try:
            tree = ast.parse(code)
        except SyntaxError:
            tree = None  # introspect() below names the line
        names = (
            sorted({n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)})
            if tree is not None
            else [""]
        )
        usable, problems = [], []
        for name in names:
            try:
                introspect(code, name)
                usable.append(name)
            except IntrospectionError as exc:
                problems.append(str(exc))
        if len(usable) > 1:
            raise ValueError(
                f"several strategy classes ({', '.join(usable)}); pick one with --class"
            )
        if not usable:
            raise IntrospectionError(
                "; ".join(problems)
                if problems and tree is not None
                else problems[0]
                if problems
                else "no class in the file"
            )
        class_name = usable[0]
    found = introspect(code, class_name)
    return {
        "className": class_name,
        "codeHash": found.code_hash,
        "interface": found.interface.to_wire(),
        "parameters": hyperopt_parameters(code, class_name),
        "warnings": list(found.warnings),
    }
