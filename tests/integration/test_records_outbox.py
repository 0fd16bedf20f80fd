"""The outbox: records written while the database is down reach it later, every one exactly
once and in the order made. PostgreSQL is a real server this test stops and starts; SQLite's
outage is its directory missing (a volume not mounted yet)."""

from __future__ import annotations

import datetime as dt
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from tests.support.postgres import LocalPostgres

from tradebot.api.backtest import BacktestSpec
from tradebot.cli import main
from tradebot.controllers import runtime
from tradebot.controllers.backtest_records import record
from tradebot.domain.naming import backtest_run_id
from tradebot.observability.metrics import REGISTRY
from tradebot.records import (
    ArtifactRecord,
    BotSnapshot,
    IncidentRecord,
    RecordsError,
    RecordsUnavailable,
    RunRecord,
    open_store,
)
from tradebot.records.buffered import BufferedStore
from tradebot.records.migrations import MIGRATIONS
from tradebot.records.outbox import OutboxError
from tradebot.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

T0 = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
HASH_A = "a" * 64
HASH_B = "b" * 64


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def a_run(run_id: str, status: str, **changes: Any) -> RunRecord:
    fields: dict[str, Any] = {
        "id": run_id,
        "resource_uid": f"uid-{run_id}",
        "namespace": "ns",
        "name": run_id,
        "kind": "backtest",
        "status": status,
        "created_at": T0,
    }
    return RunRecord(**(fields | changes))


def an_incident(incident_id: str, minutes: int) -> IncidentRecord:
    return IncidentRecord(
        id=incident_id,
        namespace="ns",
        source_kind="CircuitBreaker",
        source_name="guard",
        source_uid="uid-guard",
        breaker="guard",
        bots=("bot-a",),
        severity="critical",
        reason="drawdown",
        description="drawdown over the limit",
        figures={"drawdown": Decimal("0.12345678")},
        created_at=at(minutes),
    )


def a_snapshot(minutes: int, profit: str) -> BotSnapshot:
    return BotSnapshot(
        bot_uid="uid-bot-a",
        namespace="ns",
        name="bot-a",
        code_hash=HASH_A,
        mode="dryRun",
        taken_at=at(minutes),
        profit=Decimal(profit),
        drawdown=Decimal("0.01"),
        open_trades=1,
        equity=Decimal("1000.5"),
    )


def depth_gauge() -> float | None:
    return REGISTRY.get_sample_value("tradebot_records_outbox_depth")


def failures() -> float:
    return REGISTRY.get_sample_value("tradebot_record_failures_total") or 0.0


def writes_timed(operation: str) -> float:
    return (
        REGISTRY.get_sample_value("tradebot_records_write_seconds_count", {"operation": operation})
        or 0.0
    )


# A real trigger on the real tables logs every row the database actually writes, in commit
# order: that is what "exactly once, in order" is checked against.
WRITE_LOG = """
CREATE TABLE write_log (seq bigserial PRIMARY KEY, what text NOT NULL);
CREATE FUNCTION log_write() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE what text;
BEGIN
    IF TG_TABLE_NAME = 'runs' THEN what := 'run ' || NEW.id || ' ' || NEW.status;
    ELSIF TG_TABLE_NAME = 'metrics' THEN
        what := 'metric ' || NEW.run_id || ' ' || NEW.key || '=' || NEW.value;
    ELSIF TG_TABLE_NAME = 'artifacts' THEN what := 'artifact ' || NEW.run_id || ' ' || NEW.name;
    ELSIF TG_TABLE_NAME = 'incidents' THEN what := 'incident ' || NEW.id;
    ELSIF TG_TABLE_NAME = 'bot_snapshots' THEN
        what := 'snapshot ' || (NEW.taken_at AT TIME ZONE 'UTC')::text || ' ' || NEW.profit;
    ELSE what := 'strategy ' || NEW.code_hash;
    END IF;
    INSERT INTO write_log (what) VALUES (what);
    RETURN NEW;
END $$;
CREATE TRIGGER log_runs AFTER INSERT OR UPDATE ON runs
    FOR EACH ROW EXECUTE FUNCTION log_write();
CREATE TRIGGER log_metrics AFTER INSERT OR UPDATE ON metrics
    FOR EACH ROW EXECUTE FUNCTION log_write();
CREATE TRIGGER log_artifacts AFTER INSERT OR UPDATE ON artifacts
    FOR EACH ROW EXECUTE FUNCTION log_write();
CREATE TRIGGER log_incidents AFTER INSERT OR UPDATE ON incidents
    FOR EACH ROW EXECUTE FUNCTION log_write();
CREATE TRIGGER log_snapshots AFTER INSERT OR UPDATE ON bot_snapshots
    FOR EACH ROW EXECUTE FUNCTION log_write();
CREATE TRIGGER log_strategies AFTER INSERT OR UPDATE ON strategies
    FOR EACH ROW EXECUTE FUNCTION log_write();
"""


def write_log(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [row[0] for row in conn.execute("SELECT what FROM write_log ORDER BY seq")]


@pytest.fixture
def pg(private_postgres: LocalPostgres) -> tuple[LocalPostgres, str]:
    with psycopg.connect(private_postgres.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE records")
    dsn = private_postgres.dsn("records")
    with open_store(dsn) as s:
        s.migrate()
    with psycopg.connect(dsn) as conn:
        conn.execute(WRITE_LOG)
    return private_postgres, dsn


def test_an_outage_loses_nothing_and_replays_in_order_exactly_once(
    pg: tuple[LocalPostgres, str],
    tmp_path: Path,
):
    server, dsn = pg
    outbox = tmp_path / "records-outbox.jsonl"
    artifact = ArtifactRecord(name="log", path="/r/log", sha256=HASH_A, size=3)
    timed_before = writes_timed("record_run")

    with BufferedStore.open(dsn, outbox, timeout=2) as store:
        store.start_flusher(interval=0.2)
        store.register_strategy(
            "ns", "sma", "uid-s", "Sma", HASH_A, {"timeframe": "5m"}, seen_at=at(0)
        )
        store.record_run(a_run("r1", "queued"))
        assert store.pending == 0
        assert writes_timed("record_run") == timed_before + 1

        server.stop()
        store.record_run(a_run("r1", "running", started_at=at(1)))  # fails: buffered
        store.record_metrics("r1", {"profit": Decimal("0.1"), "trades": Decimal(3)})
        store.record_artifacts("r1", [artifact])
        assert store.record_incident(an_incident("inc-1", 2)) is True
        store.record_snapshot(a_snapshot(3, "1.5"))
        store.record_snapshot(a_snapshot(3, "-2.25"))  # the same moment again: replaces
        store.record_metrics("r1", {"profit": Decimal("-0.12345678")})
        assert store.pending == 7
        assert depth_gauge() == 7
        with pytest.raises(RecordsUnavailable, match=r"127\.0\.0\.1"):
            store.get_run("r1")

    # The operator restarts while the database is still down: the outbox is still there.
    with BufferedStore.open(dsn, outbox, timeout=2) as store:
        assert store.pending == 7
        assert not store.connected
        store.record_run(a_run("r1", "succeeded", finished_at=at(9)))
        store.record_incident(an_incident("inc-1", 2))  # noticed again after the restart
        store.record_run(a_run("r2", "queued"))
        assert store.flush() == 0  # still down: nothing applied, nothing lost
        assert store.pending == 10

        server.resume()
        assert store.flush() == 10
        assert store.pending == 0
        assert depth_gauge() == 0
        assert store.connected
        # Drained: writes go straight to the database again, in order behind the replay.
        store.record_run(a_run("r2", "running"))
        assert store.pending == 0

    assert outbox.read_bytes() == b""
    assert write_log(dsn) == [
        f"strategy {HASH_A}",
        "run r1 queued",
        "run r1 running",
        "metric r1 profit=0.10000000",
        "metric r1 trades=3.00000000",
        "artifact r1 log",
        "incident inc-1",
        "snapshot 2026-04-01 00:03:00 1.50000000",
        "snapshot 2026-04-01 00:03:00 -2.25000000",
        "metric r1 profit=-0.12345678",
        "run r1 succeeded",
        # the second inc-1 changed nothing: the first write wins
        "run r2 queued",
        "run r2 running",
    ]
    with open_store(dsn) as check:
        r1 = check.get_run("r1")
        assert r1 is not None
        assert (r1.status, r1.started_at, r1.finished_at) == ("succeeded", at(1), at(9))
        assert check.get_metrics("r1") == {"profit": Decimal("-0.12345678"), "trades": Decimal(3)}
        assert check.get_artifacts("r1") == [artifact]
        assert check.list_incidents() == [an_incident("inc-1", 2)]
        assert check.list_snapshots("uid-bot-a") == [a_snapshot(3, "-2.25")]


def test_a_replay_after_a_crash_changes_nothing(pg: tuple[LocalPostgres, str], tmp_path: Path):
    """A crash after applying entries but before removing them replays them: harmless."""
    server, dsn = pg
    outbox = tmp_path / "outbox.jsonl"
    server.stop()
    with BufferedStore.open(dsn, outbox, timeout=2) as store:
        store.record_run(a_run("r1", "running"))
        store.record_incident(an_incident("inc-1", 0))
        store.record_metrics("r1", {"profit": Decimal("1")})
        store.record_run(a_run("r1", "failed", error="OOMKilled"))
    saved = outbox.read_bytes()
    server.resume()
    with BufferedStore.open(dsn, outbox, timeout=2) as store:
        assert store.flush() == 4
        first = write_log(dsn)
    outbox.write_bytes(saved)  # as if the process died before the file was cut
    with BufferedStore.open(dsn, outbox, timeout=2) as store:
        assert store.pending == 4
        assert store.flush() == 4
        run = store.get_run("r1")
        assert run is not None
        assert (run.status, run.error) == ("failed", "OOMKilled")
        assert len(store.list_incidents()) == 1
    # Replayed: the stale "running" and the repeated incident wrote nothing; the rest
    # rewrote the same values.
    assert write_log(dsn)[: len(first)] == first
    assert write_log(dsn)[len(first) :] == ["metric r1 profit=1.00000000", "run r1 failed"]


def test_a_store_opened_while_the_database_is_down_connects_and_migrates_later(
    private_postgres: LocalPostgres,
    tmp_path: Path,
):
    with psycopg.connect(private_postgres.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE fresh")
    private_postgres.stop()
    dsn = private_postgres.dsn("fresh").replace("tradebot@", "tradebot:pa55-w0rd@")
    with BufferedStore.open(dsn, tmp_path / "outbox.jsonl", timeout=2) as store:
        assert not store.connected
        store.record_run(a_run("r1", "queued"))
        with pytest.raises(RecordsUnavailable) as caught:
            store.list_runs()
        assert "fresh" in str(caught.value)
        assert "pa55-w0rd" not in str(caught.value)
        private_postgres.resume()
        assert store.flush() == 1
        assert store.applied_migrations() == [m.version for m in MIGRATIONS]
        assert [r.id for r in store.list_runs()] == ["r1"]


def sqlite_outage(tmp_path: Path) -> tuple[str, Path]:
    """A SQLite DSN whose directory is missing (the database is unavailable) until made."""
    directory = tmp_path / "volume"
    return f"sqlite:///{directory}/records.db", directory


def test_sqlite_outage_buffers_then_flushes(tmp_path: Path):
    dsn, directory = sqlite_outage(tmp_path)
    with BufferedStore.open(dsn, tmp_path / "state" / "outbox.jsonl") as store:
        store.start_flusher(interval=0.1)
        store.record_run(a_run("r1", "queued"))
        store.record_run(a_run("r1", "succeeded"))
        store.record_metrics("r1", {"profit": Decimal("0.00000001")})
        assert store.pending == 3
        directory.mkdir()
        deadline = time.monotonic() + 10
        while store.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.pending == 0
        assert store.get_metrics("r1") == {"profit": Decimal("0.00000001")}
        run = store.get_run("r1")
        assert run is not None
        assert run.status == "succeeded"


def test_a_torn_last_line_is_cut_and_the_rest_applies(tmp_path: Path):
    dsn, directory = sqlite_outage(tmp_path)
    outbox = tmp_path / "outbox.jsonl"
    with BufferedStore.open(dsn, outbox) as store:
        store.record_run(a_run("r1", "queued"))
        store.record_run(a_run("r1", "running"))
    whole = outbox.read_bytes()
    # The process died in the middle of appending a third line.
    outbox.write_bytes(whole + b'{"args":{"run":{"id":"r1","status":"succ')
    directory.mkdir()
    with BufferedStore.open(dsn, outbox) as store:
        assert store.pending == 2
        assert outbox.read_bytes() == whole
        assert store.flush() == 2
        run = store.get_run("r1")
        assert run is not None
        assert run.status == "running"


@dataclass
class Outage:
    """A database this test takes down and brings back: a real PostgreSQL server stopped
    and resumed, or a SQLite file whose directory is missing until made."""

    dsn: str
    begin: Callable[[], None]
    end: Callable[[], None]


@pytest.fixture(params=["sqlite", "postgres"])
def outage(request: pytest.FixtureRequest, tmp_path: Path) -> Outage:
    """`end()` makes the database available whether or not `begin()` ran."""
    if request.param == "sqlite":
        dsn, directory = sqlite_outage(tmp_path)
        return Outage(dsn, lambda: None, lambda: directory.mkdir(exist_ok=True))
    server, pg_dsn = request.getfixturevalue("pg")
    down = threading.Event()

    def begin() -> None:
        server.stop()
        down.set()

    def end() -> None:
        if down.is_set():
            server.resume()
            down.clear()

    return Outage(pg_dsn, begin, end)


def set_aside_gauge() -> float | None:
    return REGISTRY.get_sample_value("tradebot_records_set_aside")


def listed_failed(outbox: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(["records", "list", "--failed", "--path", str(outbox)])
    return code, capsys.readouterr().out.splitlines()


# An artifact larger than a 64-bit integer: both databases refuse the value itself
# (PostgreSQL "bigint out of range", sqlite3 OverflowError), so it can never apply as it is.
HUGE = 2**70


def test_entries_that_can_never_apply_are_set_aside_not_blocking(
    outage: Outage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    outbox = tmp_path / "outbox.jsonl"
    outage.begin()
    with BufferedStore.open(outage.dsn, outbox, timeout=2) as store:
        store.record_metrics("ghost", {"x": Decimal(1)})  # no run: UnknownRun on replay
        store.record_run(a_run("r1", "queued"))
        store.record_artifacts(
            "r1", [ArtifactRecord(name="big", path="/b", sha256=HASH_A, size=HUGE)]
        )
        store.record_run(a_run("r1", "running"))
    lines = outbox.read_bytes().splitlines(keepends=True)
    damaged = (
        b'{"v":1,"op":"record_metrics","queued_at":"2026-01-01T00:00:00+00:00",'
        b'"args":{"run_id":"r1","metrics":{"x":0.1}}}\n'
    )
    outbox.write_bytes(lines[0] + damaged + b"".join(lines[1:]))
    outage.end()
    with BufferedStore.open(outage.dsn, outbox, timeout=2) as store:
        assert store.pending == 5
        assert store.flush() == 5
        assert store.pending == 0
        # The entries behind the refused ones applied: r1 reached "running".
        run = store.get_run("r1")
        assert run is not None
        assert run.status == "running"
        assert store.get_metrics("r1") == {}
        assert store.get_artifacts("r1") == []
        assert store.set_aside_count == 3
        assert set_aside_gauge() == 3
    rejected = (tmp_path / "outbox.jsonl.rejected").read_text().splitlines()
    assert len(rejected) == 3
    assert "UnknownRun" in rejected[0]
    assert "ghost" in rejected[0]
    assert "float" in rejected[1]
    assert "RecordRejected" in rejected[2]
    assert str(HUGE) in rejected[2]  # the entry is kept as it was, with its error
    code, listed = listed_failed(outbox, capsys)
    assert code == 3
    assert [line.split("  ")[1] for line in listed] == [
        "record_metrics",
        "record_metrics",
        "record_artifacts",
    ]
    assert "RecordRejected" in listed[2]
    # A new store over the same outbox counts what was set aside before it.
    with BufferedStore.open(outage.dsn, outbox, timeout=2) as store:
        assert store.set_aside_count == 3
        assert set_aside_gauge() == 3


def test_unstorable_text_is_stored_escaped_and_never_jams_the_outbox(
    outage: Outage, tmp_path: Path
):
    """A Strategy's timeframe "5m\\x00" (introspection passes it on) and a failure message
    with a NUL and a lone surrogate: before, PostgreSQL refused the NUL (psycopg DataError,
    untranslated) and every later entry waited behind it, and the surrogate could not even be
    written to the outbox line."""
    outbox = tmp_path / "outbox.jsonl"
    outage.begin()
    with BufferedStore.open(outage.dsn, outbox, timeout=2) as store:
        store.register_strategy(
            "ns", "sma", "uid-s", "Sma", HASH_A, {"timeframe": "5m\x00"}, seen_at=at(0)
        )
        store.record_run(a_run("r1", "failed", error="exit 1: \x00 and \ud800"))
        store.record_incident(an_incident("inc\x00", 1))
        store.record_run(a_run("r2", "queued"))
        assert store.pending == 4
    outage.end()
    with BufferedStore.open(outage.dsn, outbox, timeout=2) as store:
        assert store.flush() == 4
        assert store.pending == 0
        assert store.set_aside_count == 0
        strategy = store.get_strategy("uid-s", HASH_A)
        assert strategy is not None
        assert strategy.interface == {"timeframe": "5m\\u0000"}
        r1 = store.get_run("r1")
        assert r1 is not None
        assert r1.error == "exit 1: \\u0000 and \\ud800"
        assert [i.id for i in store.list_incidents()] == ["inc\\u0000"]
        assert [r.id for r in store.list_runs()] == ["r1", "r2"]
        # Straight to the database too (not buffered), the same text is stored the same way.
        store.record_run(a_run("r3", "failed", error="\x00"))
        assert store.pending == 0
        r3 = store.get_run("r3")
        assert r3 is not None
        assert r3.error == "\\u0000"


def test_a_write_the_database_refuses_directly_is_kept_not_raised(
    outage: Outage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """Before, the driver's error (psycopg DataError, sqlite3's OverflowError) went up into
    the controller that wrote, uncaught: its handler failed before writing its status."""
    outage.end()
    outbox = tmp_path / "outbox.jsonl"
    with BufferedStore.open(outage.dsn, outbox, timeout=2) as store:
        assert store.connected
        store.record_run(a_run("r1", "queued"))
        big = ArtifactRecord(name="big", path="/b", sha256=HASH_A, size=HUGE)
        store.record_artifacts("r1", [big])  # does not raise
        assert store.set_aside_count == 1
        assert set_aside_gauge() == 1
        assert store.pending == 0  # not buffered: it would block the writes behind it
        store.record_run(a_run("r1", "running"))
        run = store.get_run("r1")
        assert run is not None
        assert run.status == "running"
    code, listed = listed_failed(outbox, capsys)
    assert code == 3
    assert len(listed) == 1
    assert "record_artifacts" in listed[0]
    assert "RecordRejected" in listed[0]


def test_records_list_shows_waiting_writes_and_nothing_failed_when_none_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    dsn, _ = sqlite_outage(tmp_path)
    outbox = tmp_path / "outbox.jsonl"
    with BufferedStore.open(dsn, outbox) as store:
        store.record_run(a_run("r1", "queued"))
    # Positive control of the listings above: nothing set aside lists nothing, exit 0.
    assert listed_failed(outbox, capsys) == (0, [])
    capsys.readouterr()
    assert main(["records", "list", "--path", str(outbox)]) == 3
    assert capsys.readouterr().out.split()[1:] == ["record_run"]


def test_a_failure_message_with_a_nul_still_records_the_run(
    outage: Outage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """What the Backtest controller's _complete calls before writing its status: before, a
    NUL in the failure message raised psycopg's DataError out of it (not a RecordsError), so
    the handler failed and the Backtest's Failed status was never written."""
    outage.end()
    rt = runtime.Runtime(Settings(database_dsn=outage.dsn, local_state_dir=tmp_path))
    runtime.install(rt)
    try:
        spec = BacktestSpec.model_validate(
            yaml.safe_load((EXAMPLES / "backtest.yaml").read_text())["spec"]
        )
        status = {"startedAt": "2026-04-01T00:00:00Z", "finishedAt": "2026-04-01T00:05:00Z"}
        error = record("ns", "bt", "uid-bt", "failed", status, spec, "Traceback: \x00\x00")
        assert error is None
        assert rt.store().pending == 0
        run = rt.store().get_run(backtest_run_id("uid-bt"))
        assert run is not None
        assert (run.status, run.error) == ("failed", "Traceback: \\u0000\\u0000")
    finally:
        rt.close()


def test_bad_writes_fail_at_the_call_even_when_buffered(tmp_path: Path):
    dsn, _ = sqlite_outage(tmp_path)
    with BufferedStore.open(dsn, tmp_path / "outbox.jsonl") as store:
        with pytest.raises(ValueError, match="metric 'x'"):
            store.record_metrics("r1", {"x": 0.5})  # type: ignore[dict-item]
        with pytest.raises(ValueError, match="float"):
            store.register_strategy("ns", "s", "u", "S", HASH_A, {"stoploss": -0.1})
        art = ArtifactRecord(name="log", path="/x", sha256=HASH_B, size=1)
        with pytest.raises(ValueError, match="repeat"):
            store.record_artifacts("r1", [art, art])
        assert store.pending == 0


def test_one_outbox_one_process_and_a_closed_store_refuses(tmp_path: Path):
    dsn, _ = sqlite_outage(tmp_path)
    outbox = tmp_path / "outbox.jsonl"
    with BufferedStore.open(dsn, outbox) as store, pytest.raises(OutboxError, match="in use"):
        BufferedStore.open(dsn, outbox)
    store.close()
    with pytest.raises(RecordsError, match="closed"):
        store.record_run(a_run("r1", "queued"))


def test_concurrent_writers_during_a_flapping_outage_lose_nothing(
    pg: tuple[LocalPostgres, str],
    tmp_path: Path,
):
    server, dsn = pg
    failures_before = failures()
    with BufferedStore.open(dsn, tmp_path / "outbox.jsonl", timeout=1) as store:
        store.start_flusher(interval=0.1)
        stop_flapping = threading.Event()

        def flap() -> None:
            while not stop_flapping.is_set():
                server.stop()
                time.sleep(0.3)
                server.resume()
                time.sleep(0.3)

        def writer(n: int) -> None:
            for i in range(15):
                run_id = f"w{n}-{i}"
                store.record_run(a_run(run_id, "queued"))
                store.record_metrics(run_id, {"i": Decimal(i)})
                store.record_run(a_run(run_id, "succeeded"))

        flapper = threading.Thread(target=flap)
        flapper.start()
        writers = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for t in writers:
            t.start()
        for t in writers:
            t.join()
        stop_flapping.set()
        flapper.join()
        assert failures() > failures_before  # the outage did hit writes
        deadline = time.monotonic() + 30
        while store.pending and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store.pending == 0
        runs = store.list_runs()
        assert len(runs) == 60
        assert {r.status for r in runs} == {"succeeded"}
        assert all(store.get_metrics(r.id) == {"i": Decimal(r.id.split("-")[1])} for r in runs)
    log = write_log(dsn)
    # Per run: queued, then its metric, then succeeded - each exactly once, in that order.
    for n in range(4):
        for i in range(15):
            mine = [w for w in log if w.split(" ")[1] == f"w{n}-{i}"]
            assert mine == [
                f"run w{n}-{i} queued",
                f"metric w{n}-{i} i={i}.00000000",
                f"run w{n}-{i} succeeded",
            ]


def test_outbox_file_is_removed_with_nothing_else(tmp_path: Path):
    """Dropping applied entries rewrites the file atomically: no temp file stays behind."""
    dsn, directory = sqlite_outage(tmp_path)
    outbox = tmp_path / "box" / "outbox.jsonl"
    with BufferedStore.open(dsn, outbox) as store:
        for i in range(5):
            store.record_run(a_run(f"r{i}", "queued"))
        directory.mkdir()
        assert store.flush(batch=2) == 5
    assert sorted(p.name for p in outbox.parent.iterdir()) == ["outbox.jsonl", "outbox.jsonl.lock"]
    shutil.rmtree(outbox.parent)
