"""The local bot executor runs a real `freqtrade trade` (dry run, against the local exchange
double), adopts it again, restarts it when its config changes, and stops it."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from tradebot.api.livebot import LiveBotSpec
from tradebot.api.strategy import StrategySpec
from tradebot.domain.freqtrade_trade_config import trade_config
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
