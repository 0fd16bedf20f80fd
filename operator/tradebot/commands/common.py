"""What the records commands share: which DSN they use and how they report store errors."""

from __future__ import annotations

import argparse
import os
import sys

from tradebot.records.dsn import parse_dsn

DSN_ENV = "TRADEBOT_DATABASE_DSN"


def add_dsn_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dsn",
        metavar="DSN",
        help="records database: sqlite:///path/file.db or postgresql://user@host:port/db "
        f"(default: ${DSN_ENV}, else the operator's default SQLite file under "
        "$TRADEBOT_LOCAL_STATE_DIR, .local/operator/records.db). A password in the DSN is "
        "never printed; prefer PGPASSWORD or ~/.pgpass over putting it there.",
    )


def resolve_dsn(given: str | None) -> str:
    """The DSN a command uses: --dsn, else $TRADEBOT_DATABASE_DSN, else the operator's own
    default, so a command run beside the operator reads the operator's records."""
    if given:
        return given
    from_env = os.environ.get(DSN_ENV)
    if from_env:
        return from_env
    from tradebot.settings import Settings

    return Settings.from_env().database_dsn


def missing_database(dsn: str) -> str | None:
    """Why a read-only command has nothing to read: a SQLite file that does not exist (opening
    it would create an empty one, and the command would then blame a missing schema)."""
    from tradebot.records.dsn import SqliteDsn

    target = parse_dsn(dsn)
    if isinstance(target, SqliteDsn) and not target.path.exists():
        return (
            f"{target.describe()} does not exist (is the operator's "
            "TRADEBOT_DATABASE_DSN elsewhere? pass --dsn); `tradebot db migrate` creates it"
        )
    return None


def describe_dsn(dsn: str) -> str:
    """The database in words (host and name, or the file), never the password."""
    return parse_dsn(dsn).describe()


def fail(command: str, message: str, status: int = 1) -> int:
    print(f"tradebot {command}: {message}", file=sys.stderr)
    return status


def explain(exc: Exception) -> str:
    """A store error as a command's message, with what to run where the store says
    "migrate() first"."""
    from tradebot.records.errors import SchemaNotReady

    text = str(exc)
    if isinstance(exc, SchemaNotReady) and "tradebot db migrate" not in text:
        text += " (`tradebot db migrate` creates it)"
    return text
