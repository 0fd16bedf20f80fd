"""An outbox left by a former leader is delivered by whoever leads next. Replicas share a
volume and each keeps an outbox named by its pod (TRADEBOT_OUTBOX_PATH with `{pod}`); the
former leader here is a real process that buffers an incident while the database is down and
is then killed (SIGKILL, its lock released by the kernel). Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.support.wait import wait_for

from tradebot.records import open_store
from tradebot.records.buffered import BufferedStore
from tradebot.settings import Settings

# Nothing listens on port 1: the former leader's database is down all its life.
DOWN = "postgresql://tradebot@127.0.0.1:1/records"

FORMER_LEADER = textwrap.dedent(
    """
    import datetime as dt, sys, time
    from decimal import Decimal
    from tradebot.records import IncidentRecord
    from tradebot.records.buffered import BufferedStore
    from tradebot.settings import Settings

    settings = Settings(database_dsn=sys.argv[1], outbox_path=sys.argv[2])
    store = BufferedStore.open(settings.database_dsn, settings.records_outbox)
    store.record_incident(IncidentRecord(
        id="inc-former", namespace="ns", source_kind="CircuitBreaker", source_name="guard",
        source_uid="uid-guard", breaker="guard", bots=("bot-a",), severity="critical",
        reason="drawdown", description="tripped while the database was down",
        figures={"drawdown": Decimal("0.12345678")},
        created_at=dt.datetime(2026, 4, 1, tzinfo=dt.UTC)))
    assert store.pending == 1, store.pending
    print("OUTBOX", store.outbox_path, flush=True)
    time.sleep(600)
    """
)


def _former_leader(state: Path, pod: str) -> tuple[subprocess.Popen[str], Path]:
    env = {**os.environ, "POD_NAME": pod}
    process = subprocess.Popen(
        [sys.executable, "-c", FORMER_LEADER, DOWN, str(state / "records-outbox-{pod}.jsonl")],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = ""
    while not line.startswith("OUTBOX "):  # its log lines come first
        line = process.stdout.readline()
        assert line, "the former leader ended before buffering its incident"
    path = Path(line.removeprefix("OUTBOX ").strip())
    assert path == state / f"records-outbox-{pod}.jsonl", path
    return process, path


def test_the_new_leader_delivers_the_former_leaders_outbox(
    dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"  # the shared volume
    with open_store(dsn) as s:
        s.migrate()
    former, orphan = _former_leader(state, "operator-a")
    monkeypatch.setenv("POD_NAME", "operator-b")
    try:
        settings = Settings(database_dsn=dsn, outbox_path=state / "records-outbox-{pod}.jsonl")
        assert settings.records_outbox == state / "records-outbox-operator-b.jsonl"
        assert settings.outbox_family == "records-outbox*.jsonl"
        with BufferedStore.open(
            dsn, settings.records_outbox, adopt=settings.outbox_family
        ) as leader:
            # While the former leader lives (a paused or slow replica), its outbox is its own:
            # the new leader leaves it alone.
            assert leader.flush() == 0
            assert orphan.exists()
            assert leader.get_incident("inc-former") is None
            former.send_signal(signal.SIGKILL)
            former.wait(30)
            # Positive control: once its owner is gone, the next flush delivers it.
            wait_for(lambda: leader.flush() or not orphan.exists(), 20, what="the adoption")
            incident = leader.get_incident("inc-former")
            assert incident is not None
            assert incident.description == "tripped while the database was down"
            assert not orphan.exists()
            assert leader.pending == 0
    finally:
        if former.poll() is None:
            former.kill()
            former.wait(30)
    # Delivered once: a second leader finds nothing left to adopt.
    with BufferedStore.open(
        dsn, state / "records-outbox-operator-c.jsonl", adopt="records-outbox*.jsonl"
    ) as s:
        assert s.flush() == 0
        assert len([i for i in s.list_incidents() if i.id == "inc-former"]) == 1
