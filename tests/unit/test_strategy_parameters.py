"""A Strategy's parameter set, resolved: inline, or a Hyperopt's best set (table-driven over
every reason it cannot be used), and how a Backtest's or LiveBot's config carries it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from tradebot.api.backtest import BacktestSpec
from tradebot.api.strategy import StrategySpec
from tradebot.domain.freqtrade_config import (
    PARAMETER_FILE_KEY,
    TRADEBOT_KEY,
    backtest_config,
    config_hash,
)
from tradebot.domain.parameters_hash import parameters_hash
from tradebot.domain.strategy_parameters import (
    ParameterSet,
    Unresolved,
    inline_set,
    resolve,
    run_parameter_file,
)

CODE = "c" * 64
FOUND = {
    "strategy_name": "EmaRsi",
    "params": {
        "buy": {"buy_rsi": 27},
        "roi": {"0": 0.213, "39": 0.103, "166": 0},
        "stoploss": {"stoploss": -0.31},
        "trailing": {"trailing_stop": False},
    },
    "ft_stratparam_v": 1,
    "export_time": "2026-11-29 10:00:00.000000+00:00",
}
FOUND_TEXT = json.dumps(FOUND, indent=4)
BEST_HASH = parameters_hash(FOUND["params"])  # type: ignore[arg-type]


def strategy(**extra: Any) -> StrategySpec:
    return StrategySpec.model_validate({"className": "EmaRsi", "code": "x = 1", **extra})


FROM_HO = strategy(parametersFrom={"hyperoptRef": {"name": "search"}})


def hyperopt(
    phase: str | None = "Succeeded", strategy_name: str = "ema-rsi", **status: Any
) -> dict[str, Any]:
    base: dict[str, Any] = {
        "phase": phase,
        "codeHash": CODE,
        "best": {"parameters": FOUND_TEXT, "parametersHash": BEST_HASH},
    }
    return {"spec": {"strategyRef": {"name": strategy_name}}, "status": base | status}


def test_parameters_and_parameters_from_are_mutually_exclusive() -> None:
    with pytest.raises(ValidationError, match="mutually exclusive"):
        strategy(
            parameters={"buy": {"rsi": 30}}, parametersFrom={"hyperoptRef": {"name": "search"}}
        )


def test_a_succeeded_hyperopt_gives_its_best_set_exactly() -> None:
    resolved = resolve(FROM_HO, "ema-rsi", CODE, hyperopt())
    assert resolved == ParameterSet(FOUND_TEXT, BEST_HASH, "Hyperopt/search")
    assert resolved.to_status() == {
        "parameters": FOUND_TEXT,
        "parametersHash": BEST_HASH,
        "parametersSource": "Hyperopt/search",
    }


def test_the_hyperopts_own_hash_is_kept_as_the_sets_identity() -> None:
    # Whatever the Hyperopt named its set is what the LiveBot gate compares against.
    resolved = resolve(
        FROM_HO,
        "ema-rsi",
        CODE,
        hyperopt(best={"parameters": FOUND_TEXT, "parametersHash": "f" * 64}),
    )
    assert isinstance(resolved, ParameterSet)
    assert resolved.hash == "f" * 64


@pytest.mark.parametrize(
    ("found", "phase", "reason", "says"),
    [
        (
            None,
            "Pending",
            "HyperoptNotFound",
            "Hyperopt search (spec.parametersFrom.hyperoptRef) not found",
        ),
        (
            hyperopt("Running", progress="4/10"),
            "Pending",
            "HyperoptNotSucceeded",
            "waiting for Hyperopt search to succeed: it is Running (4/10 epochs)",
        ),
        (hyperopt("Validating"), "Pending", "HyperoptNotSucceeded", "it is Validating"),
        (hyperopt(None), "Pending", "HyperoptNotSucceeded", "it is Pending"),
        (
            hyperopt("Failed", message="no trades"),
            "Pending",
            "HyperoptFailed",
            "Hyperopt search Failed (no trades)",
        ),
        (
            hyperopt(strategy_name="other"),
            "Invalid",
            "HyperoptOfAnotherStrategy",
            "searched the parameters of Strategy other, not of ema-rsi",
        ),
        (
            hyperopt(codeHash="d" * 64),
            "Invalid",
            "HyperoptOfOtherCode",
            f"searched code {'d' * 12}, the Strategy now has {CODE[:12]}",
        ),
        (hyperopt(best=None), "Invalid", "HyperoptHasNoParameters", "without a best parameter set"),
        (
            hyperopt(best={"parameters": "{not json", "parametersHash": BEST_HASH}),
            "Invalid",
            "InvalidHyperoptParameters",
            "best parameters are not JSON",
        ),
        (
            hyperopt(best={"parameters": "[1]", "parametersHash": BEST_HASH}),
            "Invalid",
            "InvalidHyperoptParameters",
            "not Freqtrade's parameter file",
        ),
        (
            hyperopt(
                best={
                    "parameters": json.dumps({**FOUND, "strategy_name": "Other"}),
                    "parametersHash": BEST_HASH,
                }
            ),
            "Invalid",
            "InvalidHyperoptParameters",
            "parameter file is for class Other, the Strategy's class is EmaRsi",
        ),
    ],
)
def test_why_a_hyperopts_set_cannot_be_used(
    found: dict[str, Any] | None, phase: str, reason: str, says: str
) -> None:
    resolved = resolve(FROM_HO, "ema-rsi", CODE, found)
    assert isinstance(resolved, Unresolved), resolved
    assert (resolved.phase, resolved.reason) == (phase, reason)
    assert says in resolved.message


def test_inline_parameters_become_freqtrades_parameter_file() -> None:
    spec = strategy(
        parameters={"buy": {"buy_rsi": 30}, "minimalRoi": {"0": "0.04", "30": 0}, "stoploss": -0.1}
    )
    resolved = resolve(spec, "ema-rsi", CODE)
    assert isinstance(resolved, ParameterSet)
    assert resolved.source == "inline"
    params = {"buy": {"buy_rsi": 30}, "roi": {"0": 0.04, "30": 0}, "stoploss": {"stoploss": -0.1}}
    assert json.loads(resolved.text) == {
        "strategy_name": "EmaRsi",
        "params": params,
        "ft_stratparam_v": 1,
    }
    assert resolved.hash == parameters_hash(params)
    # The same values as a Hyperopt would export them hash the same.
    assert resolved.hash == parameters_hash(json.loads(json.dumps(params)))
    assert inline_set(strategy()) is None
    assert inline_set(strategy(parameters={})) is None


def test_backtests_of_a_hyperopt_set_run_that_file_whole() -> None:
    obj = {"spec": FROM_HO.to_wire(), "status": {"parameters": FOUND_TEXT}}
    file = run_parameter_file(obj)
    assert file == FOUND
    bt = BacktestSpec.model_validate({"strategyRef": {"name": "ema-rsi"}, "pairs": ["BTC/USDT"]})
    config = backtest_config(bt, FROM_HO, datadir="/d", user_data_dir="/u", parameter_file=file)
    assert config[TRADEBOT_KEY] == {PARAMETER_FILE_KEY: FOUND}
    # The set is part of what the config hash covers: another set, another hash.
    other = backtest_config(
        bt,
        FROM_HO,
        datadir="/d",
        user_data_dir="/u",
        parameter_file={**FOUND, "params": {"buy": {"buy_rsi": 28}}},
    )
    assert config_hash(other) != config_hash(config)
    # Inline parameters reach the config from the spec, as before.
    assert run_parameter_file({"spec": strategy(parameters={"buy": {"x": 1}}).to_wire()}) is None


def test_an_unresolved_set_is_refused_rather_than_run_without() -> None:
    with pytest.raises(ValueError, match="has not resolved them yet"):
        run_parameter_file({"spec": FROM_HO.to_wire(), "status": {"phase": "Ready"}})
