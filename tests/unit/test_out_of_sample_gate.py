"""The out-of-sample promotion gate (promotion.hyperoptRef), table-driven through the LiveBot
round: a bot passes only when its Hyperopt Succeeded, validated out of sample at or above the
minimum, searched the bot's strategy, and the bot's Strategy runs exactly that set."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from tests.unit.test_livebot_round import (
    CODE,
    CREDS,
    GOOD_BT,
    NOW,
    approved,
    complete,
    observe,
    spec,
)

from tradebot.domain import gates
from tradebot.domain.bot_credentials import LABEL_CREDENTIALS
from tradebot.domain.gates import DryRunEvidence, DryRunPeriod, HyperoptEvidence
from tradebot.domain.livebot_round import Evidence, Hold, Observation, Observe, Run, decide
from tradebot.settings import ModeFloor, PromotionFloors

SET_A = "a" * 64
SET_B = "b" * 64
GOOD_HO = HyperoptEvidence("search", "Succeeded", "s", Decimal("0.05"), SET_A)


def gated_spec(**promotion: Any) -> Any:
    min_oos = promotion.pop("min_oos", "0.01")
    return spec(
        "testnet",
        promotion={
            "backtestRef": {"name": "bt"},
            "minDryRunHours": 0,
            "minTrades": 5,
            "hyperoptRef": {"name": "search", "minOutOfSampleProfit": min_oos},
            **promotion,
        },
    )


def with_set(o: Observation, parameters_hash: str | None) -> Observation:
    return replace(
        o,
        strategy={
            "spec": {"parametersFrom": {"hyperoptRef": {"name": "search"}}},
            "status": {"phase": "Ready", "codeHash": CODE, "parametersHash": parameters_hash},
        },
    )


def backtest_of(parameters_hash: str | None) -> gates.BacktestEvidence:
    """GOOD_BT, launched with the parameter set the bot's Strategy runs."""
    assert GOOD_BT.launched is not None
    launched = GOOD_BT.launched.model_copy(update={"parameters_hash": parameters_hash})
    return replace(GOOD_BT, launched=launched)


def round_with(
    hyperopt: HyperoptEvidence | None, parameters_hash: str | None = SET_A, s: Any = None
) -> Observation:
    o = with_set(observe(s or gated_spec()), parameters_hash)
    return complete(
        o, evidence=Evidence(backtest_of(parameters_hash), DryRunEvidence(), hyperopt=hyperopt)
    )


def gate_of(o: Observation) -> dict[str, Any]:
    outcome = decide(o)
    found = [g for g in outcome.status["gates"] if g["name"] == gates.GATE_HYPEROPT]
    assert len(found) == 1, outcome.status["gates"]
    gate: dict[str, Any] = found[0]
    return gate


@pytest.mark.parametrize(
    ("hyperopt", "parameters_hash", "says"),
    [
        (None, SET_A, "Hyperopt search: not found"),
        (replace(GOOD_HO, phase="Running"), SET_A, "is Running, not Succeeded"),
        (replace(GOOD_HO, phase="Validating"), SET_A, "is Validating, not Succeeded"),
        (replace(GOOD_HO, phase=None), SET_A, "is not started, not Succeeded"),
        (replace(GOOD_HO, strategy="other"), SET_A, "searched Strategy other, the bot runs s"),
        # Curve-fitted: fine in sample, a loss on the data it never saw.
        (
            replace(GOOD_HO, out_of_sample_profit=Decimal("-0.02")),
            SET_A,
            "out-of-sample profitTotal -0.02 < minOutOfSampleProfit 0.01",
        ),
        (
            replace(GOOD_HO, out_of_sample_profit=Decimal("0.00999999")),
            SET_A,
            "out-of-sample profitTotal 0.00999999 < minOutOfSampleProfit 0.01",
        ),
        (replace(GOOD_HO, out_of_sample_profit=None), SET_A, "no out-of-sample profitTotal"),
        (replace(GOOD_HO, parameters_hash=None), SET_A, "no best parameter set"),
        # The bot runs another set than the one validated (inline, or another Hyperopt's).
        (GOOD_HO, SET_B, f"it validated parameters {SET_A[:12]}, the Strategy runs {SET_B[:12]}"),
        (GOOD_HO, None, f"it validated parameters {SET_A[:12]}, the Strategy runs none"),
    ],
)
def test_the_gate_holds_the_bot_naming_what_failed(
    hyperopt: HyperoptEvidence | None, parameters_hash: str | None, says: str
) -> None:
    o = round_with(hyperopt, parameters_hash)
    d = decide(o).decision
    assert isinstance(d, Hold), d
    assert (d.phase, d.reason) == ("Blocked", "GatesNotPassed")
    assert says in d.message
    gate = gate_of(o)
    assert gate["passed"] is False
    assert says in gate["message"]


def test_validated_evidence_for_the_set_the_bot_runs_passes() -> None:
    o = round_with(GOOD_HO)
    outcome = decide(o)
    assert isinstance(outcome.decision, Run)
    assert gate_of(o) == {
        "name": gates.GATE_HYPEROPT,
        "passed": True,
        "message": f"Hyperopt search: out-of-sample profitTotal 0.05 >= 0.01, the "
        f"Strategy runs its parameters {SET_A[:12]}",
    }
    # Exactly at the minimum passes too.
    at_min = round_with(replace(GOOD_HO, out_of_sample_profit=Decimal("0.01")))
    assert isinstance(decide(at_min).decision, Run)
    assert outcome.status["thresholds"]["minOutOfSampleProfit"] == "0.01000000"
    kept = outcome.status["gateDecision"]
    assert (kept["codeHash"], kept["parametersHash"]) == (CODE, SET_A)


def test_a_new_parameter_set_is_judged_again() -> None:
    passed = decide(round_with(GOOD_HO))
    kept = passed.status["gateDecision"]
    same = replace(
        round_with(GOOD_HO),
        status={"gateDecision": kept},
        observed=frozenset({"credentials", "config", "lease", "pod"}),
    )
    # Positive control: the same set keeps its decision without asking for evidence.
    assert isinstance(decide(same).decision, Run)
    # Another set: the kept decision no longer holds, the evidence is asked for again.
    moved = with_set(same, SET_B)
    assert decide(moved).decision == Observe("evidence")


def test_without_hyperopt_ref_there_is_no_such_gate() -> None:
    o = complete(observe(spec("testnet")))
    outcome = decide(o)
    assert isinstance(outcome.decision, Run)
    assert gates.GATE_HYPEROPT not in [g["name"] for g in outcome.status["gates"]]
    assert "minOutOfSampleProfit" not in outcome.status["thresholds"]


def test_a_floor_may_require_the_gate_and_raise_its_minimum() -> None:
    floors = PromotionFloors(
        testnet=ModeFloor(
            min_profit=Decimal(-1),
            max_drawdown=Decimal(1),
            min_trades=1,
            min_dry_run_hours=0,
            require_hyperopt=True,
            min_out_of_sample_profit=Decimal("0.1"),
            require_bias_analysis=False,
        )
    )
    floor_map = {"testnet": floors.testnet, "live": floors.live}
    # No hyperoptRef in the spec: held, the floor named.
    bare = replace(complete(observe(spec("testnet"))), floors=floor_map)
    d = decide(bare).decision
    assert isinstance(d, Hold)
    assert "requires out-of-sample evidence (the operator's floor)" in d.message
    # A spec asking for 0.01 gets the floor's 0.1: 0.05 out of sample is not enough.
    lax = replace(round_with(GOOD_HO), floors=floor_map)
    d = decide(lax).decision
    assert isinstance(d, Hold)
    assert "out-of-sample profitTotal 0.05 < minOutOfSampleProfit 0.1" in d.message
    strong = replace(
        round_with(replace(GOOD_HO, out_of_sample_profit=Decimal("0.2"))), floors=floor_map
    )
    assert isinstance(decide(strong).decision, Run)


def test_live_needs_the_gate_like_the_others() -> None:
    s = spec("live")
    assert s.promotion is not None
    s = s.model_copy(
        update={
            "promotion": s.promotion.model_copy(
                update={"hyperopt_ref": gated_spec().promotion.hyperopt_ref}
            )
        }
    )
    # Approved as it runs: with the parameter set (part of the promotion digest).
    s = approved(s, with_set(observe(s), SET_A).strategy)
    enough = DryRunEvidence((DryRunPeriod(CODE, NOW - dt.timedelta(hours=30)),))
    creds = replace(CREDS, labels={LABEL_CREDENTIALS: "live"})
    for hyperopt, expected in (
        (replace(GOOD_HO, out_of_sample_profit=Decimal("-0.5")), Hold),
        (GOOD_HO, Run),
    ):
        good_bt = replace(
            backtest_of(SET_A),
            results=GOOD_BT.results.model_copy(update={"trades": 30}) if GOOD_BT.results else None,
        )
        o = complete(
            with_set(observe(s), SET_A),
            credentials=creds,
            evidence=Evidence(good_bt, enough, hyperopt=hyperopt),
        )
        o = replace(
            o,
            floors={
                "testnet": PromotionFloors().testnet,
                "live": ModeFloor(min_dry_run_hours=0, min_trades=1, require_bias_analysis=False),
            },
        )
        assert isinstance(decide(o).decision, expected)


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (None, None),
        ({"spec": {"strategyRef": {"name": "s"}}}, HyperoptEvidence("h", None, "s", None, None)),
        (
            {
                "spec": {"strategyRef": {"name": "s"}},
                "status": {
                    "phase": "Succeeded",
                    "best": {"parametersHash": SET_A},
                    "validation": {"outOfSample": {"profitTotal": "0.12345678"}},
                },
            },
            HyperoptEvidence("h", "Succeeded", "s", Decimal("0.12345678"), SET_A),
        ),
        # A figure that cannot be read is no evidence.
        (
            {
                "spec": {"strategyRef": {"name": "s"}},
                "status": {"validation": {"outOfSample": {"profitTotal": "NaN"}}},
            },
            HyperoptEvidence("h", None, "s", None, None),
        ),
    ],
)
def test_evidence_from_the_hyperopt_object(
    obj: dict[str, Any] | None, expected: HyperoptEvidence | None
) -> None:
    assert HyperoptEvidence.from_object("h", obj) == expected


def test_a_bot_without_a_set_keeps_its_decision_until_it_gets_one() -> None:
    passed = decide(complete(observe(spec("testnet"))))
    kept = passed.status["gateDecision"]
    assert kept["parametersHash"] == ""  # kept, not dropped by the merge patch
    base = complete(observe(spec("testnet"), status={"gateDecision": kept}))
    same = replace(base, observed=frozenset({"credentials", "config", "lease", "pod"}))
    assert isinstance(decide(same).decision, Run)
    assert decide(with_set(same, SET_A)).decision == Observe("evidence")


def test_a_decision_from_before_parameter_sets_stands() -> None:
    kept = dict(decide(round_with(GOOD_HO)).status["gateDecision"])
    del kept["parametersHash"]  # as an older operator wrote it
    o = replace(
        round_with(GOOD_HO),
        status={"gateDecision": kept},
        observed=frozenset({"credentials", "config", "lease", "pod"}),
    )
    assert isinstance(decide(o).decision, Run)
