"""Running the pinned helm against the test cluster, and acting as the chart's ServiceAccount."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "tradebot-operator"
KUBE_VERSION = "1.32.4"


@dataclass
class Helm:
    binary: Path
    kubeconfig: Path | None
    home: Path

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.binary), *args]
        if self.kubeconfig is not None:
            cmd += ["--kubeconfig", str(self.kubeconfig)]
        # A private HOME: no repository or plugin of the machine's user leaks in.
        env = {"HOME": str(self.home), "PATH": "/usr/bin:/bin"}
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
        return result

    def template(self, *args: str) -> list[dict[str, Any]]:
        out = self(
            "template",
            "t",
            str(CHART),
            "--namespace",
            "tradebot-system",
            "--kube-version",
            KUBE_VERSION,
            *args,
        ).stdout
        return [d for d in yaml.safe_load_all(out) if d]


def token_kubeconfig(admin_kubeconfig: Path, token: str, out: Path) -> Path:
    """A kubeconfig for the same API server that authenticates with `token` only."""
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    cluster = dict(admin["clusters"][0]["cluster"])
    ca = cluster.get("certificate-authority")
    if ca and not Path(ca).is_absolute():
        cluster["certificate-authority"] = str((admin_kubeconfig.parent / ca).resolve())
    out.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "sa",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa"}}],
            }
        )
    )
    return out
