"""GitHub Actions workflows pass actionlint (built by `make tools`), dependabot covers every
ecosystem, and the e2e manifests are valid Kubernetes objects."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


@pytest.fixture(scope="module")
def actionlint() -> Path:
    out = subprocess.run(
        [str(ROOT / "hack" / "lint-tool-dir.sh"), "actionlint"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    binary = Path(out) / "actionlint"
    if not binary.is_file():
        pytest.fail(f"{binary} missing; run `make tools`")
    return binary


def test_workflows_pass_actionlint(actionlint: Path):
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "e2e.yml"}
    result = subprocess.run(
        [str(actionlint), "-no-color", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(actionlint: Path, tmp_path: Path):
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo ${{ github.nope }}\n"
    )
    result = subprocess.run(
        [str(actionlint), "-no-color", str(bad)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode != 0
    assert "nope" in result.stdout


def test_ci_keeps_the_tools_cache_directory_and_caches_lint_tools_apart():
    ci = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    caches = [
        s["with"]
        for s in ci["jobs"]["test"]["steps"]
        if str(s.get("uses", "")).startswith("actions/cache")
    ]
    paths = "\n".join(c["path"] for c in caches)
    assert "~/.cache/tradebot/tools" in paths
    assert "~/.cache/tradebot/lint-tools" in paths
    assert any(s.get("run") == "bash .ci/run" for s in ci["jobs"]["test"]["steps"])
    tools_dir = subprocess.run(
        [str(ROOT / "hack" / "tools-dir.sh")],
        check=True,
        capture_output=True,
        text=True,
        env={"HOME": "/h"},
    ).stdout
    # The Kubernetes build's directory name does not depend on the lint tools' versions.
    assert "actionlint" not in tools_dir


def test_dependabot_covers_pip_actions_and_every_image():
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    entries = {(u["package-ecosystem"], u["directory"]) for u in config["updates"]}
    images = {
        ("docker", f"/images/{p.parent.name}") for p in (ROOT / "images").glob("*/Dockerfile")
    }
    assert entries >= {("pip", "/"), ("github-actions", "/")} | images


def test_e2e_manifests_are_valid(kubectl: Any, namespace: str):
    result = kubectl(
        "apply",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        str(ROOT / "deploy" / "e2e" / "exchange-double.yaml"),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == 2


def test_ci_tests_the_python_matrix():
    ci = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    job = ci["jobs"]["test"]
    matrix = job["env"]["PYTHON_MATRIX"].split()
    assert "3.12" in matrix
    setup = next(
        s["with"] for s in job["steps"] if str(s.get("uses", "")).startswith("actions/setup-python")
    )
    versions = setup["python-version"].strip().splitlines()
    # 3.11 last: the default python3 that builds .venv and runs every layer.
    assert versions == ["${{ env.PYTHON_MATRIX }}", "3.11"]
    assert "make test-matrix" in (ROOT / ".ci" / "run").read_text()
    project = (ROOT / "pyproject.toml").read_text()
    assert 'requires-python = ">=3.11,<3.14"' in project  # every matrix version is allowed


def test_a_tag_releases_every_image_with_its_sbom_and_the_chart_to_an_oci_registry():
    release = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    on = release.get("on", release.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert on == {"push": {"tags": ["v*.*.*"]}}
    images = release["jobs"]["images"]
    assert set(images["strategy"]["matrix"]["image"]) == {
        p.parent.name for p in (ROOT / "images").glob("*/Dockerfile")
    }
    assert images["permissions"]["packages"] == "write"
    runs = "\n".join(s.get("run", "") for s in images["steps"])
    assert "docker push" in runs
    assert "hack/sbom.sh docker" in runs
    chart = release["jobs"]["chart"]
    assert chart["needs"] == "images"
    runs = "\n".join(s.get("run", "") for s in chart["steps"])
    assert 'make chart CHART_VERSION="${GITHUB_REF_NAME#v}"' in runs
    assert 'push "dist/tradebot-operator-${GITHUB_REF_NAME#v}.tgz" "oci://' in runs
