"""One pod per exchange account: keys, Lease decisions and the Lease manifest."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradebot.domain.account_lease import (
    ANNOTATION_ACCOUNT,
    Lease,
    account_key,
    decide_lease,
    exchange_family,
    lease_manifest,
    lease_name,
)
from tradebot.domain.bot_credentials import api_key_fingerprint

NOW = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
DURATION = dt.timedelta(seconds=30)
KEY = account_key("team-a", "binance", "keys", "bot1")
NAME = lease_name(KEY)


def test_account_keys():
    assert account_key("ns", "binance", "keys", "a") == account_key("ns", "binance", "keys", "b")
    assert account_key("ns", "binance", None, "a") != account_key("ns", "binance", None, "b")
    assert account_key("ns", "binance", "keys", "a") != account_key("ns", "kraken", "keys", "a")
    assert account_key("ns", "binance", "keys", "a") != account_key("other", "binance", "keys", "a")
    # A dry-run bot named like a Secret never shares with it.
    assert account_key("ns", "binance", None, "keys") != account_key(
        "ns", "binance", "keys", "keys"
    )


@pytest.mark.parametrize(
    ("exchange", "family"),
    [
        ("binance", "binance"),
        ("binanceusdm", "binance"),
        ("binancecoinm", "binance"),
        ("BinanceUSDM", "binance"),
        # Binance.US is another company: its accounts are not binance's.
        ("binanceus", "binanceus"),
        ("kucoinfutures", "kucoin"),
        ("okx", "okx"),
        ("okex", "okx"),
        ("bybit", "bybit"),
        ("somethingnew", "somethingnew"),
    ],
)
def test_exchange_families(exchange: str, family: str):
    assert exchange_family(exchange) == family


def test_one_key_on_one_family_is_one_account():
    fp = api_key_fingerprint("AKIA-SAME")
    assert fp == hashlib.sha256(b"AKIA-SAME").hexdigest()
    assert account_key("ns", "binance", fp, "a") == account_key("ns", "binanceusdm", fp, "b")
    assert account_key("ns", "binance", fp, "a") != account_key("ns", "binanceus", fp, "a")
    other = api_key_fingerprint("AKIA-OTHER")
    assert account_key("ns", "binance", fp, "a") != account_key("ns", "binance", other, "a")


def test_lease_name_is_deterministic_and_short():
    # A value fixed here: a name that varied per process (a hash() seed) or per call fails.
    assert lease_name(KEY) == "acct-9d854d1c7ca963cc"  # sha256("team-a/binance/key/keys")
    assert NAME.startswith("acct-")
    assert len(NAME) == 21


def lease(
    holder: str | None,
    renewed: dt.datetime | None = NOW,
    seconds: int | None = 30,
    transitions: int = 2,
) -> Lease:
    return Lease(NAME, holder, renewed, seconds, transitions)


@pytest.mark.parametrize(
    ("leases", "pods", "action", "holder"),
    [
        ([], 0, "create", "me"),
        ([], 1, "wait", None),
        ([lease("me")], 0, "renew", "me"),
        ([lease("me")], 3, "renew", "me"),
        ([lease("other")], 0, "wait", "other"),
        ([lease("other", NOW - dt.timedelta(seconds=29))], 0, "wait", "other"),
        ([lease("other", NOW - dt.timedelta(seconds=30))], 0, "takeover", "me"),
        ([lease("other", NOW - dt.timedelta(hours=1))], 1, "wait", "other"),
        ([lease(None, None)], 0, "takeover", "me"),
        ([lease("other", None)], 0, "takeover", "me"),
        # The Lease's own duration wins over the default.
        ([lease("other", NOW - dt.timedelta(seconds=40), seconds=60)], 0, "wait", "other"),
        ([lease("other", NOW - dt.timedelta(seconds=40), seconds=None)], 0, "takeover", "me"),
        # Leases of other accounts are ignored.
        ([Lease("acct-0000000000000000", "other", NOW, 30)], 0, "create", "me"),
    ],
)
def test_decide_lease(leases: list[Lease], pods: int, action: str, holder: str | None):
    d = decide_lease("me", KEY, leases, NOW, DURATION, live_pods_of_other_holders=pods)
    assert d.action == action
    assert d.holder == holder
    assert d.lease_name == NAME
    assert d.may_run is (action != "wait")
    if action == "wait" and holder is not None:
        assert holder in d.message
    if action == "wait":
        assert d.retry_after is not None
        assert d.retry_after > dt.timedelta(0)


def test_takeover_counts_a_transition():
    d = decide_lease(
        "me",
        KEY,
        [lease("other", NOW - dt.timedelta(minutes=5))],
        NOW,
        DURATION,
        live_pods_of_other_holders=0,
    )
    assert d.transitions == 3


def test_manifest_round_trip():
    m = lease_manifest(
        KEY,
        namespace="team-a",
        bot_name="bot1",
        bot_uid="me",
        now=NOW,
        lease_duration=DURATION,
        transitions=1,
    )
    assert m["kind"] == "Lease"
    assert m["apiVersion"] == "coordination.k8s.io/v1"
    assert m["metadata"]["name"] == NAME
    assert m["metadata"]["annotations"][ANNOTATION_ACCOUNT] == KEY
    assert m["metadata"]["ownerReferences"][0]["uid"] == "me"
    assert m["spec"]["renewTime"] == "2025-03-01T12:00:00.000000Z"
    assert m["spec"]["leaseDurationSeconds"] == 30
    parsed = Lease.from_manifest(m)
    assert parsed == Lease(NAME, "me", NOW, 30, 1)
    assert (
        decide_lease("me", KEY, [parsed], NOW, DURATION, live_pods_of_other_holders=0).action
        == "renew"
    )


_holders = st.sampled_from(["a", "b", "c"])


@given(holder=st.none() | _holders, age=st.integers(0, 120), pods=st.integers(0, 2), me=_holders)
def test_never_two_holders(holder: str | None, age: int, pods: int, me: str):
    existing = [] if holder is None else [lease(holder, NOW - dt.timedelta(seconds=age))]
    d = decide_lease(me, KEY, existing, NOW, DURATION, live_pods_of_other_holders=pods)
    if d.may_run and holder not in (None, me):
        # Only an expired lease with no pod of its holder left may change hands.
        assert age >= 30
        assert pods == 0
    if pods and holder != me:
        assert not d.may_run
