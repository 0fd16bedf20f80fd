"""The benchmarks run end to end with small counts (each on a cluster of its own) and end
with one JSON object carrying the headline ratio, the goal, whether it was met and the raw
figures. The figures themselves are not asserted: on a shared machine they are not fair;
docs/backtests.md and docs/livebots.md hold the runs that count, with the load beside them.
What is asserted is what must hold whatever the load (no more running than the limit)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str, timeout: float = 240) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'operator'}:{ROOT}:{os.environ.get('PYTHONPATH', '')}",
    }
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / script), *args, "--json"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM: the benchmark stops its operator and its cluster on the way out.
        process.terminate()
        stdout, stderr = process.communicate(timeout=120)
        pytest.fail(f"{script} ran over {timeout} s:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    lines = stdout.strip().splitlines()
    assert lines, f"{script} printed nothing; stderr: {stderr[-2000:]}"
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except ValueError:
        pytest.fail(f"{script}: last line is not JSON: {lines[-1]!r}\n{stderr[-2000:]}")
    for key in ("ratio", "goal", "met", "machine"):
        assert key in result, f"{script}: {key} missing from {result}"
    return result


def test_queue_benchmark_smoke(tools_bin: Path) -> None:
    result = _run("backtest_queue.py", "--count", "20", "--limit", "5")
    assert result["baseline"]["jobs_created"] == result["operator"]["jobs_created"] == 20
    assert result["operator"]["max_running"] <= 5
    assert result["baseline"]["max_running"] <= 5


def test_flood_benchmark_smoke(tools_bin: Path) -> None:
    result = _run("flood.py", "--count", "30")
    assert result["rss_mib"]["peak"] >= result["rss_mib"]["idle"] > 0


def test_breaker_benchmark_smoke(tools_bin: Path) -> None:
    result = _run("breaker.py", "--count", "10", timeout=300)
    assert result["count"] == 10
    assert result["trip_p99"] > 0
    # The bots' APIs answered: the trip's REST stops reached them, never after the deletion.
    assert result["rest_stopped"] > 0
    assert result["rest_after_deletion"] == []


def test_breaker_benchmark_flood_smoke(tools_bin: Path) -> None:
    result = _run("breaker.py", "--count", "3", "--flood", "30", timeout=400)
    assert result["flood"] == 30
    assert result["operator_rss_mib_flooded"] > 0
    assert result["rest_stopped"] > 0


def test_failover_benchmark_smoke(tools_bin: Path) -> None:
    result = _run("failover.py", "--runs", "1", "--bots", "2", timeout=300)
    (run,) = result["each_run"]
    # Whatever the load: the standby took over after the kill, then reconciled and stopped.
    assert 0 < run["takeover_s"] <= run["first_reconcile_s"]
    assert run["trip_handled_s"] > 0


def test_backtest_e2e_benchmark_smoke(tools_bin: Path) -> None:
    result = _run("backtest_e2e.py", "--reps", "1", timeout=300)
    assert len(result["operator_runs_s"]) == len(result["direct_runs_s"]) == 1
    # The same run on both sides: the operator's results are Freqtrade's own.
    assert result["same_results"] is True
    assert set(result["breakdown_median_s"]) == {
        "admission",
        "pod_start",
        "process_start",
        "run",
        "report",
        "record",
    }
    assert result["direct_s"] > 0


def test_livebot_start_benchmark_smoke(tools_bin: Path) -> None:
    result = _run("livebot_start.py", "--count", "5", timeout=300)
    assert result["count"] == 5
    assert result["operator_s"]["running_p99"] > 0
    assert result["deployments_s"]["running_p99"] > 0


def test_hyperopt_benchmark_smoke() -> None:
    result = _run("hyperopt.py", "--epochs", "4", timeout=400)
    assert result["overhead"]["runner_epochs_done"] == result["overhead"]["epochs"] == 4
    assert result["overhead"]["direct_s"] > 0
    assert result["scaling"]["one_worker_epochs_per_s"] > 0
    assert result["scaling"]["two_workers_epochs_per_s"] > 0


def test_hyperopt_operator_benchmark_smoke(tools_bin: Path) -> None:
    result = _run("hyperopt_operator.py", "--epochs", "2", timeout=600)
    assert result["epochs_done"] == 2
    assert result["direct_s"] > 0
    assert result["operator_s"] > 0
