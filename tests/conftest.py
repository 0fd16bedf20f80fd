"""Shared fixtures: one real local cluster and one real PostgreSQL server per test run."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import apply_crds, temporary_cluster, temporary_namespace, tools_dir
from tests.support.postgres import LocalPostgres, temporary_postgres
from tradebot.localcluster import LocalCluster

ROOT = Path(__file__).resolve().parent.parent
_LAYERS = ("unit", "integration", "e2e", "contract", "images")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test's layer is the folder it lives in: tests/unit, integration, e2e, contract,
    images."""
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in _LAYERS:
            item.add_marker(getattr(pytest.mark, parts[0]))


@pytest.fixture(scope="session")
def tools_bin() -> Path:
    bin_dir = tools_dir()
    missing = [
        b
        for b in ("etcd", "kube-apiserver", "kwok", "kubectl", "helm")
        if not (bin_dir / b).is_file()
    ]
    if missing:
        pytest.fail(f"tool binaries missing in {bin_dir}: {missing}; run `make tools`")
    return bin_dir


@pytest.fixture(scope="session")
def cluster(tools_bin: Path) -> Iterator[LocalCluster]:
    """The session's local cluster, on free ports, in a temp dir (not .local/)."""
    with temporary_cluster("tradebot-cluster-", tools_bin) as c:
        yield c


@pytest.fixture(scope="session")
def crds_installed(cluster: LocalCluster) -> None:
    """The committed crds/ applied to the session cluster and Established."""
    apply_crds(cluster)


@pytest.fixture(scope="session")
def api_client(cluster: LocalCluster) -> Iterator[Any]:
    with cluster.api_client() as api:
        yield api


@pytest.fixture
def namespace(api_client: Any) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    with temporary_namespace(api_client) as name:
        yield name


@pytest.fixture
def kubectl(cluster: LocalCluster, tools_bin: Path) -> Any:
    """Runs the pinned kubectl against the test cluster; returns the CompletedProcess."""

    def run(
        *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(tools_bin / "kubectl"), f"--kubeconfig={cluster.kubeconfig}", *args],
            check=check,
            capture_output=True,
            text=True,
            input=stdin,
        )

    return run


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    with temporary_postgres() as server:
        yield server


@pytest.fixture
def postgres_dsn(postgres_server: LocalPostgres) -> Iterator[str]:
    """A DSN of a fresh, empty database, dropped after the test."""
    with postgres_server.scratch_database() as dsn:
        yield dsn


@pytest.fixture
def private_postgres() -> Iterator[LocalPostgres]:
    """A PostgreSQL server of this test's own, which it may stop and start (the shared one
    serves every other test)."""
    with temporary_postgres() as server:
        yield server
