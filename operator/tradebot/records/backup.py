"""Backups of a records database, and restoring one into an empty database.

SQLite: the sqlite3 online backup API, which copies a consistent snapshot while the operator
keeps writing (WAL readers never block the writer). PostgreSQL: `pg_dump --format=custom` and
`pg_restore`, with the password passed in PGPASSWORD: never on a command line, where any user
of the machine could read it from the process table.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import sqlite3
import subprocess
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradebot.records.dsn import PostgresDsn, SqliteDsn, parse_dsn
from tradebot.records.errors import RecordsError

if TYPE_CHECKING:
    import psycopg

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_CUSTOM_MAGIC = b"PGDMP"
# Parameters libpq cannot take from the environment: they would have to go on the command line.
_COMMAND_LINE_SECRETS = ("sslpassword",)


class BackupError(RecordsError):
    """A backup or restore could not be made; the message names the problem (never a password)."""


@dataclass(frozen=True)
class Backup:
    path: Path
    size: int
    source: str  # the database in words


def backup(dsn: str, destination: Path) -> Backup:
    """Writes a backup of the database `dsn` names to `destination` (replaced atomically: a
    failed backup leaves any older file there untouched)."""
    target = parse_dsn(dsn)
    destination = destination.expanduser()
    if not destination.parent.is_dir():
        raise BackupError(
            f"cannot write {destination}: directory {destination.parent} does not exist"
        )
    partial = destination.with_name(f".{destination.name}.partial-{os.getpid()}")
    try:
        if isinstance(target, SqliteDsn):
            _sqlite_backup(target, destination, partial)
        else:
            _pg_dump(target, partial)
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)
    return Backup(destination, destination.stat().st_size, target.describe())


def restore(dsn: str, source: Path) -> dict[str, int]:
    """Restores the backup at `source` into the database `dsn` names, which must hold no
    tables yet (restoring over records would mix two histories). Returns rows per table."""
    target = parse_dsn(dsn)
    source = source.expanduser()
    kind = backup_kind(source)
    if isinstance(target, SqliteDsn):
        if kind != "sqlite":
            raise BackupError(f"{source} is a PostgreSQL dump; restore it into a postgresql:// DSN")
        _sqlite_restore(source, target)
    else:
        if kind != "postgres":
            raise BackupError(
                f"{source} is a SQLite backup; restore it into a sqlite:/// DSN (or copy the file)"
            )
        _pg_restore(source, target)
    return table_counts(dsn)


def backup_kind(path: Path) -> str:
    """ "sqlite" or "postgres" from the file's first bytes; BackupError for anything else."""
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        raise BackupError(f"backup file {path} does not exist") from None
    except OSError as exc:
        raise BackupError(f"cannot read backup file {path}: {exc.strerror}") from None
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(PG_CUSTOM_MAGIC):
        return "postgres"
    raise BackupError(
        f"{path} is neither a SQLite database nor a pg_dump custom-format "
        "archive (made by `tradebot db backup`?)"
    )


def table_counts(dsn: str) -> dict[str, int]:
    """Rows in each table of the database, by table name."""
    target = parse_dsn(dsn)
    if isinstance(target, SqliteDsn):
        with closing(_sqlite_connect(target.path)) as conn:
            tables = _sqlite_tables(conn)
            # Table names come from sqlite_master, quoted: not user input.
            return {
                t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]  # noqa: S608
                for t in tables
            }
    from psycopg import sql

    with _pg_connect(target) as conn:
        tables = _pg_tables(conn)
        return {
            t: _one_int(
                conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))
                ).fetchone()
            )
            for t in tables
        }


# ---- SQLite ---------------------------------------------------------------------------------
def _sqlite_connect(path: Path) -> sqlite3.Connection:
    try:
        return sqlite3.connect(path, timeout=30)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open SQLite database {path}: {exc}") from exc


def _sqlite_tables(conn: sqlite3.Connection) -> list[str]:
    return [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
    ]


def _sqlite_backup(source: SqliteDsn, destination: Path, partial: Path) -> None:
    if not source.path.is_file():
        # sqlite3.connect would create an empty file and back that up.
        raise BackupError(f"SQLite database {source.path} does not exist")
    if destination.resolve() == source.path.resolve():
        raise BackupError(f"refusing to write the backup over the database itself ({source.path})")
    try:
        with closing(_sqlite_connect(source.path)) as src, closing(sqlite3.connect(partial)) as dst:
            # One step (pages=-1): the whole copy is one read transaction, so it is a
            # consistent snapshot even while the operator writes.
            src.backup(dst)
    except sqlite3.Error as exc:
        raise BackupError(f"backup of SQLite database {source.path} failed: {exc}") from exc


def _sqlite_restore(source: Path, target: SqliteDsn) -> None:
    if not target.path.parent.is_dir():
        raise BackupError(
            f"cannot restore into {target.path}: directory {target.path.parent} does not exist"
        )
    try:
        with closing(sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)) as src:
            if "schema_migrations" not in _sqlite_tables(src):
                raise BackupError(
                    f"{source} is a SQLite database but not a records backup "
                    "(it has no schema_migrations table)"
                )
            problem = src.execute("PRAGMA integrity_check").fetchone()[0]
            if problem != "ok":
                raise BackupError(f"{source} is damaged: {problem}")
            with closing(_sqlite_connect(target.path)) as dst:
                present = _sqlite_tables(dst)
                if present:
                    raise BackupError(
                        f"SQLite database {target.path} is not empty (it has tables "
                        f"{', '.join(present)}); restore into a new file"
                    )
                src.backup(dst)
                # The copy keeps the backup's journal mode; the store expects WAL.
                dst.execute("PRAGMA journal_mode = WAL")
    except sqlite3.Error as exc:
        raise BackupError(f"restore of {source} into {target.path} failed: {exc}") from exc


# ---- PostgreSQL -----------------------------------------------------------------------------
def pg_tool(name: str) -> str:
    """The path of a PostgreSQL client program: on PATH, else the newest Debian install."""
    found = shutil.which(name)
    if found:
        return found

    def version(path: str) -> int:
        match = re.search(r"/postgresql/(\d+)/bin/", path)
        return int(match.group(1)) if match else 0

    installed = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=version)
    if installed:
        return installed[-1]
    raise BackupError(
        f"{name} not found on PATH or in /usr/lib/postgresql/*/bin; install "
        "the PostgreSQL client (Debian: apt-get install postgresql-client)"
    )


def _client_args(target: PostgresDsn) -> tuple[str, dict[str, str]]:
    """A connection string without the password, and the environment carrying it."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        params = conninfo_to_dict(target.conninfo)
    except Exception as exc:  # psycopg.ProgrammingError; its text may quote the DSN
        raise BackupError(
            f"cannot parse the DSN of {target.describe()}: {target.scrub(str(exc))}"
        ) from None
    for name in _COMMAND_LINE_SECRETS:
        if name in params:
            raise BackupError(
                f"the DSN has {name}, which libpq's tools can only take on "
                "the command line; use a key without a passphrase"
            )
    env = dict(os.environ)
    password = params.pop("password", None)
    if password is not None:
        env["PGPASSWORD"] = str(password)
    return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None}), env


def _run_tool(target: PostgresDsn, argv: list[str], env: dict[str, str], what: str) -> None:
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise BackupError(f"cannot run {argv[0]}: {exc.strerror}") from None
    if proc.returncode != 0:
        detail = target.scrub(" ".join((proc.stderr or proc.stdout).split()))
        raise BackupError(
            f"{what} of {target.describe()} failed "
            f"({Path(argv[0]).name} exit {proc.returncode}): {detail}"
        )


def _pg_dump(target: PostgresDsn, partial: Path) -> None:
    conninfo, env = _client_args(target)
    _run_tool(
        target,
        [pg_tool("pg_dump"), "--format=custom", "--file", str(partial), "--dbname", conninfo],
        env,
        "backup",
    )


def _pg_restore(source: Path, target: PostgresDsn) -> None:
    with _pg_connect(target) as conn:
        present = _pg_tables(conn)
    if present:
        raise BackupError(
            f"{target.describe()} is not empty (it has tables "
            f"{', '.join(present)}); restore into a new database"
        )
    conninfo, env = _client_args(target)
    # The restoring role owns what it creates; the original owners may not exist here.
    _run_tool(
        target,
        [
            pg_tool("pg_restore"),
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            "--dbname",
            conninfo,
            str(source),
        ],
        env,
        "restore",
    )


def _pg_connect(target: PostgresDsn) -> psycopg.Connection[tuple[Any, ...]]:
    # Imported here so SQLite users never load psycopg.
    import psycopg

    try:
        return psycopg.connect(target.conninfo, connect_timeout=10, autocommit=True)
    except psycopg.Error as exc:
        raise BackupError(
            f"{target.describe()} is unavailable: {target.scrub(' '.join(str(exc).split()))}"
        ) from None


def _pg_tables(conn: psycopg.Connection[tuple[Any, ...]]) -> list[str]:
    rows = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
    ).fetchall()
    return [str(row[0]) for row in rows]


def _one_int(row: tuple[Any, ...] | None) -> int:
    assert row is not None  # count(*) always returns a row
    return int(row[0])
