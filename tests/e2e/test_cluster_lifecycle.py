"""`make up` / `make down` semantics, on clusters of their own (not the session cluster)."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.processes import processes_mentioning

from tradebot.localcluster import ClusterError, LocalCluster, Ports
from tradebot.localcluster.layout import COMPONENTS


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tradebot-lifecycle-"))
    yield path
    LocalCluster(path, Path("/nonexistent")).stop()  # never leave a stray process behind


def test_up_is_idempotent_and_down_leaves_nothing(tools_bin: Path, root: Path):
    lines: list[str] = []
    cluster = LocalCluster(root, tools_bin, ports=Ports.free(), out=lines.append)
    cluster.up(timeout=120)
    first = cluster.running()
    assert all(first.values())

    # A second `make up` (a new process: ports come from the saved state) changes nothing.
    again = LocalCluster(root, tools_bin, out=lines.append)
    again.up(timeout=60)
    assert again.running() == first
    assert "already running" in "\n".join(lines)

    assert sorted(again.down()) == sorted(COMPONENTS)
    assert not root.exists()
    assert processes_mentioning(str(root)) == []


def test_half_running_cluster_is_restarted(tools_bin: Path, root: Path):
    cluster = LocalCluster(root, tools_bin, ports=Ports.free())
    cluster.up(timeout=120)
    cluster.supervisor.stop("kube-scheduler")
    assert cluster.running()["kube-scheduler"] is None
    cluster.up(timeout=120)
    assert all(cluster.running().values())
    cluster.down()
    assert processes_mentioning(str(root)) == []


def test_port_taken_fails_fast_naming_component_and_port(tools_bin: Path, root: Path):
    ports = Ports.free()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports.apiserver))
        holder.listen()
        with pytest.raises(ClusterError) as exc:
            LocalCluster(root, tools_bin, ports=ports).up(timeout=60)
    assert f"{ports.apiserver} (kube-apiserver)" in str(exc.value)
    assert processes_mentioning(str(root)) == []


def test_component_that_exits_is_named_with_its_log_and_cleaned_up(
    tools_bin: Path, root: Path, tmp_path: Path
):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for c in COMPONENTS:
        (bin_dir / c).symlink_to(tools_bin / c)
    (bin_dir / "kube-apiserver").unlink()
    (bin_dir / "kube-apiserver").write_text("#!/bin/sh\necho 'E: broken on purpose' >&2\nexit 1\n")
    (bin_dir / "kube-apiserver").chmod(0o755)
    cluster = LocalCluster(root, bin_dir, ports=Ports.free())
    with pytest.raises(ClusterError) as exc:
        cluster.up(timeout=60)
    message = str(exc.value)
    assert "kube-apiserver exited" in message
    assert str(cluster.layout.log("kube-apiserver")) in message
    assert "broken on purpose" in message
    # etcd had started before the API server failed: it must be gone again.
    assert cluster.running() == dict.fromkeys(COMPONENTS)
    assert processes_mentioning(str(root)) == []


def test_down_removes_the_directories_of_the_clusters_claims(tools_bin: Path, root: Path):
    from kubernetes import client
    from tests.support.wait import wait_for

    cluster = LocalCluster(root, tools_bin, ports=Ports.free())
    cluster.up(timeout=120)
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_persistent_volume_claim(
            "default",
            {
                "metadata": {"name": "data"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Mi"}},
                },
            },
        )
        wait_for(
            lambda: (
                core.read_namespaced_persistent_volume_claim("data", "default").status.phase
                == "Bound"
            ),
            60,
            what="the claim Bound",
        )
    (path,) = cluster.hostpath_volumes()
    assert path.is_dir()  # positive control: the provisioner made it
    cluster.down()
    assert not path.exists()
