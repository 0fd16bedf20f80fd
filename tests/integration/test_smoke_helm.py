"""helm from `make tools` installs into the local cluster; its kubeVersion check needs the
API server's version to be set at build time (ldflags), which this proves."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from kubernetes import client

CHART = """apiVersion: v2
name: probe
version: 0.1.0
kubeVersion: ">=1.30.0-0"
"""
TEMPLATE = """apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-probe
data:
  greeting: {{ .Values.greeting | quote }}
"""


def test_helm_install_respects_kube_version(
    tools_bin: Path, cluster: Any, api_client: Any, namespace: str, tmp_path: Path
):
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(CHART)
    (chart / "values.yaml").write_text("greeting: hello\n")
    (chart / "templates" / "cm.yaml").write_text(TEMPLATE)
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [
            str(tools_bin / "helm"),
            "install",
            "smoke",
            str(chart),
            "--namespace",
            namespace,
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--set",
            "greeting=hi",
            "--wait",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    cm = client.CoreV1Api(api_client).read_namespaced_config_map("smoke-probe", namespace)
    assert cm.data == {"greeting": "hi"}
    version = subprocess.run(
        [str(tools_bin / "helm"), "version", "--short"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert version.startswith("v3.17.3")
