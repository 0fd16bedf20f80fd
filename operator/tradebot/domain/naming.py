"""Deterministic names and labels of the objects the operator creates, so a replayed or
restarted reconciler finds what it made instead of making it twice."""

from __future__ import annotations

import hashlib

MANAGED_BY = {"app.kubernetes.io/managed-by": "tradebot-operator"}
LABEL_BACKTEST = "tradebot.dev/backtest"
LABEL_STRATEGY = "tradebot.dev/strategy"
LABEL_RUN = "tradebot.dev/run-id"
LABEL_KIND = "tradebot.dev/kind"


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
