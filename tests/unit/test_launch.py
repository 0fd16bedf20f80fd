"""What the operator records it launched (`status.launched`), a run's report checked against it,
and the backtest gate comparing a bot with that record, field by field."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradebot.api.backtest import BacktestResults, BacktestSpec, LaunchRecord
from tradebot.api.livebot import LiveBotSpec
from tradebot.api.strategy import StrategySpec
from tradebot.domain import launch
from tradebot.domain.gates import (
    BacktestEvidence,
    DryRunEvidence,
    GateResult,
    bot_run,
    evaluate_gates,
)

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
CODE_TEXT = "class S(IStrategy):\n    timeframe = '5m'\n"
CODE = hashlib.sha256(CODE_TEXT.encode()).hexdigest()
PARAMS = "p" * 64
RUNNER = "ghcr.io/tradebot-operator/runner"


def backtest_spec(**extra: Any) -> BacktestSpec:
    raw: dict[str, Any] = {
        "strategyRef": {"name": "s"},
        "pairs": ["BTC/USDT", "ETH/USDT"],
        "timerange": {"start": "2024-01-01", "end": "2024-02-01"},
        "stakeAmount": "100",
        "maxOpenTrades": 2,
        **extra,
    }
    return BacktestSpec.model_validate(raw)


def strategy_spec(**extra: Any) -> StrategySpec:
    return StrategySpec.model_validate({"className": "S", "code": CODE_TEXT, **extra})


def record(spec: BacktestSpec | None = None, **strategy: Any) -> dict[str, Any]:
    spec = spec or backtest_spec()
    return launch.launch_record(
        spec,
        spec.timerange,
        strategy_spec(**strategy),
        {"interface": {"timeframe": "5m"}},
        CODE_TEXT,
        PARAMS,
        f"{RUNNER}:0.1.0",
    )


def test_the_record_holds_what_was_launched():
    rec = record()
    assert rec == {
        "codeHash": CODE,
        "className": "S",
        "timeframe": "5m",
        "parametersHash": PARAMS,
        "image": f"{RUNNER}:0.1.0",
        "exchange": "binance",
        "pairs": ["BTC/USDT", "ETH/USDT"],
        "timerange": {"start": "2024-01-01", "end": "2024-02-01"},
        "stakeCurrency": "USDT",
        "stakeAmount": "100.00000000",
        "maxOpenTrades": 2,
        "dryRunWallet": "1000.00000000",
    }
    # It reads back as the status model (what the gate gets).
    assert LaunchRecord.model_validate(rec).code_hash == CODE


def test_the_timeframe_is_the_runs_then_the_strategys_then_the_codes():
    assert record(backtest_spec(timeframe="1h"), timeframe="15m")["timeframe"] == "1h"
    assert record(timeframe="15m")["timeframe"] == "15m"
    assert record()["timeframe"] == "5m"


def test_freqai_settings_are_hashed_and_absent_without_freqai():
    assert "freqaiHash" not in record()
    one = record(freqai={"identifier": "a", "model": "LightGBMRegressor"})["freqaiHash"]
    other = record(freqai={"identifier": "b", "model": "LightGBMRegressor"})["freqaiHash"]
    assert len(one) == 64
    assert one != other


@given(st.lists(st.sampled_from(["BTC/USDT", "ETH/USDT", "SOL/USDT"]), min_size=1, unique=True))
def test_the_record_is_deterministic(pairs: list[str]):
    """A status write lost to a crash is made again, equal, from the same inputs."""
    spec = backtest_spec(pairs=pairs)
    assert record(spec) == record(spec)


def test_a_report_of_other_code_is_a_mismatch():
    rec = record()
    assert launch.evidence_mismatch(rec, CODE) is None
    message = launch.evidence_mismatch(rec, "f" * 64)
    assert message is not None
    assert "ffffffffffff" in message
    assert CODE[:12] in message
    # No report of the code at all is no proof either.
    assert launch.evidence_mismatch(rec, None) is not None
    # A run launched before records has nothing to compare with.
    assert launch.evidence_mismatch(None, "f" * 64) is None


# --- the backtest gate against the launch record --------------------------------------------


def bot(pairs: tuple[str, ...] = ("BTC/USDT",), mode: str = "testnet") -> LiveBotSpec:
    return LiveBotSpec.model_validate(
        {
            "strategyRef": {"name": "s"},
            "pairs": list(pairs),
            "mode": mode,
            "exchange": {"name": "binance", "credentialsSecretRef": {"name": "keys"}},
            "promotion": {"backtestRef": {"name": "bt"}, "minDryRunHours": 0, "minTrades": 5},
        }
    )


STRATEGY = {
    "spec": {"className": "S", "code": CODE_TEXT},
    "status": {"phase": "Ready", "codeHash": CODE, "interface": {"timeframe": "5m"}},
}


def evidence(strategy: str = "s", **changes: Any) -> BacktestEvidence:
    return BacktestEvidence(
        "bt",
        "Succeeded",
        CODE,
        BacktestResults.model_validate({"profitTotal": "0.1", "maxDrawdown": "0.1", "trades": 40}),
        strategy,
        LaunchRecord.model_validate({**record(), **changes}),
    )


def gate(
    bt: BacktestEvidence,
    spec: LiveBotSpec | None = None,
    strategy: dict[str, Any] | None = None,
    parameters: str | None = PARAMS,
    allowed: tuple[str, ...] | None = (RUNNER,),
) -> GateResult:
    spec = spec or bot()
    results = evaluate_gates(
        spec,
        strategy_code_hash=CODE,
        backtest=bt,
        dry_run=DryRunEvidence(),
        now=NOW,
        strategy_parameters_hash=parameters,
        bot=bot_run(spec, strategy or STRATEGY, parameters, allowed),
    )
    return results[0]


def test_the_gate_passes_for_what_was_tested():
    """The positive control of every refusal below."""
    result = gate(evidence())
    assert result.passed, result.message
    # Every tested pair may trade, and any subset of them.
    assert gate(evidence(), bot(("ETH/USDT", "BTC/USDT"))).passed


@pytest.mark.parametrize(
    ("bt", "kwargs", "field"),
    [
        (evidence(pairs=["ETH/USDT"]), {}, "pairs: BTC/USDT not among the tested pairs"),
        (evidence(parametersHash="q" * 64), {}, "parametersHash"),
        (evidence(), {"parameters": None}, "parametersHash"),
        (evidence(timeframe="1h"), {}, "timeframe: it tested 1h, the bot runs 5m"),
        (evidence(className="T"), {}, "className: it tested T, the bot runs S"),
        (evidence(codeHash="e" * 64), {}, "codeHash"),
        (evidence(image="evil.example/runner:1"), {}, "image: image evil.example/runner:1"),
        (evidence(strategy="other"), {}, "tested Strategy other, the bot runs s"),
    ],
)
def test_a_mismatch_names_the_field(bt: BacktestEvidence, kwargs: dict[str, Any], field: str):
    result = gate(bt, **kwargs)
    assert not result.passed
    assert field in result.message


def test_the_strategys_timeframe_override_is_what_the_bot_runs():
    overridden = {**STRATEGY, "spec": {**STRATEGY["spec"], "timeframe": "1h"}}
    assert (
        "timeframe: it tested 5m, the bot runs 1h" in gate(evidence(), strategy=overridden).message
    )
    assert gate(evidence(timeframe="1h"), strategy=overridden).passed


def test_a_backtest_without_a_launch_record_fails_with_a_clear_message():
    old = BacktestEvidence("bt", "Succeeded", CODE, evidence().results, "s", None)
    result = gate(old)
    assert not result.passed
    assert result.message == "Backtest bt has no launch record; re-run the Backtest"


def test_what_the_container_printed_does_not_count():
    """The status codeHash (the runner's report) may say anything: the launch record rules."""
    printed = BacktestEvidence(
        "bt", "Succeeded", CODE, evidence().results, "s", evidence(codeHash="e" * 64).launched
    )
    assert not gate(printed).passed
    faked = BacktestEvidence(
        "bt", "Succeeded", "e" * 64, evidence().results, "s", evidence().launched
    )
    assert gate(faked).passed


def test_a_lost_status_write_is_made_again_from_the_job():
    """The admission writes `launched` with Running; if that write is lost to a crash, the
    record kept on the Job (the same record) fills it in."""
    import json

    from tradebot.controllers.backtest import _launched

    rec = record()
    job: Any = {"metadata": {"annotations": {launch.ANNOTATION: json.dumps(rec)}}}
    assert _launched({}, job) == rec
    assert _launched({"launched": rec}, None) == rec
    # Nothing to recover from: no record (the gate then fails with "no launch record").
    assert _launched({}, {"metadata": {"annotations": None}}) is None
    assert _launched({}, {"metadata": {"annotations": {launch.ANNOTATION: "{not json"}}}) is None
