"""The `freqtrade trade` config builder of a LiveBot: Freqtrade's schema, no secrets, limits."""

from __future__ import annotations

import copy
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import pytest
import yaml
from freqtrade.configuration.config_validation import validate_config_schema
from freqtrade.configuration.deprecated_settings import process_temporary_deprecated_settings
from freqtrade.configuration.environment_vars import _flat_vars_to_nested_dict
from freqtrade.constants import ENV_VAR_PREFIX
from freqtrade.enums import RunMode
from freqtrade.exceptions import ConfigurationError
from freqtrade.misc import deep_merge_dicts
from freqtrade.resolvers import ExchangeResolver

from tradebot.api.circuitbreaker import BreakerLimits
from tradebot.api.livebot import LiveBotSpec
from tradebot.api.strategy import StrategySpec
from tradebot.domain.freqtrade_config import PARAMETER_FILE_KEY, TRADEBOT_KEY
from tradebot.domain.freqtrade_trade_config import (
    ENV_SECRETS,
    LimitExceeded,
    config_hash,
    trade_config,
)
from tradebot.domain.protections import LOOKBACK_MINUTES, PROTECTIONS_KEY, STOP_MINUTES

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DOUBLE = "http://127.0.0.1:8765"
SECRET_ENV = {
    "FREQTRADE__API_SERVER__PASSWORD": "pw-from-env",
    "FREQTRADE__API_SERVER__JWT_SECRET_KEY": "j" * 40,
    "FREQTRADE__API_SERVER__WS_TOKEN": "ws-from-env",
    "FREQTRADE__EXCHANGE__KEY": "key-from-env",
    "FREQTRADE__EXCHANGE__SECRET": "secret-from-env",
}


def _example(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())["spec"]
    return spec


def _bot(**overrides: Any) -> LiveBotSpec:
    wire = _example("livebot.yaml")
    wire.update(overrides)
    return LiveBotSpec.model_validate(wire)


def _strategy() -> StrategySpec:
    return StrategySpec.model_validate(_example("strategy.yaml"))


def _build(
    spec: LiveBotSpec | None = None,
    url: str | None = DOUBLE,
    breakers: tuple[BreakerLimits, ...] = (),
) -> dict[str, Any]:
    return trade_config(
        spec or _bot(),
        _strategy(),
        api_port=8080,
        api_username="operator",
        exchange_double_url=url,
        breakers=breakers,
    )


APPROVAL = {
    "approvedBy": "alice",
    "approvedAt": "2026-11-01T10:00:00Z",
    "reference": "https://git.example/pr/1",
    "codeHash": "a" * 64,
}


def _keyed(mode: str, exchange: str = "binance", **overrides: Any) -> LiveBotSpec:
    """A testnet or live bot (credentials, promotion and, for live, the approval)."""
    wire = _example("livebot.yaml")
    wire["mode"] = mode
    wire["exchange"] = {"name": exchange, "credentialsSecretRef": {"name": "keys"}}
    if mode == "live":
        wire["promotion"]["approval"] = APPROVAL
    wire.update(overrides)
    return LiveBotSpec.model_validate(wire)


def _with_env(config: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """What Freqtrade's Configuration.load_config makes of config + environment."""
    return deep_merge_dicts(_flat_vars_to_nested_dict(env, ENV_VAR_PREFIX), copy.deepcopy(config))


def _validate(config: dict[str, Any], runmode: RunMode = RunMode.DRY_RUN) -> None:
    """Freqtrade's checks as `freqtrade trade` runs them: the deprecated settings
    (Configuration.load_config) and the schema (FreqtradeBot.__init__, once the strategy
    resolver has added the strategy's minimal_roi: the example does not override it)."""
    final = {"minimal_roi": {"0": 0.04}, **copy.deepcopy(config), "runmode": runmode}
    process_temporary_deprecated_settings(final)
    validate_config_schema(final, preliminary=False)


def test_config_with_the_env_secrets_passes_freqtrades_schema() -> None:
    merged = _with_env(_build(), SECRET_ENV)
    _validate(merged)
    assert merged["api_server"]["password"] == "pw-from-env"
    assert merged["api_server"]["jwt_secret_key"] == "j" * 40
    assert merged["api_server"]["ws_token"] == "ws-from-env"
    assert merged["exchange"]["key"] == "key-from-env"
    assert merged["exchange"]["secret"] == "secret-from-env"


def test_without_the_api_secrets_from_env_the_schema_refuses_it() -> None:
    # Fail closed: no API without a password or with Freqtrade's default JWT key.
    with pytest.raises(Exception, match="'password' is a required property"):
        _validate(_build())
    without_jwt = {k: v for k, v in SECRET_ENV.items() if "JWT" not in k}
    with pytest.raises(Exception, match="'' is too short"):
        _validate(_with_env(_build(), without_jwt))


def test_dry_run_unless_testnet_or_live() -> None:
    config = _build()
    assert config["dry_run"] is True
    assert config["force_entry_enable"] is True
    assert config["api_server"]["enabled"] is True
    assert config["api_server"]["listen_ip_address"] == "0.0.0.0"  # noqa: S104
    assert config["api_server"]["listen_port"] == 8080
    assert config["pairlists"] == [{"method": "StaticPairList"}]
    assert config["exchange"]["pair_whitelist"] == ["BTC/USDT", "ETH/USDT"]
    assert config["stake_amount"] == 50.0
    assert config["max_open_trades"] == 2
    assert config["stoploss"] == -0.08
    assert config[TRADEBOT_KEY][PARAMETER_FILE_KEY]["params"] == {"buy": {"buy_rsi_max": 70}}
    assert _build(_keyed("testnet"), url=None)["dry_run"] is False
    assert _build(_keyed("live"), url=None)["dry_run"] is False


def test_exchange_double_overrides_only_when_asked() -> None:
    exchange = _build()["exchange"]
    api = DOUBLE + "/api/v3"
    assert exchange["ccxt_config"]["urls"]["api"] == {
        "public": api,
        "private": api,
        "v1": api,
        "sapi": api,
    }
    assert exchange["ccxt_config"]["options"] == {"fetchMarkets": {"types": ["spot"]}}
    assert exchange["enable_ws"] is False
    plain = _build(url=None)["exchange"]
    assert "ccxt_config" not in plain
    assert "enable_ws" not in plain


_SECRET_KEYS = re.compile(r"(password|secret|token|key)$", re.IGNORECASE)


def _walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [item for k, v in node.items() for item in _walk(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [item for i, v in enumerate(node) for item in _walk(v, f"{path}[{i}]")]
    return [(path, node)]


def test_no_field_holds_anything_secret_looking() -> None:
    config = _build()
    for path, value in _walk(config):
        name = path.rsplit(".", 1)[-1]
        if _SECRET_KEYS.search(name):
            assert value in ("", None), f"{path} carries a value"
    assert "password" not in config["api_server"]
    assert config["api_server"]["jwt_secret_key"] == ""
    assert "ws_token" not in config["api_server"]
    assert not {"key", "secret", "api_key", "password"} & set(config["exchange"])
    text = json.dumps(config)
    for value in SECRET_ENV.values():
        assert value not in text
    assert all(name.startswith("FREQTRADE__") for name in ENV_SECRETS)


def test_stake_above_max_stake_per_trade_is_refused() -> None:
    # Money shows 8 places.
    with pytest.raises(
        LimitExceeded, match=r"stakeAmount 150\.0+ exceeds limits\.maxStakePerTrade 100"
    ):
        _build(_bot(stakeAmount="150"))
    with pytest.raises(ValueError, match="not bounded"):
        _build(_bot(stakeAmount="unlimited"))
    assert _build(_bot(stakeAmount="100"))["stake_amount"] == 100.0


def test_open_trades_above_the_limit_are_refused() -> None:
    with pytest.raises(LimitExceeded, match=r"maxOpenTrades 4 exceeds limits\.maxOpenTrades 3"):
        _build(_bot(maxOpenTrades=4))
    assert _build(_bot(maxOpenTrades=3))["max_open_trades"] == 3


def test_no_limits_means_no_caps() -> None:
    config = _build(_bot(limits=None, stakeAmount="unlimited", maxOpenTrades=50))
    assert config["stake_amount"] == "unlimited"
    assert config["max_open_trades"] == 50


def test_hash_is_stable() -> None:
    first, second = _build(), _build()
    assert config_hash(first) == config_hash(second)
    reordered = dict(reversed(list(first.items())))
    assert config_hash(reordered) == config_hash(first)
    assert config_hash(_build(url="http://127.0.0.1:1")) != config_hash(first)
    assert re.fullmatch(r"[0-9a-f]{64}", config_hash(first))


# ---- modes: sandbox, exchange double, force entry, stop-loss on the exchange ----------------
def _exchange_of(config: dict[str, Any]) -> Any:
    """Freqtrade's own Exchange object for `config` (its ccxt objects, no markets: no
    network), as `freqtrade trade` would build it."""
    final = _with_env(config, SECRET_ENV)
    final["runmode"] = RunMode.DRY_RUN if final["dry_run"] else RunMode.LIVE
    return ExchangeResolver.load_exchange(final, validate=False)


@pytest.mark.parametrize("name", ["binance", "okx", "gate"])
def test_testnet_runs_on_the_ccxt_sandbox(name: str) -> None:
    config = _build(_keyed("testnet", name), url=None)
    assert config["exchange"]["ccxt_config"] == {"sandbox": True}
    assert config["exchange"]["ccxt_async_config"] == {"sandbox": True}
    exchange = _exchange_of(config)
    try:
        test_urls = getattr(ccxt, name)().urls["test"]
        assert test_urls
        # The sync and async (and websocket) objects Freqtrade trades with all point at the
        # sandbox, and nothing at the real API.
        for api in (exchange._api, exchange._api_async):
            assert api.isSandboxModeEnabled is True
            for key, url in test_urls.items():
                assert api.urls["api"][key] == url
    finally:
        exchange.close()


def test_live_runs_on_the_real_endpoints() -> None:
    config = _build(_keyed("live"), url=None)
    assert "ccxt_config" not in config["exchange"]
    assert "ccxt_async_config" not in config["exchange"]
    exchange = _exchange_of(config)
    try:
        real = ccxt.binance().urls["api"]
        assert exchange._api.isSandboxModeEnabled is False
        assert exchange._api.urls["api"]["public"] == real["public"]
        assert exchange._api.urls["api"]["public"] != ccxt.binance().urls["test"]["public"]
    finally:
        exchange.close()


def test_the_exchange_double_is_for_dry_runs_only() -> None:
    # Positive control: a dry run on a cluster with a double uses it.
    assert _build(url=DOUBLE)["exchange"]["ccxt_config"]["urls"]["api"]["private"].startswith(
        DOUBLE
    )
    for mode in ("testnet", "live"):
        config = _build(_keyed(mode), url=DOUBLE)
        assert DOUBLE not in json.dumps(config), mode
        assert "urls" not in config["exchange"].get("ccxt_config", {})
        assert "enable_ws" not in config["exchange"]


def test_force_entry_is_off_for_live_only() -> None:
    # Changed by issue #13: it was on in every mode.
    assert _build()["force_entry_enable"] is True
    assert _build(_keyed("testnet"), url=None)["force_entry_enable"] is True
    assert _build(_keyed("live"), url=None)["force_entry_enable"] is False


@pytest.mark.parametrize(
    ("mode", "exchange", "expected"),
    [
        ("dryRun", "binance", False),  # dry run only simulates it
        ("testnet", "binance", True),
        ("live", "binance", True),
        ("testnet", "bybit", False),  # Freqtrade has it for bybit futures only, bots trade spot
        ("live", "kraken", True),
        ("live", "bybit", False),
    ],
)
def test_stoploss_on_exchange_where_freqtrade_supports_it(
    mode: str, exchange: str, expected: bool
) -> None:
    spec = _bot(exchange={"name": exchange}) if mode == "dryRun" else _keyed(mode, exchange)
    config = _build(spec, url=None)
    assert config["order_types"]["stoploss_on_exchange"] is expected


def test_freqtrade_accepts_the_stoploss_on_exchange_it_gets() -> None:
    """Freqtrade's own start-up check (Exchange.validate_stop_ordertypes) agrees with the
    generated list, both ways."""
    config = _build(_keyed("live"), url=None)
    binance = _exchange_of(config)
    try:
        binance.validate_stop_ordertypes(config["order_types"])
    finally:
        binance.close()
    bybit_config = _build(_keyed("live", "bybit"), url=None)
    # As a dry run: live, Freqtrade's Bybit asks the exchange about the account at start.
    bybit = _exchange_of({**bybit_config, "dry_run": True})
    try:
        bybit.validate_stop_ordertypes(bybit_config["order_types"])
        with pytest.raises(ConfigurationError, match="On exchange stoploss is not supported"):
            bybit.validate_stop_ordertypes(
                {**bybit_config["order_types"], "stoploss_on_exchange": True}
            )
    finally:
        bybit.close()


@pytest.mark.parametrize("mode", ["testnet", "live"])
def test_keyed_configs_pass_freqtrades_schema(mode: str) -> None:
    limits = {
        "maxStakePerTrade": "100",
        "maxOpenTrades": 3,
        "maxDrawdown": 0.1,
        "maxConsecutiveLosses": 4,
    }
    config = _build(
        _keyed(mode, limits=limits),
        url=None,
        breakers=(BreakerLimits(max_drawdown=Decimal("0.05")),),
    )
    assert config[TRADEBOT_KEY][PROTECTIONS_KEY]
    _validate(_with_env(config, SECRET_ENV), RunMode.LIVE)


def test_protections_in_freqtrades_own_place_would_be_refused() -> None:
    """Why they live under the operator's key: Freqtrade refuses the top-level one."""
    config = _with_env(_build(_keyed("live"), url=None), SECRET_ENV)
    _validate(config, RunMode.LIVE)
    with pytest.raises(ConfigurationError, match="'protections' in the configuration"):
        _validate({**config, "protections": [{"method": "CooldownPeriod"}]}, RunMode.LIVE)


# ---- protections --------------------------------------------------------------------------
def test_no_limits_means_no_protections() -> None:
    config = _build(_bot(limits={"maxStakePerTrade": "100"}))
    assert PROTECTIONS_KEY not in config[TRADEBOT_KEY]
    # The parameter file stays where it was.
    assert config[TRADEBOT_KEY][PARAMETER_FILE_KEY]["params"] == {"buy": {"buy_rsi_max": 70}}


def test_protections_from_the_bots_limits() -> None:
    config = _build(_bot(limits={"maxDrawdown": 0.12, "maxConsecutiveLosses": 4}))
    assert config[TRADEBOT_KEY][PROTECTIONS_KEY] == [
        {
            "method": "MaxDrawdown",
            "calculation_mode": "equity",
            "max_allowed_drawdown": 0.12,
            "trade_limit": 1,
            "lookback_period": LOOKBACK_MINUTES,
            "stop_duration": STOP_MINUTES,
        },
        {
            "method": "StoplossGuard",
            "trade_limit": 4,
            "required_profit": 0.0,
            "only_per_pair": False,
            "lookback_period": LOOKBACK_MINUTES,
            "stop_duration": STOP_MINUTES,
        },
    ]
    assert config[TRADEBOT_KEY][PARAMETER_FILE_KEY]["params"] == {"buy": {"buy_rsi_max": 70}}


def _limits(config: dict[str, Any]) -> dict[str, Any]:
    found = {p["method"]: p for p in config[TRADEBOT_KEY].get(PROTECTIONS_KEY, [])}
    return {
        "drawdown": found.get("MaxDrawdown", {}).get("max_allowed_drawdown"),
        "losses": found.get("StoplossGuard", {}).get("trade_limit"),
    }


def test_the_strictest_of_bot_and_breakers_wins() -> None:
    bot = _bot(limits={"maxDrawdown": 0.12, "maxConsecutiveLosses": 4})
    loose = BreakerLimits(max_drawdown=Decimal("0.3"), max_consecutive_losses=9)
    strict = BreakerLimits(max_drawdown=Decimal("0.05"))
    other = BreakerLimits(max_consecutive_losses=2, max_daily_loss=Decimal("50"))
    assert _limits(_build(bot, breakers=(loose,))) == {"drawdown": 0.12, "losses": 4}
    assert _limits(_build(bot, breakers=(loose, strict, other))) == {"drawdown": 0.05, "losses": 2}
    # Breakers alone (no spec.limits) protect too; limits they do not set add nothing.
    assert _limits(_build(_bot(limits=None), breakers=(other,))) == {"drawdown": None, "losses": 2}
    assert _limits(_build(_bot(limits=None), breakers=(BreakerLimits(stale_heartbeat="5m"),))) == {
        "drawdown": None,
        "losses": None,
    }
