"""The local executor for Hyperopt workers: like a backtest (executors/local.py), each worker's
Job pod on a kwok node has its runner command run here as a subprocess, with the same arguments,
files and environment (the study's URL read from the Secret the pod would get it from); its
outcome goes on the pod as kwok's stage annotations. A deleted Hyperopt's workers are killed
(their process groups), as deleting their pods would stop their containers.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tradebot import kube
from tradebot.controllers.bot_storage import _secret_value
from tradebot.executors.local import (
    EXIT_CODE,
    MESSAGE,
    OUTCOME,
    LocalExecutor,
    Outcome,
    _data_mounts,
    container_args,
)
from tradebot.freqtrade.hyperopt_summary import HyperoptSummary
from tradebot.processes import alive

SUMMARY = "summary.json"


class HyperoptExecutor(LocalExecutor):
    """A LocalExecutor whose runs report a HyperoptSummary."""

    def _outcome(self, run_id: str, exit_code: int) -> Outcome:
        try:
            summary = HyperoptSummary.model_validate_json(
                (self.artifacts_dir(run_id) / SUMMARY).read_text()
            )
        except (OSError, ValueError):
            log = self.run_dir(run_id) / "runner.log"
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            return Outcome(
                False,
                exit_code or 1,
                f"runner exited with code {exit_code} without a summary: {tail}",
            )
        return Outcome(
            summary.ok and exit_code == 0,
            exit_code,
            summary.model_dump_json(by_alias=True, exclude_none=True),
        )


def _env(job: Mapping[str, Any], namespace: str, run_id: str) -> dict[str, str]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {"TRADEBOT_CORRELATION_ID": run_id}
    for entry in container.get("env") or []:
        ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            value = _secret_value(namespace, ref["name"], ref["key"])
            if value is not None:
                env[entry["name"]] = value
        elif "value" in entry:
            env[entry["name"]] = str(entry["value"])
    return env


def advance_worker(
    job: Mapping[str, Any],
    pod: Mapping[str, Any] | None,
    namespace: str,
    run_id: str,
    state_dir: Path,
) -> Outcome | None:
    """One step of a worker's run (see executors/local.py advance_backtest). Returns the
    outcome once the run has finished: reported by this step, or by an earlier one (the pod's
    annotations), so the caller need not wait for kwok and the Job controller to catch up."""
    annotations = (pod or {}).get("metadata", {}).get("annotations") or {}
    if OUTCOME in annotations:
        return Outcome(
            annotations[OUTCOME] == "Succeeded",
            int(annotations.get(EXIT_CODE) or 0),
            annotations.get(MESSAGE) or "",
        )
    if pod is None or (pod.get("status") or {}).get("phase") != "Running":
        return None
    volumes = job["spec"]["template"]["spec"].get("volumes") or []
    cm_name = next(v["configMap"]["name"] for v in volumes if v["name"] == "config")
    cm = kube.core().read_namespaced_config_map(cm_name, namespace)
    outcome = HyperoptExecutor(state_dir).step(
        run_id,
        container_args(job),
        dict(cm.data or {}),
        _env(job, namespace, run_id),
        _data_mounts(job, namespace),
    )
    if outcome is None:
        return None
    kube.core().patch_namespaced_pod(
        pod["metadata"]["name"], namespace, {"metadata": {"annotations": outcome.annotations()}}
    )
    return outcome


def output_dir(state_dir: Path, run_id: str) -> Path:
    return HyperoptExecutor(state_dir).artifacts_dir(run_id)


def running(state_dir: Path, run_id: str) -> int | None:
    """The pid of the worker's process group while it runs, else None."""
    pid_file = HyperoptExecutor(state_dir).run_dir(run_id) / "pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def stop(state_dir: Path, run_id: str) -> bool:
    """Kills the worker's process group (the shell and the runner and Freqtrade under it).
    True if one was running."""
    pid = running(state_dir, run_id)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    return True
