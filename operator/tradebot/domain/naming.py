"""Deterministic names and labels of the objects the operator creates, so a replayed or
restarted reconciler finds what it made instead of making it twice."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

MANAGED_BY = {"app.kubernetes.io/managed-by": "tradebot-operator"}
LABEL_BACKTEST = "tradebot.dev/backtest"
LABEL_STRATEGY = "tradebot.dev/strategy"
LABEL_RUN = "tradebot.dev/run-id"
LABEL_KIND = "tradebot.dev/kind"


# Kubernetes caps label values at 63 characters; object names may be 253.
LABEL_VALUE_MAX = 63


def label_value(name: str) -> str:
    """`name` as a label value: itself when it fits, else its first 54 characters and 8 hex
    of its sha256 (a name over 63 characters used to make the API server refuse the Job or
    ConfigMap with 422, and the object waited in Queued for good)."""
    if len(name) <= LABEL_VALUE_MAX:
        return name
    return f"{name[:54].rstrip('-.')}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def name_labels(names: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Labels naming objects (`{label: object name}`), as label values, and the annotations
    that keep each whole name under the same key: a hashed label can be selected on but not
    read back, so readers take the name from `named`."""
    return {k: label_value(v) for k, v in names.items()}, dict(names)


def named(metadata: Mapping[str, Any], key: str) -> str | None:
    """The object name a child's `key` label stands for: the whole name kept in the
    annotation of that key (the label may be a hash of it), else the label itself."""
    whole = (metadata.get("annotations") or {}).get(key)
    return whole if whole else (metadata.get("labels") or {}).get(key)


def child_name(prefix: str, name: str, uid: str) -> str:
    """prefix-name-<8 hex of uid>, at most 63 characters (usable as a label value)."""
    suffix = hashlib.sha256(uid.encode()).hexdigest()[:8]
    room = 63 - len(prefix) - len(suffix) - 2
    return f"{prefix}-{name[:room].rstrip('-.')}-{suffix}"


def backtest_job_name(name: str, uid: str) -> str:
    """The Job (and its ConfigMap) of a Backtest's one run."""
    return child_name("bt", name, uid)


def backtest_run_id(uid: str) -> str:
    """A Backtest's spec is immutable, so it has exactly one run: its id follows the uid."""
    return f"bt-{uid}"


def owner_reference(api_version: str, kind: str, name: str, uid: str) -> dict[str, object]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
