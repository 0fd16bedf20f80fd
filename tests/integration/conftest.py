"""Fixtures of the records suites: each test runs once on a SQLite file and once on a fresh
database of the real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tradebot import kube
from tradebot.controllers import runtime
from tradebot.records import RecordStore, open_store
from tradebot.settings import Settings


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
def operator_runtime(
    cluster: Any, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[runtime.Runtime]:
    """The operator's runtime (settings, clients) installed in this process, for tests that
    call controller functions directly against the test's API server."""
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    kube.reset()
    rt = runtime.Runtime(Settings(namespaces=(namespace,), local_state_dir=tmp_path))
    runtime.install(rt)
    yield rt
    rt.close()
