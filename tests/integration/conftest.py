from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

CRDS = Path(__file__).resolve().parents[2] / "crds"


@pytest.fixture(scope="session")
def crds_installed(cluster: Any, tools_bin: Path) -> None:
    """The committed crds/ applied to the session cluster and Established."""
    kubectl = [str(tools_bin / "kubectl"), f"--kubeconfig={cluster.kubeconfig}"]
    subprocess.run([*kubectl, "apply", "-f", str(CRDS)], check=True, capture_output=True)
    subprocess.run([*kubectl, "wait", "--for=condition=Established", "--timeout=60s",
                    "crd", "-l", "app.kubernetes.io/part-of=tradebot-operator"],
                   check=True, capture_output=True)
