"""Open positions survive the pod: a real dry-run `freqtrade trade` (local executor, local
exchange double) opens a trade; its pod is replaced twice (a spec edit, then a breaker trip and
reset) and each new pod's bot still holds and manages the same open trade.

The local executor plays the pod's storage as the pod has it (an emptyDir is new with every
pod), so this passes only if the pod keeps its trade database outside itself."""

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

from tradebot.executors.local_bots import LocalBotExecutor
from tradebot.freqtrade.rest import BotApiError, BotClient, BotUnreachable
from tradebot.records.bot_databases import bot_database_name, drop_bot_database
from tradebot_testing.exchange_double import ExchangeDouble

G, V = "tradebot.dev", "v1alpha1"
BOT = "keeper"


def _apply(kubectl: Any, namespace: str, *docs: dict[str, Any]) -> None:
    for doc in docs:
        kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(doc))


def _livebot(api: Any, namespace: str) -> dict[str, Any]:
    return dict(
        client.CustomObjectsApi(api).get_namespaced_custom_object(G, V, namespace, "livebots", BOT)
    )


def _pods(api: Any, namespace: str) -> list[Any]:
    return list(
        client.CoreV1Api(api)
        .list_namespaced_pod(namespace, label_selector="tradebot.dev/kind=livebot")
        .items
    )


def _open_trades(rest: BotClient) -> list[tuple[int, str]] | None:
    """(trade id, pair) of the bot's open trades; None while its API does not answer."""
    try:
        return sorted(
            (int(t["trade_id"]), str(t["pair"])) for t in rest.status() if t.get("is_open", True)
        )
    except (BotUnreachable, BotApiError):
        return None


class Bot:
    """The LiveBot's current pod and local process, as the test sees them."""

    def __init__(self, api: Any, namespace: str, state: Path) -> None:
        self.api, self.namespace, self.state = api, namespace, state
        self.uid = str(_livebot(api, namespace)["metadata"]["uid"])
        core = client.CoreV1Api(api)
        secret = next(
            s
            for s in core.list_namespaced_secret(namespace).items
            if s.metadata.name.startswith("bot-api-")
        )
        creds = {k: base64.b64decode(v).decode() for k, v in secret.data.items()}
        self.username, self.password = creds["username"], creds["password"]

    def running_pod(self) -> Any | None:
        pods = [
            p
            for p in _pods(self.api, self.namespace)
            if p.status.phase == "Running" and not p.metadata.deletion_timestamp
        ]
        return pods[0] if len(pods) == 1 else None

    def rest(self) -> BotClient | None:
        process = LocalBotExecutor(self.state).running(self.uid)
        if process is None:
            return None
        return BotClient(process.url, self.username, self.password, timeout=3)

    def serving(self, previous_pod: str | None) -> tuple[str, int, list[tuple[int, str]]] | None:
        """(pod uid, process pid, open trades) once a pod other than `previous_pod` runs, the
        bot is Running and its new process answers; else None."""
        pod = self.running_pod()
        status = _livebot(self.api, self.namespace).get("status") or {}
        if pod is None or pod.metadata.uid == previous_pod or status.get("phase") != "Running":
            return None
        process = LocalBotExecutor(self.state).running(self.uid)
        rest = self.rest()
        if process is None or rest is None:
            return None
        trades = _open_trades(rest)
        if trades is None:
            return None
        # The process must be the one started for this pod, not the old pod's.
        info = json.loads(
            (LocalBotExecutor(self.state).bot_dir(self.uid) / "process.json").read_text()
        )
        if not str(info["config_hash"]).endswith(pod.metadata.uid):
            return None
        return pod.metadata.uid, process.pid, trades


@pytest.mark.parametrize("records", ["sqlite", "postgres"])
def test_an_open_trade_survives_a_spec_edit_and_a_breaker_trip(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    tmp_path: Path,
    crds_installed,
    records: str,
    request: pytest.FixtureRequest,
):
    """On SQLite records the trade database is on the bot's claim; on PostgreSQL records in
    a database of the bot's own on that server (and user-data is an emptyDir)."""
    state = tmp_path / "state"
    dsn = (
        str(request.getfixturevalue("postgres_dsn"))
        if records == "postgres"
        else f"sqlite://{tmp_path / 'r.db'}"
    )
    on_postgres = records == "postgres"
    custom = client.CustomObjectsApi(api_client)
    bot = copy.deepcopy(example("LiveBot", "ema-rsi-dry"))
    bot["metadata"] = {"name": BOT, "labels": {"tradebot.dev/fleet": "main"}}
    # Its trades are exited below before it goes: then, and only by asking, its database goes
    # too (the default keeps it: tests/integration/test_bot_storage.py).
    bot["spec"]["storage"] = {"reclaimPolicy": "Delete"}
    cb = copy.deepcopy(example("CircuitBreaker"))
    # Nothing trips it but a person; a trip only stops the bot, its trades stay open.
    cb["spec"]["limits"] = {"maxDrawdown": 0.9}
    cb["spec"]["forceExit"] = False
    with (
        ExchangeDouble() as double,
        running_operator(
            cluster.kubeconfig,
            namespace,
            executor="local",
            exchange_double_url=double.url,
            database_dsn=dsn,
            local_state_dir=state,
        ),
    ):
        _apply(kubectl, namespace, example("Strategy", "ema-rsi"), bot, cb)
        wait_for(
            lambda: (_livebot(api_client, namespace).get("status") or {}).get("phase") == "Running",
            120,
            what="the bot Running",
        )
        keeper = Bot(api_client, namespace, state)
        first_pod, first_pid, trades = wait_for(
            lambda: keeper.serving(None), 120, what="the bot's API answering"
        )
        assert trades == []
        core = client.CoreV1Api(api_client)
        claims = core.list_namespaced_persistent_volume_claim(namespace).items
        if on_postgres:
            assert claims == []
            pod = keeper.running_pod()
            env = {e.name: e for e in pod.spec.containers[0].env}
            db_ref = env["FREQTRADE__DB_URL"].value_from.secret_key_ref
            assert db_ref.name.startswith("bot-db-")
        else:
            # The claim is bound to a volume of the local cluster; the trades are on it.
            assert [c.status.phase for c in claims] == ["Bound"]
            assert claims[0].metadata.owner_references[0].kind == "LiveBot"
            volume = Path(
                core.read_persistent_volume(claims[0].spec.volume_name).spec.host_path.path
            )

        rest = keeper.rest()
        assert rest is not None
        rest.force_enter("BTC/USDT")
        opened = wait_for(lambda: (t := _open_trades(rest)) and t, 60, what="the trade open")
        assert [pair for _, pair in opened] == ["BTC/USDT"]

        # (a) A spec edit changes the config: the operator replaces the pod.
        kubectl(
            "patch",
            "livebot",
            BOT,
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"spec": {"maxOpenTrades": 1}}',
        )
        second_pod, second_pid, trades = wait_for(
            lambda: keeper.serving(first_pod), 180, what="a new pod's bot answering"
        )
        assert second_pid != first_pid
        assert trades == opened, "the new pod's bot lost the open trade"
        new_rest = keeper.rest()
        assert new_rest is not None
        assert new_rest.show_config()["max_open_trades"] == 1  # the edit is in force

        # (b) A manual trip stops the bot and removes its pod; a reset brings a new one.
        custom.patch_namespaced_custom_object(
            G,
            V,
            namespace,
            "circuitbreakers",
            "main-fleet",
            {"metadata": {"annotations": {"tradebot.dev/trip": "t1"}}},
        )
        wait_for(
            lambda: (_livebot(api_client, namespace).get("status") or {}).get("phase") == "Tripped",
            60,
            what="the bot Tripped",
        )
        wait_for(
            lambda: (
                LocalBotExecutor(state).running(keeper.uid) is None
                and not _pods(api_client, namespace)
            ),
            60,
            what="its pod and process gone",
        )
        custom.patch_namespaced_custom_object(
            G,
            V,
            namespace,
            "circuitbreakers",
            "main-fleet",
            {"metadata": {"annotations": {"tradebot.dev/reset": "r1"}}},
        )
        third_pod, third_pid, trades = wait_for(
            lambda: keeper.serving(second_pod), 180, what="the bot back after the reset"
        )
        assert third_pod not in (first_pod, second_pod)
        assert third_pid != second_pid
        assert trades == opened, "the bot lost the open trade across the trip"
        # Still managed: the trade can be exited through the new bot.
        final = keeper.rest()
        assert final is not None
        final.force_exit_all()
        wait_for(lambda: _open_trades(final) == [], 60, what="the trade exited")
        closed = [t for t in final.trades() if not t.get("is_open")]
        assert [int(t["trade_id"]) for t in closed] == [opened[0][0]]

        # The claim (and its volume) or the database's Secret goes with the LiveBot
        # (reclaimPolicy Delete).
        kubectl("delete", "livebot", BOT, "-n", namespace)
        if on_postgres:
            wait_for(
                lambda: (
                    not [
                        s
                        for s in core.list_namespaced_secret(namespace).items
                        if s.metadata.name.startswith("bot-db-")
                    ]
                ),
                60,
                what="the bot's database Secret collected",
            )
            # The LiveBot delete handler drops the database (bot_storage.remove); the test
            # must not leave one on the shared server either way.
            drop_bot_database(dsn, bot_database_name(keeper.uid))
        else:
            wait_for(
                lambda: (
                    not core.list_namespaced_persistent_volume_claim(namespace).items
                    and not volume.exists()
                ),
                60,
                what="the claim and its volume removed",
            )
