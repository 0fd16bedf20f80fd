"""Recognisable fake secrets through the whole flow (a real backtest, a reachable dry-run bot
whose REST API the operator and this test log in to, a testnet bot with exchange keys, a
breaker trip with an incident, records in PostgreSQL reached with a DSN that carries a
password), then every place a reader or a bot could look is searched for them.

Each haystack first has to contain something known (its positive control): a search of an
empty or wrong haystack would find no secret and prove nothing.
"""

from __future__ import annotations

import base64
import copy
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.support.leaks import leaks
from tests.support.manifests import example
from tests.support.operator import running_operator
from tests.support.postgres import LocalPostgres
from tests.support.wait import wait_for

from tradebot.executors.local_bots import LocalBotExecutor
from tradebot.freqtrade.rest import BotApiError, BotClient
from tradebot.localcluster import Ports
from tradebot.settings import ModeFloor, PromotionFloors
from tradebot_testing.exchange_double import ExchangeDouble

G, V = "tradebot.dev", "v1alpha1"
FAKE_KEY = "FAKEKEY-7f3a9c-DO-NOT-LEAK"
FAKE_SECRET = "fakesecret-91b2e4-DO-NOT-LEAK"
FAKE_PASSWORD = "fakepass-55d1-DO-NOT-LEAK"
# The records DSN's password: the server trusts the test user, so any password connects,
# and the operator really holds and uses it (settings and its environment, as in a pod).
DSN_PASSWORD = "dsnpass-3e8f-DO-NOT-LEAK"


def _apply(kubectl: Any, namespace: str, *docs: dict[str, Any]) -> None:
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(docs)}),
    )


def _custom(api: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    return dict(
        client.CustomObjectsApi(api).get_namespaced_custom_object(G, V, namespace, plural, name)
    )


def _cluster_view(api: Any, namespace: str) -> dict[str, str]:
    """What a reader of the cluster sees, Secrets excepted, one haystack per kind."""
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)

    def dump(obj: Any) -> str:
        return json.dumps(api.sanitize_for_serialization(obj))

    return {
        "custom objects and statuses": json.dumps(
            [
                custom.list_namespaced_custom_object(G, V, namespace, plural)
                for plural in ("strategies", "backtests", "livebots", "circuitbreakers")
            ]
        ),
        "events": dump(core.list_namespaced_event(namespace)),
        "configmaps": dump(core.list_namespaced_config_map(namespace)),
        "pods": dump(core.list_namespaced_pod(namespace)),
        "leases, network policies, jobs": json.dumps(
            [
                dump(client.CoordinationV1Api(api).list_namespaced_lease(namespace)),
                dump(client.NetworkingV1Api(api).list_namespaced_network_policy(namespace)),
                dump(client.BatchV1Api(api).list_namespaced_job(namespace)),
            ]
        ),
    }


def _rows(dsn: str) -> str:
    """Every row of every table of the records database, as JSON text."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        tables = [
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        rows = 'SELECT row_to_json(t)::text FROM "{}" t'  # the catalog's own table names
        return "\n".join(
            str(row[0]) for table in tables for row in conn.execute(rows.format(table))
        )


def _environ(pid: int) -> str:
    return Path(f"/proc/{pid}/environ").read_bytes().replace(b"\0", b"\n").decode()


def _api_secrets(api: Any, namespace: str) -> dict[str, dict[str, str]]:
    """The generated bot API credentials, by LiveBot name."""
    found = {}
    for s in (
        client.CoreV1Api(api)
        .list_namespaced_secret(namespace, label_selector="tradebot.dev/kind=livebot")
        .items
    ):
        if not s.metadata.name.startswith("bot-api-"):
            continue  # a bot's database URL (PostgreSQL records)
        found[s.metadata.labels["tradebot.dev/livebot"]] = {
            k: base64.b64decode(v).decode() for k, v in (s.data or {}).items()
        }
    return found


def test_no_secret_appears_in_logs_cluster_objects_records_metrics_or_a_bots_environment(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    tmp_path: Path,
    crds_installed: Any,
    postgres_server: LocalPostgres,
    postgres_dsn: str,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
):
    core = client.CoreV1Api(api_client)
    user = postgres_server.user
    dsn = postgres_dsn.replace(f"//{user}@", f"//{user}:{DSN_PASSWORD}@")
    assert DSN_PASSWORD in dsn
    monkeypatch.setenv("TRADEBOT_DATABASE_DSN", dsn)  # the operator's environment holds it
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {
                "name": "exchange-keys",
                "labels": {"tradebot.dev/credentials": "testnet"},
            },
            "stringData": {"key": FAKE_KEY, "secret": FAKE_SECRET, "password": FAKE_PASSWORD},
        },
    )
    strategy = example("Strategy", "ema-rsi")
    _apply(kubectl, namespace, strategy, example("Backtest", "ema-rsi-sample"))
    reachable = copy.deepcopy(example("LiveBot", "ema-rsi-dry"))
    reachable["metadata"] = {"name": "reachable"}
    keyed = copy.deepcopy(example("LiveBot", "ema-rsi-dry"))
    keyed["metadata"] = {"name": "keyed", "labels": {"tradebot.dev/fleet": "main"}}
    keyed["spec"].update(
        mode="testnet",
        exchange={
            "name": "binance",
            "credentialsSecretRef": {"name": "exchange-keys", "passwordKey": "password"},
        },
        promotion={
            "backtestRef": {"name": "ema-rsi-sample"},
            "minProfit": -1,
            "maxDrawdown": 1,
            "minTrades": 0,
            "minDryRunHours": 0,
        },
    )
    breaker = copy.deepcopy(example("CircuitBreaker"))
    breaker["spec"]["limits"] = {"staleHeartbeat": "4s"}  # kwok bots never answer: it trips
    state = tmp_path / "state"
    metrics_port = Ports.free().kwok
    bot_env = ""
    # A real backtest and a real dry-run bot (the local executor runs Freqtrade), ...
    with (
        ExchangeDouble() as double,
        running_operator(
            cluster.kubeconfig,
            namespace,
            executor="local",
            database_dsn=dsn,
            local_state_dir=state,
            reconcile_interval_seconds=1.0,
            exchange_double_url=double.url,
            metrics_port=metrics_port,
        ) as first,
    ):
        wait_for(
            lambda: (
                (
                    _custom(api_client, namespace, "backtests", "ema-rsi-sample").get("status")
                    or {}
                ).get("phase")
                == "Succeeded"
            ),
            240,
            what="the real backtest Succeeded",
        )
        _apply(kubectl, namespace, reachable)
        # The operator logged in to the bot's REST API: the login path has run.
        wait_for(
            lambda: (
                _custom(api_client, namespace, "livebots", "reachable").get("status") or {}
            ).get("lastHeartbeat"),
            120,
            what="the reachable bot monitored",
        )
        uid = _custom(api_client, namespace, "livebots", "reachable")["metadata"]["uid"]
        process = LocalBotExecutor(state).running(uid)
        assert process is not None
        creds = _api_secrets(api_client, namespace)["reachable"]
        # A wrong password, then the right one, as a person with the Secret would.
        with pytest.raises(BotApiError):
            BotClient(process.url, creds["username"], "wrong-password").snapshot()
        assert BotClient(process.url, creds["username"], creds["password"]).snapshot()
        bot_env = _environ(process.pid)
        metrics_text = (
            urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
            .read()
            .decode()
        )
    # ... then the testnet bot, which the local executor refuses to run: its pod is a kwok
    # pod of the kubernetes executor.
    floors = PromotionFloors(
        testnet=ModeFloor(
            min_profit=-1,
            max_drawdown=1,
            min_trades=0,
            min_dry_run_hours=0,
            require_bias_analysis=False,
        )
    )
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="kubernetes",
        database_dsn=dsn,
        local_state_dir=state,
        allowed_modes=("dryRun", "testnet"),
        promotion_floors=floors,
    ) as second:
        _apply(kubectl, namespace, keyed)
        pods = wait_for(
            lambda: (
                core.list_namespaced_pod(
                    namespace, label_selector="tradebot.dev/livebot=keyed"
                ).items
            ),
            60,
            what="the testnet bot's pod",
        )
        # The pods as they were while both bots ran (the trip removes the testnet bot's).
        running_pods = json.dumps(
            api_client.sanitize_for_serialization(core.list_namespaced_pod(namespace))
        )
        _apply(kubectl, namespace, breaker)
        wait_for(
            lambda: (
                _custom(api_client, namespace, "circuitbreakers", "main-fleet").get("status") or {}
            ).get("incidentId"),
            60,
            what="the breaker tripped and recorded its incident",
        )
        api_secrets = _api_secrets(api_client, namespace)
        view = _cluster_view(api_client, namespace)
    # kopf's runner runs the operator under click's test runner, which swaps sys.stderr for
    # a buffer of its own: the operator's lines are there; anything else's, in capfd.
    captured = capfd.readouterr()
    logs = first.output + second.output + captured.out + captured.err
    generated = [v for creds in api_secrets.values() for k, v in creds.items() if k != "username"]
    assert sorted(api_secrets) == ["keyed", "reachable"]
    assert len(generated) == 6  # password, JWT key, websocket token of each: searchable
    # The pod gets keys by reference only.
    env = pods[0].spec.containers[0].env
    assert all(e.value is None for e in env if e.name.startswith("FREQTRADE__EXCHANGE__"))
    state_files = b"".join(p.read_bytes() for p in sorted(state.rglob("*")) if p.is_file())

    view["pods"] += running_pods
    haystacks = {
        **view,
        "operator logs": logs,
        "/metrics": metrics_text,
        "records (PostgreSQL rows)": _rows(postgres_dsn),
        "operator state and bot files": state_files.decode("utf-8", "replace"),
    }
    controls = {
        "custom objects and statuses": ['"lastHeartbeat"', '"keyed"', '"incidentId"'],
        "events": ["Tripped"],
        "configmaps": ["EmaRsiStrategy", "api_server"],
        "pods": ["FREQTRADE__EXCHANGE__KEY", "exchange-keys"],
        "leases, network policies, jobs": ["bot-net-"],
        "operator logs": ['"operator starting"', '"strategy ready"', f'"{namespace}"'],
        "/metrics": [f'tradebot_bot_equity{{bot="reachable",namespace="{namespace}"}}'],
        "records (PostgreSQL rows)": ["trip-", "reachable", "ema-rsi-sample"],
        "operator state and bot files": ["api_server", "freqtrade"],
    }
    assert set(controls) == set(haystacks)
    for where, knowns in controls.items():
        for known in knowns:
            assert known in haystacks[where], f"positive control {known!r} not in {where}"
    for secret in (FAKE_KEY, FAKE_SECRET, FAKE_PASSWORD, DSN_PASSWORD, *generated):
        for where, text in haystacks.items():
            # Decoded too: a secret base64-encoded (binaryData, an encoded value) is a leak.
            assert not leaks(secret, text), f"a secret ({secret[:6]}...) appears in {where}"

    # The bot's own process: its API password is there (positive control), nothing of the
    # operator's (records DSN, kubeconfig, settings) nor another bot's keys.
    assert f"FREQTRADE__API_SERVER__PASSWORD={api_secrets['reachable']['password']}" in bot_env
    for secret in (
        DSN_PASSWORD,
        FAKE_KEY,
        FAKE_SECRET,
        FAKE_PASSWORD,
        *(v for k, v in api_secrets["keyed"].items() if k != "username"),
    ):
        assert not leaks(secret, bot_env), f"a secret ({secret[:6]}...) in the bot's environment"
    assert "TRADEBOT_" not in bot_env
    assert "KUBECONFIG=" not in bot_env
