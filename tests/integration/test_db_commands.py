"""`tradebot db` on both backends: migrate, status, and backups restored
into an empty database that must then hold exactly the same records."""

from __future__ import annotations

import sqlite3
import sys
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from tests.support.postgres import LocalPostgres
from tests.support.records_data import everything, populate

from tradebot.cli import main
from tradebot.records import RunRecord, open_store
from tradebot.records.backup import _client_args
from tradebot.records.dsn import PostgresDsn, parse_dsn

TRADEBOT = str(Path(sys.executable).parent / "tradebot")
PASSWORD = "s3cret-Pw"


@pytest.fixture
def empty_dsn(dsn: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A second, empty database of the same backend as `dsn`."""
    if dsn.startswith("sqlite"):
        yield f"sqlite:///{tmp_path}/restored.db"
        return
    server: LocalPostgres = request.getfixturevalue("postgres_server")
    with server.scratch_database("r_") as restored:
        yield restored


def with_password(dsn: str) -> str:
    """The test server trusts its user, so a password is accepted and must stay unseen."""
    return dsn.replace("postgresql://tradebot@", f"postgresql://tradebot:{PASSWORD}@")


def test_migrate_applies_then_reports_current(dsn: str, capsys: pytest.CaptureFixture[str]):
    assert main(["db", "status", "--dsn", dsn]) in (1, 3)  # SQLite: no file yet
    capsys.readouterr()
    assert main(["db", "migrate", "--dsn", dsn]) == 0
    assert "applied migration(s) 1, 2, 3, 4, 5" in capsys.readouterr().out
    assert main(["db", "migrate", "--dsn", dsn]) == 0
    assert "schema is current (version 5)" in capsys.readouterr().out
    assert main(["db", "status", "--dsn", dsn]) == 0
    out = capsys.readouterr().out
    assert "1  applied  strategies, runs, metrics, artifacts" in out
    assert "2  applied  incidents, bot snapshots" in out
    assert "3  applied  hyperopt runs, epochs, runs' parameters hash" in out
    assert "4  applied  DCA slot outcomes" in out
    assert "5  applied  backtest results in detail" in out


def test_status_exits_3_while_migrations_are_pending(dsn: str, capsys: pytest.CaptureFixture[str]):
    with open_store(dsn):
        pass  # creates the SQLite file; PostgreSQL's database exists already
    assert main(["db", "status", "--dsn", dsn]) == 3
    assert "pending: 1, 2, 3, 4, 5; run `tradebot db migrate`" in capsys.readouterr().out


def test_dsn_defaults_to_the_environment(
    dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("TRADEBOT_DATABASE_DSN", dsn)
    assert main(["db", "migrate"]) == 0
    assert "applied migration(s) 1, 2, 3, 4, 5" in capsys.readouterr().out


def test_dsn_defaults_to_the_operators_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.delenv("TRADEBOT_DATABASE_DSN", raising=False)
    monkeypatch.setenv("TRADEBOT_LOCAL_STATE_DIR", str(tmp_path))
    assert main(["db", "migrate"]) == 0
    assert f"SQLite database {tmp_path / 'records.db'}" in capsys.readouterr().out
    assert (tmp_path / "records.db").is_file()


def test_backup_and_restore_keep_every_record_exactly(
    dsn: str, empty_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    with open_store(dsn) as store:
        store.migrate()
        populate(store)
        before = everything(store)
    assert len(before["runs"]) == 4
    assert len(before["incidents"]) == 2
    backup_file = tmp_path / "records.backup"
    assert main(["db", "backup", "--dsn", with_password(dsn), "-o", str(backup_file)]) == 0
    out = capsys.readouterr()
    assert "backed up" in out.out
    assert backup_file.stat().st_size > 0
    assert PASSWORD not in out.out + out.err

    assert main(["db", "restore", "--dsn", with_password(empty_dsn), str(backup_file)]) == 0
    out = capsys.readouterr()
    assert PASSWORD not in out.out + out.err
    assert "runs                 4 rows" in out.out
    assert "metrics              7 rows" in out.out
    assert "incidents            2 rows" in out.out
    with open_store(empty_dsn) as restored:
        after = everything(restored)
        assert restored.migrate() == []  # the schema came back with its version table
    assert after == before
    # Equal Decimals may still differ in places (0.1 == 0.10000000): compare their digits too.
    assert repr(after) == repr(before)
    assert after["metrics"]["bt-1"]["finalBalance"] == Decimal(
        "123456789012345678901234567890.12345678"
    )


def test_restore_refuses_a_database_with_tables(
    dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    with open_store(dsn) as store:
        store.migrate()
        populate(store)
    backup_file = tmp_path / "records.backup"
    assert main(["db", "backup", "--dsn", dsn, "-o", str(backup_file)]) == 0
    capsys.readouterr()
    assert main(["db", "restore", "--dsn", dsn, str(backup_file)]) == 1
    err = capsys.readouterr().err
    assert "is not empty (it has tables" in err
    assert "schema_migrations" in err
    with open_store(dsn) as store:
        assert len(store.list_runs()) == 4  # untouched


def test_restore_names_a_wrong_file(dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    missing = tmp_path / "nope.backup"
    assert main(["db", "restore", "--dsn", dsn, str(missing)]) == 1
    assert f"backup file {missing} does not exist" in capsys.readouterr().err
    junk = tmp_path / "junk.backup"
    junk.write_text("hello")
    assert main(["db", "restore", "--dsn", dsn, str(junk)]) == 1
    assert (
        "is neither a SQLite database nor a pg_dump custom-format archive"
        in capsys.readouterr().err
    )
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    assert main(["db", "restore", "--dsn", dsn, str(other)]) == 1
    err = capsys.readouterr().err
    if dsn.startswith("postgresql"):
        assert "is a SQLite backup; restore it into a sqlite:/// DSN" in err
    else:
        assert "not a records backup (it has no schema_migrations table)" in err


def test_backup_of_an_unreachable_database_names_it_without_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    dsn = f"postgresql://tradebot:{PASSWORD}@127.0.0.1:1/records"
    assert main(["db", "backup", "--dsn", dsn, "-o", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert "PostgreSQL database 'records' on 127.0.0.1:1" in err
    assert PASSWORD not in err
    assert not (tmp_path / "b").exists()
    missing = "sqlite:///" + str(tmp_path / "missing.db")
    assert main(["db", "backup", "--dsn", missing, "-o", str(tmp_path / "b")]) == 1
    assert "missing.db does not exist" in capsys.readouterr().err


def test_pg_tools_get_the_password_from_the_environment_only():
    target = parse_dsn(f"postgresql://tradebot:{PASSWORD}@db.example:5432/records?sslmode=require")
    assert isinstance(target, PostgresDsn)
    conninfo, env = _client_args(target)
    assert PASSWORD not in conninfo
    assert "host=db.example" in conninfo
    assert "sslmode=require" in conninfo
    assert env["PGPASSWORD"] == PASSWORD


def test_sqlite_backup_is_consistent_while_the_operator_writes(tmp_path: Path):
    """Each run and its 50 metrics are written in one transaction each; a backup taken while
    that goes on holds every run it holds with all of its metrics, or not at all."""
    dsn = f"sqlite:///{tmp_path}/live.db"
    with open_store(dsn) as store:
        store.migrate()
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        with open_store(dsn) as store:
            i = 0
            while not stop.is_set():
                store.record_run(
                    RunRecord(
                        id=f"r{i}",
                        resource_uid=f"u{i}",
                        namespace="ns",
                        name=f"n{i}",
                        kind="backtest",
                    )
                )
                store.record_metrics(f"r{i}", {f"m{k}": Decimal(k) for k in range(50)})
                written.append(i)
                i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 20:
            stop.wait(0.01)
        backups = []
        for n in range(3):
            target = tmp_path / f"live-{n}.backup"
            assert main(["db", "backup", "--dsn", dsn, "-o", str(target)]) == 0
            backups.append(target)
    finally:
        stop.set()
        thread.join()
    for n, target in enumerate(backups):
        restored = f"sqlite:///{tmp_path}/restored-{n}.db"
        assert main(["db", "restore", "--dsn", restored, str(target)]) == 0
        with open_store(restored) as store:
            runs = store.list_runs()
            assert runs, "the backup holds no run"
            for run in runs:
                # A run without its metrics is one the writer was between; metrics are never
                # half there.
                assert len(store.get_metrics(run.id)) in (0, 50), run.id
