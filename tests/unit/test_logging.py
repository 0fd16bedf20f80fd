"""Logging is configured by the entry points, never by importing a module, and writes to the
stderr of the moment (a test's capture included), as JSON lines with the bound context."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

OPERATOR = Path(__file__).resolve().parents[2] / "operator"


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(OPERATOR), "PATH": "/usr/bin:/bin"},
    )


def test_importing_the_operator_configures_nothing():
    result = _python("""
        import logging, structlog
        handlers = list(logging.getLogger().handlers)
        import tradebot.controllers, tradebot.cli, tradebot.freqtrade.runner  # noqa
        from tradebot.records import buffered, outbox  # noqa
        assert not structlog.is_configured(), "configured at import"
        assert logging.getLogger().handlers == handlers, logging.getLogger().handlers
        from tradebot.observability.logging import configure_logging
        configure_logging()  # the positive control: this does configure
        assert structlog.is_configured()
        assert len(logging.getLogger().handlers) == 1
        print("checked")
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "checked"


def test_a_module_logger_made_before_configuration_logs_json_to_the_current_stderr(
    monkeypatch: pytest.MonkeyPatch,
):
    import logging

    from tradebot.controllers import queue  # its module logger exists since import
    from tradebot.observability.logging import configure_logging, logger

    configure_logging()
    configure_logging()  # twice: still one handler, one line per call
    later = io.StringIO()
    monkeypatch.setattr(sys, "stderr", later)
    queue._log.info("from the module logger", correlation_id="cid-1")
    logger(kind="LiveBot", name="b").warning("from a bound logger")
    logging.getLogger("kopf.test").warning("from the standard library")
    lines = [json.loads(line) for line in later.getvalue().splitlines()]
    assert [(line["event"], line["level"]) for line in lines] == [
        ("from the module logger", "info"),
        ("from a bound logger", "warning"),
        ("from the standard library", "warning"),
    ]
    assert (lines[0]["component"], lines[0]["correlation_id"]) == ("queue", "cid-1")
    assert (lines[1]["kind"], lines[1]["name"]) == ("LiveBot", "b")
    assert lines[2]["logger"] == "kopf.test"
    assert all("timestamp" in line for line in lines)
