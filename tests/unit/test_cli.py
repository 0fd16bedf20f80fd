from __future__ import annotations

import pytest

from tradebot import __version__
from tradebot.cli import main


def test_version(capsys: pytest.CaptureFixture[str]):
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"tradebot {__version__}"


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "version" in out
    assert "cluster" in out


def test_cluster_without_tools_dir_says_what_to_do(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path
):
    monkeypatch.delenv("TRADEBOT_TOOLS_BIN", raising=False)
    assert main(["cluster", "status", "--bin-dir", "/nonexistent", "--root", str(tmp_path)]) == 3
    assert main(["cluster", "up", "--bin-dir", "/nonexistent", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "missing tool binaries" in err
    assert "make tools" in err
