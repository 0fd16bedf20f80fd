"""The LiveBot round's decision, table-driven: every hold reason, the order of precedence, the
stages it asks to observe, and what a kept promotion decision spares a running bot."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from tradebot.api.backtest import BacktestResults, LaunchRecord
from tradebot.api.livebot import LiveBotSpec
from tradebot.domain import account_lease
from tradebot.domain.bot_credentials import LABEL_CREDENTIALS, CredentialsSeen
from tradebot.domain.gates import BacktestEvidence, DryRunEvidence, DryRunPeriod
from tradebot.domain.livebot_round import (
    ConfigSeen,
    CreatePod,
    Evidence,
    Hold,
    LeaseSeen,
    Observation,
    Observe,
    PodSeen,
    Run,
    StatusOnly,
    decide,
    lease_key,
)
from tradebot.settings import PromotionFloors

NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
CODE = "c" * 64
OTHER = "d" * 64
UID = "u-1"
DURATION = dt.timedelta(seconds=30)
FLOORS = PromotionFloors()


def spec(mode: str = "dryRun", **extra: Any) -> LiveBotSpec:
    raw: dict[str, Any] = {"strategyRef": {"name": "s"}, "pairs": ["BTC/USDT"], "mode": mode}
    if mode != "dryRun":
        raw["exchange"] = {"name": "binance", "credentialsSecretRef": {"name": "keys"}}
        raw["promotion"] = {"backtestRef": {"name": "bt"}, "minDryRunHours": 0, "minTrades": 5}
        raw["limits"] = {"maxOpenTrades": 3}
    if mode == "live":
        raw["promotion"]["approval"] = {
            "approvedBy": "a",
            "approvedAt": "2026-10-01T00:00:00Z",
            "reference": "pr/1",
            "codeHash": CODE,
        }
    raw.update(extra)
    return LiveBotSpec.model_validate(raw)


def breaker(
    name: str = "cb", state: str = "Closed", selector: dict[str, Any] | None = None, **status: Any
) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"fleet": "main"}} if selector is None else selector,
            "action": "stop",
        },
        "status": {"state": state, **status},
    }


STRATEGY = {"spec": {}, "status": {"phase": "Ready", "codeHash": CODE}}
# What the operator launched for Backtest bt: the bot's code and pairs.
LAUNCHED = LaunchRecord.model_validate(
    {"codeHash": CODE, "className": "S", "image": "runner:1", "pairs": ["BTC/USDT"]}
)
GOOD_BT = BacktestEvidence(
    "bt",
    "Succeeded",
    CODE,
    BacktestResults.model_validate({"profitTotal": "0.1", "maxDrawdown": "0.05", "trades": 40}),
    "s",
    LAUNCHED,
)
CREDS = CredentialsSeen(
    "keys", True, {LABEL_CREDENTIALS: "testnet"}, False, frozenset({"key", "secret"})
)


def observe(s: LiveBotSpec | None = None, **changes: Any) -> Observation:
    base = Observation(
        name="bot",
        namespace="ns",
        uid=UID,
        generation=1,
        labels={"fleet": "main"},
        status={},
        spec=s or spec(),
        spec_error=None,
        breakers=[breaker()],
        strategy=STRATEGY,
        now=NOW,
        allowed_modes=("dryRun", "testnet", "live"),
        floors={"testnet": FLOORS.testnet, "live": FLOORS.live},
        lease_duration=DURATION,
        local_executor=False,
    )
    return replace(base, **changes)


def complete(o: Observation, **stages: Any) -> Observation:
    """Every stage observed, with healthy defaults unless given."""
    defaults: dict[str, Any] = {
        "credentials": replace(CREDS, labels={LABEL_CREDENTIALS: o.spec.mode if o.spec else ""}),
        "evidence": Evidence(GOOD_BT, DryRunEvidence()),
        "config": ConfigSeen(code_hash=CODE, config_hash="cfg"),
        "lease": LeaseSeen(None),
        "pod": PodSeen("bot-pod", "cfg", False, "Running"),
    }
    defaults.update(stages)
    return replace(o, **defaults, observed=frozenset(defaults))


def held(o: Observation) -> tuple[str, str]:
    d = decide(o).decision
    assert isinstance(d, Hold), d
    return d.phase, d.reason


LIVE_WITH_BREAKER = observe(spec("live"))


@pytest.mark.parametrize(
    ("o", "expected"),
    [
        (observe(None, spec=None, spec_error="bad pairs"), ("Failed", "InvalidSpec")),
        (complete(observe(breakers=[breaker(state="Open")])), ("Tripped", "BreakerOpen")),
        # Relabelled out of the selector of the breaker that stopped it: still held.
        (
            complete(
                observe(
                    labels={"fleet": "other"},
                    breakers=[breaker(state="Open", affectedBots=["bot"])],
                )
            ),
            ("Tripped", "BreakerOpen"),
        ),
        (complete(observe(spec(suspend=True))), ("Suspended", "Suspended")),
        (complete(observe(spec("live"), allowed_modes=("dryRun",))), ("Blocked", "ModeNotAllowed")),
        (complete(observe(strategy=None)), ("Pending", "StrategyNotReady")),
        (
            complete(observe(strategy={"status": {"phase": "Invalid"}})),
            ("Pending", "StrategyNotReady"),
        ),
        # The API refuses testnet on kraken; an operator whose list is newer than the CRD reports
        # it from the model's refusal, and one whose list lacks an exchange from its own check.
        (
            observe(
                None,
                spec=None,
                spec_error="exchange kraken has no sandbox",
                spec_error_reason="NoSandbox",
            ),
            ("Blocked", "NoSandbox"),
        ),
        (
            complete(observe(spec("testnet"), has_sandbox=lambda name: name != "binance")),
            ("Blocked", "NoSandbox"),
        ),
        (complete(observe(spec("live"), breakers=[])), ("Blocked", "NoCircuitBreaker")),
        (complete(observe(spec("testnet")), credentials=None), ("Blocked", "CredentialsMissing")),
        (
            complete(
                observe(spec("testnet")),
                credentials=CredentialsSeen("keys", False, {}, False, frozenset()),
            ),
            ("Blocked", "CredentialsMissing"),
        ),
        (
            complete(
                observe(spec("testnet")), credentials=replace(CREDS, items=frozenset({"key"}))
            ),
            ("Blocked", "CredentialsMissing"),
        ),
        (
            complete(observe(spec("testnet")), credentials=replace(CREDS, labels={})),
            ("Blocked", "CredentialsNotAllowed"),
        ),
        # A testnet Secret is not a live one.
        (
            complete(
                observe(spec("live")),
                credentials=replace(CREDS, labels={LABEL_CREDENTIALS: "testnet"}),
            ),
            ("Blocked", "CredentialsNotAllowed"),
        ),
        (
            complete(observe(spec("testnet")), credentials=replace(CREDS, operator_managed=True)),
            ("Blocked", "CredentialsNotAllowed"),
        ),
        (
            complete(observe(spec("testnet")), evidence=Evidence(None, DryRunEvidence())),
            ("Blocked", "GatesNotPassed"),
        ),
        (
            complete(observe(), config=ConfigSeen(error="stakeAmount exceeds limits")),
            ("Blocked", "InvalidConfig"),
        ),
        (
            complete(observe(), config=ConfigSeen(code_hash=OTHER, config_hash="cfg")),
            ("Blocked", "CodeNotVetted"),
        ),
        (
            complete(observe(), lease=LeaseSeen(None, other_live_pods=1)),
            ("Blocked", "AccountInUse"),
        ),
        (
            complete(observe(), pod=PodSeen("bot-pod", "old", False, "Running")),
            ("Pending", "Restarting"),
        ),
        (
            complete(observe(spec("testnet"), local_executor=True)),
            ("Blocked", "LocalExecutorDryRunOnly"),
        ),
    ],
    ids=lambda v: v[1] if isinstance(v, tuple) else "",
)
def test_every_hold_reason(o: Observation, expected: tuple[str, str]):
    assert held(o) == expected


def test_precedence_follows_the_documented_order():
    # Everything is wrong at once: the breaker wins, then suspend, then the mode, ...
    o = complete(
        observe(
            spec("live", suspend=True),
            allowed_modes=("dryRun",),
            strategy=None,
            breakers=[breaker(state="Open")],
        ),
        credentials=None,
        evidence=Evidence(None, DryRunEvidence()),
    )
    order = []
    for fix in (
        lambda o: replace(o, breakers=[breaker()]),
        lambda o: replace(o, spec=spec("live")),
        lambda o: replace(o, allowed_modes=("live",)),
        lambda o: replace(o, strategy=STRATEGY),
        lambda o: replace(o, credentials=replace(CREDS, labels={LABEL_CREDENTIALS: "live"})),
        lambda o: replace(
            o,
            evidence=Evidence(
                GOOD_BT, DryRunEvidence((DryRunPeriod(CODE, NOW - dt.timedelta(hours=30)),))
            ),
        ),
    ):
        order.append(held(o)[1])
        o = fix(o)
    assert order == [
        "BreakerOpen",
        "Suspended",
        "ModeNotAllowed",
        "StrategyNotReady",
        "CredentialsMissing",
        "GatesNotPassed",
    ]
    assert isinstance(decide(o).decision, Run)


def test_stages_are_asked_for_cheapest_first_and_only_when_needed():
    o = observe(spec("testnet"))
    asked = []
    while isinstance(d := decide(o).decision, Observe):
        asked.append(d.stage)
        o = complete(o, **{k: getattr(complete(o), k) for k in [*asked]})
        o = replace(o, observed=frozenset(asked))
    assert asked == ["credentials", "evidence", "config", "lease", "pod"]
    # A dry run bot reads no credentials and no evidence.
    o, asked = observe(), []
    while isinstance(d := decide(o).decision, Observe):
        asked.append(d.stage)
        o = replace(complete(o), observed=frozenset(asked))
    assert asked == ["config", "lease", "pod"]


def test_a_breaker_stopping_its_bots_is_left_to_it():
    o = observe(breakers=[breaker(state="Open", trippedAt="2026-11-01T11:59:58Z")])
    d = decide(o).decision
    assert isinstance(d, StatusOnly)
    assert (d.phase, d.reason) == ("Tripped", "BreakerOpen")
    # Handled (incident recorded) or older than the grace: the bot stops itself too.
    late = observe(breakers=[breaker(state="Open", trippedAt="2026-11-01T11:50:00Z")])
    assert held(late) == ("Tripped", "BreakerOpen")


def test_the_stricter_of_two_open_breakers_wins():
    gentle = breaker("a", state="Open")
    gentle["spec"]["action"] = "stopEntries"
    strict = breaker("b", state="Open")
    strict["spec"]["forceExit"] = True
    d = decide(observe(breakers=[gentle, strict])).decision
    assert isinstance(d, Hold)
    assert (d.action, d.force_exit) == ("stop", True)


def test_a_trip_voids_the_kept_promotion():
    o = observe(spec("testnet"), breakers=[breaker(state="Open")])
    assert decide(o).status == {"gateDecision": None}


def test_pod_stages():
    o = complete(observe(), pod=None)
    assert isinstance(decide(o).decision, CreatePod)
    deleting = decide(complete(observe(), pod=PodSeen("p", "cfg", True, "Running"))).decision
    assert isinstance(deleting, StatusOnly)
    assert deleting.reason == "Restarting"
    starting = decide(complete(observe(), pod=PodSeen("p", "cfg", False, "Pending"))).decision
    assert isinstance(starting, StatusOnly)
    assert (starting.phase, starting.reason) == ("Pending", "PodStarting")
    assert isinstance(decide(complete(observe())).decision, Run)


def test_passed_gates_are_kept_and_spare_the_next_rounds_the_evidence():
    o = complete(observe(spec("testnet")))
    outcome = decide(o)
    assert isinstance(outcome.decision, Run)
    kept = outcome.status["gateDecision"]
    assert kept["passed"] is True
    assert (kept["mode"], kept["generation"], kept["codeHash"]) == ("testnet", 1, CODE)
    # Next round: the records are down, yet the running bot is not judged again.
    later = complete(
        observe(spec("testnet"), status={"gateDecision": kept}),
        evidence=Evidence(None, DryRunEvidence(), unreadable="db down"),
    )
    assert isinstance(decide(later).decision, Run)
    first = replace(later, observed=frozenset({"credentials"}))
    assert decide(first).decision == Observe("config")  # no "evidence" asked for
    # A new generation or new code is judged again.
    for changed in (
        replace(later, generation=2),
        replace(
            later,
            strategy={"status": {"phase": "Ready", "codeHash": OTHER}},
            config=ConfigSeen(code_hash=OTHER, config_hash="cfg"),
        ),
    ):
        assert held(changed)[1] == "GatesNotPassed"


def test_a_records_outage_keeps_a_running_bot_and_starts_no_new_one():
    s = spec("testnet", promotion={"backtestRef": {"name": "bt"}, "minDryRunHours": 1})
    down = Evidence(GOOD_BT, DryRunEvidence(), unreadable="dry-run history cannot be read now")
    running = decide(
        complete(observe(s, status={"phase": "Running", "podName": "p"}), evidence=down)
    )
    assert isinstance(running.decision, Run)
    new = decide(complete(observe(s), evidence=down, pod=None)).decision
    assert isinstance(new, StatusOnly)
    assert (new.phase, new.reason) == ("Pending", "EvidenceUnavailable")
    # Real evidence that fails still blocks, down or not.
    bad = replace(down, backtest=None)
    assert held(complete(observe(s), evidence=bad)) == ("Blocked", "GatesNotPassed")


def test_floors_tighten_a_lax_spec_and_show_in_status():
    lax = spec(
        "live",
        promotion={
            "backtestRef": {"name": "bt"},
            "minTrades": 0,
            "maxDrawdown": 1,
            "minDryRunHours": 0,
            "approval": {
                "approvedBy": "a",
                "approvedAt": "2026-10-01T00:00:00Z",
                "reference": "pr/1",
                "codeHash": CODE,
            },
        },
    )
    few = BacktestEvidence(
        "bt",
        "Succeeded",
        CODE,
        BacktestResults.model_validate({"profitTotal": "0.1", "maxDrawdown": "0.5", "trades": 3}),
        "s",
        LAUNCHED,
    )
    outcome = decide(
        complete(
            observe(lax),
            evidence=Evidence(few, DryRunEvidence()),
            credentials=replace(CREDS, labels={LABEL_CREDENTIALS: "live"}),
        )
    )
    assert isinstance(outcome.decision, Hold)
    assert "minTrades 20" in outcome.decision.message
    assert "maxDrawdown 0.25" in outcome.decision.message
    assert "need 24 h" in outcome.decision.message
    assert outcome.status["thresholds"] == {
        "minProfit": "0.00000000",
        "maxDrawdown": "0.25000000",
        "minTrades": 20,
        "minDryRunHours": 24,
    }
    enough = DryRunEvidence((DryRunPeriod(CODE, NOW - dt.timedelta(hours=30)),))
    good = BacktestEvidence(
        "bt",
        "Succeeded",
        CODE,
        BacktestResults.model_validate({"profitTotal": "0.1", "maxDrawdown": "0.1", "trades": 30}),
        "s",
        LAUNCHED,
    )
    ok = decide(
        complete(
            observe(lax),
            evidence=Evidence(good, enough),
            credentials=replace(CREDS, labels={LABEL_CREDENTIALS: "live"}),
        )
    )
    assert isinstance(ok.decision, Run)


def test_an_approval_of_other_code_does_not_count():
    s = spec("live")
    assert s.promotion is not None
    assert s.promotion.approval is not None
    other = s.model_copy(
        update={
            "promotion": s.promotion.model_copy(
                update={"approval": s.promotion.approval.model_copy(update={"code_hash": OTHER})}
            )
        }
    )
    enough = DryRunEvidence((DryRunPeriod(CODE, NOW - dt.timedelta(hours=30)),))
    creds = replace(CREDS, labels={LABEL_CREDENTIALS: "live"})
    o = complete(
        observe(other),
        credentials=creds,
        evidence=Evidence(
            BacktestEvidence(
                "bt",
                "Succeeded",
                CODE,
                BacktestResults.model_validate(
                    {"profitTotal": "0.1", "maxDrawdown": "0.1", "trades": 30}
                ),
                "s",
                LAUNCHED,
            ),
            enough,
        ),
    )
    outcome = decide(o)
    assert isinstance(outcome.decision, Hold)
    assert "approve the new code" in outcome.decision.message
    assert isinstance(decide(replace(o, spec=s)).decision, Run)


def test_lease_writes():
    o = complete(observe())
    assert decide(o).lease is not None
    assert decide(o).lease.action == "create"  # type: ignore[union-attr]
    key = lease_key(o)
    ours = account_lease.Lease(account_lease.lease_name(key), UID, NOW - dt.timedelta(seconds=1))
    assert decide(complete(observe(), lease=LeaseSeen(ours))).lease is None  # fresh: no write
    stale = replace(ours, renew_time=NOW - DURATION / 2)
    renew = decide(complete(observe(), lease=LeaseSeen(stale))).lease
    assert renew is not None
    assert renew.action == "renew"
    theirs = replace(ours, holder_identity="other", renew_time=NOW - DURATION * 2)
    take = decide(complete(observe(), lease=LeaseSeen(theirs))).lease
    assert take is not None
    assert take.action == "takeover"


def test_dry_run_clears_promotion_status():
    assert decide(complete(observe())).status == {
        "gates": None,
        "thresholds": None,
        "gateDecision": None,
    }


def test_money_thresholds_are_exact():
    s = spec(
        "testnet",
        promotion={"backtestRef": {"name": "bt"}, "minProfit": "0.10000001", "minDryRunHours": 0},
    )
    just_under = BacktestEvidence(
        "bt",
        "Succeeded",
        CODE,
        BacktestResults.model_validate(
            {"profitTotal": str(Decimal("0.10000000")), "maxDrawdown": "0.1", "trades": 40}
        ),
        "s",
        LAUNCHED,
    )
    assert (
        held(complete(observe(s), evidence=Evidence(just_under, DryRunEvidence())))[1]
        == "GatesNotPassed"
    )
