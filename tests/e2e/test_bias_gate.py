"""The bias gate end to end: the operator in-process on the local cluster with the local
executor (real Freqtrade) and the shipped promotion floors. A testnet bot of a strategy that
reads the next candle backtests excellently; the operator runs the bias analyses of its
evidence itself and holds it with BiasDetected, naming the indicator. Its clean twin, same
flow, passes the bias gate (the positive control)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.support.operator import local_operator
from tests.support.wait import wait_for

from tradebot.domain import bias
from tradebot.settings import PromotionFloors
from tradebot_testing import bias_strategies

G, V = "tradebot.dev", "v1alpha1"


def _apply(kubectl: Any, namespace: str, *docs: dict[str, Any]) -> None:
    for doc in docs:
        kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(doc))


def _get(api: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    try:
        return dict(
            client.CustomObjectsApi(api).get_namespaced_custom_object(G, V, namespace, plural, name)
        )
    except client.ApiException as e:
        if e.status == 404:
            return {}
        raise


def _status(api: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    return dict(_get(api, namespace, plural, name).get("status") or {})


def _ready_reason(status: dict[str, Any]) -> str | None:
    found = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    return found[0].get("reason") if found else None


def _docs(prefix: str, class_name: str, code: str) -> list[dict[str, Any]]:
    strategy = {
        "apiVersion": f"{G}/{V}",
        "kind": "Strategy",
        "metadata": {"name": prefix},
        "spec": {"className": class_name, "code": code},
    }
    backtest = {
        "apiVersion": f"{G}/{V}",
        "kind": "Backtest",
        "metadata": {"name": f"{prefix}-bt"},
        "spec": {
            "strategyRef": {"name": prefix},
            "pairs": ["BTC/USDT", "ETH/USDT"],
            "timerange": {"start": "2024-01-10", "end": "2024-01-13"},
            "stakeAmount": "100",
            "maxOpenTrades": 2,
            "fee": 0.001,
            # The options the operator's analysis Backtest copies (the analyses stay off here).
            "analyses": {"minimumTradeAmount": 10, "targetedTradeAmount": 10},
        },
    }
    bot = {
        "apiVersion": f"{G}/{V}",
        "kind": "LiveBot",
        "metadata": {"name": f"{prefix}-bot"},
        "spec": {
            "strategyRef": {"name": prefix},
            "exchange": {"name": "binance", "credentialsSecretRef": {"name": "keys"}},
            "mode": "testnet",
            "pairs": ["BTC/USDT", "ETH/USDT"],
            "stakeAmount": "50",
            "promotion": {
                "backtestRef": {"name": f"{prefix}-bt"},
                "minProfit": 0,
                "maxDrawdown": 0.5,
                "minTrades": 1,
                "minDryRunHours": 0,
            },
        },
    }
    return [strategy, backtest, bot]


# Four real runs (two backtests, two with both analyses): minutes on a loaded machine.
@pytest.mark.timeout(1500)
def test_biased_strategy_is_held_naming_the_bias_and_its_clean_twin_passes(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
) -> None:
    client.CoreV1Api(api_client).create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "keys", "labels": {"tradebot.dev/credentials": "testnet"}},
            "stringData": {"key": "fake-testnet-key", "secret": "fake-testnet-secret"},
        },
    )
    with local_operator(
        cluster,
        namespace,
        tmp_path,
        promotion_floors=PromotionFloors(),  # the shipped floors: bias analyses required
        reconcile_interval_seconds=1.0,
    ):
        _apply(kubectl, namespace, *_docs("biased", *bias_strategies.LOOKAHEAD_BIASED))
        _apply(kubectl, namespace, *_docs("clean", *bias_strategies.CLEAN))

        # The evidence looks excellent: it knew the next close.
        evidence = wait_for(
            lambda: (
                (s := _status(api_client, namespace, "backtests", "biased-bt")).get("phase")
                in ("Succeeded", "Failed")
                and s
            ),
            240,
            what="the biased strategy's Backtest done",
        )
        assert evidence["phase"] == "Succeeded", evidence.get("message")
        assert float(evidence["results"]["profitTotal"]) > 0

        # Nobody asked for the analyses: the bot's promotion made the operator create them.
        made = wait_for(
            lambda: _get(api_client, namespace, "backtests", "biased-bt-bias"),
            60,
            what="the analysis Backtest created",
        )
        assert made["spec"]["analyses"]["lookahead"]
        assert made["spec"]["analyses"]["recursive"]
        assert made["metadata"]["ownerReferences"][0]["name"] == "biased-bt"
        assert made["metadata"]["labels"][bias.LABEL_BIAS_OF] == "biased-bt"

        held = wait_for(
            lambda: (
                (s := _status(api_client, namespace, "livebots", "biased-bot")).get("phase")
                == "Blocked"
                and _ready_reason(s) == bias.REASON_DETECTED
                and s
            ),
            420,
            what="the biased bot held with BiasDetected",
        )
        assert bias_strategies.LOOKAHEAD_INDICATOR in held["message"]
        gate = next(g for g in held["gates"] if g["name"] == "bias")
        assert not gate["passed"]
        assert bias_strategies.LOOKAHEAD_INDICATOR in gate["message"]
        # The other gates pass: bias is what holds it.
        assert all(g["passed"] for g in held["gates"] if g["name"] != "bias"), held["gates"]
        analysed = _status(api_client, namespace, "backtests", "biased-bt-bias")
        assert analysed["bias"]["summary"].startswith(
            f"lookahead: {bias_strategies.LOOKAHEAD_INDICATOR}"
        )

        # The positive control: the same flow for the clean twin passes the bias gate.
        passed = wait_for(
            lambda: (
                (s := _status(api_client, namespace, "livebots", "clean-bot"))
                and any(g["name"] == "bias" and g["passed"] for g in s.get("gates") or [])
                and s
            ),
            420,
            what="the clean twin's bias gate passed",
        )
        assert _ready_reason(passed) != bias.REASON_DETECTED
        assert _status(api_client, namespace, "backtests", "clean-bt-bias")["bias"]["summary"] == (
            "clean"
        )

        # Created once, whatever the number of rounds.
        listed = client.CustomObjectsApi(api_client).list_namespaced_custom_object(
            G, V, namespace, "backtests", label_selector=bias.LABEL_BIAS_OF
        )
        assert sorted(b["metadata"]["name"] for b in listed["items"]) == [
            "biased-bt-bias",
            "clean-bt-bias",
        ]
