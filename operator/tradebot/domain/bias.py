"""Bias evidence for a promotion: which Backtest holds the analyses of the evidence Backtest,
what it found, and the Backtest the operator creates when there is none yet. Pure.

The analyses are a Backtest option (spec.analyses), not a kind of their own: they need exactly
what a backtest needs (strategy code, parameters, data, image, the admission queue, a run
record, artifacts) and Freqtrade runs them as backtests; a Backtest with analyses is the same
run with two more Freqtrade commands after it.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from tradebot.api.backtest import BacktestStatus, BiasFindings
from tradebot.api.base import API_VERSION

SUFFIX = "-bias"
# The name is a label value too (tradebot.dev/backtest): 63 characters at most.
MAX_NAME = 63
LABEL_BIAS_OF = "tradebot.dev/bias-of"
REASON_UNCHECKED = "BiasUnchecked"
REASON_DETECTED = "BiasDetected"


def analysis_name(evidence: str) -> str:
    """`<evidence>-bias`, or a hashed tail when that is too long (deterministic: one name per
    evidence Backtest, so a second round finds what the first created)."""
    name = evidence + SUFFIX
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(evidence.encode()).hexdigest()[:8]
    return f"{evidence[: MAX_NAME - len(SUFFIX) - 9].rstrip('-.')}-{digest}{SUFFIX}"


def analyses_asked(obj: Mapping[str, Any] | None) -> tuple[bool, bool]:
    analyses = ((obj or {}).get("spec") or {}).get("analyses") or {}
    return bool(analyses.get("lookahead")), bool(analyses.get("recursive"))


def analysis_source(evidence_name: str, evidence: Mapping[str, Any] | None) -> str:
    """The Backtest whose findings judge the evidence: the evidence itself when it ran both
    analyses, else its `-bias` companion."""
    return evidence_name if all(analyses_asked(evidence)) else analysis_name(evidence_name)


@dataclass(frozen=True)
class BiasEvidence:
    """The analysis Backtest as the controller found it (found False: it does not exist)."""

    name: str
    found: bool
    phase: str | None = None
    message: str | None = None
    lookahead_asked: bool = False
    recursive_asked: bool = False
    code_hash: str | None = None
    parameters_hash: str | None = None
    # The timeframe it ran with (status.launched when recorded, else its spec's; None: the
    # Strategy's own).
    timeframe: str | None = None
    findings: BiasFindings | None = None
    unreadable: str | None = None

    @classmethod
    def from_object(cls, name: str, obj: Mapping[str, Any] | None) -> BiasEvidence:
        if obj is None:
            return cls(name, False)
        raw = obj.get("status") or {}
        lookahead, recursive = analyses_asked(obj)
        launched = raw.get("launched") or {}
        timeframe = launched.get("timeframe") or (obj.get("spec") or {}).get("timeframe")
        try:
            status = BacktestStatus.model_validate(raw)
        except ValidationError as e:
            return cls(name, True, raw.get("phase"), unreadable=f"status unreadable: {e}")
        return cls(
            name,
            True,
            status.phase,
            raw.get("message"),
            lookahead,
            recursive,
            launched.get("codeHash") or status.code_hash,
            launched.get("parametersHash") or status.parameters_hash,
            timeframe,
            status.bias,
        )


# Fields of the evidence spec the analysis Backtest does not copy: it is kept as long as the
# operator's default keeps Backtests (the evidence may be short-lived; its verdict is not).
_NOT_COPIED = ("ttlSecondsAfterFinished", "analyses")


def analysis_manifest(evidence: Mapping[str, Any]) -> dict[str, Any]:
    """The Backtest that runs both analyses on the evidence Backtest's strategy, parameters,
    data, pairs, timerange and image, owned by the evidence Backtest (it describes that
    evidence, whichever bots read it, and goes when it goes)."""
    meta = evidence["metadata"]
    spec = {k: copy.deepcopy(v) for k, v in evidence["spec"].items() if k not in _NOT_COPIED}
    asked = dict(evidence["spec"].get("analyses") or {})
    spec["analyses"] = {**asked, "lookahead": True, "recursive": True}
    labels = {
        k: v for k, v in (meta.get("labels") or {}).items() if not k.startswith("tradebot.dev/")
    }
    labels[LABEL_BIAS_OF] = meta["name"]
    return {
        "apiVersion": API_VERSION,
        "kind": "Backtest",
        "metadata": {
            "name": analysis_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "Backtest",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": spec,
    }
