"""Argo CD health checks (deploy/argocd/health/*.lua) run in a real Lua against sample
resources in each phase, and the argocd-cm snippet carries them verbatim."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import LuaRuntime

ROOT = Path(__file__).resolve().parents[2]
HEALTH = ROOT / "deploy" / "argocd" / "health"


def health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    lua = LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    hs = lua.execute((HEALTH / f"{kind}.lua").read_text())
    return str(hs["status"]), str(hs["message"])


def _obj(status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    doc: dict[str, Any] = {"metadata": {"name": "x", "generation": generation}}
    if status is not None:
        doc["status"] = status
    return doc


CASES = [
    ("Strategy", None, "Progressing"),
    ("Strategy", {"phase": "Pending"}, "Progressing"),
    ("Strategy", {"phase": "Ready", "observedGeneration": 1}, "Healthy"),
    ("Strategy", {"phase": "Ready", "observedGeneration": 0}, "Progressing"),
    ("Strategy", {"phase": "Invalid", "message": "no class"}, "Degraded"),
    ("Backtest", None, "Progressing"),
    ("Backtest", {"phase": "Pending"}, "Progressing"),
    ("Backtest", {"phase": "Queued"}, "Progressing"),
    ("Backtest", {"phase": "Running"}, "Progressing"),
    ("Backtest", {"phase": "Succeeded"}, "Healthy"),
    ("Backtest", {"phase": "Failed", "message": "exit 2"}, "Degraded"),
    ("LiveBot", None, "Progressing"),
    ("LiveBot", {"phase": "Pending"}, "Progressing"),
    ("LiveBot", {"phase": "Running", "observedGeneration": 1}, "Healthy"),
    (
        "LiveBot",
        {
            "phase": "Running",
            "conditions": [{"type": "Reachable", "status": "False", "message": "timed out"}],
        },
        "Degraded",
    ),
    ("LiveBot", {"phase": "Running", "observedGeneration": 1}, "Healthy"),
    ("LiveBot", {"phase": "Suspended"}, "Suspended"),
    ("LiveBot", {"phase": "Blocked", "message": "gates"}, "Degraded"),
    ("LiveBot", {"phase": "Tripped"}, "Degraded"),
    ("LiveBot", {"phase": "Failed"}, "Degraded"),
    ("LiveBot", {"phase": "Running", "observedGeneration": 1}, "Healthy"),
    ("CircuitBreaker", None, "Progressing"),
    ("CircuitBreaker", {"state": "Closed"}, "Healthy"),
    ("CircuitBreaker", {"state": "Open", "reason": "drawdown 0.2 > 0.15"}, "Degraded"),
    ("CircuitBreaker", {"state": "HalfOpen"}, "Progressing"),
    (
        "CircuitBreaker",
        {
            "state": "Closed",
            "conditions": [{"type": "Valid", "status": "False", "message": "bad selector"}],
        },
        "Degraded",
    ),
]


@pytest.mark.parametrize(("kind", "status", "expected"), CASES)
def test_health_of_each_phase(kind: str, status: dict[str, Any] | None, expected: str):
    assert health(kind, _obj(status))[0] == expected


def test_messages_say_why():
    assert health("Backtest", _obj({"phase": "Failed", "message": "exit 2"}))[1] == "exit 2"
    assert (
        "drawdown" in health("CircuitBreaker", _obj({"state": "Open", "reason": "drawdown 0.2"}))[1]
    )
    assert (
        health("LiveBot", _obj({"phase": "Running", "observedGeneration": 1}, 2))[0]
        == "Progressing"
    )  # a new spec the operator has not acted on yet


def test_argocd_cm_snippet_embeds_the_scripts():
    cm = yaml.safe_load((ROOT / "deploy" / "argocd" / "argocd-cm.yaml").read_text())
    for kind in ("Strategy", "Backtest", "LiveBot", "CircuitBreaker"):
        key = f"resource.customizations.health.tradebot.dev_{kind}"
        assert cm["data"][key] == (HEALTH / f"{kind}.lua").read_text()
