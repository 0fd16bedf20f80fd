"""Hyperopt benchmark, on the bundled sample data with the example Strategy, in one run:

1. overhead: one worker through `tradebot-runner hyperopt` (independent mode) against
   `freqtrade hyperopt` run directly (through the offline-markets entrypoint: there is no
   network) with the same config, seed, spaces, loss and epochs. Goal: runner <= 1.2 x
   direct + 2 s.
2. scaling: the same epochs in one Optuna study on a real PostgreSQL (started here), run by
   one worker, then shared by two workers in parallel. Goal: epochs per second of two
   workers >= 1.6 x one worker's. Each worker is one process (--jobs 1), so this needs two
   free cores; the machine's load is printed beside the figures.

    .venv/bin/python bench/hyperopt.py [--epochs 40] [--repeat 1] [--json]

With --repeat N the four measurements run N times, interleaved, and the fastest of each is
compared (wall seconds and CPU seconds are in `rounds` too): on a shared machine the other
load only ever slows a run down.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import os
import resource
import subprocess
import tempfile
import time
from typing import Any

import yaml
from bench.common import emit, machine
from tests.support.postgres import temporary_postgres

from tradebot.api.backtest import BacktestSpec
from tradebot.api.strategy import StrategySpec
from tradebot.domain.freqtrade_config import PARAMETER_FILE_KEY, TRADEBOT_KEY, backtest_config
from tradebot.freqtrade import datasets

ROOT = Path(__file__).resolve().parent.parent
TIMERANGE = "20240102-20240201"
LOSS = "SharpeHyperOptLoss"
SEED = 3
# buy_rsi_max alone has 31 values, fewer than the epochs: Freqtrade would skip duplicates and
# the runs would differ in what they evaluate. ROI and stoploss make the space continuous.
SPACES = ("buy", "roi", "stoploss")
STORAGE_ENV = "TRADEBOT_STUDY_STORAGE"


def _spec(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((ROOT / "examples" / name).read_text())["spec"]
    return spec


def _env(storage: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_VERSION", STORAGE_ENV)}
    env["PYTHONPATH"] = f"{ROOT / 'operator'}:{ROOT}:{env.get('PYTHONPATH', '')}"
    if storage is not None:
        env[STORAGE_ENV] = storage
    return env


class Inputs:
    def __init__(self, work: Path) -> None:
        self.strategy = StrategySpec.model_validate(_spec("strategy.yaml"))
        spec = BacktestSpec.model_validate(_spec("backtest.yaml"))
        self.datadir = str(datasets.resolve_datadir("sample", spec.exchange))
        self.config = backtest_config(
            spec, self.strategy, datadir=self.datadir, user_data_dir=str(work / "unused")
        )
        self.config_path = work / "config.json"
        self.config_path.write_text(json.dumps(self.config))
        self.strategy_file = work / f"{self.strategy.class_name}.py"
        self.strategy_file.write_text(self.strategy.code or "")


def _cpu() -> float:
    """CPU seconds of the waited-for children and theirs: a figure the machine's other load
    changes far less than wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def direct(inputs: Inputs, work: Path, epochs: int) -> tuple[float, float]:
    """`freqtrade hyperopt` itself, with the arguments the runner gives it."""
    strategies = work / "user_data" / "strategies"
    strategies.mkdir(parents=True)
    name = inputs.strategy.class_name
    (strategies / f"{name}.py").write_text(inputs.strategy.code or "")
    (strategies / f"{name}.json").write_text(
        json.dumps(inputs.config[TRADEBOT_KEY][PARAMETER_FILE_KEY])
    )
    command = [
        sys.executable,
        "-m",
        "tradebot.freqtrade.offline",
        "hyperopt",
        "--config",
        str(inputs.config_path),
        "--strategy",
        name,
        "--strategy-path",
        str(strategies),
        "--userdir",
        str(work / "user_data"),
        "--datadir",
        inputs.datadir,
        "--timerange",
        TIMERANGE,
        "--spaces",
        *SPACES,
        "--hyperopt-loss",
        LOSS,
        "--epochs",
        str(epochs),
        "--job-workers",
        "1",
        "--random-state",
        str(SEED),
    ]
    started, cpu = time.monotonic(), _cpu()
    subprocess.run(command, check=True, capture_output=True, cwd=work, env=_env())
    return time.monotonic() - started, _cpu() - cpu


def _runner(
    inputs: Inputs, output: Path, epochs: int, worker: int, study: str, storage: str | None
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "tradebot.freqtrade.runner",
        "hyperopt",
        "--config",
        str(inputs.config_path),
        "--strategy-file",
        str(inputs.strategy_file),
        "--data",
        "sample",
        "--output",
        str(output),
        "--timerange",
        TIMERANGE,
        "--spaces",
        *SPACES,
        "--loss",
        LOSS,
        "--epochs",
        str(epochs),
        "--random-state",
        str(SEED),
        "--worker",
        str(worker),
        "--study",
        study,
        "--summary",
        str(output.parent / f"{output.name}-summary.json"),
    ]
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(storage)
    )


def _summary(output: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads((output / "summary.json").read_text())
    if not summary.get("ok"):
        raise SystemExit(f"worker {output.name} failed: {summary.get('error')}")
    return summary


def workers(
    inputs: Inputs, work: Path, shares: list[int], study: str, storage: str | None
) -> tuple[float, float, list[dict[str, Any]]]:
    """Wall time and CPU time of `len(shares)` workers started together, and their
    summaries."""
    started, cpu = time.monotonic(), _cpu()
    procs = [
        (_runner(inputs, work / f"{study}-{i}", share, i, study, storage), i)
        for i, share in enumerate(shares)
    ]
    for proc, _ in procs:
        proc.wait()
    elapsed, used = time.monotonic() - started, _cpu() - cpu
    return elapsed, used, [_summary(work / f"{study}-{i}") for _, i in procs]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--epochs", type=int, default=40, help="epochs of each measurement (default 40; even)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds, each measurement interleaved with its baseline; the "
        "fastest of each is compared (default 1)",
    )
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args()
    epochs = max(2, args.epochs - args.epochs % 2)
    before = machine()
    rounds: dict[str, list[tuple[float, float]]] = {
        "direct": [],
        "runner": [],
        "one": [],
        "two": [],
    }
    summaries: dict[str, list[dict[str, Any]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="tradebot-bench-ho-") as tmp,
        temporary_postgres("tradebot-bench-ho-pg-") as server,
    ):
        work = Path(tmp)
        inputs = Inputs(work)
        for n in range(max(1, args.repeat)):
            rounds["direct"].append(direct(inputs, work / f"direct{n}", epochs))
            *times, summaries["runner"] = workers(inputs, work, [epochs], f"independent{n}", None)
            rounds["runner"].append((times[0], times[1]))
            for kind, shares in (("one", [epochs]), ("two", [epochs // 2, epochs // 2])):
                url = server.create_database(f"{kind}{n}").replace(
                    "postgresql://", "postgresql+psycopg://", 1
                )
                *times, summaries[kind] = workers(inputs, work, shares, f"{kind}{n}", url)
                rounds[kind].append((times[0], times[1]))
    (baseline, baseline_cpu), (runner, runner_cpu), (one_s, one_cpu), (two_s, two_cpu) = (
        min(rounds[k]) for k in ("direct", "runner", "one", "two")
    )
    (independent,), one, two = summaries["runner"], summaries["one"], summaries["two"]
    bar = 1.2 * baseline + 2
    one_rate = one[0]["studyEpochsDone"] / one_s
    two_rate = max(s["studyEpochsDone"] for s in two) / two_s
    scaling = two_rate / one_rate
    result = {
        "ratio": round(runner / baseline, 3),
        "goal": "runner <= 1.2 x direct + 2 s; two workers >= 1.6 x one worker's epochs/s",
        "met": runner <= bar and scaling >= 1.6,
        "overhead": {
            "direct_s": round(baseline, 2),
            "runner_s": round(runner, 2),
            "bar_s": round(bar, 2),
            "met": runner <= bar,
            "direct_cpu_s": round(baseline_cpu, 2),
            "runner_cpu_s": round(runner_cpu, 2),
            "epochs": epochs,
            "runner_epochs_done": independent["epochsDone"],
        },
        "scaling": {
            "ratio": round(scaling, 3),
            "one_worker_s": round(one_s, 2),
            "two_workers_s": round(two_s, 2),
            "one_worker_cpu_s": round(one_cpu, 2),
            "two_workers_cpu_s": round(two_cpu, 2),
            "one_worker_epochs_per_s": round(one_rate, 3),
            "two_workers_epochs_per_s": round(two_rate, 3),
            "met": scaling >= 1.6,
            "epochs": epochs,
        },
        "rounds": {k: [[round(w, 2), round(c, 2)] for w, c in v] for k, v in rounds.items()},
        "machine": before,
    }
    print(
        f"{epochs} epochs: freqtrade hyperopt {baseline:.1f} s ({baseline_cpu:.1f} s CPU), "
        f"tradebot-runner {runner:.1f} s ({runner_cpu:.1f} s CPU) "
        f"(ratio {runner / baseline:.2f}, bar <= {bar:.1f} s: "
        f"{'OK' if runner <= bar else 'OVER'}); shared study: one worker {one_s:.1f} s "
        f"({one_rate:.2f} epochs/s), two workers {two_s:.1f} s ({two_rate:.2f} epochs/s), "
        f"x{scaling:.2f} (goal >= 1.6: {'OK' if scaling >= 1.6 else 'NOT met'}); "
        f"{before['cpus']} CPUs, load {before['load1']}",
        flush=True,
    )
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
