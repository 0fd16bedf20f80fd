"""A real `freqtrade trade` (dry run, against the local exchange double) runs the operator's
trade config with the guarded strategy: Freqtrade loads the operator's protections, a losing
exit past spec.limits.maxDrawdown locks all entries, and /forceexit works with /forceenter
closed (force_entry_enable false, as for live bots).
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tradebot.api.circuitbreaker import BreakerLimits
from tradebot.api.livebot import LiveBotSpec
from tradebot.api.strategy import StrategySpec
from tradebot.domain.freqtrade_trade_config import trade_config
from tradebot.domain.protections import guarded_code
from tradebot.executors.local_bots import LocalBotExecutor
from tradebot.freqtrade.rest import BotApiError, BotClient, BotUnreachable
from tradebot_testing.exchange_double import ExchangeDouble

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
USERNAME = "operator"
SECRETS = {
    "FREQTRADE__API_SERVER__PASSWORD": "trade-config-contract-password",
    "FREQTRADE__API_SERVER__JWT_SECRET_KEY": "trade-config-contract-jwt-" + "k" * 20,
    "FREQTRADE__API_SERVER__WS_TOKEN": "trade-config-contract-ws",
}
PASSWORD = SECRETS["FREQTRADE__API_SERVER__PASSWORD"]
T = TypeVar("T")


def _until(what: str, probe: Callable[[], T | None], timeout: float = 40) -> T:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except BotUnreachable as e:  # starting or restarting
            last, value = e, None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def _raw(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """Status and JSON body of a bot API call (BotClient hides error bodies)."""
    auth = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    request = urllib.request.Request(  # noqa: S310 (loopback)
        f"{url}/api/v1/{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def _global_locks(url: str) -> list[dict[str, Any]]:
    status, answer = _raw(url, "GET", "locks")
    assert status == 200, answer
    return [lock for lock in answer["locks"] if lock["pair"] == "*" and lock["active"]]


def _spec(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())["spec"]
    return spec


def test_protections_lock_entries_and_forceexit_needs_no_force_entry(tmp_path: Path) -> None:
    strategy_wire = _spec("strategy.yaml")
    # The strategy's own stop-loss would race the test's /forceexit after the drop.
    strategy_wire["parameters"]["stoploss"] = -0.5
    strategy = StrategySpec.model_validate(strategy_wire)
    bot_wire = _spec("livebot.yaml")
    bot_wire["stakeAmount"] = "100"
    # A 20 % drop on a 100 stake is a 2 % drawdown of the 1000 wallet: past 1 %.
    bot_wire["limits"] = {"maxStakePerTrade": "100", "maxOpenTrades": 3, "maxDrawdown": 0.01}
    spec = LiveBotSpec.model_validate(bot_wire)
    breakers = (BreakerLimits(max_drawdown="0.3", max_consecutive_losses=3),)
    code = guarded_code(strategy.code or "", strategy.class_name)
    executor = LocalBotExecutor(tmp_path / "state")
    log = executor.bot_dir("p1") / "freqtrade.log"
    with ExchangeDouble() as double:
        config = trade_config(
            spec,
            strategy,
            api_port=8080,
            api_username=USERNAME,
            exchange_double_url=double.url,
            breakers=breakers,
        )
        bot = executor.ensure("p1", config, strategy.class_name, code, SECRETS)
        try:
            client = BotClient(bot.url, USERNAME, PASSWORD)
            _until("a running bot", lambda: client.show_config()["state"] == "running", 60)
            # Freqtrade resolved the operator's protections from the guarded strategy, with
            # the strictest limits of the bot and its breaker.
            text = log.read_text()
            assert "Using resolved protection MaxDrawdown" in text, text[-3000:]
            assert "Using resolved protection StoplossGuard" in text, text[-3000:]
            assert "stop trading if drawdown is > 0.01 within 1440 minutes" in text
            assert "3 stoplosses with profit < 0.00% within 1440 minutes" in text

            client.force_enter("BTC/USDT")
            _until(
                "the entry filled", lambda: [t for t in client.status() if not t["has_open_orders"]]
            )
            # The control: nothing locks entries yet.
            assert _global_locks(bot.url) == []

            # The same bot as a live bot runs it: /forceenter closed. The trade database
            # survives the restart, so the open trade is still there.
            live_like = {**config, "force_entry_enable": False}
            again = executor.ensure("p1", live_like, strategy.class_name, code, SECRETS)
            assert again.pid != bot.pid
            client = BotClient(again.url, USERNAME, PASSWORD)
            shown = _until(
                "the restarted bot", lambda: (c := client.show_config())["state"] == "running" and c
            )
            assert shown["force_entry_enable"] is False
            assert len(client.status()) == 1
            status, refused = _raw(again.url, "POST", "forceenter", {"pair": "ETH/USDT"})
            assert status >= 400
            assert "Force_entry not enabled" in json.dumps(refused)

            double.move("BTC/USDT", -0.2)
            _until(
                "the open loss", lambda: [t for t in client.status() if t["profit_ratio"] < -0.15]
            )
            status, answer = _raw(again.url, "POST", "forceexit", {"tradeid": "all"})
            assert status == 200, answer
            _until(
                "the trade closed",
                lambda: not client.status() and client.profit()["closed_trade_count"] == 1,
            )

            # The bot locked itself: MaxDrawdown at spec.limits.maxDrawdown (stricter than
            # the breaker's 0.3), for STOP_MINUTES.
            locks = _until("a global lock", lambda: _global_locks(again.url))
            assert any("passed 0.01" in (lock["reason"] or "") for lock in locks), locks

            # A breaker's stop: Basic auth on the call itself, no login (bot_control). A
            # wrong password is refused, and the bot keeps running (the control).
            with pytest.raises(BotApiError, match="401"):
                BotClient(again.url, USERNAME, "wrong", basic_auth=True).stop()
            assert client.show_config()["state"] == "running"
            BotClient(again.url, USERNAME, PASSWORD, basic_auth=True).stop()
            assert client.show_config()["state"] == "stopped"
        finally:
            executor.stop("p1")
    assert executor.running("p1") is None
