"""The local executor's `freqtrade trade` processes live and die with the operator: a SIGTERM
stops them all; after a SIGKILL the next operator adopts the bots whose LiveBot still has its
pod and stops the orphans. Real operator processes, real Freqtrade, the local cluster."""

from __future__ import annotations

import copy
import json
import signal
from pathlib import Path
from typing import Any

from kubernetes import client
from tests.support.manifests import example
from tests.support.operator import operator_process
from tests.support.processes import processes_mentioning
from tests.support.wait import wait_for

from tradebot.executors.local_bots import LocalBotExecutor
from tradebot.processes import alive
from tradebot_testing.exchange_double import ExchangeDouble

G, V = "tradebot.dev", "v1alpha1"
OPERATOR_MARK = "operator-only-7c1e-DO-NOT-LEAK"


def _bot(name: str) -> dict[str, Any]:
    doc = copy.deepcopy(example("LiveBot", "ema-rsi-dry"))
    doc["metadata"] = {"name": name}
    return doc


def _uid(api: Any, namespace: str, name: str) -> str:
    return str(
        client.CustomObjectsApi(api).get_namespaced_custom_object(
            G, V, namespace, "livebots", name
        )["metadata"]["uid"]
    )


def _bots_under(state: Path) -> list[int]:
    """The `freqtrade trade` processes among them (each bot also has its dead-man sidecar)."""
    return [
        pid
        for pid in processes_mentioning(str(state))
        if "freqtrade" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    ]


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.decode().split("=", 1) for item in raw.split(b"\0") if item)


def _start_up_report(log: Path) -> dict[str, Any] | None:
    for line in log.read_text(errors="replace").splitlines():
        if '"local bots found at start-up"' in line:
            return dict(json.loads(line))
    return None


def test_local_bots_stop_with_the_operator_and_orphans_stop_at_its_next_start(
    cluster: Any,
    api_client: Any,
    kubectl: Any,
    namespace: str,
    tmp_path: Path,
    crds_installed: Any,
):
    state = (tmp_path / "state").resolve()
    state.mkdir()
    docs = [example("Strategy", "ema-rsi"), _bot("keep"), _bot("orphan")]
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
    )
    keep, orphan = _uid(api_client, namespace, "keep"), _uid(api_client, namespace, "orphan")
    bots = LocalBotExecutor(state)

    def both_running() -> dict[str, int] | None:
        found = {uid: b.pid for uid in (keep, orphan) if (b := bots.running(uid)) is not None}
        return found if len(found) == 2 else None

    with ExchangeDouble() as double:
        settings = {
            "executor": "local",
            "local_state_dir": str(state),
            "exchange_double_url": double.url,
            "reconcile_interval_seconds": "1",
            # A value only the operator's environment holds (TRADEBOT_OUTBOX_PATH).
            "database_dsn": f"sqlite://{tmp_path / 'records.db'}",
            "outbox_path": str(tmp_path / f"outbox-{OPERATOR_MARK}.jsonl"),
        }
        log = tmp_path / "operator.log"
        with operator_process(cluster.kubeconfig, namespace, log, **settings) as first:
            pids = wait_for(both_running, 120, what=f"two local bots ({log})")
            for pid in pids.values():
                # Positive control: real Freqtrade bots, children of no one but the operator.
                assert "freqtrade" in Path(f"/proc/{pid}/cmdline").read_text()
                env = _environ(pid)
                assert env.get("FREQTRADE__API_SERVER__PASSWORD")
                assert not [k for k in env if k.startswith("TRADEBOT_") or k == "KUBECONFIG"]
                assert OPERATOR_MARK not in json.dumps(env)
            assert sorted(_bots_under(state)) == sorted(pids.values())
            first.send_signal(signal.SIGTERM)
            assert first.wait(timeout=60) == 0, log.read_text()[-3000:]
        assert not [pid for pid in pids.values() if alive(pid)]
        assert processes_mentioning(str(state)) == []

        # A SIGKILLed operator can clean nothing up: its bots keep running ...
        with operator_process(cluster.kubeconfig, namespace, log, **settings) as second:
            pids = wait_for(both_running, 120, what="the two bots started again")
            second.kill()
            second.wait(timeout=30)
        assert all(alive(pid) for pid in pids.values())
        # ... and while no operator runs, one bot's pod goes away (a drain, a person).
        core = client.CoreV1Api(api_client)
        orphan_pod = next(
            p.metadata.name
            for p in core.list_namespaced_pod(
                namespace, label_selector="tradebot.dev/livebot=orphan"
            ).items
        )
        core.delete_namespaced_pod(orphan_pod, namespace, grace_period_seconds=0)
        wait_for(
            lambda: (
                not core.list_namespaced_pod(
                    namespace, label_selector="tradebot.dev/livebot=orphan"
                ).items
            ),
            30,
            what="the orphan's pod gone",
        )

        third_log = tmp_path / "operator-third.log"
        with operator_process(cluster.kubeconfig, namespace, third_log, **settings):
            report = wait_for(
                lambda: _start_up_report(third_log), 60, what=f"the start-up report ({third_log})"
            )
            assert report["adopted"] == [keep]
            assert report["stopped"] == [orphan]
            assert not alive(pids[orphan])
            adopted = bots.running(keep)
            assert adopted is not None
            assert adopted.pid == pids[keep]  # the same process, not a restart
            # The orphan's LiveBot still wants a bot: it gets a new pod and process.
            fresh = wait_for(lambda: bots.running(orphan), 120, what="the orphan restarted")
            assert fresh.pid != pids[orphan]
        assert processes_mentioning(str(state)) == []
