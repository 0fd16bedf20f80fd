"""No false trips after downtime: with a real `freqtrade trade --dry-run` bot (local executor,
local exchange double) under a breaker with staleHeartbeat, the operator is killed and stays
away longer than staleHeartbeat; its restart must not trip the healthy bot although the
heartbeat in status is older than the window. Positive control: the same bot made really
silent (SIGSTOP) trips the breaker for staleHeartbeat once this process has watched it for
the window."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kubernetes import client
from tests.support.cluster import stop_process
from tests.support.manifests import example
from tests.support.operator_env import operator_env
from tests.support.wait import wait_for

from tradebot.domain.time import parse_time
from tradebot.executors.local_bots import LocalBotExecutor
from tradebot_testing.exchange_double import ExchangeDouble

G, V = "tradebot.dev", "v1alpha1"
STALE_S = 20


def _get(api: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    return dict(
        client.CustomObjectsApi(api).get_namespaced_custom_object(G, V, namespace, plural, name)
    )


def _status(api: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    return dict(_get(api, namespace, plural, name).get("status") or {})


def _heartbeat(api: Any, namespace: str) -> dt.datetime | None:
    return parse_time(_status(api, namespace, "livebots", "healthy").get("lastHeartbeat"))


def _operator(
    kubeconfig: Path, namespace: str, state: Path, double_url: str, records: str
) -> subprocess.Popen[bytes]:
    env = operator_env(
        kubeconfig,
        database_dsn=records,
        local_state_dir=state,
        exchange_double_url=double_url,
        bot_poll_seconds=3,  # heartbeats well inside the window on a busy machine too
    )
    with (state / "operator.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tradebot.cli", "operator", "-n", namespace],
            env={**env, "TRADEBOT_EXECUTOR": "local"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def test_an_operator_outage_longer_than_stale_heartbeat_trips_no_healthy_bot(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    bot = copy.deepcopy(example("LiveBot", "ema-rsi-dry"))
    bot["metadata"] = {"name": "healthy", "labels": {"fleet": "main"}}
    cb = copy.deepcopy(example("CircuitBreaker"))
    cb["metadata"] = {"name": "watch"}
    cb["spec"]["selector"] = {"matchLabels": {"fleet": "main"}}
    cb["spec"]["limits"] = {"staleHeartbeat": f"{STALE_S}s"}
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": [example("Strategy", "ema-rsi"), bot]}
        ),
    )
    records = f"sqlite://{tmp_path / 'r.db'}"
    executor = LocalBotExecutor(state)
    stopped_pid: int | None = None
    with ExchangeDouble() as double:
        operator = _operator(cluster.kubeconfig, namespace, state, double.url, records)
        try:
            wait_for(lambda: _heartbeat(api_client, namespace), 180, what="a monitored bot")
            # The breaker once the bot answers: Freqtrade's own start-up may take longer than
            # the window on a loaded machine, which is a silence of the bot's own.
            client.CustomObjectsApi(api_client).create_namespaced_custom_object(
                G, V, namespace, "circuitbreakers", cb
            )
            wait_for(
                lambda: _status(api_client, namespace, "circuitbreakers", "watch").get("state"),
                30,
                what="the breaker's first round",
            )
            uid = _get(api_client, namespace, "livebots", "healthy")["metadata"]["uid"]
            operator.kill()  # a crash: the bot keeps running, nobody writes its heartbeat
            operator.wait(timeout=10)
            last = _heartbeat(api_client, namespace)
            assert last is not None
            # Away longer than the window: by the heartbeat in status, the bot is stale.
            wait_for(
                lambda: dt.datetime.now(dt.UTC) - last > dt.timedelta(seconds=STALE_S + 3),
                STALE_S + 30,
                interval=1,
                what="the outage to outlast staleHeartbeat",
            )
            assert executor.running(uid) is not None  # healthy all along
            restarted = dt.datetime.now(dt.UTC)
            operator = _operator(cluster.kubeconfig, namespace, state, double.url, records)
            # The restarted operator's rounds: fresh heartbeats, and more than a whole window
            # of breaker rounds (one a second) after its first.
            wait_for(
                lambda: (h := _heartbeat(api_client, namespace)) and h > restarted,
                90,
                what="a heartbeat from the restarted operator",
            )
            until = time.monotonic() + STALE_S + 5
            while time.monotonic() < until:
                assert _status(api_client, namespace, "circuitbreakers", "watch").get("state") in (
                    None,
                    "Closed",
                ), _status(api_client, namespace, "circuitbreakers", "watch")
                assert operator.poll() is None, (state / "operator.log").read_text()[-3000:]
                time.sleep(1)
            assert _status(api_client, namespace, "livebots", "healthy")["phase"] == "Running"

            # Positive control: the bot really silent (its process stopped) trips the breaker.
            running = executor.running(uid)
            assert running is not None
            stopped_pid = running.pid
            os.kill(stopped_pid, signal.SIGSTOP)
            silenced = time.monotonic()
            status = wait_for(
                lambda: (
                    (s := _status(api_client, namespace, "circuitbreakers", "watch")).get("state")
                    == "Open"
                    and s
                ),
                STALE_S + 60,
                what="the silent bot to trip the breaker",
            )
            assert status["tripLimits"] == ["staleHeartbeat"], status
            assert "bot healthy: no heartbeat" in status["reason"]
            assert time.monotonic() - silenced >= STALE_S - 5
        finally:
            if stopped_pid is not None:
                with contextlib.suppress(ProcessLookupError):  # the trip may have ended it
                    os.kill(stopped_pid, signal.SIGCONT)
            stop_process(operator, timeout=40)
