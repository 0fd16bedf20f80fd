"""The records store, one suite run against both backends: a SQLite file and a real PostgreSQL
server. Every write is replayed at least once, because replay is how reconcilers recover."""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from tests.support.postgres import LocalPostgres
from tests.support.wait import wait_for

from tradebot import cli
from tradebot.records import (
    ArtifactRecord,
    RecordsError,
    RecordStore,
    RecordsUnavailable,
    RunConflict,
    RunRecord,
    SchemaNotReady,
    UnknownRun,
    open_store,
)
from tradebot.records.errors import MigrationFailed
from tradebot.records.migrations import MIGRATION_LOCK_KEY, MIGRATIONS, Migration
from tradebot.records.sqlstore import SqlRecordStore

ALL_VERSIONS = [m.version for m in MIGRATIONS]
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
HASH_A = "a" * 64
HASH_B = "b" * 64
PASSWORD = "s3cr3t-Pa55word"

T = TypeVar("T")


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def a_run(run_id: str = "run-1", **changes: Any) -> RunRecord:
    fields: dict[str, Any] = {
        "id": run_id,
        "resource_uid": f"uid-{run_id}",
        "namespace": "team-a",
        "name": run_id,
        "kind": "backtest",
        "status": "queued",
        "created_at": T0,
    }
    return RunRecord(**(fields | changes))


def in_threads(count: int, work: Callable[[int], T]) -> list[T]:
    """`work(i)` in `count` threads released together; re-raises the first failure."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def target(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    if errors:
        raise errors[0]
    return results


# ---- migrations --------------------------------------------------------------------------
def test_migrations_apply_once_and_rerun_as_no_op(dsn: str):
    with open_store(dsn) as first:
        assert first.applied_migrations() == []
        assert first.migrate() == ALL_VERSIONS
        assert first.migrate() == []
    with open_store(dsn) as second:
        assert second.migrate() == []
        assert second.applied_migrations() == ALL_VERSIONS


# A step that works, then one that fails: the migration must leave no trace of either.
BROKEN = Migration(
    len(MIGRATIONS) + 1,
    "half-way",
    (
        "CREATE TABLE half_made (x integer)",
        "CREATE INDEX half_made_x ON half_made (no_such_column)",
    ),
)
FIXED = Migration(
    BROKEN.version,
    "half-way, fixed",
    (
        "CREATE TABLE half_made (x integer)",
        "CREATE INDEX half_made_x ON half_made (x)",
    ),
)


def _tables(dsn: str) -> set[str]:
    if dsn.startswith("sqlite"):
        with sqlite3.connect(dsn.removeprefix("sqlite://")) as conn:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return {r[0] for r in rows}
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r[0] for r in rows}


def test_a_migration_failing_half_way_leaves_the_previous_version(dsn: str):
    with open_store(dsn) as s:
        assert isinstance(s, SqlRecordStore)
        with pytest.raises(MigrationFailed) as caught:
            s.migrate([*MIGRATIONS, BROKEN])
        message = str(caught.value)
        assert f"migration {BROKEN.version} (half-way) failed" in message
        assert "no_such_column" in message
        # The versions before it were applied and kept; none of the failed one's steps were.
        assert s.applied_migrations() == ALL_VERSIONS
        assert "half_made" not in _tables(dsn)
        assert "runs" in _tables(dsn)
        # Running it again fails the same way and changes nothing...
        with pytest.raises(MigrationFailed):
            s.migrate([*MIGRATIONS, BROKEN])
        assert s.applied_migrations() == ALL_VERSIONS
        # ...and once fixed, a re-run applies just that version.
        assert s.migrate([*MIGRATIONS, FIXED]) == [FIXED.version]
        assert s.applied_migrations() == [*ALL_VERSIONS, FIXED.version]
        assert "half_made" in _tables(dsn)
        s.record_run(a_run())  # the store still works


_RACER = """
import sys, time
from tradebot.records import open_store
with open_store(sys.argv[1], timeout=60) as store:
    print("open", flush=True)
    sys.stdin.readline()  # the go signal
    print("migrating", flush=True)
    applied = store.migrate()
    print("done", time.time(), ",".join(map(str, applied)), flush=True)
"""


@contextlib.contextmanager
def migration_lock_held(dsn: str) -> Iterator[Callable[[], int]]:
    """Holds the lock migrations take (PostgreSQL: the advisory lock; SQLite: the write lock
    of BEGIN IMMEDIATE) until the block ends; yields how many other sessions wait for it right
    now (PostgreSQL's pg_locks; SQLite keeps no such list: -1)."""
    if dsn.startswith("sqlite"):
        conn = sqlite3.connect(dsn.removeprefix("sqlite://"), isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield lambda: -1
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        return
    high, low = MIGRATION_LOCK_KEY >> 32, MIGRATION_LOCK_KEY & 0xFFFFFFFF
    with (
        psycopg.connect(dsn, autocommit=True) as holder,
        psycopg.connect(dsn, autocommit=True) as observer,
    ):
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))

        def waiting() -> int:
            row = observer.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND classid = %s AND objid = %s AND objsubid = 1",
                (high, low),
            ).fetchone()
            return int(row[0]) if row else 0

        yield waiting
        holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


def test_processes_migrating_at_once_wait_for_each_other_and_apply_each_version_once(dsn: str):
    """Contention is made sure of, not hoped for (on a loaded machine processes started
    together may well run one after the other): the test holds the migration lock while four
    processes start migrating, sees all four wait for it at once, then lets them race."""
    count = 4
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, dsn],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    try:
        for racer in racers:
            assert racer.stdout is not None
            assert racer.stdout.readline().strip() == "open"
        with migration_lock_held(dsn) as waiting:
            for racer in racers:
                assert racer.stdin is not None
                racer.stdin.write("go\n")
                racer.stdin.flush()
            for racer in racers:
                assert racer.stdout is not None
                assert racer.stdout.readline().strip() == "migrating"
            if dsn.startswith("postgresql"):
                # The database's own word: all four are in the lock's wait queue at once.
                wait_for(
                    lambda: waiting() == count or None,
                    30,
                    what=f"{count} migrators waiting for the migration lock",
                )
            else:
                time.sleep(1.0)
            # All four are inside migrate() and none got past the lock.
            assert [r.poll() for r in racers] == [None] * count
            released = time.time()
        results = []
        for racer in racers:
            out, err = racer.communicate(timeout=120)
            assert racer.returncode == 0, err
            done, finished, versions = out.splitlines()[-1].split(" ")
            assert done == "done", out
            assert float(finished) >= released  # each finished only after the lock was free
            results.append([int(v) for v in versions.split(",") if v.strip()])
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
                racer.wait()
    # Each version applied once across the four processes (any one may apply any version).
    assert sorted(v for r in results for v in r) == ALL_VERSIONS
    with open_store(dsn) as s:
        assert s.applied_migrations() == ALL_VERSIONS


def test_the_cli_migrates_and_says_what_it_did(dsn: str, capsys: pytest.CaptureFixture[str]):
    assert cli.main(["db", "migrate", "--dsn", dsn]) == 0
    versions = ", ".join(map(str, ALL_VERSIONS))
    assert capsys.readouterr().out.strip().endswith(f"applied migration(s) {versions}")
    assert cli.main(["db", "migrate", "--dsn", dsn]) == 0
    assert (
        capsys.readouterr().out.strip().endswith(f"schema is current (version {ALL_VERSIONS[-1]})")
    )


def test_the_cli_names_an_unreachable_database_without_its_password(
    capsys: pytest.CaptureFixture[str],
):
    port = _closed_port()
    dsn = f"postgresql://tradebot:{PASSWORD}@127.0.0.1:{port}/records_db"
    assert cli.main(["db", "migrate", "--dsn", dsn]) == 1
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err
    assert "records_db" in err
    assert PASSWORD not in err


def test_writes_before_migrate_say_what_to_do(dsn: str):
    with open_store(dsn) as s, pytest.raises(SchemaNotReady, match=r"migrate\(\)"):
        s.record_run(a_run())


# ---- runs --------------------------------------------------------------------------------
def test_a_replayed_run_is_one_row(store: RecordStore):
    run = a_run(
        status="running",
        started_at=at(1),
        config_hash="c1",
        data_hash="d1",
        strategy_code_hash=HASH_A,
        data_window_start=at(-600),
        data_window_end=at(-60),
        correlation_id="corr-1",
    )
    store.record_run(run)
    store.record_run(run)
    assert store.list_runs() == [run]
    assert store.get_run(run.id) == run
    assert store.get_run("no-such-run") is None


def test_status_never_goes_backwards(store: RecordStore):
    queued = a_run()
    running = a_run(status="running", started_at=at(1))
    succeeded = a_run(status="succeeded", finished_at=at(9))
    for write in (queued, running, succeeded):
        store.record_run(write)
    expected = a_run(status="succeeded", started_at=at(1), finished_at=at(9))
    assert store.get_run("run-1") == expected

    for stale in (running, queued, a_run(status="failed", error="late", finished_at=at(20))):
        store.record_run(stale)
        assert store.get_run("run-1") == expected


def test_failed_is_final_and_queued_may_jump_to_a_final_status(store: RecordStore):
    store.record_run(a_run("run-f"))
    store.record_run(a_run("run-f", status="failed", error="OOMKilled", finished_at=at(3)))
    store.record_run(a_run("run-f", status="succeeded", finished_at=at(4)))
    failed = store.get_run("run-f")
    assert failed is not None
    assert (failed.status, failed.error, failed.finished_at) == ("failed", "OOMKilled", at(3))


def test_later_writes_fill_fields_in_but_never_erase_them(store: RecordStore):
    store.record_run(a_run(status="running", config_hash="c1", correlation_id="corr-1"))
    # A replay built later carries a later created_at default and fewer fields.
    store.record_run(a_run(status="running", data_hash="d1", created_at=at(30)))
    run = store.get_run("run-1")
    assert run is not None
    assert (run.config_hash, run.data_hash, run.correlation_id) == ("c1", "d1", "corr-1")
    assert run.created_at == T0


def test_a_run_id_reused_for_another_resource_is_refused(store: RecordStore):
    original = a_run()
    store.record_run(original)
    with pytest.raises(RunConflict, match="run-1"):
        store.record_run(a_run(resource_uid="someone-else", status="running"))
    with pytest.raises(RunConflict):
        store.record_run(a_run(kind="live", status="running"))
    assert store.get_run("run-1") == original


def test_concurrent_status_writes_end_at_the_final_status(store: RecordStore):
    writes = [a_run(status=s) for s in ("queued", "running", "succeeded")] * 4
    random.Random(7).shuffle(writes)  # noqa: S311 - a fixed order, not a secret
    in_threads(len(writes), lambda i: store.record_run(writes[i]))
    run = store.get_run("run-1")
    assert run is not None
    assert run.status == "succeeded"
    assert len(store.list_runs()) == 1


def test_list_runs_filters_combine(store: RecordStore):
    runs = [
        a_run("a-bt-0", created_at=at(0)),
        a_run("a-dry-1", kind="dryrun", created_at=at(10)),
        a_run("b-bt-2", namespace="team-b", created_at=at(20)),
        a_run("a-live-3", kind="live", created_at=at(30)),
    ]
    for run in reversed(runs):
        store.record_run(run)

    def ids(**filters: Any) -> list[str]:
        return [r.id for r in store.list_runs(**filters)]

    assert ids() == ["a-bt-0", "a-dry-1", "b-bt-2", "a-live-3"]  # oldest first
    assert ids(namespace="team-a") == ["a-bt-0", "a-dry-1", "a-live-3"]
    assert ids(kind="backtest") == ["a-bt-0", "b-bt-2"]
    assert ids(since=at(10)) == ["a-dry-1", "b-bt-2", "a-live-3"]
    # The same instant written in another zone: compared as instants, not as local times.
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert ids(since=at(20).astimezone(plus_two)) == ["b-bt-2", "a-live-3"]
    assert ids(namespace="team-a", kind="backtest", since=at(1)) == []
    assert ids(namespace="nobody") == []
    with pytest.raises(ValueError, match="timezone"):
        store.list_runs(since=dt.datetime(2026, 1, 1))


# ---- metrics and artifacts ---------------------------------------------------------------
def test_metrics_round_trip_exactly_to_eight_places(store: RecordStore):
    store.record_run(a_run())
    metrics = {
        "profit_total": Decimal("-0.12345678"),
        "profit_total_abs": Decimal("12345678901234.12345678"),
        "largest": Decimal("999999999999999999999999999999.99999999"),
        "smallest": Decimal("0.00000001"),
        "zero": Decimal(0),
        "trades": Decimal(42),
    }
    store.record_metrics("run-1", metrics)
    store.record_metrics("run-1", metrics)
    got = store.get_metrics("run-1")
    assert got == metrics
    assert all(isinstance(v, Decimal) for v in got.values())
    assert {k: format(v, "f") for k, v in got.items()} == {
        "profit_total": "-0.12345678",
        "profit_total_abs": "12345678901234.12345678",
        "largest": "999999999999999999999999999999.99999999",
        "smallest": "0.00000001",
        "zero": "0.00000000",
        "trades": "42.00000000",
    }

    store.record_metrics("run-1", {"trades": Decimal(43)})
    assert store.get_metrics("run-1") == metrics | {"trades": Decimal(43)}


def test_inexact_metrics_are_refused_before_anything_is_written(store: RecordStore):
    store.record_run(a_run())
    for bad in (0.1, Decimal("0.123456789"), Decimal("1e30"), Decimal("NaN")):
        with pytest.raises(ValueError, match="metric"):
            store.record_metrics("run-1", {"good": Decimal(1), "bad": bad})  # type: ignore[dict-item]
    assert store.get_metrics("run-1") == {}


def test_artifacts_upsert_by_name(store: RecordStore):
    store.record_run(a_run())
    log = ArtifactRecord(name="log", path="/results/run-1/log.txt", sha256=HASH_A, size=10)
    result = ArtifactRecord(name="result", path="/results/run-1/r.json", sha256=HASH_B, size=0)
    store.record_artifacts("run-1", [result, log])
    store.record_artifacts("run-1", [log, result])
    assert store.get_artifacts("run-1") == [log, result]

    rewritten = log.model_copy(update={"sha256": HASH_B, "size": 11})
    store.record_artifacts("run-1", [rewritten])
    assert store.get_artifacts("run-1") == [rewritten, result]
    assert store.get_artifacts("no-such-run") == []
    with pytest.raises(ValueError, match="repeat"):
        store.record_artifacts("run-1", [log, rewritten])


def test_metrics_and_artifacts_need_the_run_recorded_first(store: RecordStore):
    with pytest.raises(UnknownRun, match="ghost"):
        store.record_metrics("ghost", {"x": Decimal(1)})
    artifact = ArtifactRecord(name="log", path="/x", sha256=HASH_A, size=1)
    with pytest.raises(UnknownRun, match="ghost"):
        store.record_artifacts("ghost", [artifact])
    assert store.get_metrics("ghost") == {}


# ---- strategies --------------------------------------------------------------------------
def test_strategy_registry_upserts_one_row_per_code_hash(store: RecordStore):
    interface = {
        "timeframe": "5m",
        "stoploss": "-0.10",
        "minimal_roi": {"0": "0.04"},
        "can_short": False,
        "startup_candle_count": 30,
        "methods": ["populate"],
    }
    args = ("team-a", "sma", "uid-1", "SmaCross", HASH_A, interface)
    store.register_strategy(*args, seen_at=at(1))
    store.register_strategy(*args, seen_at=at(5))
    # A sighting written late (from an outbox, say) moves first_seen back, never last_seen.
    store.register_strategy(*args, seen_at=at(0))

    got = store.get_strategy("uid-1", HASH_A)
    assert got is not None
    assert got.interface == interface
    assert (got.namespace, got.name, got.class_name) == ("team-a", "sma", "SmaCross")
    assert (got.first_seen, got.last_seen) == (at(0), at(5))

    store.register_strategy("team-a", "sma", "uid-1", "SmaCross2", HASH_B, {}, seen_at=at(9))
    newer = store.get_strategy("uid-1", HASH_B)
    assert newer is not None
    assert newer.class_name == "SmaCross2"
    assert store.get_strategy("uid-1", HASH_A) == got
    assert store.get_strategy("uid-2", HASH_A) is None

    with pytest.raises(ValueError, match="float"):
        store.register_strategy(*args[:5], {"stoploss": -0.1})


# ---- failures ----------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _everything_said(exc: BaseException) -> str:
    """The message, the repr and the whole printed traceback chain, where a secret could hide."""
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_an_unreachable_database_is_unavailable_and_names_it(backend: str, tmp_path: Path):
    if backend == "sqlite":
        target = tmp_path / "not-mounted" / "records.db"
        dsn, names = f"sqlite:///{target}", [str(target), "directory"]
    else:
        port = _closed_port()
        dsn = f"postgresql://tradebot:{PASSWORD}@127.0.0.1:{port}/records_db?sslmode=disable"
        names = [f"127.0.0.1:{port}", "records_db", "tradebot"]
    with pytest.raises(RecordsUnavailable) as caught:
        open_store(dsn, timeout=2)
    said = _everything_said(caught.value)
    for name in names:
        assert name in str(caught.value)
    assert PASSWORD not in said


def test_a_missing_postgres_database_is_unavailable(postgres_server: LocalPostgres):
    dsn = postgres_server.dsn("no_such_db").replace("tradebot@", f"tradebot:{PASSWORD}@")
    with pytest.raises(RecordsUnavailable, match=r"no_such_db.*does not exist") as caught:
        open_store(dsn, timeout=2)
    assert PASSWORD not in _everything_said(caught.value)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_an_outage_after_opening_is_unavailable(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
):
    if backend == "sqlite":
        dsn = f"sqlite:///{tmp_path}/records.db"
    else:
        dsn = request.getfixturevalue("postgres_dsn")
    with open_store(dsn, timeout=1) as s:
        s.migrate()
        s.record_run(a_run())
        if backend == "sqlite":
            for leftover in tmp_path.glob("records.db*"):
                leftover.unlink()
            (tmp_path / "records.db").write_bytes(b"this is not a database file" * 100)
        else:
            server: LocalPostgres = request.getfixturevalue("postgres_server")
            with psycopg.connect(server.dsn(), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE "{dsn.rsplit("/", 1)[1]}" WITH (FORCE)')
        with pytest.raises(RecordsUnavailable):
            s.record_run(a_run(status="running"))
        with pytest.raises(RecordsUnavailable):
            s.get_run("run-1")


def test_a_closed_store_refuses_work(store: RecordStore):
    store.close()
    store.close()  # closing twice is harmless
    with pytest.raises(RecordsError, match="closed"):
        store.get_run("run-1")
