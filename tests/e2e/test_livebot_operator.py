"""LiveBots on the local cluster with the kubernetes executor (kwok pods): a pod only when it
is safe, never two pods on one account, never one while a breaker is open."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

from kubernetes import client
from tests.support.manifests import example, launched
from tests.support.operator import pod_watch, running_operator
from tests.support.wait import wait_for

G, V = "tradebot.dev", "v1alpha1"
APPROVAL = {
    "approvedBy": "alice",
    "approvedAt": "2026-11-01T10:00:00Z",
    "reference": "https://git.example/org/bots/pull/7",
    "codeHash": "0" * 64,
}
FAKE_KEY, FAKE_SECRET = "AKIA-FAKE-EXCHANGE-KEY-123", "fake-exchange-secret-456"


def _apply(kubectl: Any, namespace: str, *docs: dict[str, Any]) -> None:
    for doc in docs:
        kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(doc))


def _bot(name: str, **spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(example("LiveBot", "ema-rsi-dry"))
    doc["metadata"] = {"name": name, "labels": {"tradebot.dev/fleet": "main"}}
    doc["spec"].update(spec)
    return doc


def _status(api: Any, namespace: str, name: str) -> dict[str, Any]:
    obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
        G, V, namespace, "livebots", name
    )
    return dict(obj.get("status") or {})


def _pods(api: Any, namespace: str) -> list[Any]:
    return list(
        client.CoreV1Api(api)
        .list_namespaced_pod(namespace, label_selector="tradebot.dev/kind=livebot")
        .items
    )


def _evidence(api: Any, kubectl: Any, namespace: str) -> None:
    """A Strategy, and a Succeeded Backtest of its current code, written before the operator
    starts (the gates read this status; producing it for real is the Backtest tests' job)."""
    from tradebot.freqtrade.introspect import code_hash

    strategy = example("Strategy", "ema-rsi")
    bt = example("Backtest", "ema-rsi-sample")
    _apply(kubectl, namespace, strategy, bt)
    client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        G,
        V,
        namespace,
        "backtests",
        "ema-rsi-sample",
        {
            "status": {
                "phase": "Succeeded",
                "codeHash": code_hash(strategy["spec"]["code"]),
                "cleanedUp": True,
                "conditions": [
                    {
                        "type": "Recorded",
                        "status": "True",
                        "reason": "Recorded",
                        "message": "",
                        "lastTransitionTime": "2026-11-01T00:00:00Z",
                    }
                ],
                "results": {"profitTotal": "0.05000000", "maxDrawdown": "0.10000000", "trades": 40},
                "launched": launched(bt, strategy),
            }
        },
    )


def _secret(
    api: Any, namespace: str, name: str = "exchange-keys", mode: str | None = "testnet"
) -> None:
    labels = {"tradebot.dev/credentials": mode} if mode else {}
    client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": name, "labels": labels},
            "stringData": {"key": FAKE_KEY, "secret": FAKE_SECRET},
        },
    )


def test_dry_run_bot_gets_one_safe_pod(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    _apply(kubectl, namespace, example("Strategy", "ema-rsi"))
    with running_operator(
        cluster.kubeconfig,
        namespace,
        executor="kubernetes",
        database_dsn=f"sqlite://{tmp_path / 'r.db'}",
    ):
        _apply(kubectl, namespace, _bot("dry"))
        status = wait_for(
            lambda: (s := _status(api_client, namespace, "dry")).get("phase") == "Running" and s,
            90,
            what="dry bot Running",
        )
        pods = _pods(api_client, namespace)
        assert [p.metadata.name for p in pods] == [status["podName"]]
        pod = pods[0]
        env = {e.name: e for e in pod.spec.containers[0].env}
        assert "FREQTRADE__EXCHANGE__KEY" not in env  # a dry run signs nothing
        password = env["FREQTRADE__API_SERVER__PASSWORD"].value_from.secret_key_ref
        assert password.optional in (None, False)
        secret = client.CoreV1Api(api_client).read_namespaced_secret(password.name, namespace)
        value = base64.b64decode(secret.data[password.key]).decode()
        # The generated password is nowhere but in its Secret.
        cm = client.CoreV1Api(api_client).list_namespaced_config_map(namespace).items
        dumped = json.dumps(
            [client.ApiClient().sanitize_for_serialization(o) for o in (pod, *cm)]
        ) + json.dumps(status)
        assert value not in dumped
        policies = (
            client.NetworkingV1Api(api_client).list_namespaced_network_policy(namespace).items
        )
        assert len(policies) == 1
        assert policies[0].spec.ingress[0].ports[0].port == 8080

        kubectl(
            "patch",
            "livebot",
            "dry",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"spec": {"suspend": true}}',
        )
        wait_for(
            lambda: _status(api_client, namespace, "dry").get("phase") == "Suspended",
            60,
            what="Suspended",
        )
        wait_for(lambda: not _pods(api_client, namespace), 60, what="pod gone")


def test_live_bot_without_evidence_never_gets_a_pod(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    _apply(kubectl, namespace, example("Strategy", "ema-rsi"), example("CircuitBreaker"))
    _secret(api_client, namespace, mode="live")
    live = _bot(
        "live",
        mode="live",
        exchange={"name": "binance", "credentialsSecretRef": {"name": "exchange-keys"}},
    )
    from tradebot.freqtrade.introspect import code_hash

    approval = {**APPROVAL, "codeHash": code_hash(example("Strategy", "ema-rsi")["spec"]["code"])}
    live["spec"]["promotion"] = {
        **live["spec"]["promotion"],
        "approval": approval,
        "backtestRef": {"name": "never-ran"},
    }
    with (
        pod_watch(api_client, namespace, "tradebot.dev/kind") as pods,
        running_operator(
            cluster.kubeconfig,
            namespace,
            executor="kubernetes",
            database_dsn=f"sqlite://{tmp_path / 'r.db'}",
        ),
    ):
        _apply(kubectl, namespace, live)
        # Without its digest approved it is held before the gates (ApprovalStale); approved,
        # the gates judge it.
        digest = wait_for(
            lambda: _status(api_client, namespace, "live").get("promotionDigest"),
            60,
            what="the bot's promotion digest",
        )
        kubectl(
            "patch",
            "livebot",
            "live",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"promotion": {"approval": {"digest": digest}}}}),
        )
        status = wait_for(
            lambda: (
                (s := _status(api_client, namespace, "live")).get("phase") == "Blocked"
                and s.get("gates")
                and s
            ),
            60,
            what="live bot Blocked by its gates",
        )
        gate = {g["name"]: g for g in status["gates"]}
        assert gate["backtest"]["passed"] is False
        assert "never-ran" in gate["backtest"]["message"]
        assert gate["approval"]["passed"] is True
        import time

        time.sleep(5)  # a few more rounds: still nothing
    assert pods.added == []
    assert FAKE_KEY not in json.dumps(status)


def test_two_bots_on_one_account_never_run_two_pods_and_a_breaker_stops_them(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    _evidence(api_client, kubectl, namespace)
    _secret(api_client, namespace)
    promotion = {
        "backtestRef": {"name": "ema-rsi-sample"},
        "minProfit": 0,
        "maxDrawdown": 0.2,
        "minTrades": 5,
        "minDryRunHours": 0,
    }
    exchange = {"name": "binance", "credentialsSecretRef": {"name": "exchange-keys"}}
    bots = [
        _bot(n, mode="testnet", exchange=exchange, promotion=promotion)
        for n in ("twin-a", "twin-b")
    ]
    with (
        pod_watch(api_client, namespace, "tradebot.dev/account") as pods,
        running_operator(
            cluster.kubeconfig,
            namespace,
            executor="kubernetes",
            database_dsn=f"sqlite://{tmp_path / 'r.db'}",
        ),
    ):
        kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": bots}),
        )
        phases = wait_for(
            lambda: (
                (
                    p := sorted(
                        str(_status(api_client, namespace, b).get("phase"))
                        for b in ("twin-a", "twin-b")
                    )
                )
                == ["Blocked", "Running"]
                and p
            ),
            90,
            what="one Running, one Blocked",
        )
        blocked = next(
            b
            for b in ("twin-a", "twin-b")
            if _status(api_client, namespace, b)["phase"] == "Blocked"
        )
        assert "account" in _status(api_client, namespace, blocked)["message"]
        running_pod = _pods(api_client, namespace)[0]
        env = {e.name: e for e in running_pod.spec.containers[0].env}
        key_ref = env["FREQTRADE__EXCHANGE__KEY"].value_from.secret_key_ref
        assert (key_ref.name, key_ref.key) == ("exchange-keys", "key")
        assert key_ref.optional in (None, False)  # a missing Secret must stop the pod

        # No container runs on kwok, so the running bot never answers its monitoring: a
        # breaker with a short staleHeartbeat trips, and every selected bot stays stopped.
        cb = copy.deepcopy(example("CircuitBreaker"))
        cb["spec"]["limits"] = {"staleHeartbeat": "3s"}
        _apply(kubectl, namespace, cb)
        wait_for(
            lambda: all(
                _status(api_client, namespace, b).get("phase") == "Tripped"
                for b in ("twin-a", "twin-b")
            ),
            60,
            what="both Tripped",
        )
        wait_for(lambda: not _pods(api_client, namespace), 60, what="pods gone")
        reason = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
            G, V, namespace, "circuitbreakers", "main-fleet"
        )["status"]["reason"]
        assert "heartbeat" in reason
    assert phases == ["Blocked", "Running"]
    assert max(pods.max_per_value.values()) == 1, pods.max_per_value
    assert FAKE_SECRET not in json.dumps(
        [_status(api_client, namespace, b) for b in ("twin-a", "twin-b")]
    )


def test_breaker_trips_a_real_dry_run_bot_into_loss_and_stops_it(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    """A real `freqtrade trade --dry-run` (local executor, local exchange double): the bot
    enters, the double's price falls 30 %, the breaker sees the drawdown and stops the bot;
    a reset token lets it run again."""
    from tradebot.freqtrade.rest import BotClient
    from tradebot_testing.exchange_double import ExchangeDouble

    core = client.CoreV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    bot = _bot("loser", stakeAmount="900", limits={"maxStakePerTrade": "1000"})
    cb = copy.deepcopy(example("CircuitBreaker"))
    cb["spec"]["limits"] = {"maxDrawdown": 0.05}
    with (
        ExchangeDouble() as double,
        running_operator(
            cluster.kubeconfig,
            namespace,
            executor="local",
            exchange_double_url=double.url,
            database_dsn=f"sqlite://{tmp_path / 'r.db'}",
            local_state_dir=tmp_path / "state",
        ),
    ):
        _apply(kubectl, namespace, example("Strategy", "ema-rsi"), bot, cb)
        status = wait_for(
            lambda: (s := _status(api_client, namespace, "loser")).get("lastHeartbeat") and s,
            120,
            what="a monitored bot",
        )
        assert status["phase"] == "Running"
        assert status["equity"] == status["peakEquity"]
        secret = core.read_namespaced_secret(
            next(
                s.metadata.name
                for s in core.list_namespaced_secret(namespace).items
                if s.metadata.name.startswith("bot-api-")
            ),
            namespace,
        )
        creds = {k: base64.b64decode(v).decode() for k, v in secret.data.items()}
        port = json.loads(next((tmp_path / "state" / "bots").glob("*/process.json")).read_text())[
            "port"
        ]
        rest = BotClient(f"http://127.0.0.1:{port}", creds["username"], creds["password"])
        rest.force_enter("BTC/USDT")
        wait_for(lambda: rest.snapshot().open_trades == 1, 30, what="the trade open")
        double.move("BTC/USDT", -0.3)

        cbs = wait_for(
            lambda: (
                (
                    s := custom.get_namespaced_custom_object(
                        G, V, namespace, "circuitbreakers", "main-fleet"
                    ).get("status")
                    or {}
                ).get("state")
                == "Open"
                and s
            ),
            60,
            what="the breaker Open",
        )
        assert "loser" in cbs["reason"]
        assert "drawdown" in cbs["reason"]
        wait_for(
            lambda: _status(api_client, namespace, "loser").get("phase") == "Tripped",
            30,
            what="the bot Tripped",
        )
        wait_for(lambda: not _pods(api_client, namespace), 30, what="its pod deleted")
        from tradebot.executors.local_bots import LocalBotExecutor

        uid = custom.get_namespaced_custom_object(G, V, namespace, "livebots", "loser")["metadata"][
            "uid"
        ]
        assert LocalBotExecutor(tmp_path / "state").running(uid) is None
        events = core.list_namespaced_event(
            namespace, field_selector="involvedObject.name=main-fleet"
        ).items
        assert [e.reason for e in events if e.reason == "Tripped"] == ["Tripped"]

        # Nothing restarts it while open, whatever is edited ...
        kubectl(
            "patch",
            "livebot",
            "loser",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"spec": {"maxOpenTrades": 1}}',
        )
        import time

        time.sleep(4)
        assert not _pods(api_client, namespace)
        # ... until a person resets the breaker.
        kubectl("annotate", "cb", "main-fleet", "-n", namespace, "tradebot.dev/reset=r1")
        wait_for(
            lambda: (
                custom.get_namespaced_custom_object(
                    G, V, namespace, "circuitbreakers", "main-fleet"
                )["status"]["state"]
                == "Closed"
            ),
            30,
            what="breaker Closed after reset",
        )
        wait_for(
            lambda: _status(api_client, namespace, "loser").get("phase") == "Running",
            90,
            what="the bot running again",
        )
        # Deleting the LiveBot stops its local process too.
        kubectl("delete", "livebot", "loser", "-n", namespace)
        wait_for(
            lambda: LocalBotExecutor(tmp_path / "state").running(uid) is None,
            30,
            what="the local bot stopped after deletion",
        )
