"""`tradebot records`: inspect or replay the records outbox (`tradebot db` migrates, backs up
and restores the database itself)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tradebot.commands import records_import
from tradebot.settings import Settings


def register(sub: Any) -> None:
    records = sub.add_parser(
        "records",
        help="the records outbox (count, list, replay); import results made elsewhere",
        description="Work on the records store (docs/records.md). The DSN and the outbox path "
        "default to the operator's settings (TRADEBOT_DATABASE_DSN, TRADEBOT_OUTBOX_PATH, "
        "TRADEBOT_LOCAL_STATE_DIR).",
    )
    actions = records.add_subparsers(dest="records_action", required=True, metavar="ACTION")

    outbox = actions.add_parser(
        "outbox",
        help="how many writes wait in the outbox (exit 3 if any)",
        description="Count the writes waiting in the outbox file for the database (read "
        "only; works while the operator runs).",
    )
    outbox.add_argument("--path", type=Path, help="outbox file (default: the operator's)")
    outbox.set_defaults(handler=_outbox)

    listing = actions.add_parser(
        "list",
        help="the writes waiting in the outbox, or (--failed) those set aside with their error",
        description="List the writes waiting in the outbox for the database, one a line "
        "(operation, when queued), or with --failed the entries set aside because they can "
        "never apply (the database refused their content, an unknown run, an unreadable "
        "line), each with its error. Read only; works while the operator runs. Exit 3 if "
        "any is listed.",
    )
    listing.add_argument("--path", type=Path, help="outbox file (default: the operator's)")
    listing.add_argument(
        "--failed", action="store_true", help="the set-aside entries and their errors"
    )
    listing.set_defaults(handler=_list)

    flush = actions.add_parser(
        "flush",
        help="replay the outbox into the database (operator stopped)",
        description="Replay the outbox into the database in order, as the operator's flusher "
        "does, and print how many writes were applied and how many still wait. The operator "
        "holds its outbox while it runs, so this is for an outbox it left behind.",
    )
    flush.add_argument("--dsn", help="database (default: the operator's)")
    flush.add_argument("--path", type=Path, help="outbox file (default: the operator's)")
    flush.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to connect (default: %(default)s)"
    )
    flush.set_defaults(handler=_flush)

    records_import.add_parser(actions)


def _settings() -> Settings:
    return Settings.from_env()


def _outbox(args: argparse.Namespace) -> int:
    path: Path = args.path or _settings().records_outbox
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    except OSError as exc:
        print(f"tradebot records outbox: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    waiting = data.count(b"\n")  # a torn last line is not a write
    print(f"{path}: {waiting} write{'s' if waiting != 1 else ''} waiting")
    return 3 if waiting else 0


def _list(args: argparse.Namespace) -> int:
    from tradebot.records import entries
    from tradebot.records.outbox import read_set_aside

    path: Path = args.path or _settings().records_outbox
    shown = 0
    try:
        if args.failed:
            for kept in read_set_aside(path):
                print(_set_aside_line(kept.set_aside_at, kept.line, kept.reason))
                shown += 1
        else:
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                data = b""
            complete = data[: data.rfind(b"\n") + 1]  # a torn last line is not a write
            for raw in complete.splitlines():
                try:
                    entry = entries.decode(raw)
                    print(f"{entry.queued_at.isoformat(timespec='seconds')}  {entry.op}")
                except ValueError as exc:
                    print(f"?  unreadable line ({exc})")
                shown += 1
    except OSError as exc:
        print(f"tradebot records list: cannot read beside {path}: {exc}", file=sys.stderr)
        return 1
    what = "set aside" if args.failed else "waiting"
    print(f"{path}: {shown} {what}", file=sys.stderr)
    return 3 if shown else 0


def _set_aside_line(when: str | None, line: str, reason: str) -> str:
    import json

    try:
        op = str(json.loads(line).get("op", "?"))
    except (ValueError, AttributeError):
        op = "?"
    return f"{when or '?'}  {op}  {reason}"


def _flush(args: argparse.Namespace) -> int:
    from tradebot.records import RecordsError
    from tradebot.records.buffered import BufferedStore

    settings = _settings()
    try:
        with BufferedStore.open(
            args.dsn or settings.database_dsn,
            args.path or settings.records_outbox,
            timeout=args.timeout,
        ) as store:
            applied = store.flush()
            left = store.pending
            problem = None if store.connected else "the database is unavailable"
    except (RecordsError, ValueError) as exc:
        print(f"tradebot records flush: {exc}", file=sys.stderr)
        return 1
    print(f"applied {applied}; {left} waiting" + (f" ({problem})" if problem else ""))
    return 0 if not left else 3
