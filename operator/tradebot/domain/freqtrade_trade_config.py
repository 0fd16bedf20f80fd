"""The Freqtrade configuration of a LiveBot's `freqtrade trade` (pure: no I/O).

No secret is ever part of it. At run time Freqtrade merges environment variables
`FREQTRADE__<SECTION>__<KEY>` over the config files (freqtrade/configuration/
environment_vars.py, applied in Configuration.load_config before the schema check), so the
bot's container gets:

* `FREQTRADE__EXCHANGE__KEY` / `FREQTRADE__EXCHANGE__SECRET` (testnet and live only);
* `FREQTRADE__API_SERVER__PASSWORD`, `FREQTRADE__API_SERVER__JWT_SECRET_KEY` and
  `FREQTRADE__API_SERVER__WS_TOKEN`.

Both api_server secrets fail closed: `password` is required by Freqtrade's schema and left
out here, and `jwt_secret_key` is an empty placeholder below the schema's 32-character minimum
(left out, the schema would fill in Freqtrade's public default key). A bot whose environment
lacks them fails the schema check instead of serving its API unprotected.

What each mode gets:

* dry run: paper trading; the exchange double when the cluster has one; `/forceenter` open
  (tests use it); no stop-loss on the exchange (dry run only simulates it).
* testnet: ccxt's sandbox endpoints (`sandbox: true`, which ccxt maps to the exchange's
  `urls["test"]`); never the exchange double (signed requests never go to plain HTTP).
* live: the exchange's real endpoints; `/forceenter` closed (`/forceexit`, the breakers'
  escalation, does not depend on it: rpc.py `_rpc_force_exit` never reads
  force_entry_enable, only `_force_entry_validations` does).
* testnet and live: `stoploss_on_exchange` where Freqtrade supports it on the exchange, so a
  stop-loss order rests on the exchange even while the bot or the operator is down.
* every mode: the protections of domain/protections.py, under config["tradebot"]["protections"]
  (the strategy code must be `guarded_code`'s, or they are ignored).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from tradebot.api.circuitbreaker import BreakerLimits
from tradebot.api.exchanges import supports_stoploss_on_exchange
from tradebot.api.livebot import LiveBotSpec
from tradebot.api.strategy import StrategySpec
from tradebot.domain.freqtrade_config import (
    TRADEBOT_KEY,
    canonical_json,
    config_hash,
    stake_settings,
    strategy_overrides,
)
from tradebot.domain.protections import PROTECTIONS_KEY, protections

__all__ = [
    "ENV_SECRETS",
    "SANDBOX",
    "LimitExceeded",
    "canonical_json",
    "config_hash",
    "exchange_double_overrides",
    "trade_config",
]

# Environment variables that carry what the config must not (Freqtrade reads them itself).
ENV_SECRETS = (
    "FREQTRADE__EXCHANGE__KEY",
    "FREQTRADE__EXCHANGE__SECRET",
    "FREQTRADE__API_SERVER__PASSWORD",
    "FREQTRADE__API_SERVER__JWT_SECRET_KEY",
    "FREQTRADE__API_SERVER__WS_TOKEN",
)


class LimitExceeded(ValueError):
    """The LiveBot asks for more than its own spec.limits allow."""


def _check_limits(spec: LiveBotSpec) -> None:
    limits = spec.limits
    if limits is None:
        return
    cap = limits.max_stake_per_trade
    if cap is not None:
        if isinstance(spec.stake_amount, str):
            raise LimitExceeded(
                f"stakeAmount {spec.stake_amount!r} is not bounded, but limits.maxStakePerTrade "
                f"is {cap}: give a stakeAmount of at most {cap}"
            )
        if Decimal(spec.stake_amount) > Decimal(cap):
            raise LimitExceeded(
                f"stakeAmount {spec.stake_amount} exceeds limits.maxStakePerTrade {cap}"
            )
    if limits.max_open_trades is not None and spec.max_open_trades > limits.max_open_trades:
        raise LimitExceeded(
            f"maxOpenTrades {spec.max_open_trades} exceeds limits.maxOpenTrades "
            f"{limits.max_open_trades}"
        )


def exchange_double_overrides(url: str) -> dict[str, Any]:
    """The exchange settings that point ccxt's binance at a local exchange double
    (tradebot_testing.exchange_double) at `url` (http://HOST:PORT)."""
    api = url.rstrip("/") + "/api/v3"
    return {
        "ccxt_config": {
            "urls": {"api": {"public": api, "private": api, "v1": api, "sapi": api}},
            # Without this ccxt also loads the futures markets (other endpoints).
            "options": {"fetchMarkets": {"types": ["spot"]}},
        },
        "enable_ws": False,
    }


# ccxt's own switch: its Exchange.__init__ calls set_sandbox_mode(True), which points
# urls["api"] at urls["test"] (and raises NotSupported where there is none). Freqtrade builds
# its sync, async and websocket ccxt objects from these (exchange.py _init_ccxt).
SANDBOX = {"sandbox": True}


def trade_config(
    spec: LiveBotSpec,
    strategy: StrategySpec,
    *,
    api_port: int,
    api_username: str,
    exchange_double_url: str | None,
    breakers: Sequence[BreakerLimits] = (),
    parameter_file: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The config for `freqtrade trade` of `strategy` as the LiveBot `spec` describes it.

    `parameter_file`: the Strategy's resolved set when it comes from a Hyperopt
    (strategy_parameters.run_parameter_file).

    `exchange_double_url` is used for dry-run bots only. `breakers` are the limits of the
    CircuitBreakers that select the bot: with spec.limits they give the bot's protections.

    Raises LimitExceeded (a ValueError) when the spec exceeds its own limits.
    """
    _check_limits(spec)
    paper = spec.mode not in ("testnet", "live")
    exchange: dict[str, Any] = {
        "name": spec.exchange.name,
        "pair_whitelist": list(spec.pairs),
        "pair_blacklist": [],
    }
    if spec.mode == "testnet":
        exchange["ccxt_config"] = dict(SANDBOX)
        exchange["ccxt_async_config"] = dict(SANDBOX)
    elif paper and exchange_double_url is not None:
        # Never for a keyed bot: its signed requests (and API key) would go to the double over
        # plain HTTP.
        exchange.update(exchange_double_overrides(exchange_double_url))
    config: dict[str, Any] = {
        "strategy": strategy.class_name,
        # Anything but an explicit testnet or live promotion trades on paper.
        "dry_run": paper,
        "trading_mode": "spot",
        "margin_mode": "",
        **stake_settings(spec),
        "exchange": exchange,
        "pairlists": [{"method": "StaticPairList"}],
        # Marketable limit orders: entries at the ask, exits at the bid.
        "entry_pricing": {
            "price_side": "other",
            "use_order_book": True,
            "order_book_top": 1,
            "price_last_balance": 0.0,
            "check_depth_of_market": {"enabled": False, "bids_to_ask_delta": 1},
        },
        "exit_pricing": {
            "price_side": "other",
            "use_order_book": True,
            "order_book_top": 1,
        },
        "unfilledtimeout": {"entry": 10, "exit": 10, "unit": "minutes", "exit_timeout_count": 0},
        # Real money enters only on the strategy's signals. /forceexit (a breaker's
        # escalation) works either way; tests and testnet drills use /forceenter.
        "force_entry_enable": spec.mode != "live",
        # The strategy's own entries and exits stay limit orders; what the operator forces
        # (a breaker's force exit) and emergencies go at market, so they fill now rather than
        # wait for a price that may never come back.
        "order_types": {
            "entry": "limit",
            "exit": "limit",
            "emergency_exit": "market",
            "force_entry": "market",
            "force_exit": "market",
            "stoploss": "market",
            # On the exchange the stop-loss holds while the bot or the operator is down.
            # Freqtrade refuses it at start on exchanges without support; a dry run only
            # simulates it.
            "stoploss_on_exchange": (
                not paper and supports_stoploss_on_exchange(spec.exchange.name)
            ),
        },
        "api_server": {
            "enabled": True,
            "listen_ip_address": "0.0.0.0",  # noqa: S104 (the pod's API, behind its Service)
            "listen_port": api_port,
            "verbosity": "error",
            "CORS_origins": [],
            "username": api_username,
            # Empty on purpose: below the schema's 32 characters, so a bot whose environment
            # lacks FREQTRADE__API_SERVER__JWT_SECRET_KEY fails to start. Left out, the schema
            # would fill in Freqtrade's public default key instead.
            "jwt_secret_key": "",
            # password (required by the schema: absent, the bot does not start) and ws_token:
            # FREQTRADE__API_SERVER__PASSWORD / __WS_TOKEN at run time.
        },
        "telegram": {"enabled": False, "token": "", "chat_id": ""},
        "bot_name": f"tradebot-{strategy.class_name}",
        "initial_state": "running",
        "internals": {"process_throttle_secs": 5},
        "dataformat_ohlcv": "feather",
        "dataformat_trades": "feather",
    }
    timeframe = strategy.timeframe
    if timeframe is not None:
        config["timeframe"] = timeframe
    config.update(strategy_overrides(strategy, parameter_file))
    guards = protections(spec.limits, breakers)
    if guards:
        # Beside the parameter file, if any: one key of the operator's own.
        config[TRADEBOT_KEY] = {**config.get(TRADEBOT_KEY, {}), PROTECTIONS_KEY: guards}
    return config
