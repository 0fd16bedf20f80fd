"""Read-only queries for reports and the registry that the RecordStore interface lacks.

RecordStore looks up one strategy version by (uid, code hash) and one run's metrics or
artifacts at a time; the registry needs every version, and a report of a year of runs would
make two queries per run. These read the tables directly, with the same column conversions
as the backends (SQLite: ISO 8601, JSON and decimal text; PostgreSQL: native types).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

from tradebot.freqtrade.hyperopt_summary import EpochRecord
from tradebot.records import queries as q
from tradebot.records.dsn import PostgresDsn, SqliteDsn, parse_dsn
from tradebot.records.errors import RecordsUnavailable, SchemaNotReady
from tradebot.records.models import ArtifactRecord, StrategyRecord

# S608: columns from the constant tuple in queries.py, never from input.
_SELECT_STRATEGIES = (
    f"SELECT {', '.join(q.STRATEGY_COLUMNS)} FROM strategies"  # noqa: S608
    " ORDER BY namespace, name, first_seen, code_hash"
)


def list_strategies(dsn: str, *, namespace: str | None = None) -> list[StrategyRecord]:
    """Every registered strategy version (optionally of one namespace), by namespace, name
    and first sighting."""
    target = parse_dsn(dsn)
    records = []
    for row in _rows(target, _SELECT_STRATEGIES):
        values = dict(zip(q.STRATEGY_COLUMNS, row, strict=True))
        if isinstance(target, SqliteDsn):
            values["interface"] = json.loads(values["interface"])
            values["first_seen"] = dt.datetime.fromisoformat(values["first_seen"])
            values["last_seen"] = dt.datetime.fromisoformat(values["last_seen"])
        records.append(StrategyRecord(**values))
    return [r for r in records if namespace is None or r.namespace == namespace]


def _runs_filter(
    target: SqliteDsn | PostgresDsn, namespace: str | None, since: dt.datetime | None
) -> tuple[str, list[Any]]:
    """A subquery of the ids list_runs(namespace=, since=) returns, and its parameters."""
    # SQLite stores fixed-width UTC text (see sqlite.py), so text order is time order.
    since_value = (
        since.astimezone(dt.UTC).isoformat(timespec="microseconds")
        if since is not None and isinstance(target, SqliteDsn)
        else since
    )
    where, params = q.runs_where(namespace=namespace, since=since_value)
    # runs_where writes only constant clauses with placeholders: never input.
    return f"SELECT id FROM runs{where}", params  # noqa: S608


def metrics_of_runs(
    dsn: str, *, namespace: str | None = None, since: dt.datetime | None = None
) -> dict[str, dict[str, Decimal]]:
    """The metrics of every run list_runs(namespace=, since=) returns, by run id, in one
    query."""
    target = parse_dsn(dsn)
    runs, params = _runs_filter(target, namespace, since)
    found: dict[str, dict[str, Decimal]] = {}
    for run_id, key, value in _rows(
        target,
        f"SELECT run_id, key, value FROM metrics WHERE run_id IN ({runs}) "  # noqa: S608
        "ORDER BY run_id, key",
        params,
    ):
        found.setdefault(run_id, {})[key] = Decimal(value) if isinstance(value, str) else value
    return found


def artifacts_of_runs(
    dsn: str, *, namespace: str | None = None, since: dt.datetime | None = None
) -> dict[str, list[ArtifactRecord]]:
    """The artifacts of every run list_runs(namespace=, since=) returns, by run id."""
    target = parse_dsn(dsn)
    runs, params = _runs_filter(target, namespace, since)
    found: dict[str, list[ArtifactRecord]] = {}
    for run_id, name, path, sha256, size in _rows(
        target,
        "SELECT run_id, name, path, sha256, size FROM artifacts "  # noqa: S608
        f"WHERE run_id IN ({runs}) ORDER BY run_id, name",
        params,
    ):
        found.setdefault(run_id, []).append(
            ArtifactRecord(name=name, path=path, sha256=sha256, size=size)
        )
    return found


def epochs_of_runs(
    dsn: str, *, namespace: str | None = None, since: dt.datetime | None = None
) -> dict[str, list[EpochRecord]]:
    """The hyperopt epochs of every run list_runs(namespace=, since=) returns, by run id."""
    target = parse_dsn(dsn)
    runs, params = _runs_filter(target, namespace, since)
    columns = ", ".join(q.EPOCH_COLUMNS)
    found: dict[str, list[EpochRecord]] = {}
    for run_id, *row in _rows(
        target,
        f"SELECT run_id, {columns} FROM epochs WHERE run_id IN ({runs}) "  # noqa: S608
        "ORDER BY run_id, epoch, worker",
        params,
    ):
        values = dict(zip(q.EPOCH_COLUMNS, row, strict=True))
        # Figures come back as text (SQLite) or Decimal (PostgreSQL); both validate exactly.
        found.setdefault(run_id, []).append(
            EpochRecord.model_validate(
                {k: format(v, "f") if isinstance(v, Decimal) else v for k, v in values.items()}
            )
        )
    return found


def _rows(
    target: SqliteDsn | PostgresDsn, sql: str, params: Sequence[Any] = ()
) -> list[tuple[Any, ...]]:
    if isinstance(target, PostgresDsn):
        return _postgres_rows(target, sql.replace("?", "%s"), params)
    return _sqlite_rows(target.path, target.describe(), sql, params)


def _sqlite_rows(path: Path, where: str, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    if not path.is_file():
        raise RecordsUnavailable(f"{where} is unavailable: the file does not exist")
    try:
        with closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        ) as conn:
            return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            raise SchemaNotReady(
                f"{where} has no records schema; run `tradebot db migrate`"
            ) from exc
        raise RecordsUnavailable(f"{where} is unavailable: {exc}") from exc


def _postgres_rows(target: PostgresDsn, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    import psycopg
    import psycopg.errors

    try:
        with psycopg.connect(target.conninfo, connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()
    except psycopg.errors.UndefinedTable as exc:
        raise SchemaNotReady(
            f"{target.describe()} has no records schema; run `tradebot db migrate`"
        ) from exc
    except psycopg.OperationalError as exc:
        raise RecordsUnavailable(
            f"{target.describe()} is unavailable: {target.scrub(' '.join(str(exc).split()))}"
        ) from exc
