"""Backtest queue benchmark: COUNT Backtests applied at once with a limit of LIMIT running,
against the same count of plain Jobs pushed through the same limit directly (a small watch-
driven client, no operator), in the same run on the same local cluster.

Prints the operator's memory, admission throughput and the time from a slot freeing to the
next Job being created, each as a ratio against the baseline. No container runs on kwok: a
stand-in kubelet marks each Job's pod Succeeded (with a runner summary as its termination
message) as soon as it runs, so both sides measure queueing, not Freqtrade.

    .venv/bin/python bench/backtest_queue.py --count 1000 --limit 10
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import os
import signal
import statistics
import subprocess
import threading
import time
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

from kubernetes import client, watch
from tests.support.cluster import apply_crds, stop_process, temporary_cluster
from tests.support.manifests import example

from tradebot.localcluster import LocalCluster

SUMMARY = json.dumps({"ok": True, "strategy": "EmaRsiStrategy", "exitCode": 0,
                      "results": {"profitTotal": "0.01000000", "trades": 1}})
PAUSE = "registry.k8s.io/pause:3.10"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Kubelet(threading.Thread):
    """Marks every Running pod of the namespace Succeeded, like a container that exits 0."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        super().__init__(daemon=True)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.w = watch.Watch()

    def run(self) -> None:
        try:
            for ev in self.w.stream(self.core.list_namespaced_pod, self.namespace,
                                    timeout_seconds=3600):
                pod = ev["object"]
                ann = pod.metadata.annotations or {}
                if ev["type"] == "DELETED" or "kwok.tradebot.dev/outcome" in ann:
                    continue
                if pod.status.phase == "Running":
                    self.core.patch_namespaced_pod(pod.metadata.name, self.namespace, {
                        "metadata": {"annotations": {
                            "kwok.tradebot.dev/outcome": "Succeeded",
                            "kwok.tradebot.dev/termination-message": SUMMARY}}})
        except Exception:
            return


class JobTimeline(threading.Thread):
    """ADDED and DELETED times of the namespace's Jobs."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        super().__init__(daemon=True)
        self.batch = client.BatchV1Api(api)
        self.namespace = namespace
        self.events: list[tuple[float, str, str]] = []
        self.max_live = 0
        self.w = watch.Watch()

    def run(self) -> None:
        live: set[str] = set()
        try:
            for ev in self.w.stream(self.batch.list_namespaced_job, self.namespace,
                                    timeout_seconds=3600):
                name = ev["object"].metadata.name
                self.events.append((time.monotonic(), ev["type"], name))
                if ev["type"] == "ADDED":
                    live.add(name)
                elif ev["type"] == "DELETED":
                    live.discard(name)
                self.max_live = max(self.max_live, len(live))
        except Exception:
            return

    def added(self) -> list[float]:
        return [t for t, kind, _ in self.events if kind == "ADDED"]

    def slot_latencies(self) -> list[float]:
        """For each Job deleted while others wait, the time until the next Job is created."""
        out, pending = [], []
        for t, kind, _ in self.events:
            if kind == "DELETED":
                pending.append(t)
            elif kind == "ADDED" and pending:
                out.append(t - pending.pop(0))
        return out


def plain_jobs(api: client.ApiClient, namespace: str, count: int, limit: int) -> None:
    """The baseline: keep `limit` Jobs at a time; delete a finished one, create the next."""
    batch = client.BatchV1Api(api)
    created, done = 0, 0

    def create(i: int) -> None:
        batch.create_namespaced_job(namespace, {
            "metadata": {"name": f"plain-{i}"},
            "spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": PAUSE}]}}}})

    while created < min(limit, count):
        create(created)
        created += 1
    w = watch.Watch()
    for ev in w.stream(batch.list_namespaced_job, namespace, timeout_seconds=3600):
        job = ev["object"]
        if ev["type"] == "DELETED" or not job.status.succeeded:
            continue
        batch.delete_namespaced_job(job.metadata.name, namespace,
                                    propagation_policy="Background")
        done += 1
        if created < count:
            create(created)
            created += 1
        if done == count:
            w.stop()


def measure(label: str, api: client.ApiClient, namespace: str, count: int,
            start: Any) -> dict[str, float]:
    client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    kubelet, timeline = Kubelet(api, namespace), JobTimeline(api, namespace)
    kubelet.start()
    timeline.start()
    time.sleep(1)
    t0 = time.monotonic()
    start()
    elapsed = time.monotonic() - t0
    time.sleep(2)
    added = timeline.added()
    lat = timeline.slot_latencies()
    result = {
        "seconds": elapsed,
        "throughput": count / elapsed,
        "latency_median": statistics.median(lat) if lat else float("nan"),
        "latency_p95": statistics.quantiles(lat, n=20)[-1] if len(lat) > 20 else max(lat or [0]),
        "max_jobs": float(timeline.max_live),
        "jobs_created": float(len(added)),
    }
    print(f"  {label:<9} {count} done in {elapsed:6.1f} s; {result['throughput']:.2f}/s; "
          f"slot-free -> next Job median {result['latency_median']:.3f} s, "
          f"p95 {result['latency_p95']:.3f} s; at most {timeline.max_live} Jobs at once",
          flush=True)
    return result


def compare(cluster: LocalCluster, count: int, limit: int) -> int:
    root = cluster.layout.root
    operator: subprocess.Popen[bytes] | None = None
    try:
        api = cluster.api_client()
        print(f"queue benchmark: {count} runs, limit {limit}", flush=True)

        base = measure("baseline", api, "plain", count,
                       lambda: plain_jobs(api, "plain", count, limit))

        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
               "TRADEBOT_LOCAL_STATE_DIR": str(root / "operator")}
        log = (root / "operator.log").open("wb")
        operator = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "tradebot"), "operator", "-n", "bench",
             "--executor", "kubernetes", "--max-concurrent", str(limit)],
            env={**env, "TRADEBOT_MAX_BACKTESTS_PER_NAMESPACE": str(limit),
                 "TRADEBOT_MAX_BACKTESTS_PER_STRATEGY": str(limit)},
            stdout=log, stderr=subprocess.STDOUT)
        custom = client.CustomObjectsApi(api)
        peak = [0]

        def watch_memory() -> None:
            while operator is not None and operator.poll() is None:
                peak[0] = max(peak[0], rss_kib(operator.pid))
                time.sleep(0.5)

        def run_operator_side() -> None:
            strategy = example("Strategy", "ema-rsi")
            custom.create_namespaced_custom_object("tradebot.dev", "v1alpha1", "bench",
                                                   "strategies", strategy)
            bt = example("Backtest", "ema-rsi-sample")
            for i in range(count):
                body = {**bt, "metadata": {"name": f"bt-{i}"}}
                custom.create_namespaced_custom_object("tradebot.dev", "v1alpha1", "bench",
                                                       "backtests", body)
            while True:
                items = custom.list_namespaced_custom_object(
                    "tradebot.dev", "v1alpha1", "bench", "backtests")["items"]
                if sum((b.get("status") or {}).get("phase") == "Succeeded"
                       for b in items) == count:
                    return
                time.sleep(1)

        threading.Thread(target=watch_memory, daemon=True).start()
        time.sleep(3)
        idle = rss_kib(operator.pid)
        ours = measure("operator", api, "bench", count, run_operator_side)
        print(f"\noperator memory: {idle / 1024:.0f} MiB idle, {peak[0] / 1024:.0f} MiB peak "
              f"with {count} Backtests ({(peak[0] - idle) / count:.1f} KiB each)")
        print("ratios (operator / plain Jobs; throughput > 1 is faster, latency < 1 is faster):")
        print(f"  throughput            {ours['throughput'] / base['throughput']:.2f}")
        print(f"  slot latency median   {ours['latency_median'] / base['latency_median']:.2f}")
        print(f"  slot latency p95      {ours['latency_p95'] / base['latency_p95']:.2f}")
        print(f"  max Jobs at once      {ours['max_jobs']:.0f} vs {base['max_jobs']:.0f} "
              f"(limit {limit})")
        return 0 if ours["max_jobs"] <= limit else 1
    finally:
        if operator is not None:
            stop_process(operator)


def main() -> int:
    # A plain SIGTERM would skip the cleanup below and leave the cluster running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=10)
    args = parser.parse_args()
    with temporary_cluster("tradebot-bench-") as cluster:
        apply_crds(cluster)
        return compare(cluster, args.count, args.limit)


if __name__ == "__main__":
    sys.exit(main())
