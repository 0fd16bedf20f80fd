"""The bias analyses' findings (freqtrade/bias.py), the analysis Backtest the operator makes
(domain/bias.py), and the bias gate (domain/gates.py)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest

from tradebot.api.backtest import BacktestSpec
from tradebot.api.livebot import LiveBotSpec
from tradebot.domain import bias as domain_bias
from tradebot.domain import gates
from tradebot.freqtrade import bias
from tradebot.settings import ModeFloor, PromotionFloors

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
CODE = "c" * 64
PARAMS = "p" * 64


def _lookahead(**entry: Any) -> dict[str, Any]:
    base = {
        "strategy": "S",
        "hasBias": False,
        "totalSignals": 20,
        "biasedEntrySignals": 0,
        "biasedExitSignals": 0,
        "biasedIndicators": [],
        "failed": False,
    }
    return {"analysis": "lookahead", "minimumTradeAmount": 10, "strategies": [{**base, **entry}]}


def _recursive(indicators: dict[str, dict[str, str]]) -> dict[str, Any]:
    return {
        "analysis": "recursive",
        "pair": "BTC/USDT",
        "startupCandles": [30],
        "strategies": [{"strategy": "S", "indicators": indicators}],
    }


# -- parsing -------------------------------------------------------------------------------


def test_biased_lookahead_names_the_indicator_and_the_signals() -> None:
    found = bias.parse_lookahead(
        [
            _lookahead(
                hasBias=True,
                biasedEntrySignals=20,
                biasedIndicators=["future_close"],
            )
        ],
        "S",
        10,
    )
    assert not found.clean
    assert found.biased_indicators == ["future_close"]
    assert (found.signals, found.biased_entry_signals, found.biased_exit_signals) == (20, 20, 0)
    assert bias.summary(found, None) == "lookahead: future_close"


def test_clean_lookahead_is_clean() -> None:
    found = bias.parse_lookahead([_lookahead()], "S", 10)
    assert found.clean
    assert found.inconclusive is None
    assert bias.summary(found, None) == "clean"


def test_biased_signals_without_a_named_indicator_are_not_clean() -> None:
    found = bias.parse_lookahead([_lookahead(hasBias=True, biasedExitSignals=3)], "S", 10)
    assert not found.clean
    assert bias.summary(found, None) == "lookahead: 3 exit signals"


@pytest.mark.parametrize(
    ("entry", "why"), [({"totalSignals": 4}, "too few signals"), ({"failed": True}, "error")]
)
def test_too_few_signals_or_an_error_is_inconclusive_not_clean(
    entry: dict[str, Any], why: str
) -> None:
    found = bias.parse_lookahead([_lookahead(**entry)], "S", 10)
    assert not found.clean
    assert found.inconclusive is not None
    assert why in found.inconclusive
    assert bias.summary(found, None) == "lookahead: inconclusive"


def test_recursive_differences_are_ratios_largest_first() -> None:
    found = bias.parse_recursive(
        [
            _recursive(
                {
                    "ema": {"30": "-0.005", "199": "0.0001"},
                    "cum_volume": {"30": "31.5025"},
                    "tiny": {"30": "0.0"},
                }
            )
        ],
        "S",
    )
    assert [(i.name, i.difference) for i in found.indicators or []] == [
        ("cum_volume", Decimal("31.50250000")),
        ("ema", Decimal("0.00500000")),
    ]  # "tiny" differs by 0 at 8 places: Freqtrade lists float noise, no finding
    assert found.max_difference == Decimal("31.5025")
    assert (found.pair, found.startup_candles) == ("BTC/USDT", [30])
    assert bias.summary(None, found) == "recursive 3150.3%: cum_volume"


def test_no_recursive_difference_is_clean() -> None:
    found = bias.parse_recursive([_recursive({})], "S")
    assert found.max_difference == 0
    assert found.indicators is None
    assert bias.summary(None, found) == "clean"


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e30", "inf%"])
def test_unbounded_or_incomparable_differences_are_capped_not_lost(text: str) -> None:
    assert bias.percent_ratio(text) == bias.DIFFERENCE_CAP


def test_older_freqtrade_percentages_are_ratios_too() -> None:
    assert bias.percent_ratio("-12.345%") == Decimal("0.12345")
    assert bias.percent_ratio("-0.12345") == Decimal("0.12345")


@pytest.mark.parametrize("text", ["", "abc", "1.2.3%", True])
def test_garbage_is_an_error(text: object) -> None:
    with pytest.raises(bias.BiasRecordError):
        bias.percent_ratio(text)


def test_a_strategy_the_analysis_did_not_report_is_an_error() -> None:
    with pytest.raises(bias.BiasRecordError, match="nothing for strategy Other"):
        bias.parse_lookahead([_lookahead()], "Other", 10)


def test_records_are_json_lines() -> None:
    lines = json.dumps(_lookahead()) + "\n\n" + json.dumps(_recursive({}))
    assert [r["analysis"] for r in bias.read_records(lines)] == ["lookahead", "recursive"]
    with pytest.raises(bias.BiasRecordError, match="line 2"):
        bias.read_records('{"analysis": "x"}\nnot json')


def test_findings_fit_a_termination_message() -> None:
    names = [f"indicator_with_a_long_name_{i}" for i in range(200)]
    found = bias.findings(
        bias.parse_lookahead([_lookahead(hasBias=True, biasedIndicators=names)], "S", 10),
        bias.parse_recursive([_recursive({n: {"30": "0.125"} for n in names})], "S"),
    )
    assert len(found.lookahead.biased_indicators or []) == bias.MAX_NAMES  # type: ignore[union-attr]
    assert len(found.model_dump_json(by_alias=True)) < 2500


# -- the analysis Backtest ------------------------------------------------------------------


def _evidence(name: str = "ema-rsi-sample", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": "uid-1",
            "labels": {"team": "a", "tradebot.dev/fleet": "main"},
        },
        "spec": {
            "strategyRef": {"name": "ema-rsi"},
            "pairs": ["BTC/USDT"],
            "timerange": {"start": "2024-01-02", "end": "2024-02-01"},
            "parameters": '{"params": {}}',
            "ttlSecondsAfterFinished": 60,
            **spec,
        },
    }


def test_analysis_backtest_copies_the_evidence_and_asks_for_both_analyses() -> None:
    manifest = domain_bias.analysis_manifest(_evidence(analyses={"minimumTradeAmount": 5}))
    meta = manifest["metadata"]
    assert meta["name"] == "ema-rsi-sample-bias"
    assert meta["labels"] == {"team": "a", domain_bias.LABEL_BIAS_OF: "ema-rsi-sample"}
    assert meta["ownerReferences"][0]["uid"] == "uid-1"
    spec = BacktestSpec.model_validate(manifest["spec"])  # a valid Backtest
    assert spec.analyses is not None
    assert spec.analyses.lookahead
    assert spec.analyses.recursive
    assert spec.analyses.minimum_trade_amount == 5
    assert spec.parameters == '{"params": {}}'
    assert spec.ttl_seconds_after_finished is None


def test_analysis_name_is_deterministic_and_fits_a_label() -> None:
    long = "a" * 63
    name = domain_bias.analysis_name(long)
    assert name == domain_bias.analysis_name(long)
    assert len(name) <= 63
    assert name.endswith("-bias")
    assert name != domain_bias.analysis_name("a" * 62)


def test_evidence_that_ran_both_analyses_is_its_own_source() -> None:
    both = _evidence(analyses={"lookahead": True, "recursive": True})
    one = _evidence(analyses={"lookahead": True})
    assert domain_bias.analysis_source("ema-rsi-sample", both) == "ema-rsi-sample"
    assert domain_bias.analysis_source("ema-rsi-sample", one) == "ema-rsi-sample-bias"


# -- the gate -------------------------------------------------------------------------------


def _analysis(
    summary: str = "clean",
    lookahead: dict[str, Any] | None = None,
    recursive: dict[str, Any] | None = None,
    **status: Any,
) -> dict[str, Any]:
    return {
        "metadata": {"name": "bt-bias"},
        "spec": {"analyses": {"lookahead": True, "recursive": True}},
        "status": {
            "phase": "Succeeded",
            "codeHash": CODE,
            "parametersHash": PARAMS,
            "bias": {
                "summary": summary,
                "lookahead": lookahead
                or {"clean": True, "signals": 20, "biasedEntrySignals": 0, "biasedExitSignals": 0},
                "recursive": recursive or {"maxDifference": "0.00100000"},
            },
            **status,
        },
    }


def _bot(**promotion: Any) -> LiveBotSpec:
    return LiveBotSpec.model_validate(
        {
            "strategyRef": {"name": "s"},
            "mode": "testnet",
            "exchange": {"name": "binance", "credentialsSecretRef": {"name": "k"}},
            "pairs": ["BTC/USDT"],
            "promotion": {"backtestRef": {"name": "bt"}, "minDryRunHours": 0, **promotion},
        }
    )


FLOOR = PromotionFloors().testnet


def _gate(
    obj: dict[str, Any] | None,
    spec: LiveBotSpec | None = None,
    floor: ModeFloor = FLOOR,
    code: str = CODE,
    timeframe: str | None = "5m",
) -> gates.GateResult:
    results = gates.evaluate_gates(
        spec or _bot(),
        strategy_code_hash=code,
        backtest=None,
        dry_run=gates.DryRunEvidence(),
        now=NOW,
        floor=floor,
        strategy_parameters_hash=PARAMS,
        bias=domain_bias.BiasEvidence.from_object("bt-bias", obj),
        strategy_timeframe=timeframe,
    )
    return next(g for g in results if g.name == gates.GATE_BIAS)


def test_clean_analysis_of_the_same_code_passes() -> None:
    gate = _gate(_analysis())
    assert gate.passed, gate.message
    assert "lookahead clean over 20 signals" in gate.message
    # Positive control for the checks below: the same evidence, another bot's code.
    other = _gate(_analysis(), code="d" * 64)
    assert not other.passed
    assert other.reason == domain_bias.REASON_UNCHECKED


def test_lookahead_bias_is_detected_naming_the_indicator() -> None:
    gate = _gate(
        _analysis(
            lookahead={
                "clean": False,
                "hasBias": True,
                "signals": 20,
                "biasedEntrySignals": 20,
                "biasedExitSignals": 0,
                "biasedIndicators": ["future_close"],
            }
        )
    )
    assert not gate.passed
    assert gate.reason == domain_bias.REASON_DETECTED
    assert "future_close" in gate.message
    assert "20 entry" in gate.message


def test_recursive_difference_over_the_tolerance_is_detected() -> None:
    recursive = {
        "maxDifference": "0.03200000",
        "startupCandles": [30],
        "indicators": [{"name": "ema_long", "difference": "0.03200000"}],
    }
    gate = _gate(_analysis(recursive=recursive))
    assert not gate.passed
    assert gate.reason == domain_bias.REASON_DETECTED
    assert "ema_long 3.2%" in gate.message
    assert "tolerance 1%" in gate.message
    # The operator's floor may be looser; a spec may only tighten it.
    loose = FLOOR.model_copy(update={"max_recursive_difference": Decimal("0.05")})
    assert _gate(_analysis(recursive=recursive), floor=loose).passed
    spec = _bot(maxRecursiveDifference=0.5)
    assert not _gate(_analysis(recursive=recursive), spec=spec).passed
    tighter = _bot(maxRecursiveDifference=0.0005)
    assert not _gate(_analysis(), spec=tighter).passed


@pytest.mark.parametrize(
    ("obj", "says"),
    [
        (None, "being created"),
        ({**_analysis(), "status": {"phase": "Running"}}, "Running"),
        ({**_analysis(), "status": {"phase": "Failed", "message": "boom"}}, "failed: boom"),
        ({**_analysis(), "spec": {"analyses": {"lookahead": True}}}, "both analyses"),
        (_analysis(parametersHash="q" * 64), "parameters"),
        ({**_analysis(), "spec": {**_analysis()["spec"], "timeframe": "1h"}}, "timeframe 1h"),
        (
            _analysis(lookahead={"clean": False, "signals": 3, "inconclusive": "too few"}),
            "inconclusive",
        ),
        (_analysis(bias=None), "no findings"),
    ],
)
def test_anything_short_of_findings_for_the_same_run_waits(
    obj: dict[str, Any] | None, says: str
) -> None:
    gate = _gate(obj)
    assert not gate.passed
    assert gate.reason == domain_bias.REASON_UNCHECKED
    assert says in gate.message


def test_launched_record_is_compared_when_present() -> None:
    launched = {
        "codeHash": "e" * 64,
        "className": "S",
        "image": "runner:1",
        "parametersHash": PARAMS,
        "timeframe": "5m",
    }
    gate = _gate(_analysis(launched=launched))
    assert not gate.passed
    assert "analysed code eeeeeeeeeeee" in gate.message
    assert _gate(_analysis(launched={**launched, "codeHash": CODE})).passed


def test_floor_without_bias_requirement_has_no_bias_gate() -> None:
    floor = FLOOR.model_copy(update={"require_bias_analysis": False})
    results = gates.evaluate_gates(
        _bot(),
        strategy_code_hash=CODE,
        backtest=None,
        dry_run=gates.DryRunEvidence(),
        now=NOW,
        floor=floor,
    )
    assert gates.GATE_BIAS not in [g.name for g in results]
    assert gates.GATE_BIAS in [
        g.name
        for g in gates.evaluate_gates(
            _bot(),
            strategy_code_hash=CODE,
            backtest=None,
            dry_run=gates.DryRunEvidence(),
            now=NOW,
            floor=FLOOR,
        )
    ]


def test_thresholds_show_the_tolerance_in_force() -> None:
    promotion = gates.effective_promotion(_bot().promotion, FLOOR)  # type: ignore[arg-type]
    assert gates.thresholds_status(promotion)["maxRecursiveDifference"] == "0.01000000"


def test_a_long_summary_keeps_the_worst_names_within_the_termination_message() -> None:
    import datetime as _dt

    from tradebot.api.backtest import Artifact, BacktestResults
    from tradebot.freqtrade.summary import TERMINATION_MESSAGE_LIMIT, RunSummary

    names = [f"indicator_name_{i:02d}" for i in range(30)]
    found = bias.findings(
        bias.parse_lookahead([_lookahead(hasBias=True, biasedIndicators=names)], "S", 10),
        bias.parse_recursive([_recursive({n: {"30": "0.5"} for n in names})], "S"),
    )
    files = [f"artifact-file-with-a-long-name-{i}.json" for i in range(9)]
    summary = RunSummary(
        ok=True,
        strategy="SomeStrategy",
        results=BacktestResults.model_validate(
            {k: "-12345.12345678" for k in ("profitTotal", "profitTotalAbs", "maxDrawdown")}
            | {k: "-12345.12345678" for k in ("sharpe", "sortino", "calmar", "profitFactor")}
            | {k: "-12345.12345678" for k in ("winRate", "marketChange", "finalBalance")}
        ),
        artifacts=[
            Artifact(
                name=n,
                sha256="a" * 64,
                size=1,
                path=f"s3://tradebot-artifacts-bucket/runs/{'r' * 60}/{n}",
            )
            for n in files
        ],
        bias=found,
        code_hash="c" * 64,
        config_hash="c" * 64,
        data_hash="d" * 64,
        started_at=_dt.datetime(2026, 1, 1, tzinfo=_dt.UTC),
    )
    assert len(summary.model_dump_json(by_alias=True)) > TERMINATION_MESSAGE_LIMIT
    message = summary.to_message()
    assert len(message.encode()) <= TERMINATION_MESSAGE_LIMIT
    kept = RunSummary.model_validate_json(message).bias
    assert kept is not None
    assert kept.lookahead is not None
    assert (kept.lookahead.biased_indicators or ["none"])[0] == "indicator_name_00"
    assert kept.summary == found.summary
