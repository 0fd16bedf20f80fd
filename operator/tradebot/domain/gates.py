"""Promotion gates: may a LiveBot trade on testnet or live? Pure: the controller gathers the
evidence (the referenced Backtest, the recorded dry-run history, the strategy's code hash) and
writes the results to status.gates.

Evidence counts only for the code it was gathered with: a changed code hash makes the backtest
and the dry-run history of the old code worthless, so the bot starts collecting again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tradebot.api.backtest import BacktestResults, BacktestStatus, LaunchRecord
from tradebot.api.livebot import Approval, LiveBotSpec, Mode, Promotion
from tradebot.domain import bias as bias_evidence
from tradebot.domain.bias import BiasEvidence
from tradebot.domain.images import image_allowed
from tradebot.domain.time import utc as utc  # still named here for older callers
from tradebot.settings import ModeFloor

GATE_BACKTEST = "backtest"
GATE_DRY_RUN = "dryRunHistory"
GATE_APPROVAL = "approval"
GATE_HYPEROPT = "outOfSample"
GATE_BIAS = "bias"
_MODE_ORDER: dict[str, int] = {"dryRun": 0, "testnet": 1, "live": 2}


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    message: str
    # The Hold reason a failing gate asks for (None: the general GatesNotPassed).
    reason: str | None = None

    def to_status(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "message": self.message}


@dataclass(frozen=True)
class BacktestEvidence:
    """The referenced Backtest as the controller found it."""

    name: str
    phase: str | None
    code_hash: str | None
    results: BacktestResults | None
    # The Backtest's spec.strategyRef, and what the operator launched for it
    # (status.launched): the evidence the gate compares the bot with.
    strategy: str | None = None
    launched: LaunchRecord | None = None

    @classmethod
    def from_status(cls, name: str, status: BacktestStatus | None) -> BacktestEvidence:
        if status is None:
            return cls(name, None, None, None)
        return cls(name, status.phase, status.code_hash, status.results, None, status.launched)

    @classmethod
    def from_object(cls, name: str, obj: Mapping[str, Any] | None) -> BacktestEvidence | None:
        """From the Backtest as read (None: not found)."""
        if obj is None:
            return None
        found = cls.from_status(name, BacktestStatus.model_validate(obj.get("status") or {}))
        strategy = ((obj.get("spec") or {}).get("strategyRef") or {}).get("name")
        return dataclasses.replace(found, strategy=strategy)


@dataclass(frozen=True)
class BotRun:
    """What the bot would run, to compare with what a Backtest launched: None for what the
    caller does not know (that comparison is then left out)."""

    strategy: str
    class_name: str | None
    timeframe: str | None
    parameters_hash: str | None
    pairs: tuple[str, ...]
    # The operator's image allowlist: runs of other images are no evidence.
    allowed_images: tuple[str, ...] | None = None


def bot_run(
    spec: LiveBotSpec,
    strategy: Mapping[str, Any] | None,
    parameters_hash: str | None,
    allowed_images: tuple[str, ...] | None,
) -> BotRun:
    """The bot's side of the comparison, from its spec and its Strategy object as read: the
    timeframe is the Strategy's override, else the one its code declares."""
    strategy_spec = (strategy or {}).get("spec") or {}
    interface = ((strategy or {}).get("status") or {}).get("interface") or {}
    return BotRun(
        spec.strategy_ref.name,
        strategy_spec.get("className"),
        strategy_spec.get("timeframe") or interface.get("timeframe"),
        parameters_hash,
        tuple(spec.pairs),
        allowed_images,
    )


@dataclass(frozen=True)
class HyperoptEvidence:
    """The Hyperopt promotion.hyperoptRef names, as the controller found it."""

    name: str
    phase: str | None
    strategy: str | None
    out_of_sample_profit: Decimal | None
    parameters_hash: str | None

    @classmethod
    def from_object(cls, name: str, obj: Mapping[str, Any] | None) -> HyperoptEvidence | None:
        """From the Hyperopt as read (None: not found). Figures it cannot read count as
        missing: evidence that cannot be read is no evidence."""
        if obj is None:
            return None
        status = obj.get("status") or {}
        oos = ((status.get("validation") or {}).get("outOfSample") or {}).get("profitTotal")
        try:
            profit = None if oos is None else Decimal(str(oos))
        except ArithmeticError:
            profit = None
        best = status.get("best") or {}
        return cls(
            name,
            status.get("phase"),
            ((obj.get("spec") or {}).get("strategyRef") or {}).get("name"),
            profit if profit is not None and profit.is_finite() else None,
            best.get("parametersHash"),
        )


@dataclass(frozen=True)
class DryRunPeriod:
    """One stretch of dry-run trading; ended None while it still runs."""

    code_hash: str
    started: dt.datetime
    ended: dt.datetime | None = None


@dataclass(frozen=True)
class DryRunEvidence:
    periods: tuple[DryRunPeriod, ...] = ()
    # When a circuit breaker tripped this bot.
    trips: tuple[dt.datetime, ...] = ()


def _short(code_hash: str | None) -> str:
    return "none" if code_hash is None else code_hash[:12]


def _num(value: Decimal) -> str:
    # Exact, without trailing zeros or an exponent: 0.15000000 -> 0.15, 10 -> 10.
    return format(value.normalize(), "f")


def _launch_mismatches(launched: LaunchRecord, code_hash: str, bot: BotRun) -> list[str]:
    """The fields in which what the Backtest launched is not what the bot runs."""
    found: list[str] = []
    if launched.code_hash != code_hash:
        found.append(
            f"codeHash: it tested code {_short(launched.code_hash)}, the strategy now has "
            f"{_short(code_hash)}"
        )
    if bot.class_name is not None and launched.class_name != bot.class_name:
        found.append(f"className: it tested {launched.class_name}, the bot runs {bot.class_name}")
    if bot.timeframe is not None and launched.timeframe != bot.timeframe:
        found.append(
            f"timeframe: it tested {launched.timeframe or 'none'}, the bot runs {bot.timeframe}"
        )
    if (launched.parameters_hash or None) != (bot.parameters_hash or None):
        found.append(
            f"parametersHash: it tested parameters {_short(launched.parameters_hash)}, the bot "
            f"runs {_short(bot.parameters_hash)}"
        )
    untested = [p for p in bot.pairs if p not in set(launched.pairs)]
    if untested:
        found.append(f"pairs: {', '.join(untested)} not among the tested pairs")
    if bot.allowed_images is not None:
        problem = image_allowed(launched.image, bot.allowed_images)
        if problem is not None:
            found.append(f"image: {problem}; runs of other images are no evidence")
    return found


def _backtest_gate(
    promotion: Promotion, code_hash: str | None, backtest: BacktestEvidence | None, bot: BotRun
) -> GateResult:
    ref = promotion.backtest_ref.name

    def fail(message: str) -> GateResult:
        return GateResult(GATE_BACKTEST, False, message)

    if backtest is None:
        return fail(f"Backtest {ref} not found")
    if backtest.phase != "Succeeded":
        return fail(f"Backtest {ref} is {backtest.phase or 'not started'}, not Succeeded")
    if code_hash is None:
        return fail("the strategy has no codeHash yet")
    launched = backtest.launched
    if launched is None:
        # Only what the operator launched is evidence, never what a container reported.
        return fail(f"Backtest {ref} has no launch record; re-run the Backtest")
    if backtest.strategy is not None and backtest.strategy != bot.strategy:
        return fail(
            f"Backtest {ref} tested Strategy {backtest.strategy}, the bot runs {bot.strategy}"
        )
    mismatches = _launch_mismatches(launched, code_hash, bot)
    if mismatches:
        return fail(
            f"Backtest {ref} did not test what the bot runs: "
            + "; ".join(mismatches)
            + ": run a new backtest"
        )
    results = backtest.results
    if results is None:
        return fail(f"Backtest {ref} has no results")
    problems: list[str] = []
    if results.profit_total is None:
        problems.append("profitTotal missing")
    elif results.profit_total < promotion.min_profit:
        problems.append(
            f"profitTotal {_num(results.profit_total)} < minProfit {_num(promotion.min_profit)}"
        )
    if results.max_drawdown is None:
        problems.append("maxDrawdown missing")
    elif results.max_drawdown > promotion.max_drawdown:
        problems.append(
            f"maxDrawdown {_num(results.max_drawdown)} > maxDrawdown {_num(promotion.max_drawdown)}"
        )
    if results.trades is None:
        problems.append("trades missing")
    elif results.trades < promotion.min_trades:
        problems.append(f"trades {results.trades} < minTrades {promotion.min_trades}")
    if problems:
        return fail(f"Backtest {ref}: " + "; ".join(problems))
    return GateResult(
        GATE_BACKTEST,
        True,
        f"Backtest {ref}: profitTotal {_num(results.profit_total or Decimal(0))}, "
        f"maxDrawdown {_num(results.max_drawdown or Decimal(0))}, "
        f"trades {results.trades}",
    )


def _hyperopt_gate(
    promotion: Promotion,
    floor: ModeFloor | None,
    strategy: str,
    parameters_hash: str | None,
    hyperopt: HyperoptEvidence | None,
) -> GateResult | None:
    """Out-of-sample evidence for the set the bot runs: None when neither the spec nor the
    floor asks for it."""
    ref = promotion.hyperopt_ref
    if ref is None:
        if floor is not None and floor.require_hyperopt:
            return GateResult(
                GATE_HYPEROPT,
                False,
                "this mode requires out-of-sample "
                "evidence (the operator's floor): set promotion.hyperoptRef",
            )
        return None

    def fail(message: str) -> GateResult:
        return GateResult(GATE_HYPEROPT, False, f"Hyperopt {ref.name}: {message}")

    if hyperopt is None:
        return fail("not found")
    if hyperopt.phase != "Succeeded":
        return fail(f"is {hyperopt.phase or 'not started'}, not Succeeded")
    if hyperopt.strategy != strategy:
        return fail(f"searched Strategy {hyperopt.strategy}, the bot runs {strategy}")
    problems: list[str] = []
    minimum = ref.min_out_of_sample_profit
    profit = hyperopt.out_of_sample_profit
    if profit is None:
        problems.append("no out-of-sample profitTotal (did it have spec.validation?)")
    elif profit < minimum:
        problems.append(
            f"out-of-sample profitTotal {_num(profit)} < minOutOfSampleProfit "
            f"{_num(minimum)}: the set does not hold on data it was not fitted to"
        )
    if hyperopt.parameters_hash is None:
        problems.append("no best parameter set")
    elif hyperopt.parameters_hash != parameters_hash:
        problems.append(
            f"it validated parameters {_short(hyperopt.parameters_hash)}, the "
            f"Strategy runs {_short(parameters_hash)}: set the Strategy's "
            f"spec.parametersFrom.hyperoptRef to {ref.name}"
        )
    if problems:
        return fail("; ".join(problems))
    return GateResult(
        GATE_HYPEROPT,
        True,
        f"Hyperopt {ref.name}: out-of-sample profitTotal "
        f"{_num(profit or Decimal(0))} >= {_num(minimum)}, the Strategy runs "
        f"its parameters {_short(parameters_hash)}",
    )


DEFAULT_MAX_RECURSIVE_DIFFERENCE = Decimal("0.01")


def max_recursive_difference(promotion: Promotion, floor: ModeFloor | None) -> Decimal:
    """The tolerance in force: the floor's, tightened by the spec (never loosened)."""
    limits = [
        d
        for d in (
            promotion.max_recursive_difference,
            floor.max_recursive_difference if floor is not None else None,
        )
        if d is not None
    ]
    return min(limits) if limits else DEFAULT_MAX_RECURSIVE_DIFFERENCE


def _percent(ratio: Decimal) -> str:
    return format((ratio * 100).quantize(Decimal("0.001")).normalize(), "f") + "%"


def _bias_gate(
    tolerance: Decimal,
    code_hash: str | None,
    parameters_hash: str | None,
    timeframe: str | None,
    found: BiasEvidence | None,
) -> GateResult:
    """A clean lookahead analysis and a recursive analysis within `tolerance`, both of the
    code, parameters and timeframe the bot runs. Missing, running or mismatched analyses hold
    the bot as BiasUnchecked; bias found holds it as BiasDetected, naming what is biased."""

    def unchecked(message: str) -> GateResult:
        return GateResult(GATE_BIAS, False, message, bias_evidence.REASON_UNCHECKED)

    if found is None:
        return unchecked("no bias analysis: the evidence Backtest is not found")
    name = found.name
    if not found.found:
        return unchecked(f"bias analysis Backtest {name} is being created")
    if found.unreadable is not None:
        return unchecked(f"bias analysis Backtest {name}: {found.unreadable}")
    if found.phase == "Failed":
        return unchecked(f"bias analysis Backtest {name} failed: {found.message or 'no reason'}")
    if found.phase != "Succeeded":
        return unchecked(
            f"bias analysis Backtest {name} is {found.phase or 'not started'}: waiting for it"
        )
    if not (found.lookahead_asked and found.recursive_asked):
        return unchecked(f"Backtest {name} did not run both analyses (spec.analyses)")
    if code_hash is None or found.code_hash != code_hash:
        return unchecked(
            f"bias analysis Backtest {name} analysed code {_short(found.code_hash)}, the bot "
            f"runs {_short(code_hash)}"
        )
    if (found.parameters_hash or None) != (parameters_hash or None):
        return unchecked(
            f"bias analysis Backtest {name} analysed parameters {_short(found.parameters_hash)}"
            f", the bot runs {_short(parameters_hash)}"
        )
    if found.timeframe is not None and timeframe is not None and found.timeframe != timeframe:
        return unchecked(
            f"bias analysis Backtest {name} ran timeframe {found.timeframe}, the bot "
            f"runs {timeframe}"
        )
    findings = found.findings
    if findings is None or findings.lookahead is None or findings.recursive is None:
        return unchecked(f"bias analysis Backtest {name} has no findings in status.bias")
    lookahead, recursive = findings.lookahead, findings.recursive
    if lookahead.inconclusive:
        return unchecked(f"lookahead analysis ({name}) inconclusive: {lookahead.inconclusive}")
    problems: list[str] = []
    if not lookahead.clean:
        named = ", ".join(lookahead.biased_indicators or []) or "none named"
        problems.append(
            f"lookahead bias ({name}): biased indicators {named}; "
            f"{lookahead.biased_entry_signals or 0} entry and "
            f"{lookahead.biased_exit_signals or 0} exit signals of {lookahead.signals} biased"
        )
    if recursive.max_difference > tolerance:
        over = [
            f"{i.name} {_percent(i.difference)}"
            for i in recursive.indicators or ()
            if i.difference > tolerance
        ]
        startups = ", ".join(str(c) for c in recursive.startup_candles or ()) or "Freqtrade's"
        problems.append(
            f"recursive bias ({name}): {', '.join(over) or _percent(recursive.max_difference)}"
            f" with {startups} startup candles, tolerance {_percent(tolerance)}"
        )
    if problems:
        return GateResult(GATE_BIAS, False, "; ".join(problems), bias_evidence.REASON_DETECTED)
    return GateResult(
        GATE_BIAS,
        True,
        f"bias analysis Backtest {name}: lookahead clean over {lookahead.signals} signals, "
        f"recursive difference {_percent(recursive.max_difference)} <= {_percent(tolerance)}",
    )


def dry_run_time(evidence: DryRunEvidence, code_hash: str, now: dt.datetime) -> dt.timedelta:
    """Dry-run time of `code_hash` since the last trip (up to now). Overlapping periods are
    counted once: two records of the same hour are not two hours of evidence."""
    now = utc(now)
    past_trips = [utc(t) for t in evidence.trips if utc(t) <= now]
    since = max(past_trips) if past_trips else None
    spans: list[tuple[dt.datetime, dt.datetime]] = []
    for period in evidence.periods:
        if period.code_hash != code_hash:
            continue
        start = utc(period.started)
        end = min(utc(period.ended) if period.ended is not None else now, now)
        if since is not None:
            start = max(start, since)
        if end > start:
            spans.append((start, end))
    total = dt.timedelta(0)
    current: tuple[dt.datetime, dt.datetime] | None = None
    for start, end in sorted(spans):
        if current is None or start > current[1]:
            if current is not None:
                total += current[1] - current[0]
            current = (start, end)
        else:
            current = (current[0], max(current[1], end))
    if current is not None:
        total += current[1] - current[0]
    return total


def _hours(delta: dt.timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f}"


def _dry_run_gate(
    promotion: Promotion, code_hash: str | None, evidence: DryRunEvidence, now: dt.datetime
) -> GateResult:
    need = dt.timedelta(hours=promotion.min_dry_run_hours)
    if code_hash is None:
        return GateResult(GATE_DRY_RUN, need == dt.timedelta(0), "the strategy has no codeHash yet")
    have = dry_run_time(evidence, code_hash, now)
    text = (
        f"{_hours(have)} h of dry run of code {_short(code_hash)} without a breaker trip, "
        f"need {promotion.min_dry_run_hours} h"
    )
    return GateResult(GATE_DRY_RUN, have >= need, text)


def _approval_gate(
    mode: Mode, approval: Approval | None, code_hash: str | None, now: dt.datetime
) -> GateResult:
    if mode == "testnet":
        return GateResult(GATE_APPROVAL, True, "not required for testnet")
    if approval is None:
        return GateResult(GATE_APPROVAL, False, "mode live requires promotion.approval")
    if utc(approval.approved_at) > utc(now):
        return GateResult(
            GATE_APPROVAL,
            False,
            f"approvedAt {utc(approval.approved_at).isoformat()} is in the future",
        )
    if approval.code_hash is None:
        return GateResult(
            GATE_APPROVAL,
            False,
            "the approval names no code: set "
            "promotion.approval.codeHash to the Strategy's status.codeHash",
        )
    if approval.code_hash != code_hash:
        # An approval is for the code that was reviewed: changed code needs a new one.
        return GateResult(
            GATE_APPROVAL,
            False,
            f"the approval is for code {_short(approval.code_hash)}, the strategy "
            f"now has {_short(code_hash)}: approve the new code",
        )
    return GateResult(
        GATE_APPROVAL, True, f"approved by {approval.approved_by} ({approval.reference})"
    )


def effective_promotion(promotion: Promotion, floor: ModeFloor | None) -> Promotion:
    """The spec's thresholds tightened to the operator's floor for the mode: a spec can ask
    for more evidence than the floor, never for less."""
    if floor is None:
        return promotion
    hyperopt = promotion.hyperopt_ref
    if hyperopt is not None:
        hyperopt = hyperopt.model_copy(
            update={
                "min_out_of_sample_profit": max(
                    hyperopt.min_out_of_sample_profit, floor.min_out_of_sample_profit
                )
            }
        )
    return promotion.model_copy(
        update={
            "min_profit": max(promotion.min_profit, floor.min_profit),
            "max_drawdown": min(promotion.max_drawdown, floor.max_drawdown),
            "min_trades": max(promotion.min_trades, floor.min_trades),
            "min_dry_run_hours": max(promotion.min_dry_run_hours, floor.min_dry_run_hours),
            "hyperopt_ref": hyperopt,
            "max_recursive_difference": (
                max_recursive_difference(promotion, floor) if floor.require_bias_analysis else None
            ),
        }
    )


def thresholds_status(promotion: Promotion) -> dict[str, Any]:
    thresholds = {
        "minProfit": _fixed(promotion.min_profit),
        "maxDrawdown": _fixed(promotion.max_drawdown),
        "minTrades": promotion.min_trades,
        "minDryRunHours": promotion.min_dry_run_hours,
    }
    if promotion.hyperopt_ref is not None:
        thresholds["minOutOfSampleProfit"] = _fixed(promotion.hyperopt_ref.min_out_of_sample_profit)
    if promotion.max_recursive_difference is not None:
        thresholds["maxRecursiveDifference"] = _fixed(promotion.max_recursive_difference)
    return thresholds


def _fixed(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.00000001")), "f")


def evaluate_gates(
    spec: LiveBotSpec,
    *,
    strategy_code_hash: str | None,
    backtest: BacktestEvidence | None,
    dry_run: DryRunEvidence,
    now: dt.datetime,
    floor: ModeFloor | None = None,
    hyperopt: HyperoptEvidence | None = None,
    strategy_parameters_hash: str | None = None,
    bias: BiasEvidence | None = None,
    strategy_timeframe: str | None = None,
    bot: BotRun | None = None,
) -> list[GateResult]:
    """The gates of the spec's mode, with the spec's thresholds tightened to `floor`; dry run
    needs none (it trades no money). The out-of-sample gate is among them when the spec
    (promotion.hyperoptRef) or the floor asks for it."""
    if spec.mode == "dryRun":
        return []
    promotion = spec.promotion
    if promotion is None:
        # The API refuses this; a status written from a hand-built object must still fail shut.
        missing = f"mode {spec.mode} requires spec.promotion"
        return [
            GateResult(name, False, missing)
            for name in (GATE_BACKTEST, GATE_DRY_RUN, GATE_APPROVAL)
        ]
    promotion = effective_promotion(promotion, floor)
    if bot is None:
        bot = bot_run(spec, None, strategy_parameters_hash, None)
    results = [
        _backtest_gate(promotion, strategy_code_hash, backtest, bot),
        _dry_run_gate(promotion, strategy_code_hash, dry_run, now),
        _approval_gate(spec.mode, promotion.approval, strategy_code_hash, now),
    ]
    out_of_sample = _hyperopt_gate(
        promotion, floor, spec.strategy_ref.name, strategy_parameters_hash, hyperopt
    )
    if out_of_sample is not None:
        results.append(out_of_sample)
    if floor is not None and floor.require_bias_analysis:
        tolerance = max_recursive_difference(promotion, floor)
        results.append(
            _bias_gate(
                tolerance, strategy_code_hash, strategy_parameters_hash, strategy_timeframe, bias
            )
        )
    return results


def all_passed(results: Sequence[GateResult]) -> bool:
    return all(r.passed for r in results)


def promotion_patch(spec: LiveBotSpec, to_mode: Mode, approval: Approval | None) -> dict[str, Any]:
    """The merge patch of the LiveBot manifest that a person reviews and commits to move the
    bot to `to_mode`. It does not bypass anything: the gates are still evaluated on apply."""
    if to_mode == spec.mode:
        raise ValueError(f"the bot is already in mode {to_mode}")
    if _MODE_ORDER[to_mode] < _MODE_ORDER[spec.mode]:
        # Stepping down never needs evidence; the approval stays in git history.
        return {"spec": {"mode": to_mode}}
    if spec.promotion is None:
        raise ValueError(
            f"mode {to_mode} needs spec.promotion (backtestRef and gate limits) "
            "in the manifest first"
        )
    if to_mode == "live" and approval is None:
        raise ValueError("mode live needs an approval (approvedBy, approvedAt, reference)")
    if to_mode == "live" and approval is not None and approval.code_hash is None:
        raise ValueError("mode live needs an approval of the Strategy's code (codeHash)")
    if to_mode == "live" and spec.limits is None:
        raise ValueError("mode live needs spec.limits in the manifest first")
    patch: dict[str, Any] = {"mode": to_mode}
    if approval is not None:
        patch["promotion"] = {"approval": approval.to_wire()}
    return {"spec": patch}
