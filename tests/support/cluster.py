"""The local cluster for tests and benchmarks: the pinned tools, a cluster on free ports in a
temporary directory, the committed CRDs, fresh namespaces, and stopping what was started."""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tradebot.localcluster import LocalCluster, Ports

ROOT = Path(__file__).resolve().parents[2]


def tools_dir() -> Path:
    """Where `make tools` put the pinned binaries (TRADEBOT_TOOLS_BIN overrides)."""
    return Path(
        os.environ.get("TRADEBOT_TOOLS_BIN")
        or subprocess.run(
            [str(ROOT / "hack" / "tools-dir.sh")], check=True, capture_output=True, text=True
        ).stdout.strip()
    )


@contextmanager
def temporary_cluster(prefix: str, bin_dir: Path | None = None) -> Iterator[LocalCluster]:
    """A started local cluster on free ports in a fresh directory; stopped on exit."""
    cluster = LocalCluster(
        Path(tempfile.mkdtemp(prefix=prefix)), bin_dir or tools_dir(), ports=Ports.free()
    )
    try:
        cluster.up(timeout=120)
        yield cluster
    finally:
        cluster.down()


def apply_crds(cluster: LocalCluster) -> None:
    """The committed crds/ applied, and Established before this returns."""
    kubectl = [str(cluster.bin_dir / "kubectl"), f"--kubeconfig={cluster.kubeconfig}"]
    subprocess.run([*kubectl, "apply", "-f", str(ROOT / "crds")], check=True, capture_output=True)
    subprocess.run(
        [
            *kubectl,
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "-l",
            "app.kubernetes.io/part-of=tradebot-operator",
        ],
        check=True,
        capture_output=True,
    )


@contextmanager
def temporary_namespace(api_client: Any, prefix: str = "t-") -> Iterator[str]:
    """A fresh namespace, labelled as a test's, deleted on exit."""
    from kubernetes import client

    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": name, "labels": {"tradebot.dev/test": "true"}}})
    try:
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Background")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM (the operator shuts down cleanly), SIGKILL if it has not within `timeout`."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
