"""Which exchange credentials a LiveBot may use (pure).

A credentials Secret is bound to a mode: it is used only when it carries the label
`tradebot.dev/credentials` with the bot's mode as its value (`testnet` or `live`). Whoever may
create a LiveBot can name any Secret of the namespace, and its items end up in a pod that runs
user code; the label is how the Secret's owner says which bots may have it. A Secret the
operator manages itself (a bot's API password, a bot's database URL) is never usable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from tradebot.api.livebot import LiveBotSpec
from tradebot.domain.naming import MANAGED_BY

LABEL_CREDENTIALS = "tradebot.dev/credentials"


@dataclass(frozen=True)
class CredentialsSeen:
    """The referenced Secret as the controller found it: its labels, whether the operator owns
    it, and the names (never the values) of its non-empty items."""

    name: str
    exists: bool
    labels: Mapping[str, str]
    operator_managed: bool
    items: frozenset[str]
    # secret_fingerprint of its items: which account the bot trades, never the keys.
    fingerprint: str | None = None
    # api_key_fingerprint of the item the bot uses as its API key (None: no such item): what
    # the account lock is keyed by.
    api_key_fingerprint: str | None = None


def secret_fingerprint(data: Mapping[str, str | bytes]) -> str:
    """sha256 hex over a Secret's items, names and (decoded) values, in name order: the same
    for the same content whichever way it was written (data or stringData), different as soon
    as one key changes. A one-way digest of high-entropy keys: it may be kept in status and
    compared; the values themselves never leave the Secret. Each name and value is prefixed by
    its length, so no two different Secrets hash the same text."""
    digest = hashlib.sha256()
    for name in sorted(data):
        value = data[name]
        raw = value.encode() if isinstance(value, str) else bytes(value)
        for part in (name.encode(), raw):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.hexdigest()


def api_key_fingerprint(key: str) -> str:
    """sha256 (hex) of an exchange API key, surrounding whitespace aside (a key written with
    a trailing newline is the same key): two Secrets holding one key are one account. The
    key is a long random string, so its hash says nothing of it; the key itself is never
    kept."""
    return hashlib.sha256(key.strip().encode()).hexdigest()


def operator_managed(labels: Mapping[str, str], owner_api_versions: list[str]) -> bool:
    managed = all(labels.get(k) == v for k, v in MANAGED_BY.items())
    return managed or any(v.startswith("tradebot.dev/") for v in owner_api_versions)


def credentials_problem(spec: LiveBotSpec, seen: CredentialsSeen | None) -> tuple[str, str] | None:
    """(reason, message) when the bot may not use its credentials; None when it may."""
    ref = spec.exchange.credentials_secret_ref
    if spec.mode == "dryRun":
        return None
    if ref is None:
        return (
            "CredentialsMissing",
            "exchange.credentialsSecretRef is required for testnet and live",
        )
    if seen is None or not seen.exists:
        return "CredentialsMissing", f"Secret {ref.name} not found"
    if seen.operator_managed:
        return (
            "CredentialsNotAllowed",
            f"Secret {ref.name} is managed by the operator and never holds exchange "
            f"credentials: use a Secret of your own labelled {LABEL_CREDENTIALS}={spec.mode}",
        )
    label = seen.labels.get(LABEL_CREDENTIALS)
    if label != spec.mode:
        has = f"it has {LABEL_CREDENTIALS}={label}" if label else "it has no such label"
        return (
            "CredentialsNotAllowed",
            f"Secret {ref.name} needs the label {LABEL_CREDENTIALS}={spec.mode} to be used "
            f"by a {spec.mode} bot ({has})",
        )
    needed = [ref.api_key_key, ref.api_secret_key] + (
        [ref.password_key] if ref.password_key else []
    )
    missing = [k for k in needed if k not in seen.items]
    if missing:
        return "CredentialsMissing", f"Secret {ref.name} lacks key(s): {', '.join(missing)}"
    return None
