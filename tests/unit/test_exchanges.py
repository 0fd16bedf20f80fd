"""The generated exchange capabilities agree with the installed ccxt and Freqtrade, and the
LiveBot model refuses testnet where ccxt has no sandbox."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import ccxt
import freqtrade
import pytest
import yaml
from freqtrade.exchange import Exchange
from pydantic import ValidationError

from tradebot.api import exchanges
from tradebot.api.livebot import LiveBotSpec

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "hack" / "gen-exchanges.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_exchanges", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_module_is_what_the_installed_libraries_give() -> None:
    generator = _generator()
    rendered: str = generator.render()
    assert f'CCXT_VERSION = "{ccxt.__version__}"' in rendered
    assert f'FREQTRADE_VERSION = "{freqtrade.__version__}"' in rendered
    assert Path(exchanges.__file__).read_text() == rendered, (
        "operator/tradebot/api/exchanges.py is stale: run hack/gen-exchanges.py"
    )


@pytest.mark.parametrize(
    "name", ["binance", "bybit", "okx", "gate", "hyperliquid", "kraken", "kucoin", "bitget", "htx"]
)
def test_has_sandbox_is_ccxts_test_url(name: str) -> None:
    assert exchanges.has_sandbox(name) is bool(getattr(ccxt, name)().urls.get("test"))


def test_known_sandboxes() -> None:
    # As measured by hand (shared notes): these have urls["test"] in this ccxt, those do not.
    assert {"binance", "bybit", "okx", "gate", "hyperliquid"} <= set(exchanges.SANDBOX_EXCHANGES)
    assert not {"kraken", "kucoin", "bitget", "htx"} & set(exchanges.SANDBOX_EXCHANGES)
    assert not exchanges.has_sandbox("no-such-exchange")


def _freqtrade_spot_has(name: str) -> bool:
    import freqtrade.exchange as ft

    cls = getattr(ft, name.title(), Exchange)
    return bool(cls.combine_ft_has(include_futures=False).get("stoploss_on_exchange"))


@pytest.mark.parametrize(
    "name", ["binance", "bybit", "okx", "gate", "kraken", "hyperliquid", "coinbaseexchange"]
)
def test_stoploss_on_exchange_is_freqtrades_spot_capability(name: str) -> None:
    assert exchanges.supports_stoploss_on_exchange(name) is _freqtrade_spot_has(name)


def test_known_stoploss_on_exchange() -> None:
    assert exchanges.supports_stoploss_on_exchange("binance")
    assert exchanges.supports_stoploss_on_exchange("okx")
    # Freqtrade has it on bybit and hyperliquid for futures only; bots trade spot.
    assert not exchanges.supports_stoploss_on_exchange("bybit")
    assert not exchanges.supports_stoploss_on_exchange("hyperliquid")


def _wire(mode: str, exchange: str) -> dict[str, Any]:
    wire: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "livebot.yaml").read_text())["spec"]
    wire["mode"] = mode
    wire["exchange"] = {"name": exchange, "credentialsSecretRef": {"name": "keys"}}
    if mode == "live":
        wire["promotion"]["approval"] = {
            "approvedBy": "alice",
            "approvedAt": "2026-11-01T10:00:00Z",
            "reference": "https://git.example/pr/1",
            "codeHash": "a" * 64,
        }
    return wire


def test_testnet_without_a_sandbox_is_refused_by_the_model() -> None:
    with pytest.raises(
        ValidationError, match=r"exchange kraken has no sandbox \(testnet\) in ccxt"
    ):
        LiveBotSpec.model_validate(_wire("testnet", "kraken"))
    # The same exchange is fine for the other modes, and testnet is fine with a sandbox.
    assert LiveBotSpec.model_validate(_wire("live", "kraken")).exchange.name == "kraken"
    assert LiveBotSpec.model_validate(_wire("dryRun", "kraken")).mode == "dryRun"
    assert LiveBotSpec.model_validate(_wire("testnet", "binance")).mode == "testnet"


def test_the_crd_rule_carries_the_generated_list() -> None:
    rules = LiveBotSpec.model_json_schema()["x-kubernetes-validations"]
    (rule,) = [r for r in rules if r.get("fieldPath") == ".exchange.name"]
    for name in exchanges.SANDBOX_EXCHANGES:
        assert f"'{name}'" in rule["rule"]
    assert "'kraken'" not in rule["rule"]
    assert "self.exchange.name" in rule["messageExpression"]
