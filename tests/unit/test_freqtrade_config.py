"""The backtest config builder: what Freqtrade gets, exactly, and its hash."""

from __future__ import annotations

import copy
import re
from decimal import Decimal
from typing import Any

import pytest
from freqtrade.configuration.config_validation import validate_config_schema
from freqtrade.enums import RunMode
from tests.support.hashseed import hash_in_other_process

from tradebot.api.backtest import BacktestSpec
from tradebot.api.strategy import StrategySpec
from tradebot.domain.freqtrade_config import (
    PARAMETER_FILE_KEY,
    TRADEBOT_KEY,
    UnrepresentableAmount,
    backtest_config,
    config_hash,
)

CODE = "class EmaRsiStrategy: ...\n"


def _backtest(**overrides: Any) -> BacktestSpec:
    wire: dict[str, Any] = {
        "strategyRef": {"name": "ema-rsi"},
        "exchange": "binance",
        "pairs": ["BTC/USDT", "ETH/USDT"],
        "timerange": {"start": "2024-01-02", "end": "2024-02-01"},
        "stakeCurrency": "USDT",
        "stakeAmount": "100",
        "dryRunWallet": "1000",
        "maxOpenTrades": 2,
        "fee": 0.001,
    }
    wire.update(overrides)
    return BacktestSpec.model_validate(wire)


def _strategy(**overrides: Any) -> StrategySpec:
    wire: dict[str, Any] = {
        "className": "EmaRsiStrategy",
        "timeframe": "5m",
        "parameters": {"buy": {"buy_rsi_max": 70}, "stoploss": -0.08},
        "code": CODE,
    }
    wire.update(overrides)
    return StrategySpec.model_validate(wire)


def _build(
    spec: BacktestSpec | None = None, strategy: StrategySpec | None = None
) -> dict[str, Any]:
    return backtest_config(
        spec or _backtest(),
        strategy or _strategy(),
        datadir="/opt/tradebot/user_data/data/binance",
        user_data_dir="/opt/tradebot/user_data",
    )


def _validate(config: dict[str, Any], *, final: bool) -> None:
    """Freqtrade's own schema check, as `freqtrade backtesting` runs it (it fills defaults in,
    so it gets a copy)."""
    validate_config_schema(
        {**copy.deepcopy(config), "runmode": RunMode.BACKTEST}, preliminary=not final
    )


def test_example_config_passes_freqtrades_schema() -> None:
    # Before the strategy is loaded (roi comes from the strategy here).
    _validate(_build(), final=False)


def test_config_with_every_override_passes_the_final_schema() -> None:
    strategy = _strategy(
        parameters={
            "buy": {"buy_rsi_max": 65, "use_volume": True},
            "sell": {"sell_rsi_min": 30.5, "mode": "fast"},
            "minimalRoi": {"0": 0.04, "60": 0.02},
            "stoploss": -0.1,
        }
    )
    _validate(_build(strategy=strategy), final=True)


def test_schema_would_catch_a_broken_config() -> None:
    # The check above is worth something only if Freqtrade's validator rejects bad input.
    config = _build()
    config["stake_amount"] = -5
    with pytest.raises(Exception, match="less than the minimum"):
        _validate(config, final=False)


def test_backtest_essentials() -> None:
    config = _build()
    assert config["strategy"] == "EmaRsiStrategy"
    assert config["dry_run"] is True
    assert config["stake_currency"] == "USDT"
    assert config["max_open_trades"] == 2
    assert config["exchange"] == {
        "name": "binance",
        "key": "",
        "secret": "",
        "pair_whitelist": ["BTC/USDT", "ETH/USDT"],
        "pair_blacklist": [],
    }
    assert config["pairlists"] == [{"method": "StaticPairList"}]
    assert config["dataformat_ohlcv"] == "feather"
    assert config["datadir"] == "/opt/tradebot/user_data/data/binance"
    assert config["user_data_dir"] == "/opt/tradebot/user_data"
    assert config["entry_pricing"]["price_side"] == "same"
    assert config["exit_pricing"]["price_side"] == "same"
    api = config["api_server"]
    assert api["enabled"] is False
    assert {
        "listen_ip_address",
        "listen_port",
        "username",
        "password",
        "jwt_secret_key",
    } <= api.keys()
    assert "timerange" not in config  # given on the command line


def test_money_comes_out_exact() -> None:
    config = _build(_backtest(stakeAmount="123.45678901", dryRunWallet="98765.4321", fee=0.00075))
    assert isinstance(config["stake_amount"], float)
    assert Decimal(repr(config["stake_amount"])) == Decimal("123.45678901")
    assert Decimal(repr(config["dry_run_wallet"])) == Decimal("98765.4321")
    assert Decimal(repr(config["fee"])) == Decimal("0.00075")


def test_smallest_and_largest_realistic_amounts_are_exact() -> None:
    config = _build(_backtest(stakeAmount="0.00000001", dryRunWallet="9999999.99999999"))
    assert Decimal(repr(config["stake_amount"])) == Decimal("0.00000001")
    assert Decimal(repr(config["dry_run_wallet"])) == Decimal("9999999.99999999")


def test_amount_a_float_cannot_carry_is_refused_not_rounded() -> None:
    with pytest.raises(UnrepresentableAmount, match=r"999999999999\.99999999"):
        _build(_backtest(dryRunWallet="999999999999.99999999"))


def test_unlimited_stake_stays_freqtrades_word() -> None:
    assert _build(_backtest(stakeAmount="unlimited"))["stake_amount"] == "unlimited"
    _validate(_build(_backtest(stakeAmount="unlimited")), final=False)


def test_fee_left_out_means_the_exchanges_fee() -> None:
    wire = _backtest().to_wire()
    del wire["fee"]
    assert "fee" not in _build(BacktestSpec.model_validate(wire))


def test_timeframe_backtest_override_then_strategy_then_none() -> None:
    assert _build(_backtest(timeframe="1h"))["timeframe"] == "1h"
    assert _build()["timeframe"] == "5m"
    assert "timeframe" not in _build(strategy=_strategy(timeframe=None))


def test_roi_and_stoploss_are_config_level_overrides() -> None:
    config = _build(
        strategy=_strategy(parameters={"minimalRoi": {"0": 0.04, "30": 0.015}, "stoploss": -0.05})
    )
    assert config["minimal_roi"] == {"0": 0.04, "30": 0.015}
    assert config["stoploss"] == -0.05
    assert TRADEBOT_KEY not in config


def test_no_parameters_means_no_overrides() -> None:
    config = _build(strategy=_strategy(parameters=None))
    assert not {"minimal_roi", "stoploss", TRADEBOT_KEY} & config.keys()


def test_buy_and_sell_parameters_ride_along_as_freqtrades_parameter_file() -> None:
    config = _build(
        strategy=_strategy(
            parameters={"buy": {"buy_rsi_max": 65}, "sell": {"sell_rsi_min": 30.5, "fast": True}}
        )
    )
    assert config[TRADEBOT_KEY][PARAMETER_FILE_KEY] == {
        "strategy_name": "EmaRsiStrategy",
        "params": {"buy": {"buy_rsi_max": 65}, "sell": {"sell_rsi_min": 30.5, "fast": True}},
        "ft_stratparam_v": 1,
    }


def test_protections_follow_the_spec() -> None:
    assert _build()["enable_protections"] is False
    assert _build(_backtest(enableProtections=True))["enable_protections"] is True


def _reordered(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reordered(v) for v in value]
    return value


def test_hash_is_sha256_hex_and_ignores_key_order() -> None:
    config = _build()
    shuffled = _reordered(config)
    assert list(shuffled) != list(config)
    assert config_hash(shuffled) == config_hash(config)
    assert re.fullmatch(r"[0-9a-f]{64}", config_hash(config))
    # sha256 of the canonical JSON, fixed here (computed once, outside this code).
    small = {
        "timeframe": "5m",
        "pairs": ["BTC/USDT", "ETH/USDT"],
        "stake": {"amount": "100", "currency": "USDT"},
    }
    assert config_hash(small) == "1f2d7d50d2feeab1e3ceb9a2b30c0f6c5151c6ed80e6ce943620851e9a681da0"


def test_hash_is_stable_across_builds_and_processes() -> None:
    here = config_hash(_build())
    assert config_hash(_build()) == here
    # Built again in processes with other hash seeds: a build that iterated a set (its order
    # follows PYTHONHASHSEED) would hash differently there.
    assert hash_in_other_process("tests.unit.test_freqtrade_config:_build", seed=1) == here
    assert hash_in_other_process("tests.unit.test_freqtrade_config:_build", seed=2) == here


@pytest.mark.parametrize(
    "change",
    [
        {"stakeAmount": "100.00000001"},
        {"maxOpenTrades": 3},
        {"pairs": ["BTC/USDT"]},
        {"fee": 0.002},
        {"timeframe": "15m"},
    ],
)
def test_hash_changes_with_any_field(change: dict[str, Any]) -> None:
    assert config_hash(_build(_backtest(**change))) != config_hash(_build())


def test_hash_changes_with_a_parameter() -> None:
    other = _strategy(parameters={"buy": {"buy_rsi_max": 71}, "stoploss": -0.08})
    assert config_hash(_build(strategy=other)) != config_hash(_build())


def test_pair_order_is_part_of_the_hash() -> None:
    # A list is not reordered by canonical JSON: the whitelist order is what Freqtrade gets.
    flipped = _build(_backtest(pairs=["ETH/USDT", "BTC/USDT"]))
    assert config_hash(flipped) != config_hash(_build())
