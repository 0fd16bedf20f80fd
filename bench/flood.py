"""Flood benchmark: the operator's memory with COUNT Backtests waiting (queue on hold, so all
of them wait), against the same operator idle, in one run on one local cluster.

The operator runs as its own process from this checkout, with the waiting cap raised to COUNT.
Its RSS is sampled every 0.5 s while the Backtests are created (16 client threads) and until
every one of them is Queued; the figure is the peak. Goal (issue #14): under 300 MB at 10,000.

    .venv/bin/python bench/flood.py --count 10000 [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import Follow, emit, machine, rss_kib, wait_until
from kubernetes import client
from tests.support.cluster import apply_crds, stop_process, temporary_cluster
from tests.support.manifests import example

from tradebot.localcluster import LocalCluster

ROOT = Path(__file__).resolve().parent.parent
G, V = "tradebot.dev", "v1alpha1"
GOAL_MB = 300


def flood(cluster: LocalCluster, count: int, as_json: bool) -> int:
    before = machine()
    api = cluster.api_client()
    ns = "flood"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
    custom = client.CustomObjectsApi(api)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
    env.update(
        {
            "KUBECONFIG": str(cluster.kubeconfig),
            "PYTHONPATH": f"{ROOT / 'operator'}:{env.get('PYTHONPATH', '')}",
            "TRADEBOT_LOCAL_STATE_DIR": str(cluster.layout.root / "operator"),
            "TRADEBOT_QUEUE_HOLD": "Hold",
            "TRADEBOT_MAX_WAITING_BACKTESTS_PER_NAMESPACE": str(count),
        }
    )
    log = (cluster.layout.root / "operator.log").open("wb")
    operator = subprocess.Popen(
        [sys.executable, "-m", "tradebot.cli", "operator", "-n", ns],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    queued: set[str] = set()
    others: dict[str, str] = {}

    def on_backtest(kind: str, obj: dict[str, Any], now: float) -> None:
        name, phase = obj["metadata"]["name"], (obj.get("status") or {}).get("phase")
        if phase == "Queued":
            queued.add(name)
        elif phase in ("Failed", "Succeeded", "Running"):
            others[name] = phase

    def list_backtests(namespace: str, **kw: Any) -> Any:
        return custom.list_namespaced_custom_object(G, V, namespace, "backtests", **kw)

    try:
        custom.create_namespaced_custom_object(
            G, V, ns, "strategies", example("Strategy", "ema-rsi")
        )
        wait_until(
            lambda: (
                (
                    custom.get_namespaced_custom_object(G, V, ns, "strategies", "ema-rsi").get(
                        "status"
                    )
                    or {}
                ).get("phase")
                == "Ready"
            ),
            120,
            "Strategy Ready",
        )
        time.sleep(2)
        idle = rss_kib(operator.pid)
        peak = [idle]

        def sample() -> None:
            while operator.poll() is None:
                peak[0] = max(peak[0], rss_kib(operator.pid))
                time.sleep(0.5)

        threading.Thread(target=sample, daemon=True).start()
        watch = Follow(list_backtests, ns, on_backtest).start_and_wait()
        bt = example("Backtest", "ema-rsi-sample")
        t0 = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda i: custom.create_namespaced_custom_object(
                        G, V, ns, "backtests", {**bt, "metadata": {"name": f"bt-{i}"}}
                    ),
                    range(count),
                )
            )
        created = time.monotonic() - t0
        print(f"  {count} Backtests created in {created:.0f} s", flush=True)

        def all_queued() -> bool:
            if others:
                raise RuntimeError(f"not waiting: {dict(list(others.items())[:5])}")
            if operator.poll() is not None:
                raise RuntimeError("the operator exited")
            return len(queued) == count

        wait_until(
            all_queued, max(300.0, count * 0.2), f"{count} Backtests Queued", (watch,), interval=0.5
        )
        queued_after = time.monotonic() - t0
        time.sleep(3)  # the queue's position writes settle
        settled = rss_kib(operator.pid)
        watch.stop()
        peak_mb, idle_mb = peak[0] / 1024, idle / 1024
        print(
            f"  operator RSS: {idle_mb:.0f} MiB idle, {peak_mb:.0f} MiB peak, "
            f"{settled / 1024:.0f} MiB with all {count} waiting "
            f"({(peak[0] - idle) / count:.1f} KiB per Backtest)",
            flush=True,
        )
        emit(
            {
                "benchmark": "flood",
                "count": count,
                "ratio": round(peak_mb / GOAL_MB, 3),
                "goal": f"operator RSS peak < {GOAL_MB} MB with {count} Backtests waiting "
                "(the issue's figure is for 10,000)",
                "met": peak_mb < GOAL_MB,
                "rss_mib": {
                    "idle": round(idle_mb),
                    "peak": round(peak_mb),
                    "settled": round(settled / 1024),
                },
                "kib_per_backtest": round((peak[0] - idle) / count, 1),
                "seconds_to_create": round(created, 1),
                "seconds_to_all_queued": round(queued_after, 1),
                "machine": {**before, "load1_before": before["load1"]},
            },
            as_json,
        )
        return 0
    finally:
        stop_process(operator)
        log.close()


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()
    with temporary_cluster("tradebot-bench-flood-") as cluster:
        apply_crds(cluster)
        return flood(cluster, args.count, args.json)


if __name__ == "__main__":
    sys.exit(main())
