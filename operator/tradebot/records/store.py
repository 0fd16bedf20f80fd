"""The one interface controllers use to keep records, and how a DSN picks its backend."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal
from types import TracebackType
from typing import Any, Protocol, Self

from tradebot.freqtrade.hyperopt_summary import EpochRecord
from tradebot.records.dsn import PostgresDsn, parse_dsn
from tradebot.records.models import (
    ArtifactRecord,
    BacktestDetail,
    BotSnapshot,
    DcaBuyRecord,
    IncidentRecord,
    RunKind,
    RunRecord,
    StrategyRecord,
)


class RecordStore(Protocol):
    """Runs, metrics, artifacts and strategy versions.

    Every write is idempotent: repeating a call with the same arguments changes nothing and
    adds no row, so a reconciler that crashed half-way (or an outbox) can simply replay it.
    Writes raise RecordsUnavailable when the database cannot be reached; they are then safe to
    retry. Timestamps are timezone-aware and come back in UTC; figures are Decimal.
    """

    def migrate(self) -> list[int]:
        """Applies the migrations this database lacks, in order, and returns their versions
        ([] when the schema is current). Safe to run from several processes at once."""
        ...

    def applied_migrations(self) -> list[int]:
        """The versions recorded in schema_migrations ([] before the first migrate())."""
        ...

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
        """Upserts the (uid, code_hash) version: first_seen is kept, last_seen advances to
        `seen_at` (default now), never backwards. `interface` is JSON without floats."""
        ...

    def get_strategy(self, uid: str, code_hash: str) -> StrategyRecord | None: ...

    def record_run(self, run: RunRecord) -> None:
        """Inserts or updates the run keyed by run.id.

        Status only moves forward (queued < running < succeeded | failed); a write whose
        status ranks lower than the stored one, or that swaps one final status for the other,
        is ignored entirely. Otherwise non-null fields overwrite, null fields keep the stored
        value, and created_at stays as first written. Raises RunConflict if run.id is already
        recorded for another resource_uid, namespace, name or kind.
        """
        ...

    def get_run(self, run_id: str) -> RunRecord | None: ...

    def list_runs(
        self,
        *,
        namespace: str | None = None,
        kind: RunKind | None = None,
        since: dt.datetime | None = None,
    ) -> list[RunRecord]:
        """Runs matching every filter given (`since`: created at or after), oldest first."""
        ...

    def record_metrics(self, run_id: str, metrics: Mapping[str, Decimal]) -> None:
        """Upserts each key's value (exact, at most 8 places and 30 digits before the point;
        floats refused with ValueError). Raises UnknownRun if the run is not recorded."""
        ...

    def get_metrics(self, run_id: str) -> dict[str, Decimal]: ...

    def record_artifacts(self, run_id: str, artifacts: Sequence[ArtifactRecord]) -> None:
        """Upserts each artifact by name. Raises UnknownRun if the run is not recorded."""
        ...

    def get_artifacts(self, run_id: str) -> list[ArtifactRecord]:
        """The run's artifacts, by name."""
        ...

    def record_incident(self, incident: IncidentRecord) -> bool:
        """Inserts the incident unless its id is recorded already (then nothing changes: the
        first write wins). Returns True when this call inserted it."""
        ...

    def get_incident(self, incident_id: str) -> IncidentRecord | None: ...

    def list_incidents(
        self,
        *,
        namespace: str | None = None,
        breaker: str | None = None,
        bot: str | None = None,
        since: dt.datetime | None = None,
    ) -> list[IncidentRecord]:
        """Incidents matching every filter given (`bot`: the name is among incident.bots or
        is its LiveBot source; `since`: created at or after), oldest first."""
        ...

    def record_snapshot(self, snapshot: BotSnapshot) -> None:
        """Upserts the snapshot keyed by (bot_uid, taken_at)."""
        ...

    def list_snapshots(
        self,
        bot_uid: str,
        *,
        since: dt.datetime | None = None,
        code_hash: str | None = None,
    ) -> list[BotSnapshot]:
        """The bot's snapshots (optionally only of one code hash, taken at or after `since`),
        oldest first."""
        ...

    def record_epochs(self, run_id: str, epochs: Sequence[EpochRecord]) -> None:
        """Upserts each finished hyperopt epoch, keyed by (run_id, worker, epoch): a replay
        writes the same row again. Raises UnknownRun if the run is not recorded, ValueError
        if one call names an epoch twice."""
        ...

    def epochs(self, run_id: str) -> list[EpochRecord]:
        """The run's epochs, by epoch number (then worker)."""
        ...

    def record_dca_buy(self, record: DcaBuyRecord) -> None:
        """Upserts one DcaSchedule slot's outcome keyed by (schedule_uid, slot): a replay
        writes the same row again."""
        ...

    def dca_buys(
        self, namespace: str | None = None, schedule: str | None = None
    ) -> list[DcaBuyRecord]:
        """Recorded DCA slot outcomes matching every filter given (`schedule`: the
        DcaSchedule's name), oldest slot first."""
        ...

    def record_backtest_detail(self, run_id: str, detail: BacktestDetail) -> None:
        """Replaces the run's trades, per-pair and exit-reason tables, daily profit and equity
        curve with `detail` as a whole. Raises UnknownRun if the run is not recorded."""
        ...

    def backtest_detail(self, run_id: str) -> BacktestDetail | None:
        """The run's detail, or None when none was recorded."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def open_store(dsn: str, *, timeout: float = 5.0) -> RecordStore:
    """The store a DSN names: `sqlite:///path/to/file.db` or `postgresql://...`.

    Connects (or opens the file) at once, so a wrong DSN or a database that is down raises
    RecordsUnavailable here rather than on the first write; an unsupported DSN raises
    ValueError. Does not migrate: call migrate() once at start-up.
    """
    target = parse_dsn(dsn)
    if isinstance(target, PostgresDsn):
        # Imported here so SQLite users never load psycopg.
        from tradebot.records.postgres import PostgresStore

        return PostgresStore(target, timeout=timeout)
    from tradebot.records.sqlite import SqliteStore

    return SqliteStore(target.path, timeout=timeout)
