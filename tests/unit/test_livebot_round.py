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
from tradebot.domain.bias import BiasEvidence
from tradebot.domain.bot_credentials import (
    LABEL_CREDENTIALS,
    CredentialsSeen,
    api_key_fingerprint,
)
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
from tradebot.domain.promotion_digest import StrategyFacts, promotion_digest, promotion_inputs
from tradebot.settings import PromotionFloors

NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
CODE = "c" * 64
OTHER = "d" * 64
UID = "u-1"
DURATION = dt.timedelta(seconds=30)
SHIPPED_FLOORS = PromotionFloors()
# The bias gate has tests of its own (below and test_bias.py): these judge the other evidence.
FLOORS = PromotionFloors(
    testnet=SHIPPED_FLOORS.testnet.model_copy(update={"require_bias_analysis": False}),
    live=SHIPPED_FLOORS.live.model_copy(update={"require_bias_analysis": False}),
)


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
        raw["stakeAmount"] = "50"
        raw["limits"] = {"maxOpenTrades": 3, "maxStakePerTrade": "100", "maxDrawdown": 0.2}
    raw.update(extra)
    return approved(LiveBotSpec.model_validate(raw))


def approved(s: LiveBotSpec, strategy: dict[str, Any] | None = None) -> LiveBotSpec:
    """A live spec whose approval names its own digest, as the round computes it here (no
    image, no Secret fingerprint); other specs unchanged."""
    if s.mode != "live" or s.promotion is None or s.promotion.approval is None:
        return s
    inputs = promotion_inputs(
        s, StrategyFacts.of(strategy or STRATEGY), image="", credentials_fingerprint=None
    )
    approval = s.promotion.approval.model_copy(update={"digest": promotion_digest(inputs)})
    return s.model_copy(update={"promotion": s.promotion.model_copy(update={"approval": approval})})


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
    lax = approved(
        spec(
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
    status = decide(complete(observe())).status
    assert {k: status[k] for k in ("gates", "thresholds", "gateDecision")} == {
        "gates": None,
        "thresholds": None,
        "gateDecision": None,
    }
    # Every mode shows its digest; only live keeps approved inputs.
    assert set(status) == {
        "gates",
        "thresholds",
        "gateDecision",
        "promotionDigest",
        "promotionInputs",
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


def test_a_drifted_pod_is_replaced_even_while_the_records_are_down():
    drifted = PodSeen("p", "cfg", False, "Running", ("image of container freqtrade",))
    assert held(complete(observe(), pod=drifted)) == ("Pending", "DriftCorrected")
    d = decide(complete(observe(), pod=drifted)).decision
    assert isinstance(d, Hold)
    assert "image of container freqtrade" in d.message
    s = spec("testnet", promotion={"backtestRef": {"name": "bt"}, "minDryRunHours": 1})
    down = Evidence(GOOD_BT, DryRunEvidence(), unreadable="dry-run history cannot be read now")
    running = {"phase": "Running", "podName": "p"}
    assert held(complete(observe(s, status=running), evidence=down, pod=drifted)) == (
        "Pending",
        "DriftCorrected",
    )
    # The control: the same pod without drift keeps running through the outage.
    same = replace(drifted, drift=())
    assert isinstance(
        decide(complete(observe(s, status=running), evidence=down, pod=same)).decision, Run
    )


def test_the_account_is_the_exchange_family_and_the_api_key():
    def key(exchange: str, secret: str, api_key: str) -> str:
        s = spec("testnet", exchange={"name": exchange, "credentialsSecretRef": {"name": secret}})
        creds = replace(CREDS, name=secret, api_key_fingerprint=api_key_fingerprint(api_key))
        return lease_key(complete(observe(s), credentials=creds))

    one = key("binance", "keys", "AKIA-ONE")
    # Two Secrets holding one key, or binance's futures market with the same key: one account.
    assert key("binance", "other-keys", "AKIA-ONE") == one
    assert key("binanceusdm", "keys", "AKIA-ONE") == one
    assert key("binance", "keys", "AKIA-ONE\n") == one
    # The controls: another key, or another exchange with the same key, is another account.
    assert key("binance", "keys", "AKIA-TWO") != one
    assert key("bybit", "keys", "AKIA-ONE") != one
    # The key itself is in no lease name or key.
    assert "AKIA" not in one
    assert "AKIA" not in account_lease.lease_name(one)


# -- the bias gate in the round ---------------------------------------------------------------


def _bias_round(found: BiasEvidence | None, source: dict[str, Any] | None = None) -> Any:
    o = observe(
        spec("testnet"),
        floors={"testnet": SHIPPED_FLOORS.testnet, "live": SHIPPED_FLOORS.live},
    )
    return decide(
        complete(o, evidence=Evidence(GOOD_BT, DryRunEvidence(), bias=found, bias_source=source))
    )


EVIDENCE_BT = {
    "metadata": {"name": "bt", "namespace": "ns", "uid": "bt-uid"},
    "spec": {"strategyRef": {"name": "s"}, "pairs": ["BTC/USDT"]},
}


def _analysis(**lookahead: Any) -> BiasEvidence:
    return BiasEvidence.from_object(
        "bt-bias",
        {
            "spec": {"analyses": {"lookahead": True, "recursive": True}},
            "status": {
                "phase": "Succeeded",
                "codeHash": CODE,
                "bias": {
                    "summary": "x",
                    "lookahead": {"clean": True, "signals": 20, **lookahead},
                    "recursive": {"maxDifference": "0"},
                },
            },
        },
    )


def test_missing_analysis_holds_as_unchecked_and_asks_for_it_once() -> None:
    outcome = _bias_round(BiasEvidence("bt-bias", False), EVIDENCE_BT)
    assert isinstance(outcome.decision, Hold)
    assert outcome.decision.reason == "BiasUnchecked"
    assert outcome.create_backtest is not None
    assert outcome.create_backtest["metadata"]["name"] == "bt-bias"
    # Found (whatever its phase): nothing to create.
    running = BiasEvidence("bt-bias", True, "Running", lookahead_asked=True, recursive_asked=True)
    again = _bias_round(running, EVIDENCE_BT)
    assert isinstance(again.decision, Hold)
    assert again.decision.reason == "BiasUnchecked"
    assert again.create_backtest is None


def test_detected_bias_names_itself_and_clean_findings_let_the_bot_on() -> None:
    biased = _bias_round(
        _analysis(clean=False, hasBias=True, biasedEntrySignals=20, biasedIndicators=["fut"]),
        EVIDENCE_BT,
    )
    assert isinstance(biased.decision, Hold)
    assert biased.decision.reason == "BiasDetected"
    assert "fut" in biased.decision.message
    clean = _bias_round(_analysis(), EVIDENCE_BT)
    assert isinstance(clean.decision, Run), clean.decision
    assert {"name": "bias", "passed": True}.items() <= clean.status["gates"][-1].items()


def test_other_failing_evidence_comes_before_waiting_for_the_analysis() -> None:
    o = observe(
        spec("testnet"), floors={"testnet": SHIPPED_FLOORS.testnet, "live": SHIPPED_FLOORS.live}
    )
    bad_bt = replace(GOOD_BT, phase="Running")
    outcome = decide(
        complete(
            o,
            evidence=Evidence(
                bad_bt,
                DryRunEvidence(),
                bias=BiasEvidence("bt-bias", False),
                bias_source=EVIDENCE_BT,
            ),
        )
    )
    assert isinstance(outcome.decision, Hold)
    assert outcome.decision.reason == "GatesNotPassed"
    assert outcome.create_backtest is not None  # queued meanwhile, so it is ready sooner
