"""The chart ships: `helm package` makes a versioned chart archive that renders on its own, and
its `helm test` hook really checks that the operator answers. The hook's script runs here, as
the pod would run it, against the operator's metrics server (and against an HTTP server that
is not the operator: it must fail)."""

from __future__ import annotations

import http.server
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.support.helm import CHART, KUBE_VERSION, Helm

from tradebot.localcluster import Ports
from tradebot.observability import metrics


@pytest.fixture
def helm(tools_bin: Path, tmp_path: Path) -> Helm:
    return Helm(tools_bin / "helm", None, tmp_path)


def test_helm_package_makes_a_versioned_chart_that_renders(helm: Helm, tmp_path: Path):
    out = tmp_path / "dist"
    helm(
        "package",
        str(CHART),
        "--destination",
        str(out),
        "--version",
        "1.2.3",
        "--app-version",
        "1.2.3",
    )
    archive = out / "tradebot-operator-1.2.3.tgz"
    assert archive.is_file(), list(out.iterdir())
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert "tradebot-operator/templates/tests/operator-answers.yaml" in names
    assert any(n.startswith("tradebot-operator/crds/") for n in names)
    assert "tradebot-operator/values.schema.json" in names
    shown = yaml.safe_load(helm("show", "chart", str(archive)).stdout)
    assert (shown["version"], shown["appVersion"]) == ("1.2.3", "1.2.3")
    docs = [
        d
        for d in yaml.safe_load_all(
            helm("template", "t", str(archive), "--kube-version", KUBE_VERSION).stdout
        )
        if d
    ]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    # The packaged app version is the operator image's default tag.
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":1.2.3")
    # Without --version the archive carries Chart.yaml's version.
    helm("package", str(CHART), "--destination", str(out))
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    assert (out / f"tradebot-operator-{version}.tgz").is_file()


def _hook(helm: Helm) -> dict:
    docs = helm.template("--show-only", "templates/tests/operator-answers.yaml")
    assert len(docs) == 1
    return docs[0]


def _run_hook(pod: dict, url: str) -> subprocess.CompletedProcess[str]:
    container = pod["spec"]["containers"][0]
    assert container["command"][:2] == ["python", "-c"]
    return subprocess.run(
        [sys.executable, "-c", container["command"][2]],
        env={"METRICS_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def not_the_operator() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"# TYPE python_info gauge\npython_info 1\n")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/metrics"
    server.shutdown()


def test_the_helm_test_hook_passes_only_when_the_operator_answers(
    helm: Helm, not_the_operator: str
):
    pod = _hook(helm)
    annotations = pod["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["METRICS_URL"] == (
        "http://t-tradebot-operator-metrics.tradebot-system.svc:9090/metrics"
    )
    image = pod["spec"]["containers"][0]["image"]
    deployment = next(d for d in helm.template() if d["kind"] == "Deployment")
    assert image == deployment["spec"]["template"]["spec"]["containers"][0]["image"]

    port = Ports.free().kwok
    metrics.serve(port)
    result = _run_hook(pod, f"http://127.0.0.1:{port}/metrics")
    assert result.returncode == 0, result.stderr
    assert "the operator answers" in result.stdout
    # Positive control: an answer that is not the operator's fails the test.
    result = _run_hook(pod, not_the_operator)
    assert result.returncode != 0
    assert "without the operator's tradebot_ series" in result.stderr


def test_no_test_hook_without_the_metrics_service(helm: Helm):
    docs = helm.template("--set", "metrics.enabled=false")
    assert not [d for d in docs if d["kind"] == "Pod"]
    assert [d for d in helm.template() if d["kind"] == "Pod"]
