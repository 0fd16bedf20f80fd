"""A real `freqtrade trade --dry-run` against the local exchange double.

The bot loads its markets from the double's exchangeInfo (not from the bundled markets file),
its candles, tickers and order books from the double's replayed price series, and its API
secrets from FREQTRADE__* environment variables. The test drives it through its REST API and
moves the double's price to make it lose.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tradebot.api.livebot import LiveBotSpec
from tradebot.api.strategy import StrategySpec
from tradebot.domain.freqtrade_config import PARAMETER_FILE_KEY, TRADEBOT_KEY
from tradebot.domain.freqtrade_trade_config import trade_config
from tradebot_testing.exchange_double import ExchangeDouble

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
USERNAME = "operator"
PASSWORD = "contract-test-password"
START_TIMEOUT = 40
WAIT = 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spec(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())["spec"]
    return spec


@dataclass
class Bot:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, auth: bool = True
    ) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(  # noqa: S310 (http on loopback)
            self.url + "/api/v1/" + path, data=data, method=method
        )
        req.add_header("Content-Type", "application/json")
        if auth:
            token = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())

    def get(self, path: str, auth: bool = True) -> Any:
        return self.request("GET", path, auth=auth)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, body or {})

    def log_tail(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else "(no log)"
        return text[-4000:]


def _next_second() -> None:
    start = int(time.time())
    while int(time.time()) == start:
        time.sleep(0.05)


def _until(what: str, bot: Bot, check: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if bot.process.poll() is not None:
            pytest.fail(
                f"the bot exited ({bot.process.returncode}) waiting for {what}:\n{bot.log_tail()}"
            )
        try:
            last = check()
            if last:
                return last
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            last = e
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what} (last: {last!r}):\n{bot.log_tail()}")


@pytest.fixture
def exchange_double() -> Iterator[ExchangeDouble]:
    with ExchangeDouble() as double:
        yield double


@pytest.fixture
def bot(exchange_double: ExchangeDouble, tmp_path: Path) -> Iterator[Bot]:
    strategy_wire = _spec("strategy.yaml")
    # The bot's own stop-loss would race the test's /forceexit after a 20 % drop.
    strategy_wire["parameters"]["stoploss"] = -0.5
    strategy = StrategySpec.model_validate(strategy_wire)
    spec = LiveBotSpec.model_validate(_spec("livebot.yaml"))
    api_port = _free_port()
    config = trade_config(
        spec,
        strategy,
        api_port=api_port,
        api_username=USERNAME,
        exchange_double_url=exchange_double.url,
    )
    config["api_server"]["listen_ip_address"] = "127.0.0.1"  # the pod's 0.0.0.0, locally

    userdir = tmp_path / "user_data"
    strategies = userdir / "strategies"
    strategies.mkdir(parents=True)
    (strategies / f"{strategy.class_name}.py").write_text(strategy.code or "")
    parameter_file = config.get(TRADEBOT_KEY, {}).get(PARAMETER_FILE_KEY)
    if parameter_file is not None:
        (strategies / f"{strategy.class_name}.json").write_text(json.dumps(parameter_file))
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config, indent=2))
    log = tmp_path / "freqtrade.log"

    env = {
        k: v
        for k, v in os.environ.items()
        if k != "PYTEST_VERSION" and not k.startswith("FREQTRADE__")
    }
    env.update(
        {
            "FREQTRADE__API_SERVER__PASSWORD": PASSWORD,
            "FREQTRADE__API_SERVER__JWT_SECRET_KEY": "contract-test-jwt-key-" + "x" * 20,
            "FREQTRADE__API_SERVER__WS_TOKEN": "contract-test-ws-token",
        }
    )
    command = [
        sys.executable,
        "-m",
        "freqtrade",
        "trade",
        "--config",
        str(config_path),
        "--strategy",
        strategy.class_name,
        "--strategy-path",
        str(strategies),
        "--userdir",
        str(userdir),
        "--db-url",
        f"sqlite:///{tmp_path / 'trades.sqlite'}",
        "--logfile",
        str(log),
    ]
    with (tmp_path / "console.log").open("wb") as console:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=console, stderr=subprocess.STDOUT
        )
    running = Bot(f"http://127.0.0.1:{api_port}", process, log)
    try:
        yield running
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def test_dry_run_bot_trades_against_the_exchange_double(
    bot: Bot, exchange_double: ExchangeDouble
) -> None:
    started = time.monotonic()
    assert _until("the API", bot, lambda: bot.get("ping", auth=False), START_TIMEOUT) == {
        "status": "pong"
    }
    config = _until(
        "state running", bot, lambda: (c := bot.get("show_config"))["state"] == "running" and c
    )
    assert config["dry_run"] is True
    assert config["exchange"] == "binance"
    balance = bot.get("balance")
    assert balance["stake"] == "USDT"
    assert balance["total"] == pytest.approx(1000, rel=0.01)
    # Markets came from the double.
    assert exchange_double.calls["GET /api/v3/exchangeInfo"] >= 1

    entered = bot.post("forceenter", {"pair": "BTC/USDT"})
    trade_id = entered["trade_id"]
    entry_price = exchange_double.price("BTC/USDT")

    def filled() -> Any:
        trades = [t for t in bot.get("status") if t["trade_id"] == trade_id]
        return trades and not trades[0]["has_open_orders"] and trades[0]["amount"] > 0 and trades[0]

    trade = _until("the entry to fill", bot, filled)
    assert trade["pair"] == "BTC/USDT"
    assert trade["open_rate"] == pytest.approx(entry_price, rel=0.01)

    exchange_double.move("BTC/USDT", -0.2)

    def losing() -> Any:
        trades = [t for t in bot.get("status") if t["trade_id"] == trade_id]
        return trades and trades[0]["profit_ratio"] < -0.15 and trades[0]

    trade = _until("the open trade to show the loss", bot, losing)
    assert trade["current_rate"] == pytest.approx(exchange_double.price("BTC/USDT"), rel=0.01)

    bot.post("forceexit", {"tradeid": "all"})
    profit = _until(
        "a closed trade", bot, lambda: (p := bot.get("profit"))["closed_trade_count"] >= 1 and p
    )
    assert profit["losing_trades"] >= 1
    assert profit["profit_closed_coin"] < 0
    closed = next(t for t in bot.get("trades")["trades"] if t["trade_id"] == trade_id)
    assert closed["is_open"] is False
    assert closed["profit_ratio"] < -0.15

    assert bot.post("stop")["status"]
    _until("state stopped", bot, lambda: bot.get("show_config")["state"] == "stopped")
    assert time.monotonic() - started < 60
    used = set(exchange_double.calls)
    assert {"GET /api/v3/exchangeInfo", "GET /api/v3/klines"} <= used
    assert not exchange_double.unknown, exchange_double.unknown


def _fetch(double: ExchangeDouble, path: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(double.url + path, data=data)  # noqa: S310 (loopback)
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def test_klines_ticker_and_depth_come_from_one_series(exchange_double: ExchangeDouble) -> None:
    now_ms = int(time.time() * 1000)
    klines = _fetch(exchange_double, "/api/v3/klines?symbol=BTCUSDT&interval=5m&limit=100")
    assert len(klines) == 100
    opens = [k[0] for k in klines]
    assert all(b - a == 300_000 for a, b in itertools.pairwise(opens))
    assert opens[-1] <= now_ms < opens[-1] + 300_000  # the last one is the forming candle
    ticker = _fetch(exchange_double, "/api/v3/ticker/24hr?symbol=BTCUSDT")
    depth = _fetch(exchange_double, "/api/v3/depth?symbol=BTCUSDT&limit=5")
    last = float(ticker["lastPrice"])
    assert float(klines[-1][4]) == pytest.approx(last, rel=1e-3)
    assert float(depth["bids"][0][0]) < last < float(depth["asks"][0][0])
    assert float(depth["asks"][0][0]) / float(depth["bids"][0][0]) < 1.001

    moved = _fetch(exchange_double, "/double/price", {"pair": "BTC/USDT", "move": -0.2})
    assert moved["factor"] == pytest.approx(0.8)
    after = _fetch(exchange_double, "/api/v3/ticker/price?symbol=BTCUSDT")
    assert float(after["price"]) == pytest.approx(last * 0.8, rel=2e-3)
    # Candles closed before the move keep their prices.
    history = _fetch(
        exchange_double,
        f"/api/v3/klines?symbol=BTCUSDT&interval=5m&limit=2&startTime={klines[-3][0]}",
    )
    assert history == klines[-3:-1]
    state = _fetch(exchange_double, "/double/state")
    assert state["pairs"]["BTC/USDT"]["factor"]["now"] == pytest.approx(0.8)
    assert state["pairs"]["ETH/USDT"]["factor"]["now"] == 1.0


def test_unknown_paths_answer_404_and_are_recorded(exchange_double: ExchangeDouble) -> None:
    with pytest.raises(urllib.error.HTTPError) as raised:
        _fetch(exchange_double, "/api/v3/account")
    assert raised.value.code == 404
    assert json.loads(raised.value.read())["code"] == -1
    assert exchange_double.unknown["GET /api/v3/account"] == 1
    with pytest.raises(urllib.error.HTTPError) as bad:
        _fetch(exchange_double, "/api/v3/klines?symbol=NOPEUSDT&interval=5m")
    assert bad.value.code == 400


def test_operator_rest_client_monitors_and_controls_a_real_bot(
    bot: Bot, exchange_double: ExchangeDouble
) -> None:
    from decimal import Decimal

    from tradebot.freqtrade.rest import BotApiError, BotClient, BotUnreachable

    _until("the API", bot, lambda: bot.get("ping", auth=False), START_TIMEOUT)
    client = BotClient(bot.url, USERNAME, PASSWORD)
    assert client.ping()
    first = _until("a running bot", bot, lambda: (s := client.snapshot()).state == "running" and s)
    assert first.dry_run is True
    assert first.open_trades == 0
    assert isinstance(first.total_balance, Decimal)
    assert first.total_balance > 0

    client.force_enter("BTC/USDT")
    _until("the trade open", bot, lambda: client.snapshot().open_trades == 1)
    # A refusal is Freqtrade's answer, told apart from a bot that does not answer: this
    # strategy has no position adjustment, so a second entry into the open pair is refused.
    from tradebot.freqtrade.rest import BotRefused

    with pytest.raises(BotRefused, match="position for BTC/USDT already open"):
        client.force_enter(
            "BTC/USDT", stake_amount=Decimal("10"), entry_tag="dca-x", order_type="market"
        )
    exchange_double.move("BTC/USDT", -0.2)
    losing = _until("an open loss", bot, lambda: (s := client.snapshot()).open_profit < 0 and s)
    assert losing.total_balance < first.total_balance
    client.force_exit_all()
    closed = _until(
        "the loss closed",
        bot,
        lambda: (s := client.snapshot()).trade_count >= 1 and s.open_trades == 0 and s,
    )
    assert closed.closed_profit < 0
    assert closed.losing_streak == 1

    # A streak of one cannot tell newest-first from oldest-first, nor a streak from a count
    # of losses: a second loss makes it 2, then a win ends it (0), so the newest trade must
    # be the one read first.
    def round_trip(move: float, closed_before: int) -> Any:
        _next_second()  # close dates have whole seconds: keep this close after the last one
        client.force_enter("BTC/USDT")
        _until("the trade open", bot, lambda: client.snapshot().open_trades == 1)
        exchange_double.move("BTC/USDT", move)
        # A win may reach the strategy's ROI and close by itself; a loss stays open (the
        # stop-loss is -50 %) until the exit below.
        _until(
            "the move seen",
            bot,
            lambda: (
                (s := client.snapshot()).open_trades == 0
                or (s.open_profit != 0 and (s.open_profit > 0) == (move > 0))
            ),
        )
        if client.snapshot().open_trades:
            client.force_exit_all()
        return _until(
            "the trade closed",
            bot,
            lambda: (
                (s := client.snapshot()).trade_count > closed_before and s.open_trades == 0 and s
            ),
        )

    assert round_trip(-0.2, 1).losing_streak == 2
    assert round_trip(+0.3, 2).losing_streak == 0

    client.stop_entries()
    client.stop()
    assert _until("stopped", bot, lambda: client.snapshot().state == "stopped")

    with pytest.raises(BotApiError) as wrong:
        BotClient(bot.url, USERNAME, "not-the-password").snapshot()
    assert "not-the-password" not in str(wrong.value)
    with pytest.raises(BotUnreachable):
        BotClient(f"http://127.0.0.1:{_free_port()}", USERNAME, PASSWORD, timeout=2).ping()
