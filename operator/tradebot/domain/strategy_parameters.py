"""A Strategy's parameter set: inline (spec.parameters) or a Hyperopt's best set
(spec.parametersFrom.hyperoptRef), resolved into one Freqtrade parameter file and its hash.
Pure: the controller reads the Hyperopt and passes it in.

The Strategy's status carries the resolved set (status.parameters, status.parametersHash), so
every Backtest and LiveBot of it runs that exact set and records its hash beside the code hash.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from tradebot.api.strategy import StrategySpec
from tradebot.domain.parameters_hash import parameters_hash

# Freqtrade's parameter file version (ft_stratparam_v) as `freqtrade hyperopt` writes it.
PARAMETER_FILE_VERSION = 1


@dataclass(frozen=True)
class ParameterSet:
    """The set backtests and bots run: Freqtrade's parameter file as JSON text."""

    text: str
    hash: str
    source: str  # "inline" or "Hyperopt/<name>"

    def to_status(self) -> dict[str, Any]:
        return {
            "parameters": self.text,
            "parametersHash": self.hash,
            "parametersSource": self.source,
        }


NO_PARAMETERS: dict[str, Any] = {
    "parameters": None,
    "parametersHash": None,
    "parametersSource": None,
}


@dataclass(frozen=True)
class Unresolved:
    """Why the set cannot be used (yet): the Strategy is Pending (it may come) or Invalid."""

    phase: Literal["Pending", "Invalid"]
    reason: str
    message: str


def _number(value: Decimal) -> float | int:
    # Freqtrade's file holds JSON numbers; an integral ratio stays an integer as it would.
    return int(value) if value == value.to_integral_value() else float(value)


def inline_set(spec: StrategySpec) -> ParameterSet | None:
    """spec.parameters as the parameter file Freqtrade would export for them (None when the
    spec sets none)."""
    given = spec.parameters
    if given is None:
        return None
    params: dict[str, Any] = {}
    if given.buy:
        params["buy"] = dict(given.buy)
    if given.sell:
        params["sell"] = dict(given.sell)
    if given.minimal_roi is not None:
        params["roi"] = {k: _number(v) for k, v in given.minimal_roi.items()}
    if given.stoploss is not None:
        params["stoploss"] = {"stoploss": _number(given.stoploss)}
    if not params:
        return None
    document = {
        "strategy_name": spec.class_name,
        "params": params,
        "ft_stratparam_v": PARAMETER_FILE_VERSION,
    }
    return ParameterSet(json.dumps(document, indent=2), parameters_hash(params), "inline")


def parameter_file(text: str) -> dict[str, Any]:
    """The parameter file a text holds, or ValueError saying what is wrong with it."""
    try:
        parsed = json.loads(text)
    except ValueError as e:
        raise ValueError(f"not JSON ({e})") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("params"), dict):
        raise ValueError('not Freqtrade\'s parameter file (a JSON object with a "params" object)')
    return parsed


def _progress(status: Mapping[str, Any]) -> str:
    progress = status.get("progress")
    return f" ({progress} epochs)" if progress else ""


def hyperopt_set(
    spec: StrategySpec,
    strategy_name: str,
    code_hash: str | None,
    hyperopt: Mapping[str, Any] | None,
) -> ParameterSet | Unresolved:
    """The best set of the Hyperopt spec.parametersFrom names (`hyperopt`: the object as
    read, None when not found), or why it cannot be used."""
    assert spec.parameters_from is not None
    name = spec.parameters_from.hyperopt_ref.name
    what = f"Hyperopt {name}"
    if hyperopt is None:
        return Unresolved(
            "Pending", "HyperoptNotFound", f"{what} (spec.parametersFrom.hyperoptRef) not found"
        )
    searched = ((hyperopt.get("spec") or {}).get("strategyRef") or {}).get("name")
    if searched != strategy_name:
        return Unresolved(
            "Invalid",
            "HyperoptOfAnotherStrategy",
            f"{what} searched the parameters of Strategy {searched}, not of "
            f"{strategy_name}: its set does not fit this strategy",
        )
    status = hyperopt.get("status") or {}
    phase = status.get("phase") or "Pending"
    if phase == "Failed":
        return Unresolved(
            "Pending",
            "HyperoptFailed",
            f"{what} Failed ({status.get('message') or 'no reason given'}); it "
            "will not succeed (its spec is immutable): point "
            "spec.parametersFrom at another Hyperopt",
        )
    if phase != "Succeeded":
        return Unresolved(
            "Pending",
            "HyperoptNotSucceeded",
            f"waiting for {what} to succeed: it is {phase}{_progress(status)}",
        )
    searched_code = status.get("codeHash")
    if searched_code and code_hash and searched_code != code_hash:
        return Unresolved(
            "Invalid",
            "HyperoptOfOtherCode",
            f"{what} searched code {searched_code[:12]}, the Strategy now has "
            f"{code_hash[:12]}: run a new Hyperopt of this code",
        )
    best = status.get("best") or {}
    text = best.get("parameters")
    if not isinstance(text, str) or not text:
        return Unresolved(
            "Invalid", "HyperoptHasNoParameters", f"{what} Succeeded without a best parameter set"
        )
    try:
        document = parameter_file(text)
    except ValueError as e:
        return Unresolved(
            "Invalid", "InvalidHyperoptParameters", f"{what}'s best parameters are {e}"
        )
    named = document.get("strategy_name")
    if named is not None and named != spec.class_name:
        # Freqtrade refuses a parameter file of another class ("Invalid parameter file").
        return Unresolved(
            "Invalid",
            "InvalidHyperoptParameters",
            f"{what}'s parameter file is for class {named}, the Strategy's "
            f"class is {spec.class_name}",
        )
    # The Hyperopt's own hash of its set, as it is: the LiveBot gate matches the two.
    digest = best.get("parametersHash") or parameters_hash(document["params"])
    return ParameterSet(text, str(digest), f"Hyperopt/{name}")


def resolve(
    spec: StrategySpec,
    strategy_name: str,
    code_hash: str | None,
    hyperopt: Mapping[str, Any] | None = None,
) -> ParameterSet | Unresolved | None:
    """The Strategy's set: from its Hyperopt, inline, or None (the strategy's own values)."""
    if spec.parameters_from is not None:
        return hyperopt_set(spec, strategy_name, code_hash, hyperopt)
    return inline_set(spec)


def run_parameter_file(strategy: Mapping[str, Any]) -> dict[str, Any] | None:
    """The parameter file a Backtest or LiveBot of this Strategy object runs with when the
    set comes from a Hyperopt (inline parameters reach the config from the spec, as before);
    ValueError when the Strategy has not resolved it."""
    spec = strategy.get("spec") or {}
    if not spec.get("parametersFrom"):
        return None
    status = strategy.get("status") or {}
    text = status.get("parameters")
    if not isinstance(text, str) or not text:
        raise ValueError(
            "the Strategy takes its parameters from a Hyperopt but has not resolved them yet"
        )
    return parameter_file(text)
