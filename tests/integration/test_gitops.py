"""deploy/gitops: each overlay builds with the pinned kubectl's kustomize, promotes the bot the
way a reviewed change would, and is accepted by the API server against the CRDs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GITOPS = ROOT / "deploy" / "gitops"
BOT = "ema-rsi-bot"


def _build(kubectl: Any, path: Path) -> list[dict[str, Any]]:
    out = kubectl("kustomize", str(path)).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _bot(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (bot,) = [d for d in docs if d["kind"] == "LiveBot"]
    return bot


@pytest.mark.parametrize(
    ("overlay", "mode", "keys"),
    [
        ("base", "dryRun", None),
        ("overlays/testnet", "testnet", "binance-testnet-keys"),
        ("overlays/live", "live", "binance-live-keys"),
    ],
)
def test_overlay_builds_and_promotes_the_bot(
    kubectl: Any, overlay: str, mode: str, keys: str | None
):
    docs = _build(kubectl, GITOPS / overlay)
    assert sorted(d["kind"] for d in docs) == ["Backtest", "CircuitBreaker", "LiveBot", "Strategy"]
    bot = _bot(docs)
    assert bot["metadata"]["name"] == BOT
    assert bot["spec"]["mode"] == mode
    assert (bot["spec"]["exchange"].get("credentialsSecretRef") or {}).get("name") == keys
    approval = bot["spec"]["promotion"].get("approval")
    assert (approval is not None) == (mode != "dryRun")
    # The breaker still selects the promoted bot.
    (cb,) = [d for d in docs if d["kind"] == "CircuitBreaker"]
    for k, v in cb["spec"]["selector"]["matchLabels"].items():
        assert bot["metadata"]["labels"][k] == v
    # What a promotion changes stays in the reviewed patch; the rest comes from base.
    base = _bot(_build(kubectl, GITOPS / "base"))
    assert bot["spec"]["strategyRef"] == base["spec"]["strategyRef"]
    assert bot["spec"]["pairs"] == base["spec"]["pairs"]


@pytest.mark.parametrize("overlay", ["base", "overlays/testnet", "overlays/live"])
def test_overlay_validates_against_the_crds(
    kubectl: Any, namespace: str, crds_installed: None, overlay: str
):
    docs = _build(kubectl, GITOPS / overlay)
    for d in docs:
        d["metadata"]["namespace"] = namespace
    result = kubectl(
        "apply",
        "--dry-run=server",
        "-f",
        "-",
        check=False,
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == 4


def test_a_bad_promotion_patch_is_rejected_by_the_crd(
    kubectl: Any, namespace: str, crds_installed: None
):
    """The dry run is a real check: a typo in the reviewed patch fails it."""
    bot = _bot(_build(kubectl, GITOPS / "overlays" / "live"))
    bot["metadata"]["namespace"] = namespace
    bot["spec"]["mode"] = "Live"
    result = kubectl("apply", "--dry-run=server", "-f", "-", check=False, stdin=json.dumps(bot))
    assert result.returncode != 0
    assert "spec.mode" in result.stderr


def test_the_live_approval_names_the_base_strategy_code(kubectl: Any):
    """The reviewed approval is bound to the code in git: editing the strategy without a new
    approval leaves the live gate shut."""
    from tradebot.freqtrade.introspect import code_hash

    docs = _build(kubectl, GITOPS / "overlays" / "live")
    (strategy,) = [d for d in docs if d["kind"] == "Strategy"]
    approval = _bot(docs)["spec"]["promotion"]["approval"]
    assert approval["codeHash"] == code_hash(strategy["spec"]["code"])
