"""Read-only queries for reports and the registry that the RecordStore interface lacks.

RecordStore looks up one strategy version by (uid, code hash); the registry and reports need
every version. Until the store offers that, this reads the strategies table directly, with
the same column conversions as the backends (SQLite: ISO 8601 and JSON text; PostgreSQL:
timestamptz and jsonb).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from tradebot.records import queries as q
from tradebot.records.dsn import PostgresDsn, parse_dsn
from tradebot.records.errors import RecordsUnavailable, SchemaNotReady
from tradebot.records.models import StrategyRecord

# S608: columns from the constant tuple in queries.py, never from input.
_SELECT_ALL = (f"SELECT {', '.join(q.STRATEGY_COLUMNS)} FROM strategies"  # noqa: S608
               " ORDER BY namespace, name, first_seen, code_hash")


def list_strategies(dsn: str, *, namespace: str | None = None) -> list[StrategyRecord]:
    """Every registered strategy version (optionally of one namespace), by namespace, name
    and first sighting."""
    target = parse_dsn(dsn)
    rows = _postgres_rows(target) if isinstance(target, PostgresDsn) \
        else _sqlite_rows(target.path, target.describe())
    records = [StrategyRecord(**dict(zip(q.STRATEGY_COLUMNS, row, strict=True)))
               for row in rows]
    return [r for r in records if namespace is None or r.namespace == namespace]


def _sqlite_rows(path: Path, where: str) -> list[tuple[Any, ...]]:
    if not path.is_file():
        raise RecordsUnavailable(f"{where} is unavailable: the file does not exist")
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                       timeout=5)) as conn:
            rows = conn.execute(_SELECT_ALL).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            raise SchemaNotReady(f"{where} has no records schema; run `tradebot db migrate`"
                                 ) from exc
        raise RecordsUnavailable(f"{where} is unavailable: {exc}") from exc
    converted = []
    for row in rows:
        values = list(row)
        values[5] = json.loads(values[5])
        values[6] = dt.datetime.fromisoformat(values[6])
        values[7] = dt.datetime.fromisoformat(values[7])
        converted.append(tuple(values))
    return converted


def _postgres_rows(target: PostgresDsn) -> list[tuple[Any, ...]]:
    import psycopg
    import psycopg.errors

    try:
        with psycopg.connect(target.conninfo, connect_timeout=5) as conn:
            return conn.execute(_SELECT_ALL).fetchall()
    except psycopg.errors.UndefinedTable as exc:
        raise SchemaNotReady(f"{target.describe()} has no records schema; run "
                             "`tradebot db migrate`") from exc
    except psycopg.OperationalError as exc:
        raise RecordsUnavailable(f"{target.describe()} is unavailable: "
                                 f"{target.scrub(' '.join(str(exc).split()))}") from exc
