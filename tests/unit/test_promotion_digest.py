"""The promotion digest of a LiveBot: stable across processes, changed by every input that
decides what trades, and the judgement of which changes only make a bot safer; and how the
LiveBot round applies it to a live bot (the change waits, the approved pod runs on)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.unit.test_livebot_round import (
    CODE,
    CREDS,
    GOOD_BT,
    NOW,
    OTHER,
    STRATEGY,
    approved,
    complete,
    decide,
    held,
    observe,
    spec,
)

from tradebot.api.livebot import LiveBotSpec
from tradebot.domain.bot_credentials import LABEL_CREDENTIALS, secret_fingerprint
from tradebot.domain.gates import DryRunEvidence, DryRunPeriod
from tradebot.domain.livebot_round import ConfigSeen, Evidence, Hold, PodSeen, Run, StatusOnly
from tradebot.domain.promotion_digest import (
    SAFER_WHEN,
    StrategyFacts,
    canonical_json,
    check_approval,
    differences,
    only_safer,
    promotion_digest,
    promotion_inputs,
)

FACTS = StrategyFacts(
    code_hash="a" * 64,
    class_name="EmaRsi",
    timeframe="5m",
    parameters_hash="b" * 64,
    freqai_hash=None,
)
IMAGE = "freqtradeorg/freqtrade@sha256:" + "e" * 64
LIVE: dict[str, Any] = {
    "strategyRef": {"name": "ema-rsi"},
    "mode": "live",
    "exchange": {"name": "binance", "credentialsSecretRef": {"name": "live-keys"}},
    "pairs": ["ETH/USDT", "BTC/USDT"],
    "stakeAmount": "50",
    "maxOpenTrades": 3,
    "limits": {
        "maxStakePerTrade": "100",
        "maxOpenTrades": 3,
        "maxDrawdown": 0.2,
        "maxConsecutiveLosses": 5,
    },
    "supervision": {"deadline": "10m"},
    "promotion": {
        "backtestRef": {"name": "bt"},
        "approval": {
            "approvedBy": "alice",
            "approvedAt": "2026-11-01T10:00:00Z",
            "reference": "pr/7",
            "codeHash": "a" * 64,
        },
    },
}
FINGERPRINT = secret_fingerprint({"key": b"AKIA-FAKE", "secret": b"fake-secret"})


def inputs_of(raw: dict[str, Any], fingerprint: str | None = FINGERPRINT) -> dict[str, Any]:
    return promotion_inputs(
        LiveBotSpec.model_validate(raw), FACTS, image=IMAGE, credentials_fingerprint=fingerprint
    )


def changed(path: str, value: Any) -> dict[str, Any]:
    raw = json.loads(json.dumps(LIVE))
    *parents, last = path.split(".")
    node = raw
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return raw


# Computed once from the inputs above and written down: a digest that depended on the process
# (hash(), dict order, a float's repr) would not come out as this literal.
EXPECTED_DIGEST = "b691ed6631338aebae7cef42fd6ebb98a6e0d4e6317d9c3b3b8c5a8dede3c60d"
EXPECTED_FINGERPRINT = "e8672fdf9c8f094b46d9831c423447cd962e18c28eb92fa9e965822dca1e5284"


def test_the_digest_is_a_literal_for_a_fixed_input():
    assert promotion_digest(inputs_of(LIVE)) == EXPECTED_DIGEST
    assert FINGERPRINT == EXPECTED_FINGERPRINT


def test_the_digest_is_the_same_in_another_process_with_another_hash_seed():
    code = (
        "import json,sys;"
        "from tradebot.domain.promotion_digest import promotion_digest;"
        "print(promotion_digest(json.loads(sys.stdin.read())))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(inputs_of(LIVE), sort_keys=False),
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.strip()
    assert out == promotion_digest(inputs_of(LIVE))


def test_the_inputs_hold_no_secret_value_and_name_the_secret():
    text = canonical_json(inputs_of(LIVE))
    assert "AKIA-FAKE" not in text
    assert "fake-secret" not in text
    credentials = inputs_of(LIVE)["credentials"]
    assert credentials == {
        "secretName": "live-keys",
        "items": ["key", "secret", None],
        "fingerprint": FINGERPRINT,
    }


def test_the_fingerprint_binds_names_and_values_and_not_the_encoding():
    same = secret_fingerprint({"secret": "fake-secret", "key": "AKIA-FAKE"})
    assert same == FINGERPRINT
    assert secret_fingerprint({"key": b"AKIA-FAKE", "secret": b"other"}) != FINGERPRINT
    assert secret_fingerprint({"key": b"AKIA-FAKE", "secrets": b"fake-secret"}) != FINGERPRINT
    # Length prefixes: moving bytes between a name and its value is another Secret.
    assert secret_fingerprint({"ab": b"c"}) != secret_fingerprint({"a": b"bc"})


# Every spec change that decides what trades, with the input field it shows as.
NOT_SAFER = [
    ("image", None, "image"),
    ("mode", "testnet", "mode"),
    ("exchange.name", "bybit", "exchange"),
    ("exchange.credentialsSecretRef.name", "other-keys", "credentials.secretName"),
    ("exchange.credentialsSecretRef.apiKeyKey", "key2", "credentials.items"),
    ("pairs", ["BTC/USDT"], "pairs"),
    ("stakeCurrency", "USDC", "stakeCurrency"),
    ("dryRunWallet", "5000", "dryRunWallet"),
    ("stakeAmount", "60", "stakeAmount"),
    ("maxOpenTrades", 4, "maxOpenTrades"),
    ("limits.maxStakePerTrade", "200", "limits.maxStakePerTrade"),
    ("limits.maxOpenTrades", 5, "limits.maxOpenTrades"),
    ("limits.maxDrawdown", 0.3, "limits.maxDrawdown"),
    ("limits.maxConsecutiveLosses", None, "limits.maxConsecutiveLosses"),
    ("supervision.deadline", "30m", "supervision.deadline"),
]


@pytest.mark.parametrize(("path", "value", "field"), NOT_SAFER, ids=lambda v: str(v))
def test_each_spec_input_changes_the_digest_and_a_looser_one_needs_an_approval(
    path: str, value: Any, field: str
):
    raw = changed(path, value)
    if path == "image":
        current = promotion_inputs(
            LiveBotSpec.model_validate(raw),
            FACTS,
            image="evil/freqtrade:latest",
            credentials_fingerprint=FINGERPRINT,
        )
    elif path == "stakeCurrency":
        raw["pairs"] = ["BTC/USDC", "ETH/USDC"]
        current = inputs_of(raw)
    else:
        current = inputs_of(raw)
    assert promotion_digest(current) != promotion_digest(inputs_of(LIVE))
    found = differences(inputs_of(LIVE), current)
    assert field in [d.field for d in found]
    assert not only_safer(inputs_of(LIVE), current)


@pytest.mark.parametrize(
    "facts",
    [
        replace(FACTS, code_hash="c" * 64),
        replace(FACTS, class_name="Other"),
        replace(FACTS, timeframe="1h"),
        replace(FACTS, parameters_hash=None),
        replace(FACTS, freqai_hash="f" * 64),
    ],
)
def test_each_strategy_input_changes_the_digest(facts: StrategyFacts):
    spec_ = LiveBotSpec.model_validate(LIVE)
    current = promotion_inputs(spec_, facts, image=IMAGE, credentials_fingerprint=FINGERPRINT)
    assert promotion_digest(current) != promotion_digest(inputs_of(LIVE))
    assert not only_safer(inputs_of(LIVE), current)


def test_another_account_behind_the_same_secret_name_changes_the_digest():
    other = secret_fingerprint({"key": b"AKIA-OTHER", "secret": b"fake-secret"})
    current = inputs_of(LIVE, fingerprint=other)
    assert [(d.field, d.safer) for d in differences(inputs_of(LIVE), current)] == [
        ("credentials.fingerprint", False)
    ]


def test_strategy_facts_read_the_object_as_the_api_server_has_it():
    strategy = {
        "spec": {"className": "EmaRsi", "freqai": {"enabled": True, "identifier": "x"}},
        "status": {"codeHash": CODE, "parametersHash": OTHER, "interface": {"timeframe": "5m"}},
    }
    facts = StrategyFacts.of(strategy)
    assert (facts.code_hash, facts.class_name, facts.timeframe, facts.parameters_hash) == (
        CODE,
        "EmaRsi",
        "5m",
        OTHER,
    )
    reordered = StrategyFacts.of(
        {**strategy, "spec": {**strategy["spec"], "freqai": {"identifier": "x", "enabled": True}}}
    )
    assert facts.freqai_hash == reordered.freqai_hash
    assert facts.freqai_hash is not None
    override = StrategyFacts.of({**strategy, "spec": {**strategy["spec"], "timeframe": "1h"}})
    assert override.timeframe == "1h"


SAFER = [
    ("stakeAmount", "40"),
    ("maxOpenTrades", 2),
    ("limits.maxStakePerTrade", "90"),
    ("limits.maxOpenTrades", 1),
    ("limits.maxDrawdown", 0.1),
    ("limits.maxConsecutiveLosses", 2),
    ("supervision.deadline", "5m"),
]


@pytest.mark.parametrize(("path", "value"), SAFER, ids=lambda v: str(v))
def test_a_tighter_value_is_safer_and_still_a_new_digest(path: str, value: Any):
    current = inputs_of(changed(path, value))
    assert promotion_digest(current) != promotion_digest(inputs_of(LIVE))
    found = differences(inputs_of(LIVE), current)
    assert [(d.field, d.safer) for d in found] == [(path, True)]


def test_adding_a_missing_limit_is_safer_and_removing_one_is_not():
    without = changed("limits.maxConsecutiveLosses", None)
    assert only_safer(inputs_of(without), inputs_of(LIVE))
    assert not only_safer(inputs_of(LIVE), inputs_of(without))


def test_an_overflowing_deadline_compares_without_overflow():
    # Set in the inputs directly: the spec's own bound on the deadline is another check's.
    long = _set(inputs_of(LIVE), "supervision.deadline", "9" * 31 + "d")
    assert not only_safer(inputs_of(LIVE), long)
    assert only_safer(long, inputs_of(LIVE))


# Any leaf of the inputs, replaced by another JSON value: never equal-digest, and "safer" only
# for the listed fields, when the new value is a lower number.
LEAVES = sorted(
    {
        "version",
        "image",
        "codeHash",
        "className",
        "timeframe",
        "parametersHash",
        "freqaiHash",
        "mode",
        "exchange",
        "pairs",
        "stakeCurrency",
        "stakeAmount",
        "dryRunWallet",
        "maxOpenTrades",
        "limits.maxStakePerTrade",
        "limits.maxOpenTrades",
        "limits.maxDrawdown",
        "limits.maxConsecutiveLosses",
        "supervision.deadline",
        "credentials.secretName",
        "credentials.items",
        "credentials.fingerprint",
    }
)
JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.text(max_size=20),
    st.lists(st.text(max_size=5), max_size=3),
)


def _set(inputs: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(inputs))
    *parents, last = path.split(".")
    node = out
    for p in parents:
        node = node[p]
    node[last] = value
    return out


@given(field=st.sampled_from(LEAVES), value=JSON_VALUES)
def test_any_change_changes_the_digest_and_only_listed_fields_can_be_safer(field: str, value: Any):
    base = inputs_of(LIVE)
    current = _set(base, field, value)
    if current == base:
        return
    assert promotion_digest(current) != promotion_digest(base)
    found = differences(base, current)
    assert [d.field for d in found] == [field]
    if field not in SAFER_WHEN:
        assert not only_safer(base, current)


def test_the_leaves_listed_are_all_the_inputs():
    def leaves(v: Any, prefix: str = "") -> set[str]:
        if isinstance(v, dict):
            return {x for k in v for x in leaves(v[k], f"{prefix}{k}.")}
        return {prefix.removesuffix(".")}

    assert leaves(inputs_of(LIVE)) == set(LEAVES)


def test_check_approval():
    base = inputs_of(LIVE)
    digest = promotion_digest(base)
    assert check_approval(digest, base, None).exact
    missing = check_approval(None, base, None)
    assert not missing.runs
    assert digest in missing.message
    lower = inputs_of(changed("stakeAmount", "40"))
    safer = check_approval(digest, lower, base)
    assert safer.runs
    assert "stakeAmount" in safer.message
    looser = check_approval(digest, inputs_of(changed("pairs", ["BTC/USDT", "SOL/USDT"])), base)
    assert not looser.runs
    assert "pairs" in looser.message
    # Unknown approved inputs: nothing is judged safer.
    assert not check_approval(digest, lower, None).runs
    # Kept inputs that do not hash to the approved digest are not trusted: a status written
    # by someone else cannot make a looser change look safer.
    forged = _set(base, "stakeAmount", "1000")
    assert not check_approval(digest, inputs_of(changed("stakeAmount", "500")), forged).runs
    # Positive control: the same change against the real approved inputs is not safer either,
    # and a lower one against the real ones is.
    assert not check_approval(digest, inputs_of(changed("stakeAmount", "500")), base).runs
    assert check_approval(digest, inputs_of(changed("stakeAmount", "20")), base).runs


# -- in the LiveBot round --------------------------------------------------------------------

LIVE_CREDS = replace(CREDS, labels={LABEL_CREDENTIALS: "live"})


ENOUGH = Evidence(GOOD_BT, DryRunEvidence((DryRunPeriod(CODE, NOW - dt.timedelta(hours=30)),)))


def live_round(s: LiveBotSpec, **stages: Any) -> Any:
    return complete(observe(s), credentials=LIVE_CREDS, **{"evidence": ENOUGH, **stages})


def test_a_live_bot_on_its_approved_digest_runs_and_keeps_the_inputs():
    outcome = decide(live_round(spec("live")))
    assert isinstance(outcome.decision, Run)
    assert outcome.decision.stale is None
    kept = json.loads(outcome.status["approvedInputs"])
    assert promotion_digest(kept) == outcome.status["promotionDigest"]
    assert kept["stakeAmount"] == "50.00000000"


def _unapproved(s: LiveBotSpec, **change: Any) -> LiveBotSpec:
    """The spec changed, its approval left as it was."""
    raw = s.to_wire()
    raw.update(change)
    return LiveBotSpec.model_validate(raw)


def test_a_looser_change_waits_and_the_approved_pod_runs_on():
    first = decide(live_round(spec("live")))
    kept = {"approvedInputs": first.status["approvedInputs"], "phase": "Running"}
    wider = _unapproved(spec("live"), pairs=["BTC/USDT", "ETH/USDT"])
    # The new config differs: without the approval it would replace the pod.
    o = replace(live_round(wider, pod=PodSeen("bot-pod", "old-cfg", False, "Running")), status=kept)
    outcome = decide(o)
    assert isinstance(outcome.decision, Run)
    assert outcome.decision.stale is not None
    assert "pairs" in outcome.decision.stale
    assert outcome.status["promotionDigest"] != first.status["promotionDigest"]
    assert "approvedInputs" not in outcome.status
    assert "gates" not in outcome.status  # the change is not judged until approved
    # Starting: it waits too; with no pod, none is created.
    starting = decide(replace(o, pod=PodSeen("bot-pod", "old-cfg", False, "Pending"))).decision
    assert isinstance(starting, StatusOnly)
    assert starting.reason == "ApprovalStale"
    assert held(replace(o, pod=None)) == ("Blocked", "ApprovalStale")
    # Positive control: with the new digest approved (and a Backtest that tested both pairs,
    # which the backtest gate asks of any pair), the pod is replaced.
    both = replace(GOOD_BT, launched=GOOD_BT.launched.model_copy(update={"pairs": wider.pairs}))
    evidence = replace(ENOUGH, backtest=both)
    renewed = decide(replace(o, spec=approved(wider), evidence=evidence)).decision
    assert isinstance(renewed, Hold)
    assert renewed.reason == "Restarting"


def test_a_safer_change_applies_at_once():
    first = decide(live_round(spec("live")))
    kept = {"approvedInputs": first.status["approvedInputs"], "phase": "Running"}
    lower = _unapproved(spec("live"), stakeAmount="20", maxOpenTrades=1)
    o = replace(live_round(lower, pod=PodSeen("bot-pod", "old-cfg", False, "Running")), status=kept)
    d = decide(o).decision
    assert isinstance(d, Hold)
    assert d.reason == "Restarting"  # replaced with the lower stake, no approval needed
    # Positive control: without the kept inputs the same change waits.
    assert isinstance(w := decide(replace(o, status={})).decision, Run)
    assert w.stale is not None


def test_a_live_bot_without_an_approved_digest_gets_no_pod():
    s = spec("live")
    assert s.promotion is not None
    assert s.promotion.approval is not None
    bare = s.model_copy(
        update={
            "promotion": s.promotion.model_copy(
                update={"approval": s.promotion.approval.model_copy(update={"digest": None})}
            )
        }
    )
    o = live_round(bare, pod=None)
    d = decide(o).decision
    assert isinstance(d, Hold)
    assert d.reason == "ApprovalStale"
    assert decide(o).status["promotionDigest"] in d.message


def test_a_code_change_waits_for_an_approval_too():
    first = decide(live_round(spec("live")))
    kept = {"approvedInputs": first.status["approvedInputs"]}
    strategy = {"spec": {}, "status": {"phase": "Ready", "codeHash": OTHER}}
    o = replace(
        live_round(spec("live"), config=ConfigSeen(code_hash=OTHER, config_hash="cfg")),
        strategy=strategy,
        status=kept,
    )
    d = decide(o).decision
    assert isinstance(d, Run)
    assert d.stale is not None
    assert "codeHash" in d.stale


def test_live_needs_a_drawdown_limit_from_the_bot_or_a_breaker():
    raw = spec("live").to_wire()
    raw["limits"].pop("maxDrawdown")
    no_drawdown = approved(LiveBotSpec.model_validate(raw))
    assert held(live_round(no_drawdown)) == ("Blocked", "LimitsMissing")
    # Positive control: a breaker selecting the bot with maxDrawdown is enough.
    o = live_round(no_drawdown)
    cb = o.breakers[0]
    guarded = {**cb, "spec": {**cb["spec"], "limits": {"maxDrawdown": 0.3}}}
    assert isinstance(decide(replace(o, breakers=[guarded])).decision, Run)


def test_every_mode_shows_its_digest():
    for mode in ("dryRun", "testnet"):
        status = decide(complete(observe(spec(mode)))).status
        assert len(status["promotionDigest"]) == 64
        assert "approvedInputs" not in status
    assert STRATEGY["status"]["codeHash"] == CODE
