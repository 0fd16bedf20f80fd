"""Fixtures of the records suites: each test runs once on a SQLite file and once on a fresh
database of the real PostgreSQL server."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.postgres import LocalPostgres

from tradebot.localcluster import Ports
from tradebot.records import RecordStore, open_store


@pytest.fixture(params=["sqlite", "postgres"])
def dsn(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/records.db"
    # Requested only for this parameter, so SQLite runs never start the PostgreSQL server.
    postgres_dsn: str = request.getfixturevalue("postgres_dsn")
    return postgres_dsn


@pytest.fixture
def store(dsn: str) -> Iterator[RecordStore]:
    with open_store(dsn) as s:
        s.migrate()
        yield s


@pytest.fixture
def private_postgres() -> Iterator[LocalPostgres]:
    """A PostgreSQL server of this test's own, which it may stop and start (the shared one
    serves every other test)."""
    # Not under pytest's tmp_path: its parents are private, and the server may run as the
    # postgres user.
    directory = Path(tempfile.mkdtemp(prefix="tradebot-pg-"))
    directory.chmod(0o755)
    server = LocalPostgres(directory / "pg", Ports.free().etcd_client)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
