"""The `freqtrade trade` config builder of a LiveBot: Freqtrade's schema, no secrets, limits."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from freqtrade.configuration.config_validation import validate_config_schema
from freqtrade.configuration.environment_vars import _flat_vars_to_nested_dict
from freqtrade.constants import ENV_VAR_PREFIX
from freqtrade.enums import RunMode
from freqtrade.misc import deep_merge_dicts

from tradebot.api.livebot import LiveBotSpec
from tradebot.api.strategy import StrategySpec
from tradebot.domain.freqtrade_config import PARAMETER_FILE_KEY, TRADEBOT_KEY
from tradebot.domain.freqtrade_trade_config import (
    ENV_SECRETS,
    LimitExceeded,
    config_hash,
    trade_config,
)

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


def _build(spec: LiveBotSpec | None = None, url: str | None = DOUBLE) -> dict[str, Any]:
    return trade_config(spec or _bot(), _strategy(), api_port=8080, api_username="operator",
                        exchange_double_url=url)


def _with_env(config: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """What Freqtrade's Configuration.load_config makes of config + environment."""
    return deep_merge_dicts(_flat_vars_to_nested_dict(env, ENV_VAR_PREFIX),
                            copy.deepcopy(config))


def _validate(config: dict[str, Any]) -> None:
    """Freqtrade's schema check as `freqtrade trade` runs it (FreqtradeBot.__init__, once the
    strategy resolver has added the strategy's minimal_roi: the example does not override it)."""
    final = {"minimal_roi": {"0": 0.04}, **copy.deepcopy(config), "runmode": RunMode.DRY_RUN}
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
    testnet = _bot(mode="testnet", exchange={"name": "binance",
                                             "credentialsSecretRef": {"name": "keys"}})
    assert _build(testnet, url=None)["dry_run"] is False


def test_exchange_double_overrides_only_when_asked() -> None:
    exchange = _build()["exchange"]
    api = DOUBLE + "/api/v3"
    assert exchange["ccxt_config"]["urls"]["api"] == {
        "public": api, "private": api, "v1": api, "sapi": api}
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
    with pytest.raises(LimitExceeded,
                       match=r"stakeAmount 150\.0+ exceeds limits\.maxStakePerTrade 100"):
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
