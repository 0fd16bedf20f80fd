"""Flood benchmark: the operator's memory with COUNT Backtests waiting (queue on hold, so all
of them wait), against the same operator idle, in one run on one local cluster.

The operator runs as its own process from this checkout, with the waiting cap raised to COUNT.
Its RSS is sampled every 0.5 s while the Backtests are created (16 client threads) and until
every one of them is Queued; the figure is the peak. Goal (issue #14): under 300 MB at 10,000,
in MB of 10^6 bytes: "ratio" is the peak over 300 MB (below 1 meets it). With --restart the
operator is then stopped and started again, and the new one's peak over its first
RESTART_WINDOW seconds (its lists of every waiting Backtest) is reported as well and counts
for the goal too.

A run that fails still prints its JSON line (met: false, "error", the figures so far).

    .venv/bin/python bench/flood.py --count 10000 [--restart] [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import (
    Follow,
    OperatorProcess,
    emit,
    machine,
    rss_kib,
    start_operator,
    strategy_ready,
    wait_until,
)
from kubernetes import client
from tests.support.cluster import apply_crds, temporary_cluster
from tests.support.manifests import example

from tradebot.localcluster import LocalCluster

ROOT = Path(__file__).resolve().parent.parent
G, V = "tradebot.dev", "v1alpha1"
GOAL_MB = 300  # 10^6 bytes, as the issue says
RESTART_WINDOW = 90.0  # seconds a restarted operator is watched: its lists and first rounds


def _operator(
    cluster: LocalCluster, ns: str, count: int, *, restart: bool = False
) -> OperatorProcess:
    """The operator with every Backtest waiting (the queue on hold, the cap at COUNT); a
    restarted one logs after the first."""
    return start_operator(
        cluster.kubeconfig,
        ns,
        cluster.layout.root / "operator.log",
        append_log=restart,
        local_state_dir=str(cluster.layout.root / "operator"),
        queue_hold="Hold",
        max_waiting_backtests_per_namespace=str(count),
    )


class Peak:
    """The operator's RSS (KiB), sampled every 0.5 s from a thread until it exits."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process, self.kib = process, rss_kib(process.pid)
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while self.process.poll() is None:
            try:
                self.kib = max(self.kib, rss_kib(self.process.pid))
            except OSError:  # exited between the poll and the read
                return
            time.sleep(0.5)


def _mb(kib: float) -> float:
    return kib * 1024 / 1e6


def create_backtests(custom: client.CustomObjectsApi, ns: str, count: int) -> None:
    """COUNT Backtests (the ema-rsi sample, named bt-0...), created on 16 threads."""
    bt = example("Backtest", "ema-rsi-sample")
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda i: custom.create_namespaced_custom_object(
                    G, V, ns, "backtests", {**bt, "metadata": {"name": f"bt-{i}"}}
                ),
                range(count),
            )
        )


def flood(cluster: LocalCluster, count: int, as_json: bool, *, restart: bool = False) -> int:
    before = machine()
    api = cluster.api_client()
    ns = "flood"
    core: Any = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": ns}})
    custom: Any = client.CustomObjectsApi(api)
    operator = _operator(cluster, ns, count)
    queued: set[str] = set()
    others: dict[str, str] = {}
    figures: dict[str, Any] = {"benchmark": "flood", "count": count, "rss_mib": {}}

    def on_backtest(kind: str, obj: dict[str, Any], now: float) -> None:
        name, phase = obj["metadata"]["name"], (obj.get("status") or {}).get("phase")
        if phase == "Queued":
            queued.add(name)
        elif phase in ("Failed", "Succeeded", "Running"):
            others[name] = phase

    def list_backtests(namespace: str, **kw: Any) -> Any:
        return custom.list_namespaced_custom_object(G, V, namespace, "backtests", **kw)

    try:
        strategy_ready(custom, ns, operator=operator)
        time.sleep(2)
        idle = rss_kib(operator.pid)
        figures["rss_mib"]["idle"] = round(idle / 1024)
        peak = Peak(operator.process)
        watch = Follow(list_backtests, ns, on_backtest).start_and_wait()
        t0 = time.monotonic()
        create_backtests(custom, ns, count)
        created = time.monotonic() - t0
        figures["seconds_to_create"] = round(created, 1)
        figures["rss_mib"]["peak_while_creating"] = round(peak.kib / 1024)
        print(f"  {count} Backtests created in {created:.0f} s", flush=True)

        def all_queued() -> bool:
            if others:
                raise RuntimeError(f"not waiting: {dict(list(others.items())[:5])}")
            operator.alive()
            return len(queued) == count

        wait_until(
            all_queued, max(300.0, count * 0.2), f"{count} Backtests Queued", (watch,), interval=0.5
        )
        figures["seconds_to_all_queued"] = round(time.monotonic() - t0, 1)
        time.sleep(3)  # the queue's position writes settle
        settled = rss_kib(operator.pid)
        watch.stop()
        figures["rss_mib"].update(
            {"peak": round(peak.kib / 1024), "settled": round(settled / 1024)}
        )
        figures["kib_per_backtest"] = round((peak.kib - idle) / count, 1)
        worst = peak.kib
        print(
            f"  operator RSS: {idle / 1024:.0f} MiB idle, {peak.kib / 1024:.0f} MiB peak, "
            f"{settled / 1024:.0f} MiB with all {count} waiting "
            f"({(peak.kib - idle) / count:.1f} KiB per Backtest)",
            flush=True,
        )
        if restart:
            operator.stop()
            operator = _operator(cluster, ns, count, restart=True)
            again = Peak(operator.process)
            time.sleep(RESTART_WINDOW)
            operator.alive()
            figures["rss_mib"]["restart_peak"] = round(again.kib / 1024)
            figures["rss_mib"]["restart_end"] = round(rss_kib(operator.pid) / 1024)
            worst = max(worst, again.kib)
            print(
                f"  restarted with {count} waiting: {again.kib / 1024:.0f} MiB peak in its "
                f"first {RESTART_WINDOW:.0f} s",
                flush=True,
            )
        figures.update(
            {
                "ratio": round(_mb(worst) / GOAL_MB, 3),
                "goal": f"operator RSS peak < {GOAL_MB} MB (10^6 bytes) with {count} Backtests "
                "waiting (the issue's figure is for 10,000); ratio = peak MB / 300 MB",
                "met": _mb(worst) < GOAL_MB,
                "peak_mb": round(_mb(worst), 1),
                "machine": {**before, "load1_before": before["load1"]},
            }
        )
        emit(figures, as_json)
        return 0
    except BaseException as e:
        # A failed run is a figure too: its JSON line says how far it got.
        figures.update(
            {
                "ratio": None,
                "goal": f"operator RSS peak < {GOAL_MB} MB with {count} Backtests waiting",
                "met": False,
                "error": repr(e)[:300],
                "queued": len(queued),
                "machine": {**before, "load1_before": before["load1"]},
            }
        )
        emit(figures, as_json)
        raise
    finally:
        operator.stop()


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    parser.add_argument(
        "--restart",
        action="store_true",
        help=f"then restart the operator and take its peak over {RESTART_WINDOW:.0f} s too",
    )
    args = parser.parse_args()
    with temporary_cluster("tradebot-bench-flood-") as cluster:
        apply_crds(cluster)
        return flood(cluster, args.count, args.json, restart=args.restart)


if __name__ == "__main__":
    sys.exit(main())
