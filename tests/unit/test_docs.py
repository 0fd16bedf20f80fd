"""Docs that can't rot: no merge-conflict markers in any tracked text, every relative link in
the Markdown resolves, and every `tradebot` subcommand is documented in docs/cli.md."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tradebot.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
_MARKERS = re.compile(r"^(<{7}|={7}|>{7})( |$)", re.MULTILINE)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# Code is not prose: a regular expression in backticks is no link.
_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)


def _tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z", *patterns], cwd=ROOT, check=True, capture_output=True
    ).stdout.decode()
    return [ROOT / p for p in out.split("\0") if p and (ROOT / p).is_file()]


def _text(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def test_no_merge_conflict_markers_anywhere():
    files = _tracked()
    assert len(files) > 100  # positive control: the scan sees the tree
    found = [
        f"{p.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}"
        for p in files
        if (text := _text(p)) is not None
        for m in _MARKERS.finditer(text)
    ]
    assert found == []


def test_the_marker_check_finds_a_marker():
    assert _MARKERS.search("a\n<<<<<<< HEAD\nb\n=======\nc\n>>>>>>> branch\n")


def test_every_relative_link_resolves():
    docs = _tracked("*.md")
    assert any(p.name == "README.md" for p in docs)
    broken, checked = [], 0
    for doc in docs:
        text = _CODE.sub("", _text(doc) or "")
        for target in _LINK.findall(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # URLs and in-page anchors
            path = target.split("#", 1)[0]
            checked += 1
            if not (doc.parent / path).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert checked > 20  # positive control
    assert broken == []


def _subcommands() -> list[str]:
    parser = build_parser()
    actions = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    assert actions
    return sorted(actions[0].choices)  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", _subcommands())
def test_every_subcommand_is_in_the_cli_doc(command: str):
    assert f"`tradebot {command}" in (ROOT / "docs" / "cli.md").read_text()
