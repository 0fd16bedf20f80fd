"""Shared fixtures: one real local cluster and one real PostgreSQL server per test run."""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.postgres import LocalPostgres, temporary_postgres
from tradebot.localcluster import LocalCluster, Ports

ROOT = Path(__file__).resolve().parent.parent
_LAYERS = ("unit", "integration", "e2e", "contract")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test's layer is the folder it lives in: tests/unit, integration, e2e, contract."""
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in _LAYERS:
            item.add_marker(getattr(pytest.mark, parts[0]))


@pytest.fixture(scope="session")
def tools_bin() -> Path:
    env_dir = os.environ.get("TRADEBOT_TOOLS_BIN")
    out = env_dir or subprocess.run(
        [str(ROOT / "hack" / "tools-dir.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()
    bin_dir = Path(out)
    missing = [b for b in ("etcd", "kube-apiserver", "kwok", "kubectl", "helm")
               if not (bin_dir / b).is_file()]
    if missing:
        pytest.fail(f"tool binaries missing in {bin_dir}: {missing}; run `make tools`")
    return bin_dir


@pytest.fixture(scope="session")
def cluster(tools_bin: Path) -> Iterator[LocalCluster]:
    """The session's local cluster, on free ports, in a temp dir (not .local/)."""
    root = Path(tempfile.mkdtemp(prefix="tradebot-cluster-"))
    c = LocalCluster(root, tools_bin, ports=Ports.free())
    try:
        c.up(timeout=120)
        yield c
    finally:
        c.down()


@pytest.fixture(scope="session")
def crds_installed(cluster: LocalCluster, tools_bin: Path) -> None:
    """The committed crds/ applied to the session cluster and Established."""
    kubectl = [str(tools_bin / "kubectl"), f"--kubeconfig={cluster.kubeconfig}"]
    subprocess.run([*kubectl, "apply", "-f", str(ROOT / "crds")], check=True,
                   capture_output=True)
    subprocess.run([*kubectl, "wait", "--for=condition=Established", "--timeout=60s",
                    "crd", "-l", "app.kubernetes.io/part-of=tradebot-operator"],
                   check=True, capture_output=True)


@pytest.fixture(scope="session")
def api_client(cluster: LocalCluster) -> Iterator[Any]:
    with cluster.api_client() as api:
        yield api


@pytest.fixture
def namespace(api_client: Any) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": name, "labels": {"tradebot.dev/test": "true"}}})
    try:
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def kubectl(cluster: LocalCluster, tools_bin: Path) -> Any:
    """Runs the pinned kubectl against the test cluster; returns the CompletedProcess."""

    def run(*args: str, check: bool = True, stdin: str | None = None
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(tools_bin / "kubectl"), f"--kubeconfig={cluster.kubeconfig}", *args],
            check=check, capture_output=True, text=True, input=stdin,
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
