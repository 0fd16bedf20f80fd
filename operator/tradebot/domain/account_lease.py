"""Never two pods trading one exchange account. Each account has a coordination.k8s.io Lease
whose holderIdentity is the uid of the LiveBot allowed to run a pod for it. Pure: the
controller reads the Lease and counts the other holders' pods, asks `decide_lease`, and writes.

An account is the exchange's family (binanceusdm and binancecoinm are binance's futures
markets, traded with binance's own keys) and the API key: its sha256, taken by the controller
from the credentials Secret, so two Secrets holding one key, or `binance` and `binanceusdm`
with one key, are one account. The key itself is never kept, logged or written anywhere.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tradebot.api.base import API_VERSION
from tradebot.domain.naming import LABEL_KIND, MANAGED_BY, owner_reference
from tradebot.domain.time import format_micro_time, parse_time, utc

ANNOTATION_ACCOUNT = "tradebot.dev/account-key"
LEASE_PREFIX = "acct-"


# ccxt ids that trade one exchange account under another id: the same API key reaches the
# same balances and positions. Any id not listed is its own family. binanceus is a separate
# company with separate accounts, so it is not binance.
_FAMILIES: dict[str, str] = {
    "binanceusdm": "binance",
    "binancecoinm": "binance",
    "kucoinfutures": "kucoin",
    "okex": "okx",
    "okex5": "okx",
    "huobi": "htx",
    "huobipro": "htx",
    "gateio": "gate",
    "krakenfutures": "kraken",
    "bitgetfutures": "bitget",
}


def exchange_family(exchange_id: str) -> str:
    """The account family of a ccxt exchange id (the id itself when it has no other)."""
    key = exchange_id.strip().lower()
    return _FAMILIES.get(key, key)


def account_key(
    namespace: str, exchange_name: str, api_key_fingerprint: str | None, bot_name: str
) -> str:
    """The account a bot trades: its exchange family and the fingerprint of its API key
    (bot_credentials.api_key_fingerprint; 64 of its bits, plenty to tell keys apart). Without
    credentials (dry run) it is the bot's own, never shared: paper trading cannot collide with
    anything. Kubernetes names hold no '/', so the parts cannot run into each other."""
    family = exchange_family(exchange_name)
    if api_key_fingerprint is None:
        return f"{namespace}/{family}/bot/{bot_name}"
    return f"{namespace}/{family}/key/{api_key_fingerprint[:16]}"


def lease_name(key: str) -> str:
    return LEASE_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Lease:
    """A Lease as read from the cluster."""

    name: str
    holder_identity: str | None
    renew_time: dt.datetime | None
    lease_duration_seconds: int | None = None
    lease_transitions: int = 0

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> Lease:
        spec = manifest.get("spec") or {}
        renew = spec.get("renewTime")
        return cls(
            name=manifest["metadata"]["name"],
            holder_identity=spec.get("holderIdentity") or None,
            renew_time=parse_time(renew) if isinstance(renew, str) else renew,
            lease_duration_seconds=spec.get("leaseDurationSeconds"),
            lease_transitions=int(spec.get("leaseTransitions") or 0),
        )

    def expires(self, default_duration: dt.timedelta) -> dt.datetime | None:
        if self.renew_time is None:
            return None
        duration = (
            dt.timedelta(seconds=self.lease_duration_seconds)
            if self.lease_duration_seconds is not None
            else default_duration
        )
        return utc(self.renew_time) + duration


LeaseAction = Literal["create", "renew", "takeover", "wait"]


@dataclass(frozen=True)
class LeaseDecision:
    action: LeaseAction
    lease_name: str
    # The holder after the decision: the bot itself, or who it waits for.
    holder: str | None
    message: str
    # Transitions to write when acquiring (Lease.spec.leaseTransitions).
    transitions: int = 0
    # When to look again while waiting.
    retry_after: dt.timedelta | None = None

    @property
    def may_run(self) -> bool:
        return self.action != "wait"


def decide_lease(
    bot_uid: str,
    account_key: str,
    existing_leases: Sequence[Lease],
    now: dt.datetime,
    lease_duration: dt.timedelta,
    *,
    live_pods_of_other_holders: int,
) -> LeaseDecision:
    """Acquire when the Lease is free or expired and no other holder's pod still exists (an
    expired Lease only says its holder stopped renewing, not that its pod is gone); renew when
    held; otherwise wait, naming the holder. The caller writes a takeover with the Lease's
    resourceVersion, so that of two bots deciding at once only one succeeds."""
    name = lease_name(account_key)
    now = utc(now)
    lease = next((item for item in existing_leases if item.name == name), None)

    def wait(holder: str | None, why: str, retry: dt.timedelta | None = None) -> LeaseDecision:
        return LeaseDecision(
            "wait",
            name,
            holder,
            why,
            retry_after=retry if retry is not None else lease_duration / 3,
        )

    if lease is not None and lease.holder_identity == bot_uid:
        return LeaseDecision(
            "renew",
            name,
            bot_uid,
            f"holds the lease of {account_key}",
            transitions=lease.lease_transitions,
        )
    if live_pods_of_other_holders > 0:
        holder = lease.holder_identity if lease is not None else None
        return wait(
            holder,
            f"account {account_key}: {live_pods_of_other_holders} pod(s) of "
            f"another bot{f' ({holder})' if holder else ''} still exist",
        )
    if lease is None:
        return LeaseDecision("create", name, bot_uid, f"acquired the lease of {account_key}")
    expires = lease.expires(lease_duration)
    if lease.holder_identity is not None and expires is not None and expires > now:
        return wait(
            lease.holder_identity,
            f"account {account_key} is held by {lease.holder_identity} until {expires.isoformat()}",
            retry=expires - now,
        )
    return LeaseDecision(
        "takeover",
        name,
        bot_uid,
        f"took over the lease of {account_key} from {lease.holder_identity or 'nobody'}",
        transitions=lease.lease_transitions + 1,
    )


def lease_manifest(
    key: str,
    *,
    namespace: str,
    bot_name: str,
    bot_uid: str,
    now: dt.datetime,
    lease_duration: dt.timedelta,
    acquired_at: dt.datetime | None = None,
    transitions: int = 0,
) -> dict[str, Any]:
    """The Lease held by bot `bot_uid`. It is owned by that LiveBot, so deleting the bot frees
    the account; its pod is checked separately (`live_pods_of_other_holders`) because it may
    still be terminating when the Lease is already gone."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": lease_name(key),
            "namespace": namespace,
            "labels": {**MANAGED_BY, LABEL_KIND: "account-lease"},
            "annotations": {ANNOTATION_ACCOUNT: key},
            "ownerReferences": [owner_reference(API_VERSION, "LiveBot", bot_name, bot_uid)],
        },
        "spec": {
            "holderIdentity": bot_uid,
            "leaseDurationSeconds": int(lease_duration.total_seconds()),
            "acquireTime": format_micro_time(acquired_at or now),
            "renewTime": format_micro_time(now),
            "leaseTransitions": transitions,
        },
    }
