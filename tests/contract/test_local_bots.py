"""The local bot executor runs a real `freqtrade trade` (dry run, against the local exchange
double), adopts it again, restarts it when its config changes, and stops it."""

from __future__ import annotations

import datetime as dt
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml

from tradebot.api.livebot import LiveBotSpec
from tradebot.api.strategy import StrategySpec
from tradebot.domain import supervision
from tradebot.domain.freqtrade_trade_config import trade_config
from tradebot.executors import local_bots
from tradebot.executors.local_bots import LocalBotExecutor
from tradebot.freqtrade.rest import BotClient, BotUnreachable
from tradebot.processes import alive
from tradebot_testing.exchange_double import ExchangeDouble

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SECRETS = {
    "FREQTRADE__API_SERVER__PASSWORD": "local-bots-test-password",
    "FREQTRADE__API_SERVER__JWT_SECRET_KEY": "local-bots-test-jwt-" + "k" * 24,
    "FREQTRADE__API_SERVER__WS_TOKEN": "local-bots-test-ws",
}


def _ping(url: str, timeout: float = 40) -> None:
    client = BotClient(url, "operator", SECRETS["FREQTRADE__API_SERVER__PASSWORD"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.ping() and client.show_config()["state"] == "running":
                return
        except BotUnreachable:
            pass
        time.sleep(0.5)
    raise AssertionError(f"bot at {url} never answered")


def test_local_bot_lifecycle(tmp_path: Path):
    strategy = StrategySpec.model_validate(
        yaml.safe_load((EXAMPLES / "strategy.yaml").read_text())["spec"]
    )
    spec = LiveBotSpec.model_validate(
        yaml.safe_load((EXAMPLES / "livebot.yaml").read_text())["spec"]
    )
    executor = LocalBotExecutor(tmp_path / "state")
    with ExchangeDouble() as double:
        config = trade_config(
            spec, strategy, api_port=8080, api_username="operator", exchange_double_url=double.url
        )
        bot = executor.ensure("b1", config, strategy.class_name, strategy.code or "", SECRETS)
        try:
            _ping(bot.url)
            # Secrets stay in the process environment, never in the state directory.
            for path in (tmp_path / "state").rglob("*"):
                if path.is_file():
                    text = path.read_text(errors="replace")
                    assert all(v not in text for v in SECRETS.values()), path
            # A restarted operator (a new executor) adopts the same process.
            again = LocalBotExecutor(tmp_path / "state").ensure(
                "b1", config, strategy.class_name, strategy.code or "", SECRETS
            )
            assert again == bot
            # A changed config restarts it.
            config["max_open_trades"] = 1
            changed = executor.ensure(
                "b1", config, strategy.class_name, strategy.code or "", SECRETS
            )
            assert changed.pid != bot.pid
            assert not alive(bot.pid)
            _ping(changed.url)
        finally:
            executor.stop("b1")
    assert executor.running("b1") is None


def _deaf_to_sigterm(pid: int) -> bool:
    """Whether `pid` runs Python with SIGTERM ignored (SigIgn: a mask, signal n at bit n-1)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return False
    ignored = next(int(line.split()[1], 16) for line in status.splitlines() if "SigIgn" in line)
    return argv0 == sys.executable and bool(ignored & (1 << (signal.SIGTERM - 1)))


def test_a_fleets_sidecars_are_all_signalled_before_any_wait_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    strategy = StrategySpec.model_validate(
        yaml.safe_load((EXAMPLES / "strategy.yaml").read_text())["spec"]
    )
    spec = LiveBotSpec.model_validate(
        yaml.safe_load((EXAMPLES / "livebot.yaml").read_text())["spec"]
    )
    executor = LocalBotExecutor(tmp_path / "state")
    # The shipped sidecar, slow to exit: deaf to SIGTERM (ignored before the exec, which
    # keeps it ignored), so only the SIGKILL at the end of the executor's wait ends it.
    deaf = tmp_path / "python-deaf-to-sigterm"
    deaf.write_text(f"#!/bin/sh\ntrap '' TERM\nexec {sys.executable} \"$@\"\n")
    deaf.chmod(0o755)
    sidecar_side = LocalBotExecutor(tmp_path / "state", python=str(deaf))
    ids = ["b1", "b2", "b3"]
    sent: list[tuple[int, signal.Signals]] = []
    real_signal = local_bots._signal_group

    def recorded(pid: int, sig: signal.Signals) -> None:
        sent.append((pid, sig))
        real_signal(pid, sig)

    with ExchangeDouble() as double:
        config = trade_config(
            spec, strategy, api_port=8080, api_username="operator", exchange_double_url=double.url
        )
        for bot_id in ids:
            executor.ensure(bot_id, config, strategy.class_name, strategy.code or "", SECRETS)
            # Known at once (a stop right after the start must not miss it): its arguments
            # are there when ensure() returns.
            assert executor.running(bot_id) is not None, bot_id
        try:
            marked = supervision.mark_patch(dt.datetime.now(dt.UTC))["metadata"]["annotations"]
            api_user = {**SECRETS, "FREQTRADE__API_SERVER__USERNAME": "operator"}
            sidecars = [
                sidecar_side.supervise(bot_id, marked, dt.timedelta(minutes=10), api_user)
                for bot_id in ids
            ]
            pids = [pid for pid in sidecars if pid is not None]
            assert len(pids) == len(ids), sidecars
            deadline = time.monotonic() + 60
            while not all(_deaf_to_sigterm(pid) for pid in pids):
                assert time.monotonic() < deadline, "the sidecars never became deaf to SIGTERM"
                time.sleep(0.1)

            time.sleep(1)  # a sidecar that exits by itself (a bad argument) has by now
            assert all(alive(pid) and _deaf_to_sigterm(pid) for pid in pids)
            monkeypatch.setattr(local_bots, "_signal_group", recorded)
            assert executor.stop_many(ids) == ids
        finally:
            monkeypatch.undo()
            executor.stop_all()
    to_sidecars = [(pid, sig) for pid, sig in sent if pid in pids]
    # Positive control: each wait ran out (the sidecars ignored SIGTERM), so each sidecar was
    # SIGKILLed, and no sidecar and no record of one is left.
    assert sorted(pid for pid, sig in to_sidecars if sig == signal.SIGKILL) == sorted(pids)
    assert not any(alive(pid) for pid in pids)
    assert not list((tmp_path / "state").rglob("deadman.json"))
    # One wait for all: every sidecar got its SIGTERM before the first SIGKILL (the end of
    # the first wait); one wait per sidecar would SIGKILL the first before the second's SIGTERM.
    assert [sig for _, sig in to_sidecars] == [signal.SIGTERM] * 3 + [signal.SIGKILL] * 3
