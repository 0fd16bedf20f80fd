"""The API server refuses a testnet LiveBot on an exchange without a ccxt sandbox, naming the
exchange, and admits the same bot on an exchange with one (or in another mode)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from tests.support.manifests import example

from tradebot.api.exchanges import SANDBOX_EXCHANGES

pytestmark = pytest.mark.usefixtures("crds_installed")


def _bot(name: str, mode: str, exchange: str) -> dict[str, Any]:
    manifest = copy.deepcopy(example("LiveBot", "ema-rsi-dry"))
    manifest["metadata"] = {"name": name}
    spec = manifest["spec"]
    spec["mode"] = mode
    spec["exchange"] = {"name": exchange, "credentialsSecretRef": {"name": "keys"}}
    if mode == "live":
        spec["promotion"]["approval"] = {
            "approvedBy": "alice",
            "approvedAt": "2026-11-01T10:00:00Z",
            "reference": "https://git.example/pr/1",
            "codeHash": "a" * 64,
        }
    return manifest


def _apply(kubectl: Any, namespace: str, manifest: dict[str, Any]) -> Any:
    return kubectl("apply", "-n", namespace, "-f", "-", check=False, stdin=json.dumps(manifest))


def test_testnet_on_kraken_is_refused_at_apply(kubectl: Any, namespace: str) -> None:
    assert "kraken" not in SANDBOX_EXCHANGES
    result = _apply(kubectl, namespace, _bot("kraken-testnet", "testnet", "kraken"))
    assert result.returncode != 0, f"accepted: {result.stdout}"
    assert "spec.exchange.name" in result.stderr, result.stderr
    assert "exchange kraken has no sandbox (testnet) in ccxt" in result.stderr, result.stderr
    got = kubectl("get", "livebots", "kraken-testnet", "-n", namespace, check=False)
    assert got.returncode != 0, "it was stored"


def test_an_existing_bot_cannot_be_switched_to_testnet_on_kraken(
    kubectl: Any, namespace: str
) -> None:
    assert _apply(kubectl, namespace, _bot("kraken", "live", "kraken")).returncode == 0
    result = _apply(kubectl, namespace, _bot("kraken", "testnet", "kraken"))
    assert result.returncode != 0, f"accepted: {result.stdout}"
    assert "exchange kraken has no sandbox" in result.stderr, result.stderr
    mode = kubectl(
        "get", "livebots", "kraken", "-n", namespace, "-o", "jsonpath={.spec.mode}"
    ).stdout
    assert mode == "live"


@pytest.mark.parametrize(
    ("mode", "exchange"),
    [("testnet", "binance"), ("testnet", "okx"), ("dryRun", "kraken"), ("live", "kraken")],
)
def test_the_same_bot_is_admitted_with_a_sandbox_or_another_mode(
    kubectl: Any,
    namespace: str,
    mode: str,
    exchange: str,
) -> None:
    name = f"{exchange}-{mode.lower()}"
    result = _apply(kubectl, namespace, _bot(name, mode, exchange))
    assert result.returncode == 0, result.stderr
    got = kubectl(
        "get",
        "livebots",
        name,
        "-n",
        namespace,
        "-o",
        "jsonpath={.spec.exchange.name}/{.spec.mode}",
    ).stdout
    assert got == f"{exchange}/{mode}"
