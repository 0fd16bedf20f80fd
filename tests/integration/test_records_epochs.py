"""Hyperopt runs and their epochs (migration 3) on both backends, a SQLite file and a real
PostgreSQL server: the migration keeps every row written before it, epochs are exact and
idempotent on (run, worker, epoch), and the outbox carries them through an outage."""

from __future__ import annotations

import datetime as dt
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.support.postgres import LocalPostgres

from tradebot.freqtrade.hyperopt_summary import EpochRecord
from tradebot.records import ArtifactRecord, RecordStore, RunRecord, UnknownRun, open_store
from tradebot.records.buffered import BufferedStore
from tradebot.records.migrations import MIGRATIONS
from tradebot.records.sqlstore import SqlRecordStore

T0 = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
HASH_A = "a" * 64
HASH_B = "b" * 64


def a_run(run_id: str = "ho-1", kind: str = "hyperopt", **changes: Any) -> RunRecord:
    fields: dict[str, Any] = {
        "id": run_id,
        "resource_uid": f"uid-{run_id}",
        "namespace": "ns",
        "name": run_id,
        "kind": kind,
        "status": "running",
        "created_at": T0,
    }
    return RunRecord(**(fields | changes))


def an_epoch(epoch: int, worker: int = 0, **changes: Any) -> EpochRecord:
    fields: dict[str, Any] = {
        "epoch": epoch,
        "worker": worker,
        "loss": f"-{epoch}.12345678",
        "profit_total": "0.01234567",
        "profit_total_abs": "12.34567891",
        "trades": 10 + epoch,
        "max_drawdown": "0.05",
        "parameters_hash": HASH_A,
    }
    return EpochRecord.model_validate(fields | changes)


V2_RUN = (
    "INSERT INTO runs (id, resource_uid, namespace, name, kind, status, created_at) "
    "VALUES (?, 'uid', 'ns', 'bt-1', ?, 'succeeded', ?)"
)


def row_count(dsn: str, table: str) -> int:
    sql = f"SELECT count(*) FROM {table}"  # noqa: S608 - a constant of this test
    if dsn.startswith("sqlite"):
        with sqlite3.connect(dsn.removeprefix("sqlite://")) as conn:
            return int(conn.execute(sql).fetchone()[0])
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return int(row[0])


# ---- migration ---------------------------------------------------------------------------
def test_migration_three_keeps_earlier_rows_and_admits_hyperopt_runs(dsn: str) -> None:
    before = [m for m in MIGRATIONS if m.version < 3]
    with open_store(dsn) as s:
        assert isinstance(s, SqlRecordStore)
        assert s.migrate(before) == [1, 2]
        # Written as an operator of schema 2 wrote runs (this store's writes name the column
        # migration 3 adds).
        with s._tx(write=True) as tx:
            tx.run(V2_RUN, ("bt-1", "backtest", s._time_in(T0)))
        s.record_metrics("bt-1", {"profit_total": Decimal("0.12345678")})
        s.record_artifacts(
            "bt-1", [ArtifactRecord(name="r.zip", path="/a/r.zip", sha256=HASH_B, size=7)]
        )
        # Positive control: the schema before migration 3 refuses the kind.
        with s._tx(write=True) as tx, pytest.raises(Exception, match=r"(?i)check"):
            tx.run(V2_RUN, ("ho-early", "hyperopt", s._time_in(T0)))
        through_three = [m for m in MIGRATIONS if m.version <= 3]
        assert s.migrate(through_three) == [3]
        assert s.migrate(through_three) == []
        s.record_run(a_run("ho-1"))
        assert [r.kind for r in s.list_runs(kind="hyperopt")] == ["hyperopt"]
        # Everything written before the migration is still there, foreign keys intact.
        assert s.get_metrics("bt-1") == {"profit_total": Decimal("0.12345678")}
        assert [a.name for a in s.get_artifacts("bt-1")] == ["r.zip"]
        run = s.get_run("bt-1")
        assert run is not None
        assert (run.kind, run.status, run.created_at) == ("backtest", "succeeded", T0)
        assert run.parameters_hash is None
        with pytest.raises(UnknownRun):
            s.record_metrics("nobody", {"x": Decimal(1)})
    if dsn.startswith("sqlite"):
        with sqlite3.connect(dsn.removeprefix("sqlite://")) as conn:
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            indexes = {
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runs'"
                )
            }
        assert not {"runs_v2", "metrics_v2", "artifacts_v2"} & tables
        assert {"runs_by_namespace", "runs_by_created", "runs_by_resource"} <= indexes


def test_a_run_of_an_unknown_kind_is_still_refused_by_the_database(dsn: str) -> None:
    with open_store(dsn) as s:
        assert isinstance(s, SqlRecordStore)
        s.migrate()
        with s._tx(write=True) as tx, pytest.raises(Exception, match=r"(?i)check"):
            tx.run(
                "INSERT INTO runs (id, resource_uid, namespace, name, kind, status, "
                "created_at) VALUES ('x', 'u', 'n', 'x', 'optimise', 'queued', "
                "'2026-01-01T00:00:00+00:00')"
            )


def test_deleting_a_run_deletes_its_epochs(dsn: str) -> None:
    with open_store(dsn) as s:
        assert isinstance(s, SqlRecordStore)
        s.migrate()
        s.record_run(a_run())
        s.record_epochs("ho-1", [an_epoch(1), an_epoch(2)])
        assert row_count(dsn, "epochs") == 2
        with s._tx(write=True) as tx:
            tx.run("DELETE FROM runs WHERE id = ?", ("ho-1",))
    assert row_count(dsn, "epochs") == 0


def test_a_run_keeps_the_parameter_set_it_used_beside_its_code(store: RecordStore) -> None:
    store.record_run(
        a_run(
            "bt-2",
            kind="backtest",
            status="running",
            strategy_code_hash=HASH_A,
            parameters_hash=HASH_B,
        )
    )
    # A later write without it (a status patch that lacks it) does not erase it.
    store.record_run(a_run("bt-2", kind="backtest", status="succeeded"))
    run = store.get_run("bt-2")
    assert run is not None
    assert (run.status, run.strategy_code_hash, run.parameters_hash) == (
        "succeeded",
        HASH_A,
        HASH_B,
    )


# ---- epochs ------------------------------------------------------------------------------
def test_epochs_round_trip_exactly_in_epoch_order(store: RecordStore) -> None:
    store.record_run(a_run())
    given = [
        an_epoch(3),
        an_epoch(1),
        an_epoch(2, profit_total=None, trades=None, max_drawdown=None, profit_total_abs=None),
    ]
    store.record_epochs("ho-1", given)
    got = store.epochs("ho-1")
    assert [e.epoch for e in got] == [1, 2, 3]
    assert got == sorted(given, key=lambda e: e.epoch)
    assert got[0].loss == Decimal("-1.12345678")
    assert got[1].profit_total is None
    assert store.epochs("nobody") == []


def test_replayed_epochs_are_one_row_each(dsn: str, store: RecordStore) -> None:
    store.record_run(a_run())
    batch = [an_epoch(1), an_epoch(2)]
    store.record_epochs("ho-1", batch)
    store.record_epochs("ho-1", batch)
    store.record_epochs("ho-1", [an_epoch(2), an_epoch(3)])
    assert [e.epoch for e in store.epochs("ho-1")] == [1, 2, 3]
    assert row_count(dsn, "epochs") == 3


def test_independent_workers_may_number_epochs_alike(store: RecordStore) -> None:
    store.record_run(a_run())
    store.record_epochs(
        "ho-1", [an_epoch(1, worker=0), an_epoch(1, worker=1, parameters_hash=HASH_B)]
    )
    got = store.epochs("ho-1")
    assert [(e.epoch, e.worker, e.parameters_hash) for e in got] == [(1, 0, HASH_A), (1, 1, HASH_B)]


def test_epochs_need_their_run_and_may_not_repeat_in_one_call(dsn: str, store: RecordStore) -> None:
    with pytest.raises(UnknownRun):
        store.record_epochs("ho-1", [an_epoch(1)])
    store.record_run(a_run())
    with pytest.raises(ValueError, match="repeats"):
        store.record_epochs("ho-1", [an_epoch(1), an_epoch(1)])
    assert row_count(dsn, "epochs") == 0


def test_inexact_epoch_figures_are_refused() -> None:
    with pytest.raises(ValueError, match="float"):
        an_epoch(1, loss=0.1)
    with pytest.raises(ValueError, match="decimal places"):
        an_epoch(1, loss="0.123456789")


# ---- through the outbox -------------------------------------------------------------------
def sqlite_outage(tmp_path: Path) -> tuple[str, Path]:
    directory = tmp_path / "volume"
    return f"sqlite:///{directory}/records.db", directory


def test_epochs_written_while_sqlite_is_away_arrive_and_replay_harmlessly(tmp_path: Path) -> None:
    dsn, directory = sqlite_outage(tmp_path)
    outbox = tmp_path / "outbox.jsonl"
    with BufferedStore.open(dsn, outbox) as store:
        store.record_run(a_run())
        store.record_epochs("ho-1", [an_epoch(1), an_epoch(2)])
        store.record_epochs("ho-1", [an_epoch(3, worker=1)])
        store.record_run(a_run(status="succeeded"))
        assert store.pending == 4
        with pytest.raises(ValueError, match="repeats"):  # refused at the call, not on replay
            store.record_epochs("ho-1", [an_epoch(4), an_epoch(4)])
        assert store.pending == 4
    saved = outbox.read_bytes()
    directory.mkdir()
    with BufferedStore.open(dsn, outbox) as store:
        assert store.flush() == 4
        first = store.epochs("ho-1")
    outbox.write_bytes(saved)  # a crash before the outbox was cut: everything replays
    with BufferedStore.open(dsn, outbox) as store:
        assert store.flush() == 4
        assert store.epochs("ho-1") == first
        run = store.get_run("ho-1")
        assert run is not None
        assert (run.kind, run.status) == ("hyperopt", "succeeded")
    assert [(e.epoch, e.worker) for e in first] == [(1, 0), (2, 0), (3, 1)]
    assert first[0].loss == Decimal("-1.12345678")
    assert row_count(dsn, "epochs") == 3
    assert not outbox.with_name(outbox.name + ".rejected").exists()


def test_epochs_written_while_postgres_is_down_arrive_once(
    private_postgres: LocalPostgres,
    tmp_path: Path,
) -> None:
    with psycopg.connect(private_postgres.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE records")
    dsn = private_postgres.dsn("records")
    with BufferedStore.open(dsn, tmp_path / "outbox.jsonl", timeout=2) as store:
        assert store.connected
        store.record_run(a_run())
        store.record_epochs("ho-1", [an_epoch(1)])  # straight to the database
        assert store.pending == 0
        private_postgres.stop()
        store.record_epochs("ho-1", [an_epoch(1), an_epoch(2)])
        store.record_epochs("ho-1", [an_epoch(3)])
        assert store.pending == 2
        private_postgres.resume()
        assert store.flush() == 2
        got = store.epochs("ho-1")
    assert [e.epoch for e in got] == [1, 2, 3]
    assert got[2].max_drawdown == Decimal("0.05000000")
    assert row_count(dsn, "epochs") == 3
