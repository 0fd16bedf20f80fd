"""Failover benchmark: two operator processes with leader election (the chart's defaults:
Lease 10 s, renew deadline 7 s, retry 2 s) watch one namespace with BOTS dry-run LiveBots on
kwok nodes under one CircuitBreaker. The leader is killed with SIGKILL; right after the kill
the breaker is tripped (kill switch) and a new Strategy is created. Measured from the kill:

- takeover: the standby's "leader Lease acquired" log line;
- first reconcile: the new Strategy's status Ready (the standby's first completed reconcile
  that anyone can see);
- trip handled: every bot pod's deletion accepted by the API server (the bots stopped), from
  a watch that resumes from its resourceVersion and fails loudly.

Each run has a namespace (and Lease) of its own on the same local cluster. Prints each run,
then p50 and max. Goal (issue #14, part 7): p50 of the first reconcile and of the trip
handled at most 15 s. The ratio is the larger p50 over 15 s.

    .venv/bin/python bench/failover.py --runs 5
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import Follow, OperatorProcess, emit, machine, pct, start_operator, wait_until
from kubernetes import client, config
from tests.support.cluster import apply_crds, temporary_cluster
from tests.support.manifests import example

from tradebot.settings import Settings

G, V = "tradebot.dev", "v1alpha1"
GOAL_S = 15.0
SMALL = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "10m", "memory": "16Mi"}}


def log_entries(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out


def logged_at(path: Path, event: str) -> dt.datetime | None:
    for entry in log_entries(path):
        if entry.get("event") == event:
            return dt.datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00"))
    return None


def start_member(kubeconfig: Path, namespace: str, pod: str, state: Path) -> OperatorProcess:
    """`tradebot operator` with leader election, named `pod` (its Lease holderIdentity starts
    with it, as POD_NAME does in the chart); all of a run's share one records database."""
    log = Path(tempfile.gettempdir()) / f"tradebot-bench-failover-{pod}.log"
    return start_operator(
        kubeconfig,
        namespace,
        log,
        env={"POD_NAME": pod},
        stop_timeout=20,
        leader_election="true",
        operator_namespace=namespace,
        database_dsn=f"sqlite://{state / 'records.db'}",
        local_state_dir=str(state / pod),
    )


def logged(operator: OperatorProcess, event: str) -> bool:
    operator.alive()
    return logged_at(operator.log, event) is not None


def setup(api: client.ApiClient, namespace: str, bots: int) -> None:
    # The generated APIs are typed for model objects; plain dicts go in here.
    custom: Any = client.CustomObjectsApi(api)
    core: Any = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": namespace}})
    custom.create_namespaced_custom_object(
        G, V, namespace, "strategies", example("Strategy", "ema-rsi")
    )
    cb = copy.deepcopy(example("CircuitBreaker"))
    cb["spec"]["limits"] = {"maxDrawdown": 0.5}  # nothing crosses it: the kill switch trips
    custom.create_namespaced_custom_object(G, V, namespace, "circuitbreakers", cb)
    bot = example("LiveBot", "ema-rsi-dry")
    for i in range(bots):
        custom.create_namespaced_custom_object(
            G,
            V,
            namespace,
            "livebots",
            {
                **bot,
                "metadata": {"name": f"bot-{i}", "labels": {"tradebot.dev/fleet": "main"}},
                "spec": {**bot["spec"], "resources": SMALL},
            },
        )


def bot_pods_running(api: client.ApiClient, namespace: str, bots: int) -> bool:
    core: Any = client.CoreV1Api(api)
    pods = core.list_namespaced_pod(namespace, label_selector="tradebot.dev/kind=livebot").items
    return bool(sum(p.status.phase == "Running" for p in pods) == bots)


def strategy_ready(api: client.ApiClient, namespace: str, name: str) -> bool:
    custom: Any = client.CustomObjectsApi(api)
    obj = custom.get_namespaced_custom_object(G, V, namespace, "strategies", name)
    return bool((obj.get("status") or {}).get("phase") == "Ready")


def one_run(
    api: client.ApiClient, kubeconfig: Path, root: Path, run: int, bots: int
) -> dict[str, float]:
    ns = f"failover-{run}"
    state = root / ns
    state.mkdir(parents=True)
    setup(api, ns, bots)
    leader = start_member(kubeconfig, ns, f"a{run}", state)
    standby: OperatorProcess | None = None
    try:
        wait_until(lambda: logged(leader, "leader Lease acquired"), 60, "the first leading")
        standby = start_member(kubeconfig, ns, f"b{run}", state)
        wait_until(
            lambda: standby is not None and logged(standby, "standing by"),
            60,
            "the second standing by",
        )
        wait_until(
            lambda: bot_pods_running(api, ns, bots), 300, f"{bots} bot pods Running", interval=0.5
        )
        accepted: dict[str, float] = {}

        def pod_event(kind: str, obj: dict[str, Any], now: float) -> None:
            if kind == "DELETED" or obj["metadata"].get("deletionTimestamp"):
                accepted.setdefault(obj["metadata"]["name"], now)

        pods = Follow(
            client.CoreV1Api(api).list_namespaced_pod,
            ns,
            pod_event,
            label_selector="tradebot.dev/kind=livebot",
        ).start_and_wait()
        custom: Any = client.CustomObjectsApi(api)
        try:
            leader.process.send_signal(signal.SIGKILL)
            killed, killed_wall = time.monotonic(), dt.datetime.now(dt.UTC)
            custom.patch_namespaced_custom_object(
                G,
                V,
                ns,
                "circuitbreakers",
                "main-fleet",
                {"metadata": {"annotations": {"tradebot.dev/trip": f"failover-{run}"}}},
            )
            custom.create_namespaced_custom_object(
                G,
                V,
                ns,
                "strategies",
                {**example("Strategy", "ema-rsi"), "metadata": {"name": "after-kill"}},
            )
            issued = time.monotonic() - killed
            wait_until(
                lambda: strategy_ready(api, ns, "after-kill"),
                120,
                "the Strategy created after the kill Ready",
                (pods,),
                interval=0.05,
            )
            reconciled = time.monotonic() - killed
            wait_until(
                lambda: len(accepted) == bots,
                120,
                "every bot pod's deletion",
                (pods,),
                interval=0.05,
            )
            stopped = max(accepted.values()) - killed
        finally:
            pods.stop()
        acquired = logged_at(standby.log, "leader Lease acquired")
        if acquired is None:
            raise RuntimeError("the standby never logged taking the Lease over")
        return {
            "takeover_s": round((acquired - killed_wall).total_seconds(), 3),
            "first_reconcile_s": round(reconciled, 3),
            "trip_handled_s": round(stopped, 3),
            "issued_s": round(issued, 3),
        }
    finally:
        for op in (standby, leader):
            if op is not None:
                op.stop()


def measure(kubeconfig: Path, root: Path, runs: int, bots: int, as_json: bool) -> int:
    before = machine()
    configuration = client.Configuration()
    config.load_kube_config(
        config_file=str(kubeconfig),  # type: ignore[no-untyped-call]
        client_configuration=configuration,
    )
    api = client.ApiClient(configuration)
    s = Settings()
    timing = {
        "lease_s": s.leader_lease_seconds,
        "renew_deadline_s": s.leader_renew_deadline_seconds,
        "retry_s": s.leader_retry_seconds,
    }
    print(f"failover benchmark: {runs} runs, {bots} bots each; timings {timing}", flush=True)
    results = []
    for run in range(runs):
        figures = one_run(api, kubeconfig, root, run, bots)
        print(
            f"  run {run}: takeover {figures['takeover_s']:.2f}s  first reconcile "
            f"{figures['first_reconcile_s']:.2f}s  trip handled {figures['trip_handled_s']:.2f}s",
            flush=True,
        )
        results.append(figures)
    summary: dict[str, Any] = {}
    for key in ("takeover_s", "first_reconcile_s", "trip_handled_s"):
        values = [r[key] for r in results]
        summary[key] = {"p50": round(pct(values, 0.5), 3), "max": round(max(values), 3)}
        print(f"{key}: p50 {summary[key]['p50']:.2f}s  max {summary[key]['max']:.2f}s")
    worst_p50 = max(summary["first_reconcile_s"]["p50"], summary["trip_handled_s"]["p50"])
    met = worst_p50 <= GOAL_S
    emit(
        {
            "benchmark": "failover",
            "runs": runs,
            "bots": bots,
            "ratio": round(worst_p50 / GOAL_S, 3),
            "goal": "SIGKILL of the leader -> standby's first reconcile and a trip handled, "
            "p50 <= 15 s",
            "met": met,
            **summary,
            "each_run": results,
            "timing": timing,
            "machine": {**before, "load1_before": before["load1"]},
        },
        as_json,
    )
    return 0 if met else 1


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="kills measured (default 5)")
    parser.add_argument("--bots", type=int, default=5, help="bots under the breaker per run")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()
    with temporary_cluster("tradebot-bench-failover-") as cluster:
        apply_crds(cluster)
        return measure(cluster.kubeconfig, cluster.layout.root, args.runs, args.bots, args.json)


if __name__ == "__main__":
    sys.exit(main())
