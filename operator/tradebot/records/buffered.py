"""A RecordStore that loses nothing while the database is down: writes it cannot deliver go to
the outbox file, in order, and a flusher replays them once the database is back.

- A write goes straight to the database while the outbox is empty. If the database is
  unavailable (or not connected yet), the write is appended to the outbox instead.
- While the outbox holds anything, every new write is appended behind it, so writes reach the
  database in the order they were made (a later status never lands before an earlier one).
- flush() replays the outbox in order and removes what it applied. A crash between applying
  and removing replays those entries again, which changes nothing: every write is idempotent.
- Every error is sorted: an outage (RecordsUnavailable, SchemaNotReady) keeps the entry and
  retries it; anything else means this entry can never apply as it is (RecordRejected: the
  database refused its content; RunConflict, UnknownRun, an unreadable line, an unexpected
  error) and it is set aside in `<outbox>.rejected` with its error, logged, counted
  (`tradebot_records_set_aside`) and listed by `tradebot records list --failed`, so it never
  blocks the ones behind it. A write the database refuses when sent directly is set aside
  the same way rather than lost or raised into a controller.
- Text is made storable (NUL and lone surrogates escaped) before it reaches the outbox or a
  store (records/storable.py), so such text is stored rather than refused.
- Writes never raise RecordsUnavailable. Reads go to the database and may.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from tradebot.freqtrade.hyperopt_summary import EpochRecord
from tradebot.observability import metrics
from tradebot.observability.logging import logger
from tradebot.records import entries
from tradebot.records.dsn import parse_dsn
from tradebot.records.entries import Entry
from tradebot.records.errors import (
    MigrationFailed,
    RecordRejected,
    RecordsError,
    RecordsUnavailable,
    SchemaNotReady,
)
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
from tradebot.records.outbox import Outbox, adopt_orphans, read_set_aside
from tradebot.records.store import RecordStore, open_store

_log = logger(component="records")
T = TypeVar("T")

# Errors after which a write may succeed later as it is: buffer it, do not drop it.
_RETRYABLE = (RecordsUnavailable, SchemaNotReady)


def connector(dsn: str, *, timeout: float = 5.0) -> Callable[[], RecordStore]:
    """Opens the store a DSN names and migrates it: what BufferedStore calls to (re)connect."""

    def connect() -> RecordStore:
        store = open_store(dsn, timeout=timeout)
        try:
            applied = store.migrate()
        except BaseException:
            store.close()
            raise
        if applied:
            _log.info("records schema migrated", versions=applied)
        return store

    return connect


class BufferedStore:
    def __init__(
        self,
        connect: Callable[[], RecordStore],
        outbox_path: Path | str,
        *,
        where: str = "the records database",
        adopt: str | None = None,
    ) -> None:
        """Opens the outbox (raises OutboxError if it cannot) and tries `connect` once; when
        that fails the store starts buffering and flush() connects later. `where` names the
        database in messages (never with a password)."""
        self._connect = connect
        self._where = where
        # A glob of the other replicas' outboxes beside ours, adopted at each flush.
        self._adopt = adopt
        self._outbox = Outbox(Path(outbox_path))
        self._lock = threading.Lock()  # the outbox, and the "append or go direct" decision
        self._flush_lock = threading.Lock()
        self._connect_lock = threading.Lock()
        self._store: RecordStore | None = None
        self._problem: str | None = None
        self._closed = False
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        metrics.OUTBOX_DEPTH.set(self._outbox.depth)
        self._set_aside_count = len(read_set_aside(self._outbox.path))
        metrics.RECORDS_SET_ASIDE.set(self._set_aside_count)
        if self._outbox.depth:
            _log.info(
                "records outbox holds writes from before",
                path=str(outbox_path),
                depth=self._outbox.depth,
            )
        self._try_connect()

    @classmethod
    def open(
        cls, dsn: str, outbox_path: Path | str, *, timeout: float = 5.0, adopt: str | None = None
    ) -> BufferedStore:
        """A BufferedStore over the database `dsn` names (ValueError now for a DSN of an
        unsupported form; a database that is down only means buffering). `adopt`: a glob of
        the other replicas' outboxes in the same directory (outbox.adopt_orphans)."""
        return cls(
            connector(dsn, timeout=timeout),
            outbox_path,
            where=parse_dsn(dsn).describe(),
            adopt=adopt,
        )

    # ---- state ---------------------------------------------------------------------------
    @property
    def outbox_path(self) -> Path:
        return self._outbox.path

    @property
    def pending(self) -> int:
        """Writes waiting in the outbox."""
        return self._outbox.depth

    @property
    def connected(self) -> bool:
        return self._store is not None

    def _try_connect(self) -> RecordStore | None:
        with self._connect_lock:
            if self._store is None and not self._closed:
                try:
                    self._store = self._connect()
                except (RecordsUnavailable, SchemaNotReady, MigrationFailed) as exc:
                    self._note_problem(str(exc))
                    return None
                if self._problem is not None:
                    _log.info("records database reachable again", database=self._where)
                    self._problem = None
            return self._store

    def _disconnect(self) -> None:
        """Drops the connection, so the next flush connects and migrates afresh (the
        database may have come back empty)."""
        with self._connect_lock:
            store, self._store = self._store, None
        if store is not None:
            try:
                store.close()
            except RecordsError as exc:
                _log.warning("closing the records store failed", error=str(exc))

    def _note_problem(self, problem: str) -> None:
        if problem != self._problem:
            # Once per distinct problem: a database down for an hour logs once, not per write.
            _log.warning(
                "records database unavailable; writes wait in the outbox",
                database=self._where,
                error=problem,
                outbox=str(self._outbox.path),
            )
            self._problem = problem

    def _check_open(self) -> None:
        if self._closed:
            raise RecordsError("the records store is closed")

    # ---- writes --------------------------------------------------------------------------
    def _timed(self, operation: str, call: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            return call()
        finally:
            metrics.RECORD_WRITE_SECONDS.labels(operation).observe(time.perf_counter() - started)

    def _append(self, entry: Entry) -> None:
        # Caller holds self._lock.
        self._outbox.append(entries.encode(entry))
        metrics.OUTBOX_DEPTH.set(self._outbox.depth)

    def _write(self, entry: Entry, direct: Callable[[RecordStore], T]) -> tuple[bool, T | None]:
        """(True, result) when the database took it, (False, None) when it was buffered."""
        self._check_open()
        with self._lock:
            store = self._store
            if store is None or self._outbox.depth:
                self._append(entry)
                return False, None
        try:
            return True, self._timed(entry.op, functools.partial(direct, store))
        except _RETRYABLE as exc:
            metrics.RECORD_FAILURES.inc()
            self._note_problem(str(exc))
            if isinstance(exc, SchemaNotReady):
                self._disconnect()
            with self._lock:
                self._append(entry)
            return False, None
        except RecordRejected as exc:
            # Kept, not lost and not raised into a controller that only expects outages; the
            # count and the alert tell a person to look (`tradebot records list --failed`).
            metrics.RECORD_FAILURES.inc()
            self._set_aside(entries.encode(entry).rstrip(b"\n"), f"{type(exc).__name__}: {exc}")
            return False, None

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
        entry = entries.strategy_entry(
            namespace, name, uid, class_name, code_hash, interface, seen_at
        )
        when = entries.seen_at(entry)
        self._write(
            entry,
            lambda s: s.register_strategy(
                namespace, name, uid, class_name, code_hash, interface, seen_at=when
            ),
        )

    def record_run(self, run: RunRecord) -> None:
        self._write(entries.run_entry(run), lambda s: s.record_run(run))

    def record_metrics(self, run_id: str, metrics: Mapping[str, Decimal]) -> None:
        self._write(
            entries.metrics_entry(run_id, metrics), lambda s: s.record_metrics(run_id, metrics)
        )

    def record_artifacts(self, run_id: str, artifacts: Sequence[ArtifactRecord]) -> None:
        self._write(
            entries.artifacts_entry(run_id, artifacts),
            lambda s: s.record_artifacts(run_id, artifacts),
        )

    def record_epochs(self, run_id: str, epochs: Sequence[EpochRecord]) -> None:
        self._write(entries.epochs_entry(run_id, epochs), lambda s: s.record_epochs(run_id, epochs))

    def record_incident(self, incident: IncidentRecord) -> bool:
        """True when inserted now, False when the id was recorded already; a buffered
        incident counts as new (True): whether it repeats one is only known on replay, and
        an alert raised twice is better than one never raised."""
        delivered, inserted = self._write(
            entries.incident_entry(incident), lambda s: s.record_incident(incident)
        )
        return bool(inserted) if delivered else True

    def record_snapshot(self, snapshot: BotSnapshot) -> None:
        self._write(entries.snapshot_entry(snapshot), lambda s: s.record_snapshot(snapshot))

    def record_dca_buy(self, record: DcaBuyRecord) -> None:
        self._write(entries.dca_buy_entry(record), lambda s: s.record_dca_buy(record))

    def record_backtest_detail(self, run_id: str, detail: BacktestDetail) -> None:
        self._write(
            entries.backtest_detail_entry(run_id, detail),
            lambda s: s.record_backtest_detail(run_id, detail),
        )

    # ---- flushing ------------------------------------------------------------------------
    def flush(self, *, batch: int = 200) -> int:
        """Replays the outbox in order until it is empty or the database fails again;
        returns how many entries it removed (applied, or set aside as never applicable)."""
        with self._flush_lock:
            if self._adopt is not None and not self._closed:
                with self._lock:
                    if adopt_orphans(self._outbox, self._adopt):
                        metrics.OUTBOX_DEPTH.set(self._outbox.depth)
            if self._closed or not self._outbox.depth:
                return 0
            store = self._store or self._try_connect()
            if store is None:
                return 0
            removed = 0
            while True:
                with self._lock:
                    lines = self._outbox.lines(batch)
                if not lines:
                    break
                end, count, stopped = 0, 0, False
                for line in lines:
                    if not self._replay(store, line.raw):
                        stopped = True
                        break
                    end, count = line.end, count + 1
                with self._lock:
                    self._outbox.drop(end, count)
                    metrics.OUTBOX_DEPTH.set(self._outbox.depth)
                removed += count
                if stopped:
                    break
            if removed and not self._outbox.depth:
                _log.info("records outbox drained", entries=removed, database=self._where)
            return removed

    def _replay(self, store: RecordStore, raw: bytes) -> bool:
        """Applies one line; False when the database failed (stop, keep it for later)."""
        try:
            entry = entries.decode(raw)
        except ValueError as exc:
            self._set_aside(raw, f"unreadable outbox line: {exc}")
            return True
        try:
            self._timed(entry.op, functools.partial(entries.apply, store, entry))
        except _RETRYABLE as exc:
            metrics.RECORD_FAILURES.inc()
            self._note_problem(str(exc))
            if isinstance(exc, SchemaNotReady):
                self._disconnect()
            return False
        except Exception as exc:
            # RecordRejected, RunConflict, UnknownRun, or anything unforeseen: replaying it
            # would fail again, and keeping it at the head would hold every later entry.
            metrics.RECORD_FAILURES.inc()
            self._set_aside(raw, f"{type(exc).__name__}: {exc}")
        return True

    @property
    def set_aside_count(self) -> int:
        """Entries set aside as never applicable, kept in `<outbox>.rejected`."""
        return self._set_aside_count

    def _set_aside(self, raw: bytes, reason: str) -> None:
        with self._lock:
            where = self._outbox.set_aside(raw, reason)
            self._set_aside_count += 1
            metrics.RECORDS_SET_ASIDE.set(self._set_aside_count)
        _log.error(
            "records outbox entry set aside: it can never be applied",
            reason=reason,
            rejected=str(where),
        )

    def start_flusher(self, interval: float = 5.0) -> None:
        """Flushes now and then every `interval` seconds, in a daemon thread, until close()."""
        if self._flusher is not None:
            return
        self._flusher = threading.Thread(
            target=self._flush_loop, args=(interval,), name="records-outbox-flusher", daemon=True
        )
        self._flusher.start()

    def _flush_loop(self, interval: float) -> None:
        while not self._stop.is_set():
            try:
                self.flush()
            except Exception:  # a full disk, say: log it and try again next round
                _log.exception("records outbox flush failed")
            self._stop.wait(interval)

    # ---- reads ---------------------------------------------------------------------------
    def _reader(self) -> RecordStore:
        self._check_open()
        store = self._store or self._try_connect()
        if store is None:
            raise RecordsUnavailable(f"{self._where} is unavailable: {self._problem}")
        return store

    def migrate(self) -> list[int]:
        return self._reader().migrate()

    def applied_migrations(self) -> list[int]:
        return self._reader().applied_migrations()

    def get_strategy(self, uid: str, code_hash: str) -> StrategyRecord | None:
        return self._reader().get_strategy(uid, code_hash)

    def get_run(self, run_id: str) -> RunRecord | None:
        return self._reader().get_run(run_id)

    def list_runs(
        self,
        *,
        namespace: str | None = None,
        kind: RunKind | None = None,
        since: dt.datetime | None = None,
    ) -> list[RunRecord]:
        return self._reader().list_runs(namespace=namespace, kind=kind, since=since)

    def get_metrics(self, run_id: str) -> dict[str, Decimal]:
        return self._reader().get_metrics(run_id)

    def get_artifacts(self, run_id: str) -> list[ArtifactRecord]:
        return self._reader().get_artifacts(run_id)

    def epochs(self, run_id: str) -> list[EpochRecord]:
        return self._reader().epochs(run_id)

    def backtest_detail(self, run_id: str) -> BacktestDetail | None:
        return self._reader().backtest_detail(run_id)

    def get_incident(self, incident_id: str) -> IncidentRecord | None:
        return self._reader().get_incident(incident_id)

    def list_incidents(
        self,
        *,
        namespace: str | None = None,
        breaker: str | None = None,
        bot: str | None = None,
        since: dt.datetime | None = None,
    ) -> list[IncidentRecord]:
        return self._reader().list_incidents(
            namespace=namespace, breaker=breaker, bot=bot, since=since
        )

    def list_snapshots(
        self,
        bot_uid: str,
        *,
        since: dt.datetime | None = None,
        code_hash: str | None = None,
    ) -> list[BotSnapshot]:
        return self._reader().list_snapshots(bot_uid, since=since, code_hash=code_hash)

    def dca_buys(
        self, namespace: str | None = None, schedule: str | None = None
    ) -> list[DcaBuyRecord]:
        return self._reader().dca_buys(namespace, schedule)

    # ---- life ----------------------------------------------------------------------------
    def close(self) -> None:
        """Stops the flusher, closes the database and releases the outbox (whatever it holds
        stays in the file for the next BufferedStore)."""
        if self._closed:
            return
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout=60)
        with self._flush_lock:
            self._closed = True
        self._disconnect()
        with self._lock:
            self._outbox.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


if TYPE_CHECKING:

    def _implements_the_protocol(store: BufferedStore) -> RecordStore:
        return store  # mypy checks that BufferedStore is a RecordStore
