"""The breaker and the DCA lookup read a real Freqtrade's newest closed trades, not its oldest:
a bot with more closed trades than a page (seeded into its trade database with Freqtrade's
own models before it starts) whose oldest trades are wins and whose newest are losses."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml

from tradebot.api.livebot import LiveBotSpec
from tradebot.api.strategy import StrategySpec
from tradebot.controllers.dca import CLOSED_TRADES_SEARCHED
from tradebot.domain import dca
from tradebot.domain.freqtrade_trade_config import trade_config
from tradebot.executors.local_bots import LocalBotExecutor
from tradebot.freqtrade.rest import BotClient, BotUnreachable
from tradebot_testing.exchange_double import ExchangeDouble

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SECRETS = {
    "FREQTRADE__API_SERVER__PASSWORD": "newest-trades-contract-password",
    "FREQTRADE__API_SERVER__JWT_SECRET_KEY": "newest-trades-contract-jwt-" + "k" * 24,
    "FREQTRADE__API_SERVER__WS_TOKEN": "newest-trades-contract-ws",
}
WINS, LOSSES = CLOSED_TRADES_SEARCHED + 13, 7  # more than either page, newest losing
TAG = "dca-0123abcd-20261201T000000Z"  # on the newest trade
OLD_TAG = "dca-0123abcd-20261101T000000Z"  # on the oldest

# Freqtrade's own models write the trades, so the rows are what Freqtrade itself would keep.
SEED = """
import datetime as dt, sys
from freqtrade.persistence import Order, Trade, init_db
init_db(sys.argv[1])
start = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
wins, losses, tag, old_tag = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
for i in range(wins + losses):
    loss = i >= wins
    opened = start + dt.timedelta(hours=i)
    rate = 100.0
    close = 95.0 if loss else 105.0
    trade = Trade(
        pair="BTC/USDT", base_currency="BTC", stake_currency="USDT", exchange="binance",
        stake_amount=50.0, amount=0.5, amount_requested=0.5, open_rate=rate,
        open_rate_requested=rate, fee_open=0.0, fee_close=0.0, open_date=opened,
        is_open=False, close_rate=close, close_date=opened + dt.timedelta(minutes=30),
        close_profit=(close - rate) / rate, close_profit_abs=(close - rate) * 0.5,
        realized_profit=(close - rate) * 0.5, strategy="EmaRsiStrategy", timeframe=5,
        exit_reason="roi",
        enter_tag=tag if i == wins + losses - 1 else old_tag if i == 0 else None,
    )
    own = tag if i == wins + losses - 1 else old_tag if i == 0 else None
    if own is not None:
        # A DCA buy is found by its entry order's tag.
        trade.orders.append(Order(
            ft_order_side="buy", ft_pair="BTC/USDT", ft_is_open=False, ft_amount=0.5,
            ft_price=rate, order_id=f"seed-{i}", status="closed", symbol="BTC/USDT",
            order_type="limit", side="buy", price=rate, average=rate, amount=0.5, filled=0.5,
            remaining=0.0, cost=50.0, order_date=opened, order_filled_date=opened,
            ft_order_tag=own,
        ))
    Trade.session.add(trade)
Trade.commit()
"""


def _seed(db: Path) -> None:
    db.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-c", SEED, f"sqlite:///{db}", str(WINS), str(LOSSES), TAG, OLD_TAG],
        check=True,
        timeout=120,
    )


def test_the_streak_and_the_tag_lookup_come_from_the_newest_trades(tmp_path: Path):
    strategy = StrategySpec.model_validate(
        yaml.safe_load((EXAMPLES / "strategy.yaml").read_text())["spec"]
    )
    spec = LiveBotSpec.model_validate(
        yaml.safe_load((EXAMPLES / "livebot.yaml").read_text())["spec"]
    )
    executor = LocalBotExecutor(tmp_path / "state")
    # The executor's trade database of a bot without pod storage.
    _seed(executor.bot_dir("b1") / "trades.sqlite")
    with ExchangeDouble() as double:
        config = trade_config(
            spec, strategy, api_port=8080, api_username="operator", exchange_double_url=double.url
        )
        bot = executor.ensure("b1", config, strategy.class_name, strategy.code or "", SECRETS)
        try:
            client = BotClient(bot.url, "operator", SECRETS["FREQTRADE__API_SERVER__PASSWORD"])
            deadline = time.monotonic() + 90
            while True:
                try:
                    if client.ping():
                        break
                except BotUnreachable:
                    pass
                assert time.monotonic() < deadline, "the bot never answered"
                time.sleep(0.5)
            assert int(client.profit()["trade_count"]) == WINS + LOSSES
            page = client.trades()
            ids = [int(t["trade_id"]) for t in page]
            # The newest 50, newest first.
            assert ids == list(range(WINS + LOSSES, WINS + LOSSES - 50, -1))
            snapshot = client.snapshot()
            assert snapshot.losing_streak == LOSSES
            # The oldest page, as the client asked before, would have shown only wins.
            oldest = client._call("GET", "trades?limit=50")["trades"]
            assert all(float(t["profit_abs"]) > 0 for t in oldest)
            # DCA: the newest trade's tag is found among the page it searches; the oldest
            # trade's is beyond it (the old ascending page would have had it the other way).
            searched = client.trades(limit=CLOSED_TRADES_SEARCHED)
            assert len(searched) == CLOSED_TRADES_SEARCHED
            assert dca.tagged_order(searched, TAG) is not None
            assert dca.tagged_order(searched, OLD_TAG) is None
        finally:
            executor.stop("b1")
