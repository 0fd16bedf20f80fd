"""A Backtest with both bias analyses through the operator against the same Freqtrade
commands run directly: `freqtrade backtesting`, `freqtrade lookahead-analysis` and `freqtrade
recursive-analysis` on the same config, strategy, data and timerange, in the same run, REPS
times each (alternating which side goes first).

Operator side: the shipped operator as a process of its own (local executor), a Backtest with
`analyses: {lookahead: true, recursive: true}` applied -> `Succeeded` with status.bias and its
run recorded (condition Recorded True).

Direct side: the three commands one after the other, each in a process of its own, with the
arguments the runner gives them and the runner's one patch it cannot do without here (markets
from the bundled file, tradebot.freqtrade.offline).

Goal (issue #30): the median operator time at most 1.2 x the median direct time + 2 s.

    .venv/bin/python bench/bias.py [--reps 3] [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import copy
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from typing import Any, cast

from bench.backtest_e2e import direct_config
from bench.common import emit, machine, start_operator, strategy_ready, wait_until
from kubernetes import client
from tests.support.cluster import apply_crds, temporary_cluster
from tests.support.manifests import example

from tradebot.api.backtest import BacktestSpec
from tradebot.api.strategy import StrategySpec
from tradebot.domain.freqtrade_config import PARAMETER_FILE_KEY, TRADEBOT_KEY
from tradebot.freqtrade import datasets
from tradebot.localcluster import LocalCluster

G, V = "tradebot.dev", "v1alpha1"
NS = "bench"
TIMERANGE = {"start": "2024-01-10", "end": "2024-01-20"}
ANALYSES = {"lookahead": True, "recursive": True}


def backtest_body(name: str) -> dict[str, Any]:
    body = copy.deepcopy(example("Backtest", "ema-rsi-sample"))
    body["metadata"] = {"name": name}
    body["spec"].update(timerange=TIMERANGE, analyses=ANALYSES)
    return body


def direct(spec: BacktestSpec, strategy: StrategySpec, startup: int, work: Path) -> float:
    """The three Freqtrade commands, each in a process of its own; their total seconds."""
    config = direct_config(spec, strategy)
    work.mkdir(parents=True)
    (work / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    strategies = work / "user_data" / "strategies"
    strategies.mkdir(parents=True)
    (strategies / f"{strategy.class_name}.py").write_text(strategy.code or "")
    parameters = (config.get(TRADEBOT_KEY) or {}).get(PARAMETER_FILE_KEY)
    if parameters is not None:
        (strategies / f"{strategy.class_name}.json").write_text(json.dumps(parameters, indent=2))
    datadir = datasets.resolve_datadir(spec.data.bundled or "sample", spec.exchange)
    assert spec.timerange is not None
    common = [
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
        "--timerange",
        spec.timerange.freqtrade(),
    ]
    offline = [sys.executable, "-m", "tradebot.freqtrade.offline"]
    commands = [
        [*offline, "backtesting", *common, "--cache", "none", "--export", "trades"],
        [
            *offline,
            "lookahead-analysis",
            *common,
            "--minimum-trade-amount",
            "10",
            "--targeted-trade-amount",
            "20",
            "--lookahead-analysis-exportfilename",
            str(work / "lookahead.csv"),
        ],
        [*offline, "recursive-analysis", *common, "--startup-candle", str(startup)],
    ]
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_VERSION"}
    started = time.monotonic()
    for command in commands:
        done = subprocess.run(
            command, cwd=work, env=env, capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            raise RuntimeError(f"{command[3]} exited {done.returncode}: {done.stdout[-1500:]}")
    return time.monotonic() - started


def through_operator(custom: client.CustomObjectsApi, name: str, operator: Any) -> dict[str, Any]:
    applied = time.monotonic()
    custom.create_namespaced_custom_object(G, V, NS, "backtests", backtest_body(name))

    def finished() -> dict[str, Any] | None:
        operator.alive()
        found = cast(
            dict[str, Any], custom.get_namespaced_custom_object(G, V, NS, "backtests", name)
        )
        status = found.get("status") or {}
        recorded = any(
            c.get("type") == "Recorded" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        if status.get("phase") == "Failed":
            raise RuntimeError(f"Backtest {name} failed: {status.get('message')}")
        return status if status.get("phase") == "Succeeded" and recorded else None

    status = wait_until(finished, 900, f"Backtest {name} Succeeded and Recorded", interval=0.1)
    return {"seconds": round(time.monotonic() - applied, 3), "bias": status.get("bias")}


def measure(cluster: LocalCluster, reps: int, as_json: bool) -> int:
    before = machine()
    root = cluster.layout.root
    spec = BacktestSpec.model_validate(backtest_body("x")["spec"])
    strategy = StrategySpec.model_validate(example("Strategy", "ema-rsi")["spec"])
    log = Path(tempfile.gettempdir()) / "tradebot-bench-bias-operator.log"
    print(f"bias analyses end to end: {reps} repetitions; operator log: {log}", flush=True)
    ours: list[dict[str, Any]] = []
    theirs: list[float] = []
    with cluster.api_client() as api:
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
        with start_operator(
            cluster.kubeconfig,
            NS,
            log,
            executor="local",
            stop_timeout=40,
            local_state_dir=str(root / "operator-state"),
        ) as operator:
            strategy_ready(custom, NS, operator=operator, interval=0.2)
            found = cast(
                dict[str, Any],
                custom.get_namespaced_custom_object(G, V, NS, "strategies", "ema-rsi"),
            )
            startup = int(found["status"]["interface"]["startupCandleCount"])
            for rep in range(reps):
                order = ("direct", "operator") if rep % 2 == 0 else ("operator", "direct")
                for side in order:
                    if side == "direct":
                        theirs.append(direct(spec, strategy, startup, root / f"direct-{rep}"))
                    else:
                        ours.append(through_operator(custom, f"bias-{rep}", operator))
                print(
                    f"  rep {rep + 1}: direct {theirs[-1]:.2f} s, operator "
                    f"{ours[-1]['seconds']:.2f} s; findings: "
                    f"{(ours[-1]['bias'] or {}).get('summary')}",
                    flush=True,
                )
    op = statistics.median(r["seconds"] for r in ours)
    base = statistics.median(theirs)
    bar = 1.2 * base + 2
    met = op <= bar and all(r["bias"] for r in ours)
    print(
        f"median: direct {base:.2f} s, through the operator {op:.2f} s (bar {bar:.2f} s); "
        f"ratio {op / base:.2f}",
        flush=True,
    )
    emit(
        {
            "benchmark": "bias",
            "reps": reps,
            "ratio": round(op / base, 3),
            "goal": "Backtest with lookahead and recursive analyses, apply -> Succeeded and "
            "Recorded <= 1.2 x the same three freqtrade commands directly + 2 s (medians)",
            "met": met,
            "operator_s": round(op, 3),
            "direct_s": round(base, 3),
            "bar_s": round(bar, 3),
            "operator_runs_s": [r["seconds"] for r in ours],
            "direct_runs_s": [round(s, 3) for s in theirs],
            "findings": (ours[-1]["bias"] or {}).get("summary") if ours else None,
            "machine": {**before, "load1_before": before["load1"]},
        },
        as_json,
    )
    return 0 if met else 1


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each side")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()
    if shutil.which("freqtrade", path=str(Path(sys.executable).parent)) is None:
        raise SystemExit("freqtrade is not installed beside this Python")
    with temporary_cluster("tradebot-bench-bias-") as cluster:
        apply_crds(cluster)
        return measure(cluster, args.reps, args.json)


if __name__ == "__main__":
    sys.exit(main())
