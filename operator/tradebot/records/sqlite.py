"""The zero-setup backend: one SQLite file (stdlib sqlite3) in WAL mode.

Each operation opens its own connection: that makes the store safe to share between threads
and processes without a lock of ours, and opening a SQLite connection costs microseconds.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from tradebot.records.errors import RecordRejected, RecordsUnavailable, SchemaNotReady
from tradebot.records.migrations import Dialect
from tradebot.records.sqlstore import SqlRecordStore, Transaction


class _SqliteTransaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, params).fetchall()

    def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._conn.execute(sql, params)

    def run_many(self, sql: str, params: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(sql, params)


class SqliteStore(SqlRecordStore):
    dialect: Dialect = "sqlite"

    def __init__(self, path: str | Path, *, timeout: float = 5.0) -> None:
        """Opens (creating if needed) the file at `path`; its directory must exist, because a
        missing one usually means a volume that is not mounted, and writing elsewhere would
        lose the records. `timeout`: how long a write waits for another writer."""
        super().__init__()
        self.path = Path(path)
        self._timeout = timeout
        with self._errors(), closing(self._connect()) as conn:
            # WAL lets readers proceed while one process writes; it is a property of the file,
            # so setting it once here holds for every later connection.
            self.journal_mode: str = self._set_wal(conn)

    def _set_wal(self, conn: sqlite3.Connection) -> str:
        # Switching the journal mode needs the file to itself, and SQLite answers "database
        # is locked" at once instead of waiting out the busy timeout when others are opening
        # it too: wait here, within the same timeout.
        deadline = time.monotonic() + self._timeout
        delay = 0.01
        while True:
            try:
                return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.25)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; _begin says exactly where they start.
        conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None)
        try:
            conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                raise SchemaNotReady(
                    f"SQLite database {self.path} has no records schema ({exc}); "
                    "run migrate() first"
                ) from exc
            hint = (
                " (does its directory exist, and may this process write there?)"
                if "unable to open" in str(exc)
                else ""
            )
            raise RecordsUnavailable(
                f"SQLite database {self.path} is unavailable: {exc}{hint}"
            ) from exc
        except (
            sqlite3.IntegrityError,
            sqlite3.DataError,
            sqlite3.ProgrammingError,
            sqlite3.NotSupportedError,
            sqlite3.InterfaceError,  # a value sqlite3 cannot bind
            UnicodeError,  # text that cannot be encoded as UTF-8
            OverflowError,  # an int beyond SQLite's 64-bit INTEGER
        ) as exc:
            # This write's content is at fault: retrying it would fail the same way.
            raise RecordRejected(
                f"SQLite database {self.path} refused the record ({type(exc).__name__}): {exc}"
            ) from exc
        except sqlite3.DatabaseError as exc:
            # The file itself (corrupt, not a database, disk I/O, internal): not this write's
            # fault, so it is retried once the file is fixed or restored.
            raise RecordsUnavailable(f"SQLite database {self.path} is unavailable: {exc}") from exc

    @contextmanager
    def _begin(self, *, write: bool) -> Iterator[Transaction]:
        with self._errors(), closing(self._connect()) as conn:
            # IMMEDIATE takes the write lock up front: two writers queue here (up to the
            # timeout) instead of failing later when a read lock cannot be upgraded.
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield _SqliteTransaction(conn)
            conn.execute("COMMIT")
            # On an exception we never reach COMMIT; closing the connection rolls back.

    def _lock_for_migration(self, tx: Transaction) -> None:
        pass  # BEGIN IMMEDIATE already holds the only write lock a SQLite file has

    def _table_exists(self, tx: Transaction, table: str) -> bool:
        return bool(
            tx.rows("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
        )

    def _close(self) -> None:
        pass  # nothing is held between operations

    def describe(self) -> str:
        return f"SQLite database {self.path}"

    def _time_in(self, value: dt.datetime | None) -> str | None:
        # Fixed width and always UTC, so text order is time order (list_runs' since filter).
        return (
            None if value is None else value.astimezone(dt.UTC).isoformat(timespec="microseconds")
        )

    def _time_out(self, value: object) -> dt.datetime | None:
        return None if value is None else dt.datetime.fromisoformat(_text(value))

    def _exact_in(self, value: Decimal) -> str:
        return format(value, "f")

    def _exact_out(self, value: object) -> Decimal:
        return Decimal(_text(value))

    def _json_in(self, value: dict[str, Any] | list[Any]) -> str:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def _json_out(self, value: object) -> Any:
        return json.loads(_text(value))

    def _json_list_has(self, column: str) -> str:
        # S608: `column` is a constant of the store, never input.
        return f"EXISTS (SELECT 1 FROM json_each({column}) WHERE json_each.value = ?)"  # noqa: S608


def _text(value: object) -> str:
    # Every converted column is stored as TEXT; anything else means the file was written by
    # something other than this store.
    if not isinstance(value, str):
        raise TypeError(f"expected a TEXT column value, got {type(value).__name__}")
    return value
