#!/usr/bin/env python3
"""Dependency vulnerability scan: pip-audit over the virtualenv, judged here.

pip-audit alone is not trusted with the verdict: when its database cannot answer it marks every
package "skipped" and still prints "No known vulnerabilities found" with exit status 0. This
script fails instead, unless the audit is not required (see below), and it applies the ignore
file, whose every entry must say why.

Ignore file (pip-audit-ignore.txt): one entry per line, `ID  reason`, where ID is the
vulnerability's id or one of its aliases (PYSEC-..., GHSA-..., CVE-...) and the reason is at
least a few words. Blank lines and lines starting with # are comments.

Exit status: 0 clean; 1 vulnerabilities not ignored, or packages left unaudited while the
database answers; 2 a malformed ignore file; 3 the database is unreachable and the audit is
required (TRADEBOT_AUDIT=required, which GitHub's ci.yml sets). Without that requirement an
unreachable database prints a loud NOT AUDITED notice and exits 0: a machine that reaches the
package index but not the vulnerability database (this project's own CI machines) still runs the
rest of `make test`, while GitHub's CI cannot pass unaudited.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IGNORE = ROOT / "pip-audit-ignore.txt"
_ID = re.compile(r"^(PYSEC|GHSA|CVE|OSV|GSD)-[A-Za-z0-9-]+$")
# A reason is prose, not a token: at least three words.
_MIN_REASON_WORDS = 3


class IgnoreFileError(ValueError):
    pass


@dataclass(frozen=True)
class Finding:
    package: str
    version: str
    vuln_id: str
    aliases: tuple[str, ...]
    fix_versions: tuple[str, ...]


def parse_ignore_file(text: str) -> dict[str, str]:
    """ID -> reason; raises IgnoreFileError naming the line of any bad entry."""
    entries: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        vuln_id, _, reason = line.partition(" ")
        reason = reason.strip()
        if not _ID.match(vuln_id):
            raise IgnoreFileError(
                f"line {number}: {vuln_id!r} is not a vulnerability id "
                "(PYSEC-, GHSA-, CVE-, OSV-, GSD-)"
            )
        if len(reason.split()) < _MIN_REASON_WORDS:
            raise IgnoreFileError(
                f"line {number}: {vuln_id} has no reason (give at least "
                f"{_MIN_REASON_WORDS} words: why it does not apply or why "
                "it waits)"
            )
        if vuln_id in entries:
            raise IgnoreFileError(f"line {number}: {vuln_id} is listed twice")
        entries[vuln_id] = reason
    return entries


def judge(
    report: dict[str, Any], ignored: dict[str, str]
) -> tuple[list[Finding], list[Finding], list[str]]:
    """(findings that fail, findings ignored, packages skipped) from pip-audit's JSON."""
    failing: list[Finding] = []
    waived: list[Finding] = []
    skipped: list[str] = []
    for dep in report.get("dependencies", []):
        if "skip_reason" in dep:
            skipped.append(f"{dep['name']}: {dep['skip_reason']}")
            continue
        for vuln in dep.get("vulns", []):
            finding = Finding(
                dep["name"],
                dep.get("version", "?"),
                vuln["id"],
                tuple(vuln.get("aliases", [])),
                tuple(vuln.get("fix_versions", [])),
            )
            names = {finding.vuln_id, *finding.aliases}
            (waived if names & ignored.keys() else failing).append(finding)
    return failing, waived, skipped


def database_answers(timeout: float) -> str | None:
    """None when PyPI's per-release JSON (pip-audit's default service) answers, else why not."""
    version = metadata.version("pip-audit")
    url = f"https://pypi.org/pypi/pip-audit/{version}/json"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            json.load(response)
    except urllib.error.HTTPError as exc:
        return f"{url} answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"{url} did not answer: {exc}"
    return None


def required() -> bool:
    return os.environ.get("TRADEBOT_AUDIT", "") == "required"


def run_pip_audit(pip_audit: str) -> dict[str, Any]:
    # --skip-editable: the project itself is not on PyPI. Local packages only (-l): the
    # virtualenv, not whatever the base interpreter carries.
    out = subprocess.run(
        [
            pip_audit,
            "-l",
            "--skip-editable",
            "-f",
            "json",
            "--progress-spinner",
            "off",
            "--desc",
            "off",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode not in (0, 1) or not out.stdout.strip():
        sys.stderr.write(out.stderr)
        raise SystemExit(f"audit: pip-audit failed (exit status {out.returncode})")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ignore-file", type=Path, default=DEFAULT_IGNORE)
    parser.add_argument(
        "--check-ignore-file", action="store_true", help="only check the ignore file's format"
    )
    parser.add_argument(
        "--report", type=Path, help="judge this pip-audit JSON report instead of running pip-audit"
    )
    parser.add_argument("--pip-audit", default=str(Path(sys.executable).parent / "pip-audit"))
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args(argv)

    try:
        ignored = parse_ignore_file(args.ignore_file.read_text())
    except IgnoreFileError as exc:
        print(f"audit: {args.ignore_file}: {exc}", file=sys.stderr)
        return 2
    if args.check_ignore_file:
        print(f"audit: {args.ignore_file}: {len(ignored)} entries, each with a reason")
        return 0

    report = json.loads(args.report.read_text()) if args.report else run_pip_audit(args.pip_audit)
    failing, waived, skipped = judge(report, ignored)
    audited = len(report.get("dependencies", [])) - len(skipped)
    for f in waived:
        reason = next(ignored[i] for i in (f.vuln_id, *f.aliases) if i in ignored)
        print(f"audit: ignored {f.vuln_id} in {f.package} {f.version}: {reason}")
    for f in failing:
        fix = ", ".join(f.fix_versions) or "none yet"
        aliases = f" ({', '.join(f.aliases)})" if f.aliases else ""
        print(f"audit: VULNERABLE {f.package} {f.version}: {f.vuln_id}{aliases}; fixed in {fix}")
    if failing:
        print(
            f"audit: {len(failing)} known vulnerabilities; upgrade, or add an entry with its "
            f"reason to {args.ignore_file.name}",
            file=sys.stderr,
        )
        return 1
    if skipped:
        why = None if args.report else database_answers(args.timeout)
        if why is None:
            print("audit: packages left unaudited:\n  " + "\n  ".join(skipped), file=sys.stderr)
            return 1
        notice = (
            f"audit: NOT AUDITED: the vulnerability database is unreachable ({why}); "
            f"{len(skipped)} packages skipped, {audited} audited"
        )
        if required():
            print(notice, file=sys.stderr)
            return 3
        print(
            notice + " (not required here: TRADEBOT_AUDIT=required makes this fatal)",
            file=sys.stderr,
        )
        return 0
    print(
        f"audit: {audited} packages audited, no known vulnerabilities"
        + (f" ({len(waived)} ignored with reasons)" if waived else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
