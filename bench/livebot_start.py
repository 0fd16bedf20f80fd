"""LiveBot start benchmark: COUNT dry-run LiveBots applied -> their pods created and Running on
kwok nodes, against COUNT Deployments of the same pod template (the Deployment and ReplicaSet
controllers), in the same run on the same local cluster.

Baseline (namespace `plain`, no operator running): for each bot, what a person would apply
to run the same pod without the operator: its ConfigMap, NetworkPolicy and trade-data claim,
then a Deployment whose template is the pod the operator makes for that bot (domain/bots.py:
same containers, env, volumes, labels, annotations; no owner). Operator side (namespace
`bench`): the shipped operator as a process of its own (kubernetes executor, the defaults),
the Strategy Ready, then the LiveBots applied; the operator creates the same companions and
the pod itself.

Both sides are applied from 16 threads. Per bot, from the start of its apply (one clock, this
process's) to its pod's first watch event (created) and to the first event showing it
Running; the pods are matched to bots by the label tradebot.dev/livebot, which the template
carries on both sides. Also shown, not part of the goal: when its trade-data claim was first
seen Bound (the scheduler places no pod before; the cluster's provisioner binds it). Watches
list, then follow from the last resourceVersion, and fail loudly (bench/common.Follow).

Goal (issue #14): the operator at most 1.5x the Deployments at p50 and p99 (created and
Running).

    .venv/bin/python bench/livebot_start.py [--count 100] [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import copy
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import Follow, emit, machine, pct, start_operator, strategy_ready, wait_until
from kubernetes import client
from tests.support.cluster import apply_crds, temporary_cluster
from tests.support.manifests import example

from tradebot.api.livebot import LiveBotSpec
from tradebot.api.strategy import StrategySpec
from tradebot.domain import bots
from tradebot.domain.bots import LABEL_LIVEBOT
from tradebot.domain.freqtrade_trade_config import trade_config
from tradebot.localcluster import LocalCluster
from tradebot.localcluster.nodes import NodeSpec
from tradebot.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
G, V = "tradebot.dev", "v1alpha1"
SMALL = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "10m", "memory": "16Mi"}}
THREADS = 16


class Starts:
    """Per bot (its tradebot.dev/livebot label), when its pod was first seen and first seen
    Running, on the monotonic clock of the watch."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.lock = threading.Lock()
        self.created: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.claimed: dict[str, float] = {}
        self.pods: set[str] = set()
        core = client.CoreV1Api(api)
        self.follow = Follow(
            core.list_namespaced_pod, namespace, self._event, "tradebot.dev/kind=livebot"
        )
        # The trade-data claims, which the scheduler waits for: where the time to Running goes.
        self.claims = Follow(
            core.list_namespaced_persistent_volume_claim,
            namespace,
            self._claim,
            "tradebot.dev/kind=livebot",
        )

    def _claim(self, kind: str, obj: dict[str, Any], now: float) -> None:
        bot = (obj["metadata"].get("labels") or {}).get(LABEL_LIVEBOT)
        if bot is not None and (obj.get("status") or {}).get("phase") == "Bound":
            with self.lock:
                self.claimed.setdefault(bot, now)

    def _event(self, kind: str, obj: dict[str, Any], now: float) -> None:
        bot = (obj["metadata"].get("labels") or {}).get(LABEL_LIVEBOT)
        if bot is None:
            return
        with self.lock:
            self.pods.add(obj["metadata"]["name"])
            self.created.setdefault(bot, now)
            if (obj.get("status") or {}).get("phase") == "Running":
                self.running.setdefault(bot, now)

    def all_running(self, count: int) -> bool:
        with self.lock:
            return len(self.running) >= count


def plain_objects(namespace: str, name: str) -> list[tuple[str, dict[str, Any]]]:
    """What the operator would create for bot `name`, as plain objects: ConfigMap,
    NetworkPolicy, claim, and a Deployment of its pod."""
    settings = Settings.from_env()
    strategy = StrategySpec.model_validate(example("Strategy", "ema-rsi")["spec"])
    bot = example("LiveBot", "ema-rsi-dry")
    model = LiveBotSpec.model_validate({**bot["spec"], "resources": SMALL})
    config = trade_config(
        model,
        strategy,
        api_port=bots.API_PORT,
        api_username="",
        exchange_double_url=settings.exchange_double_url,
    )
    instance = bots.BotInstance(
        namespace,
        name,
        str(uuid.uuid4()),
        model,
        "ema-rsi",
        strategy.class_name,
        strategy.code or "",
        config,
    )
    pod = bots.pod(instance, settings)
    template = {
        "metadata": {
            "labels": pod["metadata"]["labels"],
            "annotations": pod["metadata"]["annotations"],
        },
        "spec": pod["spec"],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": pod["metadata"]["labels"]},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": instance.selector_labels},
            "template": template,
        },
    }
    objects = [
        ("configmap", bots.config_map(instance)),
        (
            "networkpolicy",
            bots.network_policy(
                instance,
                operator_namespace=settings.operator_namespace,
                operator_labels=settings.operator_pod_labels,
            ),
        ),
        ("pvc", bots.pvc(instance, settings)),
        ("deployment", deployment),
    ]
    for _, obj in objects:
        obj["metadata"].pop("ownerReferences", None)  # its LiveBot does not exist here
    return objects


def deployments(api: client.ApiClient, count: int) -> dict[str, float]:
    """The baseline: every bot's objects applied; returns the start of each bot's apply."""
    ns = "plain"
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    net = client.NetworkingV1Api(api)
    create: dict[str, Callable[..., object]] = {
        "configmap": core.create_namespaced_config_map,
        "networkpolicy": net.create_namespaced_network_policy,
        "pvc": core.create_namespaced_persistent_volume_claim,
        "deployment": apps.create_namespaced_deployment,
    }
    bodies = {f"bot-{i}": plain_objects(ns, f"bot-{i}") for i in range(count)}
    applied: dict[str, float] = {}

    def apply(name: str) -> None:
        applied[name] = time.monotonic()
        for kind, body in bodies[name]:
            create[kind](ns, body)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(apply, bodies))
    return applied


def livebots(api: client.ApiClient, count: int) -> dict[str, float]:
    custom = client.CustomObjectsApi(api)
    bot = example("LiveBot", "ema-rsi-dry")
    applied: dict[str, float] = {}

    def apply(name: str) -> None:
        body = {
            **bot,
            "metadata": {"name": name, "labels": {"tradebot.dev/fleet": "main"}},
            "spec": {**copy.deepcopy(bot["spec"]), "resources": SMALL},
        }
        applied[name] = time.monotonic()
        custom.create_namespaced_custom_object(G, V, "bench", "livebots", body)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(apply, [f"bot-{i}" for i in range(count)]))
    return applied


def side(
    api: client.ApiClient, namespace: str, count: int, apply: Any, alive: Any = None
) -> tuple[dict[str, float], Starts]:
    starts = Starts(api, namespace)
    starts.follow.start_and_wait()
    starts.claims.start_and_wait()
    try:
        applied = apply(api, count)

        def done() -> bool:
            if alive is not None:
                alive()
            return starts.all_running(count)

        wait_until(
            done,
            60 + 3 * count,
            f"{count} pods Running in {namespace}",
            (starts.follow, starts.claims),
            interval=0.2,
        )
    finally:
        starts.follow.stop()
        starts.claims.stop()
    if len(starts.pods) != count:
        raise RuntimeError(f"{namespace}: {len(starts.pods)} pods for {count} bots")
    return applied, starts


def latencies(applied: dict[str, float], seen: dict[str, float]) -> list[float]:
    return [seen[name] - at for name, at in applied.items()]


def operator_side(
    api: client.ApiClient, count: int, kubeconfig: Path, root: Path
) -> tuple[dict[str, float], Starts]:
    custom = client.CustomObjectsApi(api)
    log_path = Path(tempfile.gettempdir()) / "tradebot-bench-livebot-start-operator.log"
    print(f"  operator log: {log_path}", flush=True)
    with start_operator(
        kubeconfig, "bench", log_path, local_state_dir=str(root / "op")
    ) as operator:
        # The operator is up and handling before the clock starts.
        strategy_ready(custom, "bench", operator=operator, interval=0.2)
        return side(api, "bench", count, livebots, operator.alive)


def summary(applied: dict[str, float], starts: Starts) -> dict[str, float]:
    created, running = latencies(applied, starts.created), latencies(applied, starts.running)
    # A claim may be seen Bound only after its pod ran when the watch event came late.
    bound = latencies(applied, starts.claimed)
    return {
        "claim_bound_p50": round(pct(bound, 0.5), 3),
        "claim_bound_p99": round(pct(bound, 0.99), 3),
        "created_p50": round(pct(created, 0.5), 3),
        "created_p99": round(pct(created, 0.99), 3),
        "running_p50": round(pct(running, 0.5), 3),
        "running_p99": round(pct(running, 0.99), 3),
        "running_max": round(max(running), 3),
    }


def measure(cluster: LocalCluster, count: int, as_json: bool) -> int:
    before = machine()
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        # Room for both sides: kwok nodes of 250 pods each.
        for i in range((2 * count) // 250 + 1):
            node = NodeSpec(f"bench-{i}", f"10.241.0.{10 + i}", "64", "256Gi").manifest()
            node["status"]["capacity"]["pods"] = node["status"]["allocatable"]["pods"] = "250"
            core.create_node(node)  # type: ignore[arg-type]
        for ns in ("plain", "bench"):
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        print(f"LiveBot start benchmark: {count} bots, same local cluster", flush=True)
        base = summary(*side(api, "plain", count, deployments))
        print(f"  Deployments  {base}", flush=True)
        ours = summary(*operator_side(api, count, cluster.kubeconfig, cluster.layout.root))
        print(f"  LiveBots     {ours}", flush=True)
    ratios = {
        key: round(ours[key] / base[key], 3)
        for key in ("created_p50", "created_p99", "running_p50", "running_p99")
    }
    print(f"  ratios (LiveBots / Deployments): {ratios}", flush=True)
    ratio = max(ratios.values())
    met = ratio <= 1.5
    emit(
        {
            "benchmark": "livebot_start",
            "count": count,
            "ratio": ratio,
            "goal": "LiveBot apply -> pod created and Running <= 1.5 x Deployment at p50 and p99",
            "met": met,
            "ratios": ratios,
            "operator_s": ours,
            "deployments_s": base,
            "handler_threads": Settings().handler_threads,
            "machine": {**before, "load1_before": before["load1"]},
        },
        as_json,
    )
    return 0 if met else 1


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()
    with temporary_cluster("tradebot-bench-livebot-start-") as cluster:
        apply_crds(cluster)
        return measure(cluster, args.count, args.json)


if __name__ == "__main__":
    sys.exit(main())
