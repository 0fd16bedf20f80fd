"""Recognisable fake secrets through the whole flow (a testnet bot with exchange keys, its
generated API password, a breaker trip with an incident, a backtest), then every log line,
status, Event, ConfigMap, pod spec, record and outbox byte is searched for them."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.support.manifests import example
from tests.support.operator import running_operator
from tests.support.wait import wait_for

G, V = "tradebot.dev", "v1alpha1"
FAKE_KEY = "FAKEKEY-7f3a9c-DO-NOT-LEAK"
FAKE_SECRET = "fakesecret-91b2e4-DO-NOT-LEAK"
FAKE_PASSWORD = "fakepass-55d1-DO-NOT-LEAK"


def _apply(kubectl: Any, namespace: str, *docs: dict[str, Any]) -> None:
    kubectl("apply", "-n", namespace, "-f", "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(docs)}))


def _everything_visible(api: Any, namespace: str) -> str:
    """What a reader of the cluster sees, Secrets excepted: custom objects with their status,
    Events, ConfigMaps, pods (with their env), leases, network policies."""
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    parts: list[Any] = []
    for plural in ("strategies", "backtests", "livebots", "circuitbreakers"):
        parts.append(custom.list_namespaced_custom_object(G, V, namespace, plural))
    for lister in (core.list_namespaced_event, core.list_namespaced_config_map,
                   core.list_namespaced_pod,
                   client.CoordinationV1Api(api).list_namespaced_lease,
                   client.NetworkingV1Api(api).list_namespaced_network_policy,
                   client.BatchV1Api(api).list_namespaced_job):
        parts.append(api.sanitize_for_serialization(lister(namespace)))
    return json.dumps(parts)


def test_no_secret_appears_in_logs_statuses_events_configmaps_or_records(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path,
    crds_installed: Any, capfd: pytest.CaptureFixture[str],
):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_secret(namespace, {
        "metadata": {"name": "exchange-keys"},
        "stringData": {"key": FAKE_KEY, "secret": FAKE_SECRET, "password": FAKE_PASSWORD}})
    strategy = example("Strategy", "ema-rsi")
    _apply(kubectl, namespace, strategy, example("Backtest", "ema-rsi-sample"))
    bot = copy.deepcopy(example("LiveBot", "ema-rsi-dry"))
    bot["metadata"] = {"name": "keyed", "labels": {"tradebot.dev/fleet": "main"}}
    bot["spec"].update(
        mode="testnet",
        exchange={"name": "binance", "credentialsSecretRef": {
            "name": "exchange-keys", "passwordKey": "password"}},
        promotion={"backtestRef": {"name": "ema-rsi-sample"}, "minProfit": -1,
                   "maxDrawdown": 1, "minTrades": 0, "minDryRunHours": 0})
    breaker = copy.deepcopy(example("CircuitBreaker"))
    breaker["spec"]["limits"] = {"staleHeartbeat": "4s"}  # kwok bots never answer: it trips
    state = tmp_path / "state"
    dsn = f"sqlite://{tmp_path / 'records.db'}"
    # A real backtest (the local executor runs Freqtrade), then the testnet bot, which the
    # local executor refuses to run: its pod is a kwok pod of the kubernetes executor.
    with running_operator(cluster.kubeconfig, namespace, executor="local", database_dsn=dsn,
                          local_state_dir=state, reconcile_interval_seconds=1.0):
        wait_for(lambda: (client.CustomObjectsApi(api_client).get_namespaced_custom_object(
            G, V, namespace, "backtests", "ema-rsi-sample").get("status") or {}).get("phase")
            == "Succeeded", 240, what="the real backtest Succeeded")
    with running_operator(cluster.kubeconfig, namespace, executor="kubernetes",
                          database_dsn=dsn, local_state_dir=state):
        _apply(kubectl, namespace, bot)
        pods = wait_for(lambda: core.list_namespaced_pod(
            namespace, label_selector="tradebot.dev/kind=livebot").items, 60,
            what="the testnet bot's pod")
        _apply(kubectl, namespace, breaker)
        wait_for(lambda: (client.CustomObjectsApi(api_client).get_namespaced_custom_object(
            G, V, namespace, "circuitbreakers", "main-fleet").get("status") or {}).get(
            "incidentId"), 60, what="the breaker tripped and recorded its incident")
        api_secret = core.list_namespaced_secret(
            namespace, label_selector="tradebot.dev/kind=livebot").items
        visible = _everything_visible(api_client, namespace)
    logs = capfd.readouterr()
    generated = [base64.b64decode(v).decode() for s in api_secret
                 for k, v in (s.data or {}).items() if k != "username"]
    assert len(generated) == 3  # password, JWT key, websocket token: found, so searchable
    # The pod gets keys by reference only.
    env = pods[0].spec.containers[0].env
    assert all(e.value is None for e in env if e.name.startswith("FREQTRADE__EXCHANGE__"))
    stored = b"".join(p.read_bytes() for p in [*tmp_path.rglob("*.db*"), *state.rglob("*")]
                      if p.is_file())
    haystacks = {"logs": logs.out + logs.err, "cluster": visible,
                 "records and operator state": stored.decode("utf-8", "replace")}
    assert "keyed" in haystacks["cluster"]
    assert "trip-" in haystacks["records and operator state"]
    for secret in (FAKE_KEY, FAKE_SECRET, FAKE_PASSWORD, *generated):
        for where, text in haystacks.items():
            assert secret not in text, f"a secret ({secret[:6]}...) appears in {where}"
