"""The PostgreSQL backend: psycopg 3 with a connection pool."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import psycopg
import psycopg.errors
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from tradebot.records.dsn import PostgresDsn, parse_dsn
from tradebot.records.errors import RecordRejected, RecordsUnavailable, SchemaNotReady
from tradebot.records.migrations import MIGRATION_LOCK_KEY, Dialect
from tradebot.records.sqlstore import SqlRecordStore, Transaction


class _PostgresTransaction:
    def __init__(self, cursor: psycopg.Cursor[tuple[Any, ...]]) -> None:
        self._cursor = cursor

    @staticmethod
    def _sql(sql: str) -> str:
        # The shared SQL uses '?'; none of it contains a literal '?' or '%'.
        return sql.replace("?", "%s")

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._cursor.execute(self._sql(sql), params).fetchall()

    def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(self._sql(sql), params)

    def run_many(self, sql: str, params: Iterable[Sequence[Any]]) -> None:
        self._cursor.executemany(self._sql(sql), params)


class PostgresStore(SqlRecordStore):
    dialect: Dialect = "postgres"

    def __init__(self, dsn: PostgresDsn | str, *, timeout: float = 5.0, max_size: int = 4) -> None:
        """Connects once to fail fast with libpq's reason, then opens a pool of up to
        `max_size` connections. `timeout`: seconds to connect, or to wait for a free
        connection, before RecordsUnavailable."""
        super().__init__()
        if isinstance(dsn, str):
            parsed = parse_dsn(dsn)
            if not isinstance(parsed, PostgresDsn):
                raise ValueError("PostgresStore needs a postgresql:// DSN")
            dsn = parsed
        self._dsn = dsn
        self._timeout = timeout
        self._connect_timeout = max(2, math.ceil(timeout))  # libpq: whole seconds, at least 2
        problem = self._diagnose()
        if problem:
            raise RecordsUnavailable(f"{dsn.describe()} is unavailable: {problem}")
        self._pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = ConnectionPool(
            dsn.conninfo,
            min_size=1,
            max_size=max_size,
            timeout=timeout,
            # A pooled connection may have died with the server; check it before lending it
            # out, so one restart does not fail the next few writes.
            check=ConnectionPool.check_connection,
            kwargs={"connect_timeout": self._connect_timeout},
            name="tradebot-records",
            open=False,
        )
        with self._errors():
            self._pool.open(wait=True, timeout=timeout)

    def _diagnose(self) -> str | None:
        """Why a fresh connection fails right now (password masked), or None if it works."""
        try:
            with psycopg.connect(self._dsn.conninfo, connect_timeout=self._connect_timeout):
                return None
        except psycopg.Error as exc:
            return self._dsn.scrub(" ".join(str(exc).split()))

    @contextmanager
    def _errors(self) -> Iterator[None]:
        where = self._dsn.describe()
        try:
            yield
        except PoolTimeout as exc:
            problem = self._diagnose() or (
                f"no pooled connection came free within {self._timeout:g} s"
            )
            raise RecordsUnavailable(f"{where} is unavailable: {problem}") from exc
        except psycopg.errors.UndefinedTable as exc:
            raise SchemaNotReady(
                f"{where} has no records schema ({self._dsn.scrub(str(exc).strip())}); "
                "run migrate() first"
            ) from exc
        except (psycopg.errors.UndefinedColumn, psycopg.errors.UndefinedFunction) as exc:
            # A schema older than this operator (a migration not applied yet): the same
            # write succeeds once migrate() has run, so it is retried, not set aside.
            raise SchemaNotReady(
                f"{where} has an older records schema ({self._dsn.scrub(str(exc).strip())}); "
                "run migrate() first"
            ) from exc
        except psycopg.errors.InsufficientPrivilege as exc:
            # The role lacks a grant: a person fixes it and every write goes through again.
            problem = self._dsn.scrub(" ".join(str(exc).split()))
            raise RecordsUnavailable(f"{where} refuses this role: {problem}") from exc
        except (
            psycopg.OperationalError,  # connection lost, timeouts, serialization, deadlock
            psycopg.InterfaceError,
            psycopg.InternalError,  # e.g. a transaction aborted by the server
        ) as exc:
            problem = self._dsn.scrub(" ".join(str(exc).split()))
            raise RecordsUnavailable(f"{where} is unavailable: {problem}") from exc
        except (
            psycopg.DataError,  # NUL in text, untranslatable characters, values out of range
            psycopg.IntegrityError,
            psycopg.ProgrammingError,
            psycopg.NotSupportedError,
            UnicodeError,  # text psycopg cannot encode for the connection
        ) as exc:
            # This write's content is at fault, not the database: retrying it can only fail
            # again, and an outbox that retried it would hold every later write behind it.
            problem = self._dsn.scrub(" ".join(str(exc).split()))
            raise RecordRejected(
                f"{where} refused the record ({type(exc).__name__}): {problem}"
            ) from exc

    @contextmanager
    def _begin(self, *, write: bool) -> Iterator[Transaction]:
        # The pool commits when the block ends and rolls back if it raises. Writes need no
        # table lock: each upsert locks the rows it touches.
        with self._errors(), self._pool.connection() as conn, conn.cursor() as cursor:
            yield _PostgresTransaction(cursor)

    def _lock_for_migration(self, tx: Transaction) -> None:
        # Held until the transaction ends; a second migrator waits here, then finds the
        # versions the first one recorded and applies nothing.
        tx.run(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")

    def _table_exists(self, tx: Transaction, table: str) -> bool:
        return tx.rows("SELECT to_regclass(?) IS NOT NULL", (table,))[0][0] is True

    def _close(self) -> None:
        self._pool.close(timeout=self._timeout)

    def describe(self) -> str:
        return self._dsn.describe()

    def _scrub(self, text: str) -> str:
        return self._dsn.scrub(" ".join(text.split()))

    def _is_outage(self, exc: Exception) -> bool:
        return isinstance(
            exc, (psycopg.OperationalError, psycopg.InterfaceError, psycopg.InternalError)
        )

    def _time_in(self, value: dt.datetime | None) -> dt.datetime | None:
        return value

    def _time_out(self, value: object) -> dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise TypeError(f"timestamptz came back as {type(value).__name__}, not datetime")
        # timestamptz comes back in the session's time zone; the records speak UTC.
        return value.astimezone(dt.UTC)

    def _exact_in(self, value: Decimal) -> Decimal:
        return value

    def _exact_out(self, value: object) -> Decimal:
        if not isinstance(value, Decimal):
            raise TypeError(f"numeric came back as {type(value).__name__}, not Decimal")
        return value

    def _json_in(self, value: dict[str, Any] | list[Any]) -> Jsonb:
        return Jsonb(value)

    def _json_out(self, value: object) -> Any:
        if not isinstance(value, (dict, list)):
            raise TypeError(f"jsonb came back as {type(value).__name__}, not an object or list")
        return value

    def _json_list_has(self, column: str) -> str:
        # Containment, so the GIN index on the column (migration 2) serves it.
        return f"{column} @> jsonb_build_array(?::text)"
