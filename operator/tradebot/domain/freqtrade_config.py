"""The Freqtrade configuration of a backtest, built from the API objects (pure: no I/O).

The operator writes this dict as the run's config.json; the runner hands it to
`freqtrade backtesting` unchanged, so everything Freqtrade should know is decided here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tradebot.api.backtest import BacktestSpec
from tradebot.api.backtest import parameter_file as read_parameter_file
from tradebot.api.livebot import LiveBotSpec
from tradebot.api.strategy import StrategyParameters, StrategySpec
from tradebot.domain.parameters_hash import parameters_hash as hash_of_parameters

# Freqtrade has no configuration key for hyperoptable (buy/sell) parameter values: it reads them
# from a parameter file next to the strategy (<strategy file stem>.json). The config carries that
# file's exact content under this key, which Freqtrade ignores; the runner writes it out.
TRADEBOT_KEY = "tradebot"
PARAMETER_FILE_KEY = "parameter_file"

# The API server never runs in a backtest, but Freqtrade's schema wants the block complete
# whenever it is present. This value only satisfies the schema's 32-character minimum.
_DISABLED_JWT_KEY = "api-server-disabled-in-backtests"


class UnrepresentableAmount(ValueError):
    """An amount a float cannot carry exactly, so Freqtrade would not get what was asked."""


def _number(amount: Decimal) -> float:
    """Freqtrade's schema and arithmetic take JSON numbers, so money and ratios turn into
    floats here, at the boundary, and nowhere else. A float's shortest repr gives back up to
    15 significant digits exactly, which covers any realistic amount with 8 places; beyond
    that the amount is refused rather than silently changed."""
    number = float(amount)
    if Decimal(repr(number)) != amount:
        raise UnrepresentableAmount(
            f"{amount} has more significant digits than Freqtrade's numbers keep "
            f"(it would become {number!r})"
        )
    return number


def _parameter_file(class_name: str, parameters: StrategyParameters) -> dict[str, Any] | None:
    params: dict[str, dict[str, Any]] = {}
    if parameters.buy:
        params["buy"] = dict(parameters.buy)
    if parameters.sell:
        params["sell"] = dict(parameters.sell)
    if not params:
        return None
    return {"strategy_name": class_name, "params": params, "ft_stratparam_v": 1}


def backtest_config(
    spec: BacktestSpec,
    strategy: StrategySpec,
    *,
    datadir: str,
    user_data_dir: str,
    parameter_file: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The config for `freqtrade backtesting` of `strategy` as `spec` describes it.

    The timerange is not part of it: Freqtrade takes it on the command line.
    `parameter_file`: the Strategy's resolved set when it comes from a Hyperopt
    (strategy_parameters.run_parameter_file).
    """
    config: dict[str, Any] = {
        "strategy": strategy.class_name,
        "dry_run": True,
        "trading_mode": "spot",
        "margin_mode": "",
        **stake_settings(spec),
        "enable_protections": spec.enable_protections,
        "exchange": {
            "name": spec.exchange,
            # Backtests never talk to an exchange account: no credentials, ever.
            "key": "",
            "secret": "",
            "pair_whitelist": list(spec.pairs),
            "pair_blacklist": [],
        },
        "pairlists": [{"method": "StaticPairList"}],
        "entry_pricing": {
            "price_side": "same",
            "use_order_book": True,
            "order_book_top": 1,
            "price_last_balance": 0.0,
            "check_depth_of_market": {"enabled": False, "bids_to_ask_delta": 1},
        },
        "exit_pricing": {
            "price_side": "same",
            "use_order_book": True,
            "order_book_top": 1,
        },
        "api_server": {
            "enabled": False,
            "listen_ip_address": "127.0.0.1",
            "listen_port": 8080,
            "verbosity": "error",
            "jwt_secret_key": _DISABLED_JWT_KEY,
            "CORS_origins": [],
            "username": "",
            "password": "",
        },
        "telegram": {"enabled": False, "token": "", "chat_id": ""},
        "dataformat_ohlcv": "feather",
        "dataformat_trades": "feather",
        "datadir": datadir,
        "user_data_dir": user_data_dir,
        "export": "trades",
        "internals": {},
    }
    timeframe = spec.timeframe or strategy.timeframe
    if timeframe is not None:
        # Left out, the strategy's own timeframe applies.
        config["timeframe"] = timeframe
    if spec.fee is not None:
        config["fee"] = _number(spec.fee)

    config.update(strategy_overrides(strategy, parameter_file))
    if spec.parameters is not None:
        # A found parameter set (a Hyperopt's best, for its out-of-sample check) replaces the
        # Strategy's own file whole.
        config[TRADEBOT_KEY] = {PARAMETER_FILE_KEY: read_parameter_file(spec.parameters)}
    return config


def stake_settings(spec: BacktestSpec | LiveBotSpec) -> dict[str, Any]:
    """Wallet and stake keys, the same for a backtest and a bot."""
    return {
        "stake_currency": spec.stake_currency,
        # "unlimited" is Freqtrade's own word for sharing the wallet, so it passes as a string.
        "stake_amount": (
            spec.stake_amount if isinstance(spec.stake_amount, str) else _number(spec.stake_amount)
        ),
        "dry_run_wallet": _number(spec.dry_run_wallet),
        "max_open_trades": spec.max_open_trades,
    }


def strategy_overrides(
    strategy: StrategySpec, parameter_file: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The config keys a Strategy's `parameters` set, for backtests and bots alike.

    Config values take precedence over the strategy's attributes in Freqtrade
    (StrategyResolver), which is exactly what an override is. A set from a Hyperopt
    (`parameter_file`) goes whole into the parameter file: Freqtrade applies its roi,
    stoploss, trailing and protection sections from there as `freqtrade hyperopt` meant.
    """
    if parameter_file is not None:
        return {TRADEBOT_KEY: {PARAMETER_FILE_KEY: dict(parameter_file)}}
    parameters = strategy.parameters
    overrides: dict[str, Any] = {}
    if parameters is None:
        return overrides
    if parameters.minimal_roi is not None:
        overrides["minimal_roi"] = {
            minutes: _number(ratio) for minutes, ratio in parameters.minimal_roi.items()
        }
    if parameters.stoploss is not None:
        overrides["stoploss"] = _number(parameters.stoploss)
    parameter_file = _parameter_file(strategy.class_name, parameters)
    if parameter_file is not None:
        overrides[TRADEBOT_KEY] = {PARAMETER_FILE_KEY: parameter_file}
    return overrides


def parameter_file_name(strategy_class: str) -> str:
    """Where Freqtrade looks for a strategy's parameter file: beside the strategy file, named
    after its stem (HyperStrategyMixin.load_params_from_file). The operator always writes the
    strategy as <Class>.py."""
    return f"{strategy_class}.json"


def parameter_file_data(config: Mapping[str, Any], strategy_class: str) -> dict[str, str]:
    """The parameter file a run or bot config carries, as the ConfigMap item to project beside
    the strategy file: {"<Class>.json": text}, or {} when no set applies (the strategy's own
    values). The same text whichever executor writes it."""
    extra = config.get(TRADEBOT_KEY)
    document = extra.get(PARAMETER_FILE_KEY) if isinstance(extra, Mapping) else None
    if document is None:
        return {}
    return {parameter_file_name(strategy_class): json.dumps(document, indent=2, sort_keys=True)}


def canonical_json(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)


def config_hash(config: dict[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON: key order and whitespace do not change it."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


def parameters_hash(text: str) -> str:
    """The parameter file's identity (domain/parameters_hash.py): the hash of its `params`,
    without the export time around them, so the same values hash the same."""
    return hash_of_parameters(read_parameter_file(text)["params"])
