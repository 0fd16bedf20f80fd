"""A real `freqtrade trade` (dry run, against the exchange double) started exactly as the bot
pod starts it: its ConfigMap's items laid out where the pod's volume projects them, the bot's
own arguments, the init container's state file. Freqtrade loads the Strategy's parameter set
from the projected <Class>.json (its startup log names the value), and a pause outlives a
restart of the bot's container."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from tradebot.api.livebot import LiveBotSpec
from tradebot.api.strategy import StrategySpec
from tradebot.domain import bots, supervision
from tradebot.domain.freqtrade_trade_config import trade_config
from tradebot.domain.protections import guarded_code
from tradebot.executors.environment import user_environment
from tradebot.freqtrade.rest import BotClient, BotUnreachable
from tradebot.sidecar import deadman
from tradebot_testing.exchange_double import ExchangeDouble

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
UID = "5e1f0000-aaaa-bbbb-cccc-ddddeeeeffff"
USERNAME = "operator"
SECRETS = {
    "FREQTRADE__API_SERVER__USERNAME": USERNAME,
    "FREQTRADE__API_SERVER__PASSWORD": "pod-files-contract-password",
    "FREQTRADE__API_SERVER__JWT_SECRET_KEY": "pod-files-contract-jwt-" + "k" * 24,
    "FREQTRADE__API_SERVER__WS_TOKEN": "pod-files-contract-ws",
}
NON_DEFAULT = 55  # the example strategy's buy_rsi_max defaults to 70


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bot(double_url: str, buy_rsi_max: int | None) -> bots.BotInstance:
    doc = yaml.safe_load((EXAMPLES / "strategy.yaml").read_text())["spec"]
    doc.pop("parameters", None)
    if buy_rsi_max is not None:
        doc["parameters"] = {"buy": {"buy_rsi_max": buy_rsi_max}}
    strategy = StrategySpec.model_validate(doc)
    spec = LiveBotSpec.model_validate(
        yaml.safe_load((EXAMPLES / "livebot.yaml").read_text())["spec"]
    )
    config = trade_config(
        spec, strategy, api_port=bots.API_PORT, api_username="", exchange_double_url=double_url
    )
    return bots.BotInstance(
        "team-a",
        "dry",
        UID,
        spec,
        "ema-rsi",
        strategy.class_name,
        guarded_code(strategy.code or "", strategy.class_name),
        config,
    )


class PodLayout:
    """The pod's files on this machine: the config volume as its items project it, the
    user-data volume, and the bot-state emptyDir (kept across container restarts)."""

    def __init__(self, root: Path, bot: bots.BotInstance) -> None:
        self.root, self.bot = root, bot
        self.config_dir = root / "etc" / "freqtrade"
        self.user_data = root / "user_data"
        self.state_file = root / "run" / supervision.STATE_FILE
        data = bot.config_data()
        for item in bot.config_items():
            target = self.config_dir / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(data[item["key"]])
        self.user_data.mkdir(parents=True)
        self.state_file.parent.mkdir(parents=True)
        # The init container.
        assert deadman.main(["--init-state", "running", "--state-file", str(self.state_file)]) == 0
        self.log = root / "freqtrade.log"

    def args(self) -> list[str]:
        """The pod's own arguments, its mount paths replaced by these directories."""
        replaced = []
        for arg in self.bot.args():
            arg = arg.replace(supervision.STATE_PATH, str(self.state_file))
            arg = arg.replace(bots.CONFIG_DIR, str(self.config_dir))
            replaced.append(arg.replace(bots.USER_DATA_DIR, str(self.user_data)))
        return replaced

    @contextmanager
    def container(self, port: int) -> Iterator[subprocess.Popen[bytes]]:
        """One start of the bot's container; SIGKILLed on leaving (a crash, not a stop)."""
        env = {
            **SECRETS,
            "FREQTRADE__API_SERVER__ENABLED": "true",
            "FREQTRADE__API_SERVER__LISTEN_IP_ADDRESS": "127.0.0.1",
            "FREQTRADE__API_SERVER__LISTEN_PORT": str(port),
        }
        with (self.root / "console.log").open("ab") as console:
            proc = subprocess.Popen(
                [sys.executable, "-m", "freqtrade", *self.args(), "--logfile", str(self.log)],
                cwd=self.root,
                env=user_environment(self.root / "home", env),
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            yield proc
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _log_line(layout: PodLayout, needle: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = layout.log.read_text(errors="replace") if layout.log.exists() else ""
        for line in text.splitlines():
            if needle in line:
                return line
        time.sleep(0.5)
    console = (layout.root / "console.log").read_text(errors="replace")[-3000:]
    raise AssertionError(f"no log line with {needle!r}; console:\n{console}")


def _state(port: int, timeout: float = 90) -> str:
    client = BotClient(
        f"http://127.0.0.1:{port}", USERNAME, SECRETS["FREQTRADE__API_SERVER__PASSWORD"]
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.ping():
                return str(client.show_config()["state"])
        except BotUnreachable:
            pass
        time.sleep(0.5)
    raise AssertionError("the bot's API never answered")


def test_the_bot_loads_the_projected_parameter_set(tmp_path: Path):
    with ExchangeDouble() as double:
        tuned = PodLayout(tmp_path / "tuned", _bot(double.url, NON_DEFAULT))
        assert (tuned.config_dir / "strategy" / "EmaRsiStrategy.json").is_file()
        with tuned.container(_free_port()):
            line = _log_line(tuned, "buy_rsi_max")
        assert f"Strategy Parameter: buy_rsi_max = {NON_DEFAULT}" in line, line

        # Control: the same pod without a set logs the strategy's own default.
        plain = PodLayout(tmp_path / "plain", _bot(double.url, None))
        assert not (plain.config_dir / "strategy" / "EmaRsiStrategy.json").exists()
        with plain.container(_free_port()):
            line = _log_line(plain, "buy_rsi_max")
        assert "Strategy Parameter(default): buy_rsi_max = 70" in line, line


def test_a_paused_bot_stays_paused_across_a_container_restart(tmp_path: Path):
    with ExchangeDouble() as double:
        layout = PodLayout(tmp_path / "pod", _bot(double.url, None))
        port = _free_port()
        client = BotClient(
            f"http://127.0.0.1:{port}", USERNAME, SECRETS["FREQTRADE__API_SERVER__PASSWORD"]
        )
        with layout.container(port):
            # Control: a new pod's bot runs.
            assert _state(port) == "running"
            # The operator went quiet: the sidecar's step pauses the bot and keeps the pause.
            switch = deadman.Switch(dt.timedelta(seconds=1), started=0.0)
            sidecar_bot = deadman.Bot(
                f"http://127.0.0.1:{port}", USERNAME, SECRETS["FREQTRADE__API_SERVER__PASSWORD"]
            )
            now = dt.datetime.now(dt.UTC)
            old_mark = deadman.format_time(now - dt.timedelta(minutes=5))
            assert deadman.step(switch, sidecar_bot, old_mark, now, 10.0, layout.state_file)
            assert client.show_config()["state"] == "paused"
        # The container crashed (SIGKILL) and the kubelet starts it again in the same pod.
        with layout.container(port):
            assert _state(port) == "paused"
            # A person resumes it; the sidecar (supervised again) keeps that for the next start.
            client.start()
            fresh = deadman.format_time(dt.datetime.now(dt.UTC))
            deadman.step(
                deadman.Switch(dt.timedelta(minutes=10), started=0.0),
                sidecar_bot,
                fresh,
                dt.datetime.now(dt.UTC),
                1.0,
                layout.state_file,
            )
            assert deadman.read_state(layout.state_file) == "running"
        with layout.container(port):
            assert _state(port) == "running"
