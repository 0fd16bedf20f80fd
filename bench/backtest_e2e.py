"""A Backtest through the operator against `freqtrade backtesting` run directly: the same
config, strategy, data and timerange, in the same run, REPS times each (alternating which side
goes first).

Operator side: the shipped operator as a process of its own (local executor: on the local
cluster's kwok nodes the operator runs the Job's runner command itself), the Backtest applied
-> `Succeeded` with its results in status and its run recorded (condition Recorded True),
seen by this process's watch.

Direct side: Freqtrade's own command line in a process of its own, with the arguments the
runner gives it and the runner's one patch it cannot do without here (markets from the
bundled file instead of the network, tradebot.freqtrade.offline); without the runner's record
of the candle files read, which only serves the data hash. The config is the one the operator
generates for the Backtest (domain/freqtrade_config.py), checked against the run's
status.configHash; the results are checked to be the operator's.

Breakdown of each operator run, from the watches (Jobs, pods, Backtests: list then watch,
resumed from the last resourceVersion, failing loudly) and the runner's own log:
  admission      apply -> the Job created
  pod start      Job created -> its pod Running (Job controller, scheduler, kwok)
  process start  pod Running -> the runner starts Freqtrade (the pod's event wakes the
                 operator, which starts the runner; the runner's imports and preparation)
  run            Freqtrade's process, start to exit (what the direct side times, plus its
                 own process start)
  report         Freqtrade's exit -> pod Succeeded (the runner parses the result and writes
                 its summary and exits; the operator, woken by the exit, reports it on the
                 pod; kwok finishes the pod)
  record         pod Succeeded -> Backtest Succeeded and Recorded (the pod's event wakes the
                 operator, which reads the summary, writes status and the run record)

Also printed: the operator's own part (its time less Freqtrade's process) and Freqtrade's
process in the runner against the direct one.

Goal (issue #14): the median operator time at most 1.2 x the median direct time + 1 s.

    .venv/bin/python bench/backtest_e2e.py [--reps 5] [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import datetime as dt
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from typing import Any, cast

from bench.common import Follow, emit, machine, start_operator, strategy_ready, wait_until
from kubernetes import client
from tests.support.cluster import apply_crds, temporary_cluster
from tests.support.manifests import example

from tradebot.api.backtest import BacktestSpec
from tradebot.api.strategy import StrategySpec
from tradebot.domain import jobs
from tradebot.domain.freqtrade_config import (
    PARAMETER_FILE_KEY,
    TRADEBOT_KEY,
    backtest_config,
    config_hash,
)
from tradebot.domain.naming import backtest_run_id
from tradebot.freqtrade import datasets, results
from tradebot.localcluster import LocalCluster

G, V = "tradebot.dev", "v1alpha1"
NS = "bench"
SELECTOR = "tradebot.dev/kind=backtest"
STEPS = ("admission", "pod_start", "process_start", "run", "report", "record")


class Timeline:
    """Monotonic times of what the watches saw, per Backtest (by its label on Jobs and pods)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.job_added: dict[str, float] = {}
        self.pod_running: dict[str, float] = {}
        self.pod_succeeded: dict[str, float] = {}
        self.done: dict[str, float] = {}
        self.final: dict[str, dict[str, Any]] = {}

    @staticmethod
    def _owner(obj: dict[str, Any]) -> str:
        return str((obj["metadata"].get("labels") or {}).get("tradebot.dev/backtest", ""))

    def job(self, kind: str, obj: dict[str, Any], now: float) -> None:
        with self.lock:
            self.job_added.setdefault(self._owner(obj), now)

    def pod(self, kind: str, obj: dict[str, Any], now: float) -> None:
        phase = (obj.get("status") or {}).get("phase")
        with self.lock:
            if phase in ("Running", "Succeeded", "Failed"):
                self.pod_running.setdefault(self._owner(obj), now)
            if phase in ("Succeeded", "Failed"):
                self.pod_succeeded.setdefault(self._owner(obj), now)

    def backtest(self, kind: str, obj: dict[str, Any], now: float) -> None:
        status = obj.get("status") or {}
        recorded = any(
            c.get("type") == "Recorded" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        name = obj["metadata"]["name"]
        with self.lock:
            if status.get("phase") == "Failed" or (status.get("phase") == "Succeeded" and recorded):
                self.done.setdefault(name, now)
                self.final.setdefault(name, obj)


def runner_times(run_dir: Path, wall_to_mono: float) -> dict[str, float]:
    """Monotonic times of the runner's own log lines: Freqtrade started and exited."""
    times: dict[str, float] = {}
    for line in (run_dir / "runner.log").read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("event") not in (
            "freqtrade.command",
            "freqtrade.exit",
        ):
            continue
        at = dt.datetime.fromisoformat(str(entry["timestamp"]).replace("Z", "+00:00"))
        times[str(entry["event"])] = at.timestamp() - wall_to_mono
    missing = {"freqtrade.command", "freqtrade.exit"} - set(times)
    if missing:
        raise RuntimeError(f"{run_dir}/runner.log lacks {sorted(missing)}")
    return times


def direct_config(spec: BacktestSpec, strategy: StrategySpec) -> dict[str, Any]:
    """The config the operator generates for this Backtest (controllers/queue._create_run)."""
    return backtest_config(spec, strategy, datadir=jobs.DATA_DIR, user_data_dir=jobs.USER_DATA_DIR)


def direct(spec: BacktestSpec, strategy: StrategySpec, work: Path) -> tuple[float, Any]:
    """`freqtrade backtesting` in a process of its own; returns its seconds and results."""
    config = direct_config(spec, strategy)
    work.mkdir(parents=True)
    (work / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    strategies = work / "user_data" / "strategies"
    strategies.mkdir(parents=True)
    (strategies / f"{strategy.class_name}.py").write_text(strategy.code or "")
    # Freqtrade reads a strategy's parameters from the JSON file beside it; the runner writes
    # the one the config carries there, and so does this.
    parameters = (config.get(TRADEBOT_KEY) or {}).get(PARAMETER_FILE_KEY)
    if parameters is not None:
        (strategies / f"{strategy.class_name}.json").write_text(json.dumps(parameters, indent=2))
    datadir = datasets.resolve_datadir(spec.data.bundled or "sample", spec.exchange)
    command = [
        sys.executable,
        "-m",
        "tradebot.freqtrade.offline",
        "backtesting",
        "--config",
        str(work / "config.json"),
        "--strategy",
        strategy.class_name,
        "--strategy-path",
        str(strategies),
        "--userdir",
        str(work / "user_data"),
        "--datadir",
        str(datadir),
        "--cache",
        "none",
        "--export",
        "trades",
        "--logfile",
        str(work / "freqtrade.log"),
    ]
    if spec.timerange is not None:
        command += ["--timerange", spec.timerange.freqtrade()]
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_VERSION"}
    started = time.monotonic()
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(
            f"freqtrade backtesting exited {done.returncode}: "
            f"{done.stdout[-1500:]}{done.stderr[-1500:]}"
        )
    found = results.parse_result(
        results.latest_result(work / "user_data" / "backtest_results"), strategy.class_name
    )
    return seconds, found


def through_operator(
    custom: client.CustomObjectsApi,
    timeline: Timeline,
    name: str,
    watches: tuple[Follow, ...],
    state: Path,
    wall_to_mono: float,
) -> dict[str, Any]:
    body = {**example("Backtest", "ema-rsi-sample"), "metadata": {"name": name}}
    applied = time.monotonic()
    created = cast(
        dict[str, Any], custom.create_namespaced_custom_object(G, V, NS, "backtests", body)
    )
    wait_until(lambda: name in timeline.done, 600, f"Backtest {name} finished", watches)
    with timeline.lock:
        final, done = timeline.final[name], timeline.done[name]
        job, running = timeline.job_added[name], timeline.pod_running[name]
        succeeded = timeline.pod_succeeded[name]
    status = final.get("status") or {}
    if status.get("phase") != "Succeeded":
        raise RuntimeError(f"Backtest {name} failed: {status.get('message')}")
    run_dir = state / "runs" / backtest_run_id(created["metadata"]["uid"])
    runner = runner_times(run_dir, wall_to_mono)
    marks = [
        applied,
        job,
        running,
        runner["freqtrade.command"],
        runner["freqtrade.exit"],
        succeeded,
        done,
    ]
    steps = {
        step: round(b - a, 3) for step, (a, b) in zip(STEPS, itertools.pairwise(marks), strict=True)
    }
    return {"seconds": round(done - applied, 3), "steps": steps, "status": status}


def measure(cluster: LocalCluster, reps: int, as_json: bool) -> int:
    before = machine()
    root = cluster.layout.root
    state = root / "operator-state"
    spec = BacktestSpec.model_validate(example("Backtest", "ema-rsi-sample")["spec"])
    strategy = StrategySpec.model_validate(example("Strategy", "ema-rsi")["spec"])
    want_hash = config_hash(direct_config(spec, strategy))
    log = Path(tempfile.gettempdir()) / "tradebot-bench-backtest-e2e-operator.log"
    print(f"backtest end to end: {reps} repetitions; operator log: {log}", flush=True)
    with cluster.api_client() as api:
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
        timeline = Timeline()

        def list_backtests(namespace: str, **kw: Any) -> Any:
            return custom.list_namespaced_custom_object(G, V, namespace, "backtests", **kw)

        watches = (
            Follow(client.BatchV1Api(api).list_namespaced_job, NS, timeline.job, SELECTOR),
            Follow(core.list_namespaced_pod, NS, timeline.pod, SELECTOR),
            Follow(list_backtests, NS, timeline.backtest),
        )
        # The shipped defaults, but for the executor and where its state goes.
        with start_operator(
            cluster.kubeconfig,
            NS,
            log,
            executor="local",
            stop_timeout=40,
            local_state_dir=str(state),
        ) as operator:
            for w in watches:
                w.start_and_wait()
            strategy_ready(custom, NS, operator=operator, watches=watches, interval=0.2)
            wall_to_mono = time.time() - time.monotonic()
            ours: list[dict[str, Any]] = []
            theirs: list[float] = []
            same_results = True
            for rep in range(reps):
                order = ("direct", "operator") if rep % 2 == 0 else ("operator", "direct")
                for side in order:
                    if side == "direct":
                        seconds, found = direct(spec, strategy, root / f"direct-{rep}")
                        theirs.append(seconds)
                        direct_results = found.to_wire()
                    else:
                        ours.append(
                            through_operator(
                                custom, timeline, f"bt-{rep}", watches, state, wall_to_mono
                            )
                        )
                status = ours[-1].pop("status")
                if status.get("configHash") != want_hash:
                    raise RuntimeError(
                        f"not the same config: the operator's run has "
                        f"{status.get('configHash')}, the direct one {want_hash}"
                    )
                same_results &= status.get("results") == direct_results
                print(
                    f"  rep {rep + 1}: direct {theirs[-1]:.2f} s, operator "
                    f"{ours[-1]['seconds']:.2f} s ("
                    + ", ".join(f"{k} {v:.2f}" for k, v in ours[-1]["steps"].items())
                    + ")",
                    flush=True,
                )
        for w in watches:
            w.stop()
    op = statistics.median(r["seconds"] for r in ours)
    base = statistics.median(theirs)
    bar = 1.2 * base + 1
    breakdown = {
        step: round(statistics.median(r["steps"][step] for r in ours), 3) for step in STEPS
    }
    # What the operator adds to Freqtrade's own process, and that process in the runner
    # against the same process run directly.
    overhead = statistics.median(r["seconds"] - r["steps"]["run"] for r in ours)
    in_runner = statistics.median(r["steps"]["run"] for r in ours)
    print(
        f"median: direct {base:.2f} s, through the operator {op:.2f} s (bar {bar:.2f} s); "
        f"ratio {op / base:.2f}; operator breakdown (medians): "
        + ", ".join(f"{k} {v:.2f} s" for k, v in breakdown.items()),
        flush=True,
    )
    print(
        f"the operator's own part (all but Freqtrade's process) {overhead:.2f} s; "
        f"Freqtrade's process in the runner {in_runner:.2f} s against {base:.2f} s "
        "directly",
        flush=True,
    )
    if not same_results:
        print("WARNING: the operator's results differ from the direct run's", flush=True)
    met = op <= bar and same_results
    emit(
        {
            "benchmark": "backtest_e2e",
            "reps": reps,
            "ratio": round(op / base, 3),
            "goal": "operator apply -> Succeeded and Recorded <= 1.2 x freqtrade backtesting "
            "directly + 1 s (medians)",
            "met": met,
            "operator_s": round(op, 3),
            "direct_s": round(base, 3),
            "bar_s": round(bar, 3),
            "operator_runs_s": [r["seconds"] for r in ours],
            "direct_runs_s": [round(s, 3) for s in theirs],
            "breakdown_median_s": breakdown,
            "breakdown_runs_s": [r["steps"] for r in ours],
            "same_results": same_results,
            "overhead_s": round(overhead, 3),
            "freqtrade_in_runner_s": round(in_runner, 3),
            "machine": {**before, "load1_before": before["load1"]},
        },
        as_json,
    )
    return 0 if met else 1


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions of each side")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()
    if shutil.which("freqtrade", path=str(Path(sys.executable).parent)) is None:
        raise SystemExit("freqtrade is not installed beside this Python")
    with temporary_cluster("tradebot-bench-bt-e2e-") as cluster:
        apply_crds(cluster)
        return measure(cluster, args.reps, args.json)


if __name__ == "__main__":
    sys.exit(main())
