"""The dependency audit's verdict (hack/audit.py): the ignore file's every entry gives a reason,
found vulnerabilities fail unless ignored by id or alias, and an audit that skipped packages is
not a clean audit. pip-audit's JSON reports are made up here; `make audit` runs the real one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
AUDIT = ROOT / "hack" / "audit.py"


def _audit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(AUDIT), *args], capture_output=True, text=True, check=False, env=env
    )


def _report(tmp_path: Path, deps: list[dict[str, Any]]) -> str:
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"dependencies": deps, "fixes": []}))
    return str(path)


VULNERABLE = {
    "name": "jinja2",
    "version": "2.10",
    "vulns": [
        {
            "id": "PYSEC-2019-217",
            "aliases": ["CVE-2019-10906", "GHSA-462w-v97r-4m45"],
            "fix_versions": ["2.10.1"],
        }
    ],
}
CLEAN = {"name": "pyyaml", "version": "6.0.2", "vulns": []}


def test_the_repository_ignore_file_gives_a_reason_for_every_entry():
    result = _audit("--check-ignore-file")
    assert result.returncode == 0, result.stderr
    assert "each with a reason" in result.stdout


def test_an_entry_without_a_reason_is_rejected(tmp_path: Path):
    bad = tmp_path / "ignore.txt"
    bad.write_text(
        "# fine\nGHSA-462w-v97r-4m45  templates are never user input here\nPYSEC-2019-217\n"
    )
    result = _audit("--check-ignore-file", "--ignore-file", str(bad))
    assert result.returncode == 2
    assert "line 3: PYSEC-2019-217 has no reason" in result.stderr
    bad.write_text("PYSEC-2019-217 wontfix\n")  # one word is a token, not a reason
    assert _audit("--check-ignore-file", "--ignore-file", str(bad)).returncode == 2
    bad.write_text("jinja2 templates are never user input\n")
    result = _audit("--check-ignore-file", "--ignore-file", str(bad))
    assert result.returncode == 2
    assert "not a vulnerability id" in result.stderr


def test_a_known_vulnerability_fails_and_a_clean_report_passes(tmp_path: Path):
    empty = tmp_path / "ignore.txt"
    empty.write_text("")
    result = _audit("--ignore-file", str(empty), "--report", _report(tmp_path, [CLEAN, VULNERABLE]))
    assert result.returncode == 1
    assert "VULNERABLE jinja2 2.10: PYSEC-2019-217" in result.stdout
    assert "fixed in 2.10.1" in result.stdout
    result = _audit("--ignore-file", str(empty), "--report", _report(tmp_path, [CLEAN]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 packages audited, no known vulnerabilities" in result.stdout


def test_an_ignored_vulnerability_passes_by_id_or_alias_with_its_reason(tmp_path: Path):
    ignore = tmp_path / "ignore.txt"
    for listed in ("PYSEC-2019-217", "GHSA-462w-v97r-4m45"):
        ignore.write_text(f"{listed}  our templates never come from users\n")
        result = _audit(
            "--ignore-file", str(ignore), "--report", _report(tmp_path, [CLEAN, VULNERABLE])
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert (
            "ignored PYSEC-2019-217 in jinja2 2.10: our templates never come from users"
            in result.stdout
        )
    ignore.write_text("GHSA-aaaa-bbbb-cccc  another advisory entirely, not this one\n")
    result = _audit("--ignore-file", str(ignore), "--report", _report(tmp_path, [VULNERABLE]))
    assert result.returncode == 1


def test_skipped_packages_are_not_a_clean_audit(tmp_path: Path):
    # pip-audit itself exits 0 with "No known vulnerabilities found" for such a report.
    skipped = {
        "name": "aiohttp",
        "skip_reason": "Dependency not found on PyPI and could not be audited: aiohttp (3.14.5)",
    }
    empty = tmp_path / "ignore.txt"
    empty.write_text("")
    result = _audit("--ignore-file", str(empty), "--report", _report(tmp_path, [CLEAN, skipped]))
    assert result.returncode == 1
    assert "packages left unaudited" in result.stderr
    assert "aiohttp" in result.stderr
