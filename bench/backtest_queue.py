"""Backtest queue benchmark: COUNT Backtests applied at once with a limit of LIMIT running,
against the same count of plain Jobs pushed through the same limit by a small watch-driven
client (no operator), in the same run on the same local cluster.

No container runs on kwok: a stand-in kubelet marks each Running pod Succeeded (with a runner
summary as its termination message), so both sides measure queueing, not Freqtrade. Both
sides create the same Job objects (the operator's Job for the same Backtest, built by
domain/jobs.py), through the same scheduler and kwok.

The baseline is the fastest plain client we could write: it watches pods, and when one
succeeds it deletes that Job and creates the next (watching Jobs instead would wait for the
Job controller, which batches pod updates for a second).

Figures, all from this process's watches on one clock:
  throughput   COUNT / seconds from the first create to the last run done (baseline: the
               client saw the last pod Succeeded; operator: every Backtest Succeeded, its
               result recorded in status)
  slot latency for every Job after the first LIMIT: from the pod Succeeded event that freed
               its slot (paired in order) to the Job's ADDED event; p50 and p99
  max running  most pods not yet Succeeded/Failed at once (must stay <= LIMIT)
  operator RSS idle and peak

Goal (issue #14): throughput ratio >= 0.9, slot latency p50 <= 0.2 s and p99 <= 1 s.

    .venv/bin/python bench/backtest_queue.py --count 1000 --limit 10 [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import copy
import json
import queue
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import (
    Follow,
    OperatorProcess,
    emit,
    machine,
    pct,
    rss_kib,
    start_operator,
    strategy_ready,
    wait_until,
)
from kubernetes import client
from tests.support.cluster import apply_crds, temporary_cluster
from tests.support.manifests import example

from tradebot.api.backtest import BacktestSpec
from tradebot.domain import jobs
from tradebot.freqtrade.introspect import code_hash
from tradebot.localcluster import LocalCluster
from tradebot.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
G, V = "tradebot.dev", "v1alpha1"
SUMMARY = json.dumps(
    {
        "ok": True,
        "strategy": "EmaRsiStrategy",
        "exitCode": 0,
        "results": {"profitTotal": "0.01000000", "trades": 1},
        # The code the operator launched (a report of other code fails the run).
        "codeHash": code_hash(example("Strategy", "ema-rsi")["spec"]["code"]),
    }
)
SELECTOR = "tradebot.dev/kind=backtest"


class Side:
    """One side's watches: the stand-in kubelet and the timeline of Jobs and pods."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.core, self.batch = client.CoreV1Api(api), client.BatchV1Api(api)
        self.namespace = namespace
        self.job_added: dict[str, float] = {}
        self.pod_done: dict[str, float] = {}
        self.pod_failed: set[str] = set()
        self.cued: set[str] = set()
        self.running: set[str] = set()
        self.max_running = 0
        self.lock = threading.Lock()
        self._cues: queue.Queue[str | None] = queue.Queue()
        self.pods = Follow(self.core.list_namespaced_pod, namespace, self._pod, SELECTOR)
        self.jobs = Follow(self.batch.list_namespaced_job, namespace, self._job, SELECTOR)
        self._cuer = threading.Thread(target=self._cue_pods, daemon=True)
        self.cue_error: BaseException | None = None
        self.t0 = 0.0  # the first create, on the watches' clock

    def start(self) -> None:
        self._cuer.start()
        self.pods.start_and_wait()
        self.jobs.start_and_wait()

    def stop(self) -> None:
        self.pods.stop()
        self.jobs.stop()
        self._cues.put(None)

    def check(self) -> None:
        self.pods.check()
        self.jobs.check()
        if self.cue_error is not None:
            raise RuntimeError(f"stand-in kubelet failed: {self.cue_error!r}")

    def _job(self, kind: str, obj: dict[str, Any], now: float) -> None:
        if kind == "ADDED":
            self.job_added.setdefault(obj["metadata"]["name"], now)

    def _pod(self, kind: str, obj: dict[str, Any], now: float) -> None:
        name = obj["metadata"]["name"]
        phase = (obj.get("status") or {}).get("phase")
        with self.lock:
            if kind == "DELETED" or phase in ("Succeeded", "Failed"):
                self.running.discard(name)
                if phase in ("Succeeded", "Failed"):
                    self.pod_done.setdefault(name, now)
                    if phase == "Failed":
                        self.pod_failed.add(name)
                return
            self.running.add(name)
            self.max_running = max(self.max_running, len(self.running))
            if phase == "Running" and name not in self.cued:
                self.cued.add(name)
                self._cues.put(name)

    def _cue_pods(self) -> None:
        # Its own thread: a patch must not hold up the watch whose event times we take.
        try:
            while (name := self._cues.get()) is not None:
                self.core.patch_namespaced_pod(
                    name,
                    self.namespace,
                    {
                        "metadata": {
                            "annotations": {
                                "kwok.tradebot.dev/outcome": "Succeeded",
                                "kwok.tradebot.dev/termination-message": SUMMARY,
                            }
                        }
                    },
                )
        except BaseException as e:
            self.cue_error = e

    def slot_latencies(self, limit: int) -> list[float]:
        """Job i (after the first `limit`) took the slot freed by the i-th pod to finish."""
        done = sorted(self.pod_done.values())
        added = sorted(self.job_added.values())[limit:]
        return [a - d for a, d in zip(added, done, strict=False)]


def job_template(namespace: str, name: str) -> dict[str, Any]:
    """The Job the operator makes for the benchmark's Backtest, without the owner."""
    spec = BacktestSpec.model_validate(example("Backtest", "ema-rsi-sample")["spec"])
    uid = "00000000-0000-0000-0000-000000000000"
    run = jobs.BacktestRun(
        namespace, name, uid, spec, "ema-rsi", "EmaRsiStrategy", "", {}, "run", "run"
    )
    body = jobs.job(run, Settings())
    del body["metadata"]["ownerReferences"]
    return body


def plain_jobs(api: client.ApiClient, side: Side, count: int, limit: int, timeout: float) -> float:
    """The baseline: at most `limit` Jobs running; when a pod succeeds, delete its Job and
    create the next. Returns the seconds taken."""
    batch = client.BatchV1Api(api)
    template = job_template(side.namespace, "plain")
    finished: queue.Queue[str] = queue.Queue()
    seen: set[str] = set()

    def create(i: int) -> None:
        body = copy.deepcopy(template)
        body["metadata"]["name"] = f"plain-{i}"
        body["metadata"]["labels"]["tradebot.dev/backtest"] = f"plain-{i}"
        batch.create_namespaced_job(side.namespace, body)

    def on_pod(kind: str, obj: dict[str, Any], now: float) -> None:
        job = obj["metadata"].get("labels", {}).get("job-name")
        if (obj.get("status") or {}).get("phase") == "Succeeded" and job not in seen:
            seen.add(job)
            finished.put(job)

    client_watch = Follow(side.core.list_namespaced_pod, side.namespace, on_pod, SELECTOR)
    client_watch.start_and_wait()
    t0 = side.t0 = time.monotonic()
    created = done = 0
    try:
        while created < min(limit, count):
            create(created)
            created += 1
        while done < count:
            client_watch.check()
            side.check()
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"baseline: {done}/{count} done after {timeout} s")
            try:
                job = finished.get(timeout=1)
            except queue.Empty:
                continue
            batch.delete_namespaced_job(job, side.namespace, propagation_policy="Background")
            done += 1
            if created < count:
                create(created)
                created += 1
        return time.monotonic() - t0
    finally:
        client_watch.stop()


def operator_side(api: client.ApiClient, side: Side, count: int, timeout: float) -> float:
    custom = client.CustomObjectsApi(api)
    succeeded: set[str] = set()
    failed: set[str] = set()

    def on_backtest(kind: str, obj: dict[str, Any], now: float) -> None:
        phase = (obj.get("status") or {}).get("phase")
        if phase == "Succeeded":
            succeeded.add(obj["metadata"]["name"])
        elif phase == "Failed":
            failed.add(obj["metadata"]["name"])

    def list_backtests(namespace: str, **kw: Any) -> Any:
        return custom.list_namespaced_custom_object(G, V, namespace, "backtests", **kw)

    backtests = Follow(list_backtests, side.namespace, on_backtest)
    backtests.start_and_wait()
    bt = example("Backtest", "ema-rsi-sample")
    try:
        t0 = side.t0 = time.monotonic()
        # Created from a few threads, as `kubectl apply` of a big list would not be faster.
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda i: custom.create_namespaced_custom_object(
                        G, V, side.namespace, "backtests", {**bt, "metadata": {"name": f"bt-{i}"}}
                    ),
                    range(count),
                )
            )
        print(f"  operator  {count} Backtests created in {time.monotonic() - t0:.1f} s", flush=True)

        def all_done() -> bool:
            if failed:
                raise RuntimeError(f"Backtests failed: {sorted(failed)[:5]}")
            return len(succeeded) == count

        wait_until(
            all_done, timeout, f"{count} Backtests Succeeded", (backtests, side.pods, side.jobs)
        )
        return time.monotonic() - t0
    finally:
        backtests.stop()


def figures(label: str, side: Side, count: int, limit: int, seconds: float) -> dict[str, Any]:
    lat = side.slot_latencies(limit)
    done = sorted(side.pod_done.values())
    result = {
        # Until the last pod finished: the work itself, before any recording.
        "seconds_to_last_pod": round(done[-1] - side.t0, 2) if done else None,
        "first_job_after": round(min(side.job_added.values()) - side.t0, 3)
        if side.job_added
        else None,
        "seconds": round(seconds, 2),
        "throughput": round(count / seconds, 3),
        "slot_p50": round(pct(lat, 0.5), 3),
        "slot_p99": round(pct(lat, 0.99), 3),
        "slot_max": round(max(lat, default=float("nan")), 3),
        "slot_samples": len(lat),
        "max_running": side.max_running,
        "jobs_created": len(side.job_added),
        "pods_failed": len(side.pod_failed),
    }
    print(
        f"  {label:<9} {count} done in {seconds:6.1f} s; {result['throughput']:.2f}/s; "
        f"pod Succeeded -> next Job p50 {result['slot_p50']:.3f} s, "
        f"p99 {result['slot_p99']:.3f} s; at most {side.max_running} running; first Job "
        f"after {result['first_job_after']} s, last pod done after "
        f"{result['seconds_to_last_pod']} s",
        flush=True,
    )
    return result


def compare(cluster: LocalCluster, count: int, limit: int, as_json: bool) -> int:
    root = cluster.layout.root
    operator: OperatorProcess | None = None
    timeout = max(180.0, count * 1.5)
    before = machine()
    try:
        api = cluster.api_client()
        print(
            f"queue benchmark: {count} runs, limit {limit}; load {before['load1']} on "
            f"{before['cpus']} CPUs",
            flush=True,
        )
        core = client.CoreV1Api(api)
        for ns in ("plain", "bench"):
            core.create_namespace({"metadata": {"name": ns}})

        plain = Side(api, "plain")
        plain.start()
        try:
            base = figures(
                "baseline", plain, count, limit, plain_jobs(api, plain, count, limit, timeout)
            )
        finally:
            plain.stop()

        operator = start_operator(
            cluster.kubeconfig,
            "bench",
            root / "operator.log",
            args=("--max-concurrent", str(limit)),
            local_state_dir=str(root / "operator"),
            max_backtests_per_namespace=str(limit),
            max_backtests_per_strategy=str(limit),
        )
        strategy_ready(client.CustomObjectsApi(api), "bench", operator=operator)
        peak = [0]

        def watch_memory() -> None:
            while operator is not None and operator.process.poll() is None:
                peak[0] = max(peak[0], rss_kib(operator.pid))
                time.sleep(0.5)

        threading.Thread(target=watch_memory, daemon=True).start()
        idle = rss_kib(operator.pid)
        bench = Side(api, "bench")
        bench.start()
        try:
            ours = figures(
                "operator", bench, count, limit, operator_side(api, bench, count, timeout)
            )
        finally:
            bench.stop()
        ratio = round(ours["throughput"] / base["throughput"], 3)
        met = (
            ratio >= 0.9
            and ours["slot_p50"] <= 0.2
            and ours["slot_p99"] <= 1.0
            and ours["max_running"] <= limit
        )
        print(f"\noperator memory: {idle / 1024:.0f} MiB idle, {peak[0] / 1024:.0f} MiB peak")
        print(f"throughput ratio (operator / plain Jobs): {ratio:.2f}")
        emit(
            {
                "benchmark": "backtest_queue",
                "count": count,
                "limit": limit,
                "ratio": ratio,
                "goal": "throughput ratio >= 0.9, operator slot latency "
                "p50 <= 0.2 s and p99 <= 1 s, running <= limit",
                "met": met,
                "baseline": base,
                "operator": ours,
                "operator_rss_mib": {"idle": round(idle / 1024), "peak": round(peak[0] / 1024)},
                "machine": {**before, "load1_before": before["load1"]},
            },
            as_json,
        )
        return 0 if ours["max_running"] <= limit else 1
    finally:
        if operator is not None:
            operator.stop()


def main() -> int:
    # A plain SIGTERM would skip the cleanup below and leave the cluster running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()
    with temporary_cluster("tradebot-bench-") as cluster:
        apply_crds(cluster)
        return compare(cluster, args.count, args.limit, args.json)


if __name__ == "__main__":
    sys.exit(main())
