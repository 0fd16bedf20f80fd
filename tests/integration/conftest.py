"""Fixtures of the records suites: each test runs once on a SQLite file and once on a fresh
database of the real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
