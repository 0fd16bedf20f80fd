"""The Freqtrade API double answers the operator's own client (BotClient) as a bot would, at
each loopback address it listens on, and records which call reached which address, when."""

from __future__ import annotations

import socket
import time

import pytest

from tradebot.freqtrade.rest import BotApiError, BotClient, BotUnreachable
from tradebot_testing.freqtrade_api_double import FreqtradeApiDouble


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_each_address_is_a_bot_of_its_own() -> None:
    port = _free_port()
    first, second = "127.201.0.1", "127.201.0.2"
    with FreqtradeApiDouble(port) as double:
        double.listen([first, second])
        bot = BotClient(f"http://{first}:{port}", "user", "secret", timeout=2)
        before = time.monotonic()
        assert bot.ping()
        snap = bot.snapshot()
        assert snap.state == "running"
        assert snap.dry_run is True
        bot.stop_entries()
        bot.stop()
        assert BotClient(f"http://{first}:{port}", "u", "p").snapshot().state == "stopped"
        # The other bot was not touched.
        other = BotClient(f"http://{second}:{port}", "user", "secret", timeout=2)
        assert other.snapshot().state == "running"
        paths = [c.path for c in double.calls(first)]
        assert paths[:2] == ["ping", "token/login"]
        assert "stopentry" in paths
        assert "stop" in paths
        assert "stop" not in [c.path for c in double.calls(second)]
        stopped = double.first(first, "stop")
        assert stopped is not None
        assert before <= stopped <= time.monotonic()
        assert double.first(second, "stop") is None
        double.check()


def test_calls_without_a_token_are_refused() -> None:
    port = _free_port()
    with FreqtradeApiDouble(port) as double:
        double.listen(["127.201.0.3"])
        bot = BotClient(f"http://127.201.0.3:{port}", "", "", timeout=2)
        with pytest.raises(BotApiError, match="401"):
            bot._request("POST", "stop")
        with pytest.raises(BotApiError, match="401"):
            bot._request("POST", "token/login")  # no Basic credentials either
        assert double.state("127.201.0.3") == "running"
        # Where it does not listen, nothing answers.
        with pytest.raises(BotUnreachable):
            BotClient(f"http://127.201.0.4:{port}", "u", "p", timeout=1).stop()
