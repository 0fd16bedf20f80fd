"""What both SQL backends share: the store's methods, written once against a small transaction
interface. A backend supplies connections, error translation and how values are stored."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from decimal import Decimal
from types import TracebackType
from typing import Any, Protocol, Self

from tradebot.freqtrade.hyperopt_summary import EpochRecord
from tradebot.records import queries as q
from tradebot.records.errors import (
    MigrationFailed,
    RecordsError,
    RecordsUnavailable,
    RunConflict,
    UnknownRun,
)
from tradebot.records.migrations import (
    COLUMN_TYPES,
    MIGRATIONS,
    SCHEMA_MIGRATIONS,
    Dialect,
    Migration,
)
from tradebot.records.models import (
    ArtifactRecord,
    BacktestDetail,
    BacktestTrade,
    BotSnapshot,
    BreakdownRow,
    DailyProfit,
    DcaBuyRecord,
    EquityPoint,
    IncidentRecord,
    RunKind,
    RunRecord,
    StrategyRecord,
    exact_metric,
    utc_now,
)
from tradebot.records.storable import storable


class Transaction(Protocol):
    """One open transaction; committed when the block ends, rolled back if it raises."""

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def run(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    def run_many(self, sql: str, params: Iterable[Sequence[Any]]) -> None: ...


class SqlRecordStore(ABC):
    dialect: Dialect

    def __init__(self) -> None:
        self._closed = False

    # ---- what a backend provides ---------------------------------------------------------
    @abstractmethod
    def _begin(self, *, write: bool) -> AbstractContextManager[Transaction]:
        """A transaction; with write=True it holds the database's write lock from the start
        where the backend has one, so read-then-write sequences cannot interleave."""

    @abstractmethod
    def _lock_for_migration(self, tx: Transaction) -> None: ...

    @abstractmethod
    def _table_exists(self, tx: Transaction, table: str) -> bool: ...

    @abstractmethod
    def _close(self) -> None: ...

    @abstractmethod
    def describe(self) -> str:
        """The database, for messages: host, port and name, or the file; never a password."""

    def _is_outage(self, exc: Exception) -> bool:
        """Whether a driver error means the database went away (retry) rather than a fault."""
        return False

    def _scrub(self, text: str) -> str:
        """`text` with anything secret masked (a backend that knows a password overrides)."""
        return " ".join(text.split())

    @abstractmethod
    def _time_in(self, value: dt.datetime | None) -> object: ...

    @abstractmethod
    def _time_out(self, value: object) -> dt.datetime | None: ...

    @abstractmethod
    def _exact_in(self, value: Decimal) -> object: ...

    @abstractmethod
    def _exact_out(self, value: object) -> Decimal: ...

    @abstractmethod
    def _json_in(self, value: dict[str, Any] | list[Any]) -> object: ...

    @abstractmethod
    def _json_out(self, value: object) -> Any: ...

    @abstractmethod
    def _json_list_has(self, column: str) -> str:
        """A condition true when the JSON list in `column` holds the text bound to its one
        `?` placeholder."""

    # ---- the store -----------------------------------------------------------------------
    @contextmanager
    def _tx(self, *, write: bool) -> Iterator[Transaction]:
        if self._closed:
            raise RecordsError("the records store is closed")
        with self._begin(write=write) as tx:
            yield tx

    def migrate(self, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
        """Applies each missing migration in a transaction of its own, under the migration
        lock, so one that fails half-way leaves the schema at the version before it (DDL is
        transactional on both backends) and a later run starts again from there.
        `migrations` is for tests that need a failing step; callers leave it alone."""
        applied: list[int] = []
        for migration in migrations:
            with self._tx(write=True) as tx:
                self._lock_for_migration(tx)
                tx.run(SCHEMA_MIGRATIONS.format_map(COLUMN_TYPES[self.dialect]))
                # Read under the lock: another process may have applied it meanwhile.
                if tx.rows(q.MIGRATION_APPLIED, (migration.version,)):
                    continue
                with self._migration_errors(migration):
                    for statement in migration.statements(self.dialect):
                        tx.run(statement)
                tx.run(
                    q.RECORD_MIGRATION,
                    (migration.version, migration.description, self._time_in(utc_now())),
                )
            applied.append(migration.version)
        return applied

    @contextmanager
    def _migration_errors(self, migration: Migration) -> Iterator[None]:
        try:
            yield
        except RecordsUnavailable:
            raise  # the database went away: retry later, nothing is wrong with the step
        except Exception as exc:
            if self._is_outage(exc):
                raise
            raise MigrationFailed(
                f"records migration {migration.version} ({migration.description}) failed on "
                f"{self.describe()}: {self._scrub(str(exc))}; the schema stays at the version "
                "before it and the next migrate() retries it"
            ) from exc

    def applied_migrations(self) -> list[int]:
        with self._tx(write=False) as tx:
            if not self._table_exists(tx, "schema_migrations"):
                return []
            return [row[0] for row in tx.rows(q.APPLIED_MIGRATIONS)]

    def register_strategy(
        self,
        namespace: str,
        name: str,
        uid: str,
        class_name: str,
        code_hash: str,
        interface: dict[str, Any],
        *,
        seen_at: dt.datetime | None = None,
    ) -> None:
        when = seen_at or utc_now()
        namespace, name, uid, class_name, interface = storable(
            (namespace, name, uid, class_name, interface)
        )
        record = StrategyRecord(
            namespace=namespace,
            name=name,
            uid=uid,
            class_name=class_name,
            code_hash=code_hash,
            interface=interface,
            first_seen=when,
            last_seen=when,
        )
        seen = self._time_in(record.last_seen)
        with self._tx(write=True) as tx:
            tx.run(
                q.UPSERT_STRATEGY,
                (
                    record.namespace,
                    record.name,
                    record.uid,
                    record.class_name,
                    record.code_hash,
                    self._json_in(record.interface),
                    seen,
                    seen,
                ),
            )
            tx.run(q.EARLIER_FIRST_SEEN, (seen, record.uid, record.code_hash, seen))

    def get_strategy(self, uid: str, code_hash: str) -> StrategyRecord | None:
        with self._tx(write=False) as tx:
            rows = tx.rows(q.SELECT_STRATEGY, (uid, code_hash))
        if not rows:
            return None
        values = dict(zip(q.STRATEGY_COLUMNS, rows[0], strict=True))
        values["interface"] = self._json_out(values["interface"])
        values["first_seen"] = self._time_out(values["first_seen"])
        values["last_seen"] = self._time_out(values["last_seen"])
        return StrategyRecord(**values)

    def record_run(self, run: RunRecord) -> None:
        run = storable(run)
        values = run.model_dump()
        params = [
            self._time_in(values[c]) if c in q.RUN_TIME_COLUMNS else values[c]
            for c in q.RUN_COLUMNS
        ]
        with self._tx(write=True) as tx:
            tx.run(q.UPSERT_RUN, params)
            # Checked after the upsert, which locks the row, so a concurrent first write with
            # another identity cannot slip between the check and the write.
            stored = tuple(tx.rows(q.RUN_IDENTITY, (run.id,))[0])
            given = (run.resource_uid, run.namespace, run.name, run.kind)
            if stored != given:
                raise RunConflict(
                    f"run id {run.id!r} already belongs to {stored[3]} {stored[1]}/{stored[2]} "
                    f"(uid {stored[0]}); refusing to record {run.kind} "
                    f"{run.namespace}/{run.name} (uid {run.resource_uid}) under it"
                )

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._tx(write=False) as tx:
            rows = tx.rows(f"{q.SELECT_RUNS} WHERE id = ?", (run_id,))
        return self._run_from_row(rows[0]) if rows else None

    def list_runs(
        self,
        *,
        namespace: str | None = None,
        kind: RunKind | None = None,
        since: dt.datetime | None = None,
    ) -> list[RunRecord]:
        where, params = q.runs_where(
            namespace=namespace, kind=kind, since=None if since is None else self._since(since)
        )
        with self._tx(write=False) as tx:
            rows = tx.rows(q.SELECT_RUNS + where + q.RUNS_ORDER, params)
        return [self._run_from_row(row) for row in rows]

    def record_metrics(self, run_id: str, metrics: Mapping[str, Decimal]) -> None:
        run_id, metrics = storable((run_id, metrics))
        exact = {key: exact_metric(key, value) for key, value in metrics.items()}
        # Sorted, so two writers of the same run lock rows in one order and cannot deadlock.
        params = [(run_id, key, self._exact_in(exact[key])) for key in sorted(exact)]
        with self._tx(write=True) as tx:
            self._require_run(tx, run_id)
            tx.run_many(q.UPSERT_METRIC, params)

    def get_metrics(self, run_id: str) -> dict[str, Decimal]:
        with self._tx(write=False) as tx:
            rows = tx.rows(q.SELECT_METRICS, (run_id,))
        return {key: self._exact_out(value) for key, value in rows}

    def record_artifacts(self, run_id: str, artifacts: Sequence[ArtifactRecord]) -> None:
        run_id, artifacts = storable((run_id, tuple(artifacts)))
        by_name = {a.name: a for a in artifacts}
        if len(by_name) != len(artifacts):
            raise ValueError(f"artifact names repeat in one call for run {run_id!r}")
        params = [
            (run_id, a.name, a.path, a.sha256, a.size)
            for a in sorted(artifacts, key=lambda a: a.name)
        ]
        with self._tx(write=True) as tx:
            self._require_run(tx, run_id)
            tx.run_many(q.UPSERT_ARTIFACT, params)

    def get_artifacts(self, run_id: str) -> list[ArtifactRecord]:
        with self._tx(write=False) as tx:
            rows = tx.rows(q.SELECT_ARTIFACTS, (run_id,))
        return [ArtifactRecord(name=n, path=p, sha256=s, size=z) for n, p, s, z in rows]

    def record_incident(self, incident: IncidentRecord) -> bool:
        incident = storable(incident)
        values = incident.model_dump()
        values["bots"] = self._json_in(list(incident.bots))
        values["figures"] = self._json_in(
            {key: format(figure, "f") for key, figure in incident.figures.items()}
        )
        values["created_at"] = self._time_in(incident.created_at)
        with self._tx(write=True) as tx:
            inserted = tx.rows(q.INSERT_INCIDENT, [values[c] for c in q.INCIDENT_COLUMNS])
        return bool(inserted)

    def get_incident(self, incident_id: str) -> IncidentRecord | None:
        with self._tx(write=False) as tx:
            rows = tx.rows(f"{q.SELECT_INCIDENTS} WHERE id = ?", (incident_id,))
        return self._incident_from_row(rows[0]) if rows else None

    def list_incidents(
        self,
        *,
        namespace: str | None = None,
        breaker: str | None = None,
        bot: str | None = None,
        since: dt.datetime | None = None,
    ) -> list[IncidentRecord]:
        clauses: list[str] = []
        params: list[Any] = []
        if namespace is not None:
            clauses.append("namespace = ?")
            params.append(namespace)
        if breaker is not None:
            clauses.append("breaker = ?")
            params.append(breaker)
        if bot is not None:
            clauses.append(
                f"((source_kind = 'LiveBot' AND source_name = ?) OR {self._json_list_has('bots')})"
            )
            params += [bot, bot]
        if since is not None:
            clauses.append("created_at >= ?")
            params.append(self._since(since))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._tx(write=False) as tx:
            rows = tx.rows(q.SELECT_INCIDENTS + where + q.INCIDENTS_ORDER, params)
        return [self._incident_from_row(row) for row in rows]

    def record_snapshot(self, snapshot: BotSnapshot) -> None:
        snapshot = storable(snapshot)
        values = snapshot.model_dump()
        values["taken_at"] = self._time_in(snapshot.taken_at)
        for column in q.SNAPSHOT_EXACT_COLUMNS:
            if values[column] is not None:
                values[column] = self._exact_in(values[column])
        with self._tx(write=True) as tx:
            tx.run(q.UPSERT_SNAPSHOT, [values[c] for c in q.SNAPSHOT_COLUMNS])

    def list_snapshots(
        self,
        bot_uid: str,
        *,
        since: dt.datetime | None = None,
        code_hash: str | None = None,
    ) -> list[BotSnapshot]:
        sql = f"{q.SELECT_SNAPSHOTS} WHERE bot_uid = ?"
        params: list[Any] = [bot_uid]
        if code_hash is not None:
            sql += " AND code_hash = ?"
            params.append(code_hash)
        if since is not None:
            sql += " AND taken_at >= ?"
            params.append(self._since(since))
        with self._tx(write=False) as tx:
            rows = tx.rows(sql + q.SNAPSHOTS_ORDER, params)
        return [self._snapshot_from_row(row) for row in rows]

    def record_epochs(self, run_id: str, epochs: Sequence[EpochRecord]) -> None:
        run_id, epochs = storable((run_id, tuple(epochs)))
        _check_epochs(run_id, epochs)
        # Sorted, so two writers of the same run lock rows in one order and cannot deadlock.
        params = [
            [run_id, *self._epoch_values(e)]
            for e in sorted(epochs, key=lambda e: (e.epoch, e.worker))
        ]
        with self._tx(write=True) as tx:
            self._require_run(tx, run_id)
            tx.run_many(q.UPSERT_EPOCH, params)

    def epochs(self, run_id: str) -> list[EpochRecord]:
        with self._tx(write=False) as tx:
            rows = tx.rows(q.SELECT_EPOCHS, (run_id,))
        return [self._epoch_from_row(row) for row in rows]

    def record_dca_buy(self, record: DcaBuyRecord) -> None:
        record = storable(record)
        values = record.model_dump()
        for column in q.DCA_BUY_TIME_COLUMNS:
            values[column] = self._time_in(values[column])
        for column in q.DCA_BUY_EXACT_COLUMNS:
            if values[column] is not None:
                values[column] = self._exact_in(values[column])
        with self._tx(write=True) as tx:
            tx.run(q.UPSERT_DCA_BUY, [values[c] for c in q.DCA_BUY_COLUMNS])

    def dca_buys(
        self, namespace: str | None = None, schedule: str | None = None
    ) -> list[DcaBuyRecord]:
        clauses: list[str] = []
        params: list[Any] = []
        for clause, value in (("namespace = ?", namespace), ("schedule = ?", schedule)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._tx(write=False) as tx:
            rows = tx.rows(q.SELECT_DCA_BUYS + where + q.DCA_BUYS_ORDER, params)
        return [self._dca_buy_from_row(row) for row in rows]

    def record_backtest_detail(self, run_id: str, detail: BacktestDetail) -> None:
        # Replaced as a whole in one transaction: a replay, or a corrected parse, leaves exactly
        # the rows of the last write, never a mix.
        trades = [[run_id, *self._trade_values(t)] for t in detail.trades]
        breakdowns = [
            [run_id, table, position, *self._breakdown_values(row)]
            for table, rows in (("pair", detail.per_pair), ("exit_reason", detail.exit_reasons))
            for position, row in enumerate(rows)
        ]
        daily = [(run_id, d.day.isoformat(), self._exact_in(d.profit_abs)) for d in detail.daily]
        equity = [
            (run_id, seq, self._time_in(p.at), self._exact_in(p.equity), self._exact_in(p.drawdown))
            for seq, p in enumerate(detail.equity)
        ]
        with self._tx(write=True) as tx:
            self._require_run(tx, run_id)
            for table in q.DETAIL_TABLES:
                tx.run(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))  # noqa: S608
            tx.run(
                q.INSERT_DETAIL,
                (
                    run_id,
                    self._exact_in(detail.starting_balance),
                    detail.stake_currency,
                    self._time_in(utc_now()),
                ),
            )
            for sql, params in (
                (q.INSERT_TRADE, trades),
                (q.INSERT_BREAKDOWN, breakdowns),
                (q.INSERT_DAILY, daily),
                (q.INSERT_EQUITY, equity),
            ):
                if params:
                    tx.run_many(sql, params)

    def backtest_detail(self, run_id: str) -> BacktestDetail | None:
        with self._tx(write=False) as tx:
            header = tx.rows(q.SELECT_DETAIL, (run_id,))
            if not header:
                return None
            trades = tx.rows(q.SELECT_TRADES, (run_id,))
            breakdowns = tx.rows(q.SELECT_BREAKDOWNS, (run_id,))
            daily = tx.rows(q.SELECT_DAILY, (run_id,))
            equity = tx.rows(q.SELECT_EQUITY, (run_id,))
        rows: dict[str, list[BreakdownRow]] = {"pair": [], "exit_reason": []}
        for table, *values in breakdowns:
            rows[table].append(self._breakdown_from_row(values))
        return BacktestDetail(
            starting_balance=self._exact_out(header[0][0]),
            stake_currency=header[0][1],
            trades=tuple(self._trade_from_row(row) for row in trades),
            per_pair=tuple(rows["pair"]),
            exit_reasons=tuple(rows["exit_reason"]),
            daily=tuple(
                DailyProfit(day=dt.date.fromisoformat(day), profit_abs=self._exact_out(value))
                for day, value in daily
            ),
            equity=tuple(
                EquityPoint.model_validate(
                    {
                        "at": self._time_out(at),
                        "equity": self._exact_out(value),
                        "drawdown": self._exact_out(fall),
                    }
                )
                for at, value, fall in equity
            ),
        )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- helpers -------------------------------------------------------------------------
    def _require_run(self, tx: Transaction, run_id: str) -> None:
        if not tx.rows(q.RUN_EXISTS, (run_id,)):
            raise UnknownRun(f"no run {run_id!r} is recorded; record_run() it first")

    def _since(self, since: dt.datetime) -> object:
        if since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        return self._time_in(since)

    def _incident_from_row(self, row: Sequence[Any]) -> IncidentRecord:
        values = dict(zip(q.INCIDENT_COLUMNS, row, strict=True))
        values["bots"] = tuple(self._json_out(values["bots"]))
        # Stored as exact decimal strings; Decimal(text) gives back every digit.
        values["figures"] = {k: Decimal(v) for k, v in self._json_out(values["figures"]).items()}
        values["created_at"] = self._time_out(values["created_at"])
        return IncidentRecord(**values)

    def _snapshot_from_row(self, row: Sequence[Any]) -> BotSnapshot:
        values = dict(zip(q.SNAPSHOT_COLUMNS, row, strict=True))
        values["taken_at"] = self._time_out(values["taken_at"])
        for column in q.SNAPSHOT_EXACT_COLUMNS:
            if values[column] is not None:
                values[column] = self._exact_out(values[column])
        return BotSnapshot(**values)

    def _dca_buy_from_row(self, row: Sequence[Any]) -> DcaBuyRecord:
        values = dict(zip(q.DCA_BUY_COLUMNS, row, strict=True))
        for column in q.DCA_BUY_TIME_COLUMNS:
            values[column] = self._time_out(values[column])
        for column in q.DCA_BUY_EXACT_COLUMNS:
            if values[column] is not None:
                values[column] = self._exact_out(values[column])
        return DcaBuyRecord(**values)

    def _trade_values(self, trade: BacktestTrade) -> list[Any]:
        values: list[Any] = []
        for column in q.TRADE_COLUMNS:
            value = getattr(trade, column)
            if column in q.TRADE_EXACT_COLUMNS and value is not None:
                value = self._exact_in(value)
            elif column in q.TRADE_TIME_COLUMNS:
                value = self._time_in(value)
            elif column == "is_short":
                value = int(value)
            values.append(value)
        return values

    def _trade_from_row(self, row: Sequence[Any]) -> BacktestTrade:
        values = dict(zip(q.TRADE_COLUMNS, row, strict=True))
        for column in q.TRADE_EXACT_COLUMNS:
            if values[column] is not None:
                values[column] = self._exact_out(values[column])
        for column in q.TRADE_TIME_COLUMNS:
            values[column] = self._time_out(values[column])
        values["is_short"] = bool(values["is_short"])
        return BacktestTrade(**values)

    def _breakdown_values(self, row: BreakdownRow) -> list[Any]:
        return [
            self._exact_in(v)
            if c in q.BREAKDOWN_EXACT_COLUMNS and (v := getattr(row, c)) is not None
            else getattr(row, c)
            for c in q.BREAKDOWN_COLUMNS
        ]

    def _breakdown_from_row(self, row: Sequence[Any]) -> BreakdownRow:
        values = dict(zip(q.BREAKDOWN_COLUMNS, row, strict=True))
        for column in q.BREAKDOWN_EXACT_COLUMNS:
            if values[column] is not None:
                values[column] = self._exact_out(values[column])
        return BreakdownRow(**values)

    def _epoch_values(self, epoch: EpochRecord) -> list[Any]:
        # Attributes, not model_dump(): the figures serialise as text, the store wants Decimal.
        values = {c: getattr(epoch, c) for c in q.EPOCH_COLUMNS}
        return [
            self._exact_in(exact_metric(c, values[c]))
            if c in q.EPOCH_EXACT_COLUMNS and values[c] is not None
            else values[c]
            for c in q.EPOCH_COLUMNS
        ]

    def _epoch_from_row(self, row: Sequence[Any]) -> EpochRecord:
        values = dict(zip(q.EPOCH_COLUMNS, row, strict=True))
        for column in q.EPOCH_EXACT_COLUMNS:
            if values[column] is not None:
                values[column] = self._exact_out(values[column])
        return EpochRecord.model_validate(values)

    def _run_from_row(self, row: Sequence[Any]) -> RunRecord:
        values = dict(zip(q.RUN_COLUMNS, row, strict=True))
        for column in q.RUN_TIME_COLUMNS:
            values[column] = self._time_out(values[column])
        return RunRecord(**values)


def _check_epochs(run_id: str, epochs: Sequence[EpochRecord]) -> None:
    keys = [(e.worker, e.epoch) for e in epochs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"an epoch (worker, epoch) repeats in one call for run {run_id!r}")
