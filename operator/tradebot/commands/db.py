"""`tradebot db`: migrate the records schema, show its version, back it up and restore it."""

from __future__ import annotations

import argparse
from pathlib import Path

from tradebot.commands.common import (
    add_dsn_argument,
    describe_dsn,
    fail,
    missing_database,
    resolve_dsn,
)
from tradebot.records.errors import RecordsError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser(
        "db",
        help="records database: migrate, status, backup, restore",
        description="Manage the records database (runs, metrics, artifacts, strategy "
        "versions, incidents) on SQLite or PostgreSQL. See docs/records.md.",
    )
    actions = db.add_subparsers(dest="db_action", metavar="ACTION", required=True)

    migrate = actions.add_parser(
        "migrate",
        help="apply the migrations the database lacks",
        description="Apply the schema migrations this database lacks, in order, and print "
        "which. Re-runnable (prints that the schema is current), and safe to run from "
        "several processes at once (they queue on a lock; one applies each step).",
    )
    add_dsn_argument(migrate)
    migrate.set_defaults(handler=_migrate)

    status = actions.add_parser(
        "status",
        help="print the applied and pending migrations",
        description="Print the schema versions applied to this database and those this "
        "operator version would still apply. Exit 0 when current, 3 when migrations are "
        "pending.",
    )
    add_dsn_argument(status)
    status.set_defaults(handler=_status)

    backup = actions.add_parser(
        "backup",
        help="write a backup of the database to a file",
        description="SQLite: a consistent copy made with SQLite's online backup API (safe "
        "while the operator writes). PostgreSQL: `pg_dump --format=custom` (pg_dump from PATH "
        "or /usr/lib/postgresql/*/bin; the password goes through PGPASSWORD, never the "
        "command line). The file is replaced only once the backup is complete.",
    )
    add_dsn_argument(backup)
    backup.add_argument(
        "-o", "--output", type=Path, required=True, metavar="FILE", help="the backup file to write"
    )
    backup.set_defaults(handler=_backup)

    restore = actions.add_parser(
        "restore",
        help="restore a backup into an empty database",
        description="Restore a file made by `tradebot db backup` into an empty database of "
        "the same backend: a new SQLite file, or a PostgreSQL database without tables "
        "(`pg_restore --single-transaction`: all or nothing). Prints the rows restored per "
        "table. A non-empty target is refused.",
    )
    add_dsn_argument(restore)
    restore.add_argument("file", type=Path, metavar="FILE", help="the backup file")
    restore.set_defaults(handler=_restore)


def _migrate(args: argparse.Namespace) -> int:
    from tradebot.records import open_store

    dsn = resolve_dsn(args.dsn)
    try:
        with open_store(dsn) as store:
            applied = store.migrate()
            current = store.applied_migrations()
    except (RecordsError, ValueError) as exc:
        return fail("db migrate", str(exc))
    where = describe_dsn(dsn)
    if applied:
        print(f"{where}: applied migration(s) {', '.join(map(str, applied))}")
    else:
        print(f"{where}: schema is current (version {max(current, default=0)})")
    return 0


def _status(args: argparse.Namespace) -> int:
    from tradebot.records import open_store
    from tradebot.records.migrations import MIGRATIONS

    dsn = resolve_dsn(args.dsn)
    try:
        missing = missing_database(dsn)
        if missing is not None:
            return fail("db status", missing)
        with open_store(dsn) as store:
            applied = set(store.applied_migrations())
    except (RecordsError, ValueError) as exc:
        return fail("db status", str(exc))
    print(describe_dsn(dsn))
    for migration in MIGRATIONS:
        state = "applied" if migration.version in applied else "pending"
        print(f"  {migration.version:>4}  {state:<8} {migration.description}")
    unknown = sorted(applied - {m.version for m in MIGRATIONS})
    for version in unknown:
        # A newer operator migrated this database; this one still works (migrations only add).
        print(f"  {version:>4}  applied  (unknown to this version of tradebot)")
    pending = [m.version for m in MIGRATIONS if m.version not in applied]
    if pending:
        print(f"pending: {', '.join(map(str, pending))}; run `tradebot db migrate`")
        return 3
    print("schema is current")
    return 0


def _backup(args: argparse.Namespace) -> int:
    from tradebot.records.backup import backup

    try:
        made = backup(resolve_dsn(args.dsn), args.output)
    except (RecordsError, ValueError) as exc:
        return fail("db backup", str(exc))
    print(f"backed up {made.source} to {made.path} ({made.size} bytes)")
    return 0


def _restore(args: argparse.Namespace) -> int:
    from tradebot.records.backup import restore

    dsn = resolve_dsn(args.dsn)
    try:
        counts = restore(dsn, args.file)
    except (RecordsError, ValueError) as exc:
        return fail("db restore", str(exc))
    print(f"restored {args.file} into {describe_dsn(dsn)}")
    for table, rows in counts.items():
        print(f"  {table:<20} {rows} rows")
    return 0
