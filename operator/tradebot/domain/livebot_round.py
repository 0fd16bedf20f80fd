"""What one LiveBot round decides, from what it observed (pure: no I/O, no clock).

The controller (controllers/livebot.py) observes in stages, cheapest first, because most rounds
end early (a tripped or suspended fleet must cost the API server little): `decide` returns
`Observe(what)` while it needs an observation the controller has not made yet, and one final
decision once it can. The order of the checks is the order of precedence:

    invalid spec > open breaker > suspend > mode not allowed > image not allowed >
    strategy not ready > no sandbox > no breaker for live > live limits > credentials >
    approval digest > promotion gates > config > code vetted > account lease > pod (create,
    wait, replace, run)

A live bot whose approval is stale (spec.promotion.approval.digest is not the bot's digest,
and the change is not only safer) is not judged again: its change waits, and a pod that runs
keeps running, supervised, unchanged.

A bot is only ever let further down this list by positive evidence; anything unknown holds it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tradebot.api.livebot import LiveBotSpec, Mode
from tradebot.domain import account_lease, bias, evidence, gates, images, promotion_digest
from tradebot.domain.bias import BiasEvidence
from tradebot.domain.bot_credentials import (
    CredentialsSeen,
    api_key_fingerprint,
    credentials_problem,
)
from tradebot.domain.selectors import selects
from tradebot.domain.time import format_time, parse_time
from tradebot.settings import ModeFloor

StopAction = Literal["stop", "stopEntries", "suspend"]
Stage = Literal["credentials", "evidence", "config", "lease", "pod"]

# How long a fresh trip is left to the breaker before each LiveBot stops itself too.
BREAKER_GRACE = dt.timedelta(seconds=10)


@dataclass(frozen=True)
class OpenBreaker:
    name: str
    action: StopAction
    force_exit: bool
    # The breaker is stopping its bots right now (tripped moments ago, incident not yet
    # recorded): a second stop of every bot from here would only compete with it.
    stopping: bool = False


def tripped_message(breaker: str) -> str:
    return f"CircuitBreaker {breaker} is open: no pod until it is reset"


def tripped_by(
    name: str, labels: Mapping[str, str], breakers: Sequence[Mapping[str, Any]], now: dt.datetime
) -> OpenBreaker | None:
    """An Open CircuitBreaker that selects this bot, or that stopped it (its affectedBots):
    relabelling a tripped bot out of the selector does not free it. One with action stop
    comes before one with stopEntries (the stricter wins). HalfOpen lets bots run again on
    probation; the breaker opens again if a limit is crossed."""

    def stopping(status: Mapping[str, Any]) -> bool:
        at = parse_time(status.get("trippedAt"))
        if at is None:
            return False
        handled = str(status.get("incidentId") or "").endswith(evidence.stamp(at))
        return not handled and now - at < BREAKER_GRACE

    found = [
        OpenBreaker(
            str(cb["metadata"]["name"]),
            "stopEntries" if cb["spec"].get("action") == "stopEntries" else "stop",
            bool(cb["spec"].get("forceExit")),
            stopping(cb.get("status") or {}),
        )
        for cb in breakers
        if (cb.get("status") or {}).get("state") == "Open"
        and (
            selects(cb["spec"].get("selector") or {}, labels)
            or name in ((cb.get("status") or {}).get("affectedBots") or ())
        )
    ]
    found.sort(key=lambda b: (b.action != "stop", b.name))
    return found[0] if found else None


def guarding_breakers(
    labels: Mapping[str, str], breakers: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The CircuitBreakers whose selector takes this bot, whatever their state."""
    return [cb for cb in breakers if selects(cb["spec"].get("selector") or {}, labels)]


@dataclass(frozen=True)
class Evidence:
    """What the promotion gates judge, as the controller found it."""

    backtest: gates.BacktestEvidence | None
    dry_run: gates.DryRunEvidence
    # Why the records could not be read now (the dry-run history), if they could not.
    unreadable: str | None = None
    # The Hyperopt promotion.hyperoptRef names (None: not asked for, or not found).
    hyperopt: gates.HyperoptEvidence | None = None
    # The Backtest holding the bias analyses of the evidence (None: no evidence Backtest).
    bias: BiasEvidence | None = None
    # The evidence Backtest as read, from which a missing analysis Backtest is made.
    bias_source: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ConfigSeen:
    """The bot's config as the controller built it, or why it could not."""

    error: str | None = None
    # sha256 of the strategy code the pod would get, read at this moment.
    code_hash: str | None = None
    config_hash: str | None = None


@dataclass(frozen=True)
class LeaseSeen:
    existing: account_lease.Lease | None
    # Live pods of other bots on the same account (counted only when the Lease is not ours).
    other_live_pods: int = 0


@dataclass(frozen=True)
class PodSeen:
    name: str
    config_hash: str | None
    deleting: bool
    phase: str | None
    # What of the pod differs from the pod the operator builds now, besides the config hash
    # (domain/bot_drift.py): an image, command or env edited by hand.
    drift: tuple[str, ...] = ()


@dataclass(frozen=True)
class Observation:
    name: str
    namespace: str
    uid: str
    generation: int
    labels: Mapping[str, str]
    status: Mapping[str, Any]
    # The spec, or why it does not validate (and the reason to report for that).
    spec: LiveBotSpec | None
    spec_error: str | None
    breakers: Sequence[Mapping[str, Any]]
    # The Strategy as seen (None: not found).
    strategy: Mapping[str, Any] | None
    now: dt.datetime
    allowed_modes: tuple[str, ...]
    floors: Mapping[str, ModeFloor]
    lease_duration: dt.timedelta
    local_executor: bool
    # Exchanges whose ccxt has a sandbox: testnet bots elsewhere are refused.
    has_sandbox: Callable[[str], bool] | None = None
    spec_error_reason: str = "InvalidSpec"
    # The image the bot's pod runs (resolved) and the operator's allowlist (None: unchecked,
    # for callers that judge no image).
    image: str | None = None
    allowed_images: tuple[str, ...] | None = None
    # Made in stages, on demand (None: not observed yet).
    credentials: CredentialsSeen | None = None
    evidence: Evidence | None = None
    config: ConfigSeen | None = None
    lease: LeaseSeen | None = None
    pod: PodSeen | None = None
    # Which stages were observed (a stage may observe "nothing there", e.g. no pod).
    observed: frozenset[Stage] = frozenset()

    @property
    def strategy_code_hash(self) -> str | None:
        value = ((self.strategy or {}).get("status") or {}).get("codeHash")
        return str(value) if value else None

    @property
    def strategy_timeframe(self) -> str | None:
        """The timeframe the bot runs: the Strategy's override, else its code's."""
        strategy = self.strategy or {}
        value = (strategy.get("spec") or {}).get("timeframe") or (
            (strategy.get("status") or {}).get("interface") or {}
        ).get("timeframe")
        return str(value) if value else None

    @property
    def strategy_parameters_hash(self) -> str | None:
        value = ((self.strategy or {}).get("status") or {}).get("parametersHash")
        return str(value) if value else None


@dataclass(frozen=True)
class Observe:
    """Not decided yet: observe this stage and ask again."""

    stage: Stage


@dataclass(frozen=True)
class StatusOnly:
    """Write status, touch nothing else (a breaker is stopping the bot; a pod terminates or
    starts)."""

    phase: str
    reason: str
    message: str
    ready: bool = False


@dataclass(frozen=True)
class Hold:
    """No pod: stop whatever of the bot runs, then write the held phase."""

    phase: str
    reason: str
    message: str
    warning: bool = True
    action: StopAction = "stop"
    force_exit: bool = False


@dataclass(frozen=True)
class LeaseWrite:
    """The account Lease write a bot that may run makes first (none when it is fresh)."""

    action: Literal["create", "renew", "takeover"]
    transitions: int


@dataclass(frozen=True)
class CreatePod:
    lease_name: str


@dataclass(frozen=True)
class Run:
    """The pod runs its current config: monitor it. With `stale`, it runs the approved config
    while a change waits for an approval: monitor and supervise it, change nothing."""

    stale: str | None = None


Decision = Observe | StatusOnly | Hold | CreatePod | Run


@dataclass(frozen=True)
class Outcome:
    """The decision and the status fields it comes with (gates, thresholds, the kept gate
    decision)."""

    decision: Decision
    status: dict[str, Any] = field(default_factory=dict)
    # Written before the decision is carried out.
    lease: LeaseWrite | None = None
    # A Backtest to create (if absent) before the decision is carried out: the bias analysis
    # the promotion waits for.
    create_backtest: Mapping[str, Any] | None = None


def lease_key(o: Observation) -> str:
    assert o.spec is not None
    ref = o.spec.exchange.credentials_secret_ref
    fingerprint = None
    if ref is not None and o.spec.mode != "dryRun":
        seen = o.credentials
        # The key's fingerprint is read with the Secret; a Secret whose key item could not be
        # read never gets this far (credentials_problem), its name is the fallback.
        fingerprint = (
            seen.api_key_fingerprint
            if seen is not None and seen.api_key_fingerprint
            else api_key_fingerprint(f"secret/{ref.name}")
        )
    return account_lease.account_key(o.namespace, o.spec.exchange.name, fingerprint, o.name)


def _kept_decision(o: Observation, mode: Mode) -> bool:
    """A passed promotion decision for this very spec and code: a running bot is not judged
    again (so a records outage or an operator restart cannot stop it)."""
    kept = o.status.get("gateDecision") or {}
    return (
        kept.get("passed") is True
        and kept.get("mode") == mode
        and kept.get("generation") == o.generation
        and kept.get("codeHash") == o.strategy_code_hash
        and _same_parameters(kept, o.strategy_parameters_hash)
        # A new image (the spec's, or the operator's default) is judged again before its pod
        # replaces the running one; a decision from before images were kept has no such key.
        and ("image" not in kept or kept["image"] == (o.image or ""))
    )


def _same_parameters(kept: Mapping[str, Any], current: str | None) -> bool:
    """The set judged is the set that runs: a new parameter set is judged again. A decision
    kept by an operator from before parameter sets has no such key: it stands, so upgrading
    the operator does not judge (and possibly stop) every running bot again."""
    if "parametersHash" not in kept:
        return True
    return (kept["parametersHash"] or None) == current


@dataclass(frozen=True)
class _Judged:
    # What the gates stop now (None: they pass, or passed for this spec and code before).
    stopped: Outcome | None
    status: dict[str, Any]
    # Why no new pod may start although a running one may go on: the records are down.
    waiting: str | None = None


def _gates(o: Observation, spec: LiveBotSpec) -> _Judged:
    if spec.mode == "dryRun":
        return _Judged(None, dict.fromkeys(("gates", "thresholds", "gateDecision")))
    if _kept_decision(o, spec.mode):
        return _Judged(None, {})
    if "evidence" not in o.observed:
        return _Judged(Outcome(Observe("evidence")), {})
    seen = o.evidence or Evidence(None, gates.DryRunEvidence())
    floor = o.floors.get(spec.mode)
    results = gates.evaluate_gates(
        spec,
        strategy_code_hash=o.strategy_code_hash,
        backtest=seen.backtest,
        dry_run=seen.dry_run,
        now=o.now,
        floor=floor,
        hyperopt=seen.hyperopt,
        strategy_parameters_hash=o.strategy_parameters_hash,
        bias=seen.bias,
        strategy_timeframe=o.strategy_timeframe,
        bot=gates.bot_run(spec, o.strategy, o.strategy_parameters_hash, o.allowed_images),
    )
    if seen.unreadable is not None:
        # Fail shut: evidence that cannot be read is no evidence.
        results = [
            gates.GateResult(g.name, False, seen.unreadable)
            if g.name == gates.GATE_DRY_RUN and not g.passed
            else g
            for g in results
        ]
    status: dict[str, Any] = {
        "gates": [g.to_status() for g in results] or None,
        "thresholds": (
            gates.thresholds_status(gates.effective_promotion(spec.promotion, floor))
            if spec.promotion is not None
            else None
        ),
    }
    if gates.all_passed(results):
        status["gateDecision"] = {
            "mode": spec.mode,
            "generation": o.generation,
            "codeHash": o.strategy_code_hash,
            # "" rather than None for no set: a merge patch would drop a None, and a missing
            # key means a decision from before parameter sets (_same_parameters).
            "parametersHash": o.strategy_parameters_hash or "",
            "image": o.image or "",
            "passed": True,
            "decidedAt": format_time(o.now),
        }
        return _Judged(None, status)
    failed = "; ".join(g.message for g in results if not g.passed)
    if seen.unreadable is not None and all(
        g.passed for g in results if g.name != gates.GATE_DRY_RUN
    ):
        # The records are down, not the evidence: a pod that runs keeps running and is
        # monitored (stopping every promoted bot is the outage the outbox exists to
        # prevent); no new one is created until the evidence can be read.
        return _Judged(None, status, f"mode {spec.mode} waits for its evidence: {failed}")
    return _Judged(
        Outcome(
            Hold("Blocked", _hold_reason(results), f"mode {spec.mode} blocked: {failed}"),
            status,
            create_backtest=_bias_to_create(seen),
        ),
        status,
    )


def _drawdown_limited(spec: LiveBotSpec, breakers: Sequence[Mapping[str, Any]]) -> bool:
    if spec.limits is not None and spec.limits.max_drawdown is not None:
        return True
    return any(
        ((cb.get("spec") or {}).get("limits") or {}).get("maxDrawdown") is not None
        for cb in breakers
    )


def _kept_inputs(text: object) -> dict[str, Any] | None:
    if not isinstance(text, str):
        return None
    try:
        found = json.loads(text)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def _approval(o: Observation, spec: LiveBotSpec) -> tuple[dict[str, Any], str | None]:
    """The bot's promotion digest (status), and for mode live why its change waits (None: it
    runs what was approved, or a safer change of it)."""
    inputs = promotion_digest.promotion_inputs(
        spec,
        promotion_digest.StrategyFacts.of(o.strategy),
        image=o.image or "",
        credentials_fingerprint=o.credentials.fingerprint if o.credentials else None,
    )
    status: dict[str, Any] = {
        "promotionDigest": promotion_digest.promotion_digest(inputs),
        "promotionInputs": promotion_digest.canonical_json(inputs),
    }
    if spec.mode != "live":
        return status, None
    approval = spec.promotion.approval if spec.promotion is not None else None
    check = promotion_digest.check_approval(
        approval.digest if approval is not None else None,
        inputs,
        _kept_inputs(o.status.get("approvedInputs")),
    )
    if check.exact:
        status["approvedInputs"] = promotion_digest.canonical_json(inputs)
    return status, None if check.runs else check.message


def _hold_reason(results: Sequence[gates.GateResult]) -> str:
    """Bias found names itself whatever else fails; waiting for the analysis does only when
    nothing else holds the bot (else the other evidence is what a person must fix first)."""
    failed = [g for g in results if not g.passed]
    if any(g.reason == bias.REASON_DETECTED for g in failed):
        return bias.REASON_DETECTED
    if failed and all(g.reason == bias.REASON_UNCHECKED for g in failed):
        return bias.REASON_UNCHECKED
    return "GatesNotPassed"


def _bias_to_create(seen: Evidence) -> Mapping[str, Any] | None:
    """The analysis Backtest, when the promotion needs one that does not exist."""
    if seen.bias is None or seen.bias.found or seen.bias_source is None:
        return None
    return bias.analysis_manifest(seen.bias_source)


def decide(o: Observation) -> Outcome:
    """One round's decision (see the module docstring for the order)."""
    if o.spec is None:
        if o.spec_error_reason == "NoSandbox":
            # The CRD refuses this at apply where it knows the exchange; an older CRD or a
            # newer ccxt may not.
            return Outcome(Hold("Blocked", "NoSandbox", str(o.spec_error)))
        return Outcome(Hold("Failed", o.spec_error_reason, f"invalid spec: {o.spec_error}"))
    spec = o.spec
    breaker = tripped_by(o.name, o.labels, o.breakers, o.now)
    if breaker is not None:
        if breaker.stopping:
            # The breaker is stopping this bot now; no pod is created while it is Open.
            return Outcome(StatusOnly("Tripped", "BreakerOpen", tripped_message(breaker.name)))
        return Outcome(
            Hold(
                "Tripped",
                "BreakerOpen",
                tripped_message(breaker.name),
                action=breaker.action,
                force_exit=breaker.force_exit,
            ),
            # A trip voids the kept promotion: evidence before it no longer counts.
            {"gateDecision": None},
        )
    if spec.suspend:
        return Outcome(
            Hold("Suspended", "Suspended", "spec.suspend is true", warning=False, action="suspend")
        )
    if spec.mode not in o.allowed_modes:
        return Outcome(
            Hold(
                "Blocked",
                "ModeNotAllowed",
                f"mode {spec.mode} is not allowed by this operator (allowed: "
                f"{', '.join(o.allowed_modes) or 'none'}; the chart's "
                "allowedModes)",
            )
        )
    if o.image is not None and o.allowed_images is not None:
        # Before the gates: evidence never makes a foreign image trusted with the keys.
        refused = images.image_problem(o.image, o.allowed_images, spec.mode)
        if refused is not None:
            return Outcome(Hold("Blocked", images.REASON, refused))
    strategy_status = (o.strategy or {}).get("status") or {}
    if o.strategy is None or strategy_status.get("phase") != "Ready":
        state = "missing" if o.strategy is None else strategy_status.get("phase") or "not ready"
        return Outcome(
            Hold("Pending", "StrategyNotReady", f"Strategy {spec.strategy_ref.name} is {state}")
        )
    if (
        spec.mode == "testnet"
        and o.has_sandbox is not None
        and not o.has_sandbox(spec.exchange.name)
    ):
        return Outcome(
            Hold(
                "Blocked",
                "NoSandbox",
                f"exchange {spec.exchange.name} has no sandbox (testnet) in ccxt: "
                "testnet bots need one; use dryRun, or another exchange",
            )
        )
    if spec.mode == "live" and not guarding_breakers(o.labels, o.breakers):
        return Outcome(
            Hold(
                "Blocked",
                "NoCircuitBreaker",
                "mode live requires a CircuitBreaker whose selector takes this bot",
            )
        )
    if spec.mode == "live" and not _drawdown_limited(spec, guarding_breakers(o.labels, o.breakers)):
        return Outcome(
            Hold(
                "Blocked",
                "LimitsMissing",
                "mode live requires a drawdown limit: limits.maxDrawdown on the bot, or a "
                "CircuitBreaker selecting it with limits.maxDrawdown",
            )
        )
    if spec.mode != "dryRun":
        if "credentials" not in o.observed:
            return Outcome(Observe("credentials"))
        problem = credentials_problem(spec, o.credentials)
        if problem is not None:
            return Outcome(Hold("Blocked", problem[0], problem[1]))
    approval_status, stale = _approval(o, spec)
    # A change that waits for its approval is not in force: the gates judge it once approved.
    judged = _gates(o, spec) if stale is None else _Judged(None, {})
    if judged.stopped is not None:
        return Outcome(
            judged.stopped.decision,
            {**judged.stopped.status, **approval_status},
            judged.stopped.lease,
            create_backtest=judged.stopped.create_backtest,
        )
    status = {**judged.status, **approval_status}
    if "config" not in o.observed:
        return Outcome(Observe("config"), status)
    config = o.config or ConfigSeen(error="no config")
    if config.error is not None:
        return Outcome(Hold("Blocked", "InvalidConfig", config.error), status)
    if config.code_hash != o.strategy_code_hash:
        # What was introspected (and judged) is what runs, never code edited since.
        return Outcome(
            Hold(
                "Blocked",
                "CodeNotVetted",
                f"the code of Strategy {spec.strategy_ref.name} is "
                f"{(config.code_hash or 'none')[:12]} now but "
                f"{(o.strategy_code_hash or 'none')[:12]} was introspected: "
                "waiting for the Strategy to be introspected again",
            ),
            status,
        )
    if "lease" not in o.observed:
        return Outcome(Observe("lease"), status)
    seen = o.lease or LeaseSeen(None)
    key = lease_key(o)
    lease = account_lease.decide_lease(
        o.uid,
        key,
        [seen.existing] if seen.existing is not None else [],
        o.now,
        o.lease_duration,
        live_pods_of_other_holders=seen.other_live_pods,
    )
    if not lease.may_run:
        return Outcome(Hold("Blocked", "AccountInUse", lease.message), status)
    write: LeaseWrite | None = None
    if lease.action in ("create", "takeover"):
        write = LeaseWrite(lease.action, lease.transitions)
    elif (
        seen.existing is None
        or seen.existing.renew_time is None
        or o.now - gates.utc(seen.existing.renew_time) >= o.lease_duration / 3
    ):
        # Ours and fresh needs no write: renewing every round would be a write per bot
        # every two seconds.
        write = LeaseWrite("renew", lease.transitions)
    if "pod" not in o.observed:
        return Outcome(Observe("pod"), status)
    return Outcome(
        _pod_decision(o, spec, config, lease.lease_name, judged.waiting, stale), status, write
    )


def _pod_decision(
    o: Observation,
    spec: LiveBotSpec,
    config: ConfigSeen,
    lease_name: str,
    waiting: str | None,
    stale: str | None = None,
) -> Decision:
    pod = o.pod
    if stale is not None:
        # What runs is what was approved: kept and supervised, never replaced for the change.
        if pod is None or pod.deleting:
            return Hold("Blocked", "ApprovalStale", stale)
        if pod.phase == "Running" and not (o.local_executor and spec.mode != "dryRun"):
            return Run(stale)
        return StatusOnly("Pending", "ApprovalStale", stale)
    if pod is not None and not pod.deleting and pod.drift:
        # Not what was approved: it goes even while the records are down (no new pod then).
        return Hold(
            "Pending",
            "DriftCorrected",
            f"pod {pod.name} differs from what the operator built "
            f"({', '.join(pod.drift)}); replacing it",
        )
    if waiting is not None and (
        pod is None or pod.deleting or pod.config_hash != config.config_hash
    ):
        return StatusOnly(
            "Running" if pod is not None and pod.phase == "Running" else "Pending",
            "EvidenceUnavailable",
            waiting,
        )
    if pod is None:
        return CreatePod(lease_name)
    if pod.deleting:
        return StatusOnly("Pending", "Restarting", f"waiting for pod {pod.name} to terminate")
    if pod.config_hash != config.config_hash:
        # The config or code changed: the old pod goes first; the next round starts the new
        # one, so two pods never trade the account at once.
        return Hold(
            "Pending",
            "Restarting",
            "config changed (or the pod's config hash was edited); replacing the pod",
            warning=False,
        )
    if pod.phase == "Running":
        if o.local_executor and spec.mode != "dryRun":
            return Hold(
                "Blocked",
                "LocalExecutorDryRunOnly",
                "the local executor runs dry-run bots only (it never holds exchange keys)",
            )
        return Run()
    return StatusOnly("Pending", "PodStarting", f"pod {pod.name} is {pod.phase}")
