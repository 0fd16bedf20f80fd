"""The dead-man's switch with a real `freqtrade trade --dry-run` (local executor, local exchange
double): while the operator supervises the bot it keeps entering trades well past its deadline;
once the operator is gone the bot stops entering by itself within the deadline.

The operator runs as a process of its own and goes by SIGKILL: a crash or a lost node, the case
the switch is for, and one in which the operator can stop nothing on its way out."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from kubernetes import client
from tests.support.cluster import stop_process
from tests.support.manifests import example
from tests.support.operator_env import operator_env
from tests.support.wait import wait_for

from tradebot.domain import supervision
from tradebot.executors.local_bots import LocalBotExecutor
from tradebot.freqtrade.rest import BotClient, BotUnreachable
from tradebot.processes import alive
from tradebot.sidecar import deadman
from tradebot_testing.exchange_double import ExchangeDouble

G, V = "tradebot.dev", "v1alpha1"
DEADLINE_S = 20


def _livebot(api: Any, namespace: str, name: str) -> dict[str, Any]:
    return dict(
        client.CustomObjectsApi(api).get_namespaced_custom_object(G, V, namespace, "livebots", name)
    )


def _rest(api: Any, namespace: str, state: Path) -> tuple[BotClient, str]:
    """A client of the bot's API, and its Basic authorization for raw requests."""
    core = client.CoreV1Api(api)
    secret = next(
        s
        for s in core.list_namespaced_secret(namespace).items
        if s.metadata.name.startswith("bot-api-")
    )
    creds = {k: base64.b64decode(v).decode() for k, v in secret.data.items()}
    port = json.loads(next((state / "bots").glob("*/process.json")).read_text())["port"]
    basic = base64.b64encode(f"{creds['username']}:{creds['password']}".encode()).decode()
    return (
        BotClient(f"http://127.0.0.1:{port}", creds["username"], creds["password"]),
        f"Basic {basic}",
    )


def _force_enter(rest: BotClient, auth: str, pair: str) -> tuple[int, str]:
    """/forceenter's status code and body as they are (BotClient hides a refusal's reason)."""
    request = urllib.request.Request(  # noqa: S310 - the bot's loopback address
        f"{rest.base_url}/api/v1/forceenter",
        data=json.dumps({"pair": pair}).encode(),
        method="POST",
        headers={"Authorization": auth, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _state(rest: BotClient) -> str | None:
    try:
        return str(rest.show_config()["state"])
    except BotUnreachable:
        return None  # a busy machine: asked again


def _operator(
    kubeconfig: Path, namespace: str, state: Path, double_url: str, records: str
) -> subprocess.Popen[bytes]:
    env = operator_env(
        kubeconfig,
        database_dsn=records,
        local_state_dir=state,
        exchange_double_url=double_url,
        # Rounds every 3 s: well inside the 20 s deadline on a busy machine too.
        bot_poll_seconds=3,
    )
    with (state / "operator.log").open("wb") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tradebot.cli",
                "operator",
                "-n",
                namespace,
                "--executor",
                "local",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _mark(api: Any, namespace: str, pod_name: str) -> str | None:
    pod = client.CoreV1Api(api).read_namespaced_pod(pod_name, namespace)
    return (pod.metadata.annotations or {}).get(supervision.ANNOTATION)


def test_a_bot_without_its_operator_stops_entering_within_its_deadline(
    cluster: Any, api_client: Any, kubectl: Any, namespace: str, tmp_path: Path, crds_installed
):
    state = tmp_path / "state"
    state.mkdir()
    bot = copy.deepcopy(example("LiveBot", "ema-rsi-dry"))
    bot["metadata"] = {"name": "guarded"}
    bot["spec"]["supervision"] = {"deadline": f"{DEADLINE_S}s"}
    executor = LocalBotExecutor(state)
    uid = ""
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
    with ExchangeDouble() as double:
        operator = _operator(
            cluster.kubeconfig, namespace, state, double.url, f"sqlite://{tmp_path / 'r.db'}"
        )
        try:
            status = wait_for(
                lambda: (
                    (s := _livebot(api_client, namespace, "guarded").get("status") or {}).get(
                        "lastHeartbeat"
                    )
                    and s
                ),
                120,
                what="a monitored bot",
            )
            uid = _livebot(api_client, namespace, "guarded")["metadata"]["uid"]
            sidecar = wait_for(
                lambda: executor._supervisor(uid), 30, what="the dead-man's sidecar running"
            )
            armed_at = time.monotonic()
            rest, auth = _rest(api_client, namespace, state)
            assert rest.show_config()["state"] == "running"

            # Positive control: supervised for longer than the deadline (and with the sidecar
            # armed for that long), the bot still enters trades.
            time.sleep(DEADLINE_S + 6)
            assert operator.poll() is None, (state / "operator.log").read_text()[-3000:]
            assert executor._supervisor(uid) == sidecar
            assert rest.show_config()["state"] == "running"
            code, body = _force_enter(rest, auth, "BTC/USDT")
            assert code == 200, body
            wait_for(lambda: rest.snapshot().open_trades == 1, 30, what="the trade open")
            rest.force_exit_all()
            wait_for(lambda: rest.snapshot().open_trades == 0, 30, what="the trade closed")
            # The marks the sidecar reads: fresh on the pod, and in its file.
            mark = deadman.parse_time(_mark(api_client, namespace, status["podName"]))
            assert mark is not None
            assert time.time() - mark.timestamp() < DEADLINE_S / 2
            seen = deadman.read_mark(
                executor.bot_dir(uid) / "podinfo" / supervision.ANNOTATIONS_FILE
            )
            assert deadman.parse_time(seen) is not None
            assert "entries stopped" not in (executor.bot_dir(uid) / "deadman.log").read_text()

            operator.kill()
            operator.wait(timeout=10)
            # The operator is gone; its bot and the sidecar are not.
            gone_at = time.monotonic()
            assert time.monotonic() - armed_at > DEADLINE_S
            running = executor.running(uid)
            assert running is not None
            assert executor._supervisor(uid) == sidecar
            last_mark = _mark(api_client, namespace, status["podName"])

            wait_for(
                lambda: _state(rest) == "paused",
                DEADLINE_S + 15,
                interval=0.5,
                what="the bot's entries stopped without the operator",
            )
            # Not before the deadline: the last mark was at most a few rounds old at the kill.
            assert time.monotonic() - gone_at >= DEADLINE_S - 10
            # Nothing marked the pod meanwhile: the sidecar, not the operator, did it.
            assert _mark(api_client, namespace, status["podName"]) == last_mark
            code, body = _force_enter(rest, auth, "BTC/USDT")
            assert code != 200
            assert "trader is not running" in body, body
            assert rest.snapshot().open_trades == 0
            # The bot itself runs on (exits would go on), paused rather than stopped.
            assert executor.running(uid) == running
            log = (executor.bot_dir(uid) / "deadman.log").read_text().splitlines()
            stopped = [json.loads(line) for line in log if "entries stopped" in line]
            assert len(stopped) == 1, log
            assert stopped[0]["supervisedAt"] == last_mark
            assert stopped[0]["deadlineSeconds"] == DEADLINE_S
        finally:
            stop_process(operator, timeout=10)
            if uid:
                executor.stop(uid)
    assert executor.running(uid) is None
    assert executor._supervisor(uid) is None
    assert not alive(sidecar[0])
