"""The API server refuses a dead-man's switch that is switched off: a supervision deadline
longer than 24h, longer than 1h for testnet and live, or a duration so long it would overflow
the operator's arithmetic; the same limits the operator's model enforces."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from pydantic import ValidationError
from tests.support.manifests import example

from tradebot.api.livebot import LiveBotSpec
from tradebot.api.marketdata import MarketDataSpec

pytestmark = pytest.mark.usefixtures("crds_installed")

OVERFLOW = "9" * 31 + "d"


def _bot(name: str, mode: str, deadline: str) -> dict[str, Any]:
    doc = copy.deepcopy(example("LiveBot", "ema-rsi-dry"))
    doc["metadata"] = {"name": name}
    doc["spec"]["mode"] = mode
    if mode != "dryRun":
        doc["spec"]["exchange"]["credentialsSecretRef"] = {"name": "exchange-keys"}
    doc["spec"]["supervision"] = {"deadline": deadline}
    return doc


def _apply(kubectl: Any, namespace: str, doc: dict[str, Any]) -> Any:
    return kubectl("apply", "-n", namespace, "-f", "-", check=False, stdin=json.dumps(doc))


@pytest.mark.parametrize(
    ("name", "mode", "deadline", "message"),
    [
        ("overflow", "dryRun", OVERFLOW, "spec.supervision.deadline"),
        ("days", "dryRun", "1d", "spec.supervision.deadline"),
        ("over-a-day", "dryRun", "25h", "at most 24h"),
        ("zero", "dryRun", "0s", "longer than 0s"),
        ("testnet-two-hours", "testnet", "2h", "at most 1h"),
        ("testnet-61m", "testnet", "61m", "at most 1h"),
    ],
)
def test_an_unbounded_deadline_is_refused_at_apply(
    kubectl: Any, namespace: str, name: str, mode: str, deadline: str, message: str
):
    doc = _bot(name, mode, deadline)
    result = _apply(kubectl, namespace, doc)
    assert result.returncode != 0, f"accepted: {result.stdout}"
    assert message in result.stderr, result.stderr
    assert kubectl("get", "livebots", name, "-n", namespace, check=False).returncode != 0
    with pytest.raises(ValidationError):
        LiveBotSpec.model_validate(doc["spec"])


@pytest.mark.parametrize(
    ("name", "mode", "deadline"),
    [
        ("a-day", "dryRun", "24h"),
        ("ninety-seconds", "dryRun", "90s"),
        ("testnet-hour", "testnet", "1h"),
    ],
)
def test_a_bounded_deadline_applies(
    kubectl: Any, namespace: str, name: str, mode: str, deadline: str
):
    # The positive control of the refusals above: same manifests, deadlines within bounds.
    doc = _bot(name, mode, deadline)
    result = _apply(kubectl, namespace, doc)
    assert result.returncode == 0, result.stderr
    got = json.loads(kubectl("get", "livebots", name, "-n", namespace, "-o", "json").stdout)
    assert got["spec"]["supervision"]["deadline"] == deadline
    assert LiveBotSpec.model_validate(got["spec"]).supervision.deadline == deadline


def test_no_duration_anywhere_overflows(kubectl: Any, namespace: str):
    doc = copy.deepcopy(example("MarketData"))
    doc["metadata"] = {"name": "overflowing-refresh"}
    doc["spec"]["refresh"] = OVERFLOW
    result = _apply(kubectl, namespace, doc)
    assert result.returncode != 0, f"accepted: {result.stdout}"
    assert "spec.refresh" in result.stderr, result.stderr
    with pytest.raises(ValidationError):
        MarketDataSpec.model_validate(doc["spec"])
    # Control: a long but bounded refresh applies.
    doc["metadata"] = {"name": "long-refresh"}
    doc["spec"]["refresh"] = "99999d"
    assert _apply(kubectl, namespace, doc).returncode == 0
