"""Promotion gates of a LiveBot."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradebot.api.backtest import BacktestResults, BacktestStatus, LaunchRecord
from tradebot.api.livebot import Approval, LiveBotSpec
from tradebot.domain.gates import (
    BacktestEvidence,
    DryRunEvidence,
    DryRunPeriod,
    GateResult,
    all_passed,
    dry_run_time,
    evaluate_gates,
    promotion_patch,
)

NOW = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
CODE = "a" * 64
OTHER = "b" * 64
APPROVAL = {
    "approvedBy": "alice",
    "approvedAt": "2025-02-28T10:00:00Z",
    "reference": "https://git.example/pr/1",
    "codeHash": CODE,
}


def spec(
    mode: str = "testnet", approval: dict[str, Any] | None = None, **promotion: Any
) -> LiveBotSpec:
    prom: dict[str, Any] = {
        "backtestRef": {"name": "bt1"},
        "minProfit": "0.01",
        "maxDrawdown": "0.2",
        "minTrades": 10,
        "minDryRunHours": 24,
        **promotion,
    }
    if approval is not None:
        prom["approval"] = approval
    return LiveBotSpec.model_validate(
        {
            "strategyRef": {"name": "s"},
            "pairs": ["BTC/USDT"],
            "mode": mode,
            "exchange": {"name": "binance", "credentialsSecretRef": {"name": "keys"}},
            "limits": {"maxOpenTrades": 3, "maxStakePerTrade": "100"},
            "stakeAmount": "50",
            "promotion": prom,
        }
    )


def launched(code: str | None = CODE) -> LaunchRecord:
    """What the operator launched for bt1: the bot's strategy, code and pairs."""
    return LaunchRecord.model_validate(
        {
            "codeHash": code or OTHER,
            "className": "S",
            "image": "ghcr.io/tradebot-operator/runner:0.1.0",
            "pairs": ["BTC/USDT", "ETH/USDT"],
        }
    )


def evidence(
    phase: str = "Succeeded",
    code: str | None = CODE,
    profit: str = "0.05",
    drawdown: str = "0.1",
    trades: int = 20,
) -> BacktestEvidence:
    return BacktestEvidence(
        "bt1",
        phase,
        code,
        BacktestResults.model_validate(
            {"profitTotal": profit, "maxDrawdown": drawdown, "trades": trades}
        ),
        "s",
        launched(code),
    )


def history(
    hours: float = 48, code: str = CODE, trips: tuple[dt.datetime, ...] = ()
) -> DryRunEvidence:
    return DryRunEvidence((DryRunPeriod(code, NOW - dt.timedelta(hours=hours), None),), trips)


def gates(
    s: LiveBotSpec | None = None,
    code: str | None = CODE,
    bt: BacktestEvidence | None = None,
    dry: DryRunEvidence | None = None,
    now: dt.datetime = NOW,
) -> dict[str, GateResult]:
    results = evaluate_gates(
        s or spec(),
        strategy_code_hash=code,
        backtest=bt if bt is not None else evidence(),
        dry_run=dry if dry is not None else history(),
        now=now,
    )
    return {r.name: r for r in results}


def test_dry_run_needs_no_gates():
    s = LiveBotSpec.model_validate({"strategyRef": {"name": "s"}, "pairs": ["BTC/USDT"]})
    assert (
        evaluate_gates(s, strategy_code_hash=None, backtest=None, dry_run=DryRunEvidence(), now=NOW)
        == []
    )


def test_all_pass_on_testnet():
    result = gates()
    assert list(result) == ["backtest", "dryRunHistory", "approval"]
    assert all_passed(list(result.values()))
    assert result["approval"].message == "not required for testnet"


@pytest.mark.parametrize(
    ("bt", "expected"),
    [
        (None, "Backtest bt1 not found"),
        (evidence(phase="Running"), "Backtest bt1 is Running, not Succeeded"),
        (evidence(phase="Failed"), "is Failed, not Succeeded"),
        (evidence(code=OTHER), "tested code bbbbbbbbbbbb, the strategy now has aaaaaaaaaaaa"),
        (evidence(profit="0.00999999"), "profitTotal 0.00999999 < minProfit 0.01"),
        (evidence(drawdown="0.20000001"), "maxDrawdown 0.20000001 > maxDrawdown 0.2"),
        (evidence(trades=9), "trades 9 < minTrades 10"),
        (BacktestEvidence("bt1", "Succeeded", CODE, None, "s", launched()), "has no results"),
        (
            BacktestEvidence("bt1", "Succeeded", CODE, evidence().results),
            "Backtest bt1 has no launch record; re-run the Backtest",
        ),
    ],
)
def test_backtest_gate_failures(bt: BacktestEvidence | None, expected: str):
    results = evaluate_gates(
        spec(), strategy_code_hash=CODE, backtest=bt, dry_run=history(), now=NOW
    )
    gate = results[0]
    assert gate.name == "backtest"
    assert not gate.passed
    assert expected in gate.message


def test_backtest_bounds_are_inclusive_and_exact():
    bt = evidence(profit="0.01", drawdown="0.2", trades=10)
    assert gates(bt=bt)["backtest"].passed


def test_backtest_reports_every_failed_figure():
    message = gates(bt=evidence(profit="-0.1", drawdown="0.5", trades=1))["backtest"].message
    assert "profitTotal -0.1 < minProfit 0.01" in message
    assert "maxDrawdown 0.5 > maxDrawdown 0.2" in message
    assert "trades 1 < minTrades 10" in message


def test_backtest_from_status():
    status = BacktestStatus.model_validate(
        {
            "phase": "Succeeded",
            "codeHash": CODE,
            "results": {"profitTotal": "0.05", "maxDrawdown": "0.1", "trades": 20},
            "launched": launched().to_wire(),
        }
    )
    assert gates(bt=BacktestEvidence.from_status("bt1", status))["backtest"].passed
    assert not gates(bt=BacktestEvidence.from_status("bt1", None))["backtest"].passed


def test_no_code_hash_fails_evidence_gates():
    result = gates(code=None)
    assert not result["backtest"].passed
    assert not result["dryRunHistory"].passed


def test_changed_code_hash_resets_the_evidence():
    # The same evidence passes for the code it was gathered with, and fails for new code.
    assert all_passed(list(gates(code=CODE).values()))
    new = gates(code=OTHER)
    assert not new["backtest"].passed
    assert not new["dryRunHistory"].passed
    assert "0.0 h" in new["dryRunHistory"].message
    # Fresh evidence of the new code passes again.
    fresh = gates(code=OTHER, bt=evidence(code=OTHER), dry=history(code=OTHER))
    assert all_passed(list(fresh.values()))


@pytest.mark.parametrize(("hours", "passed"), [(23.99, False), (24, True), (100, True)])
def test_dry_run_hours(hours: float, passed: bool):
    assert gates(dry=history(hours))["dryRunHistory"].passed is passed


def test_dry_run_counts_only_after_last_trip():
    trip = NOW - dt.timedelta(hours=10)
    gate = gates(dry=history(48, trips=(NOW - dt.timedelta(hours=40), trip)))["dryRunHistory"]
    assert not gate.passed
    assert "10.0 h" in gate.message
    # A trip in the future (clock skew) does not count yet.
    assert gates(dry=history(48, trips=(NOW + dt.timedelta(hours=1),)))["dryRunHistory"].passed


def test_dry_run_other_code_and_overlaps_are_not_counted():
    periods = (
        DryRunPeriod(CODE, NOW - dt.timedelta(hours=20), NOW - dt.timedelta(hours=10)),
        DryRunPeriod(CODE, NOW - dt.timedelta(hours=15), NOW - dt.timedelta(hours=5)),
        DryRunPeriod(OTHER, NOW - dt.timedelta(hours=100), None),
    )
    assert dry_run_time(DryRunEvidence(periods), CODE, NOW) == dt.timedelta(hours=15)


def test_dry_run_zero_hours_required():
    assert gates(s=spec(minDryRunHours=0), dry=DryRunEvidence())["dryRunHistory"].passed


def test_approval_required_for_live():
    live = spec("live", approval=APPROVAL)
    assert gates(s=live)["approval"].passed
    assert "alice" in gates(s=live)["approval"].message
    future = spec("live", approval={**APPROVAL, "approvedAt": "2025-03-02T00:00:00Z"})
    gate = gates(s=future)["approval"]
    assert not gate.passed
    assert "in the future" in gate.message
    assert not gates(
        s=spec("live", approval=APPROVAL).model_copy(
            update={"promotion": live.promotion.model_copy(update={"approval": None})}
            if live.promotion
            else {}
        )
    )["approval"].passed


def test_missing_promotion_fails_shut():
    s = spec().model_copy(update={"promotion": None})
    results = list(gates(s=s).values())
    assert len(results) == 3
    assert not any(r.passed for r in results)


def test_naive_now_is_utc():
    assert all_passed(list(gates(now=NOW.replace(tzinfo=None)).values()))


def test_promotion_patch():
    dry = spec("testnet").model_copy(update={"mode": "dryRun"})
    assert promotion_patch(dry, "testnet", None) == {"spec": {"mode": "testnet"}}
    approval = Approval.model_validate(APPROVAL)
    patch = promotion_patch(spec("testnet"), "live", approval)
    assert patch == {
        "spec": {
            "mode": "live",
            "promotion": {
                "approval": {
                    "approvedBy": "alice",
                    "approvedAt": "2025-02-28T10:00:00Z",
                    "reference": "https://git.example/pr/1",
                    "codeHash": CODE,
                }
            },
        }
    }
    assert promotion_patch(spec("testnet"), "dryRun", None) == {"spec": {"mode": "dryRun"}}
    with pytest.raises(ValueError, match="needs an approval"):
        promotion_patch(spec("testnet"), "live", None)
    with pytest.raises(ValueError, match="already in mode"):
        promotion_patch(spec("testnet"), "testnet", None)
    with pytest.raises(ValueError, match=r"spec\.promotion"):
        promotion_patch(dry.model_copy(update={"promotion": None}), "testnet", None)


def test_patched_manifest_is_valid():
    manifest = spec("testnet").to_wire()
    patch = promotion_patch(spec("testnet"), "live", Approval.model_validate(APPROVAL))
    manifest["mode"] = patch["spec"]["mode"]
    manifest["promotion"].update(patch["spec"]["promotion"])
    assert LiveBotSpec.model_validate(manifest).mode == "live"


@given(
    profit=st.decimals(min_value=-1, max_value=10, places=8),
    minimum=st.decimals(min_value=-1, max_value=10, places=8),
)
def test_profit_gate_is_exact_decimal_comparison(profit: Decimal, minimum: Decimal):
    s = spec(minProfit=format(minimum, "f"))
    gate = gates(s=s, bt=evidence(profit=format(profit, "f")))["backtest"]
    assert gate.passed is (profit >= minimum)


_hours = st.integers(min_value=0, max_value=200)


@given(
    periods=st.lists(st.tuples(_hours, _hours, st.booleans()), max_size=6),
    trips=st.lists(_hours, max_size=3),
)
def test_dry_run_time_bounds(periods: list[tuple[int, int, bool]], trips: list[int]):
    made = tuple(
        DryRunPeriod(
            CODE if same else OTHER,
            NOW - dt.timedelta(hours=a),
            NOW - dt.timedelta(hours=min(a, b)),
        )
        for a, b, same in periods
    )
    ev = DryRunEvidence(made, tuple(NOW - dt.timedelta(hours=t) for t in trips))
    total = dry_run_time(ev, CODE, NOW)
    assert dt.timedelta(0) <= total <= dt.timedelta(hours=200)
    if trips:
        assert total <= dt.timedelta(hours=min(trips))
    # Evidence of another code never counts.
    assert dry_run_time(ev, "c" * 64, NOW) == dt.timedelta(0)
