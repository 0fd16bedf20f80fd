"""The local executor: on the local cluster, kwok pods run no containers, so the operator runs
the Job's runner command itself, as a subprocess with the same arguments and the same mounted
files, and then reports the outcome on the pod the way a kubelet would (through the kwok stage
annotations: outcome, exit code, termination message).

Crash-safe: each run has a directory under the state dir holding its pid and, when done, its
exit code. A restarted operator adopts a run still going, reports one that finished, and only
starts the command again when it died without finishing (a retry of the same run, never a
second one beside it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tradebot import kube
from tradebot.artifacts import store
from tradebot.artifacts.location import store_kind
from tradebot.domain.jobs import ARTIFACTS_MOUNT, CONFIG_MOUNT, CONTAINER, DATA_MOUNT
from tradebot.executors.environment import user_environment
from tradebot.freqtrade.summary import RunSummary
from tradebot.processes import alive
from tradebot.settings import Settings

OUTCOME = "kwok.tradebot.dev/outcome"
EXIT_CODE = "kwok.tradebot.dev/exit-code"
MESSAGE = "kwok.tradebot.dev/termination-message"
RUNNER = [sys.executable, "-m", "tradebot.freqtrade.runner"]


@dataclass(frozen=True)
class Outcome:
    succeeded: bool
    exit_code: int
    message: str

    def annotations(self) -> dict[str, str]:
        return {
            OUTCOME: "Succeeded" if self.succeeded else "Failed",
            EXIT_CODE: str(self.exit_code),
            MESSAGE: self.message,
        }


class LocalExecutor:
    def __init__(self, state_dir: Path, runner: list[str] | None = None) -> None:
        self.state_dir = state_dir.resolve()
        self.runner = runner or RUNNER

    def run_dir(self, run_id: str) -> Path:
        return self.state_dir / "runs" / run_id

    def artifacts_dir(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "artifacts"

    def step(
        self,
        run_id: str,
        container_args: list[str],
        files: dict[str, str] | Callable[[], dict[str, str]],
        env: dict[str, str],
        mounts: Mapping[str, str] | None = None,
        on_exit: Callable[[], None] | None = None,
    ) -> Outcome | None:
        """Advances the run one step; returns its Outcome once the runner has finished.
        `files` may be a callable, read only when the run starts (a round that finds the
        runner going reads nothing); `on_exit` is called from a thread of its own as soon as
        a runner started here exits, so the caller can report it at once instead of at its
        next round (a run adopted after a restart is seen at the rounds only)."""
        d = self.run_dir(run_id)
        exit_file, pid_file = d / "exitcode", d / "pid"
        if exit_file.exists():
            return self._outcome(run_id, int(exit_file.read_text().strip() or 1))
        if pid_file.exists() and alive(int(pid_file.read_text().strip())):
            return None
        proc = self._start(
            run_id, container_args, files() if callable(files) else files, env, mounts or {}
        )
        threading.Thread(
            target=_wait_then, args=(proc, on_exit), name=f"runner-{run_id}", daemon=True
        ).start()
        return None

    def _start(
        self,
        run_id: str,
        container_args: list[str],
        files: dict[str, str],
        env: dict[str, str],
        mounts: Mapping[str, str],
    ) -> subprocess.Popen[bytes]:
        d = self.run_dir(run_id)
        inputs, artifacts = d / "input", self.artifacts_dir(run_id)
        # A run that died half-way starts again from nothing.
        shutil.rmtree(artifacts, ignore_errors=True)
        inputs.mkdir(parents=True, exist_ok=True)
        artifacts.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (inputs / name).write_text(content)
        args = [
            a.replace(CONFIG_MOUNT, str(inputs)).replace(ARTIFACTS_MOUNT, str(artifacts))
            for a in container_args
        ]
        # Other mounts (a data claim at /data): the volume's directory on this machine.
        for mount, directory in mounts.items():
            args = [
                directory + a[len(mount) :] if a == mount or a.startswith(mount + "/") else a
                for a in args
            ]
        command = [*self.runner, *args]
        (d / "command.json").write_text(json.dumps(command))
        with (d / "runner.log").open("ab") as log:
            # The shell records the exit code, so a restarted operator can read it even though
            # the runner is no longer its child.
            proc = subprocess.Popen(
                [
                    "/bin/sh",
                    "-c",
                    '"$@"; echo $? > exitcode.tmp && mv exitcode.tmp exitcode',
                    "runner",
                    *command,
                ],
                cwd=d,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=user_environment(d / "home", env, import_tradebot=True),
                start_new_session=True,
            )
        (d / "pid").write_text(str(proc.pid))
        return proc

    def _outcome(self, run_id: str, exit_code: int) -> Outcome:
        summary_file = self.artifacts_dir(run_id) / "summary.json"
        try:
            summary = RunSummary.model_validate_json(summary_file.read_text())
        except (OSError, ValueError):
            log = self.run_dir(run_id) / "runner.log"
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            return Outcome(
                False,
                exit_code or 1,
                f"runner exited with code {exit_code} without a summary: {tail}",
            )
        return Outcome(summary.ok and exit_code == 0, exit_code, summary.to_message())

    def forget(self, run_id: str) -> None:
        """Drops the run's process bookkeeping (its artifacts stay)."""
        for name in ("pid", "exitcode"):
            (self.run_dir(run_id) / name).unlink(missing_ok=True)


def _wait_then(proc: subprocess.Popen[bytes], on_exit: Callable[[], None] | None) -> None:
    """Reaps the runner's shell (no zombie is left for `alive` to puzzle over) and tells the
    caller; the exit code is in the run's directory by then (the shell wrote it last)."""
    proc.wait()
    if on_exit is not None:
        try:
            on_exit()
        except Exception as e:  # the caller's rounds still see the exit
            from tradebot.observability.logging import logger

            logger(component="local-executor").warning("exit callback failed", error=str(e))


def container_args(job: Mapping[str, Any]) -> list[str]:
    containers = job["spec"]["template"]["spec"]["containers"]
    runner = next(c for c in containers if c["name"] == CONTAINER)
    return [str(a) for a in runner.get("args", [])]


def _data_mounts(job: Mapping[str, Any], namespace: str) -> dict[str, str]:
    """The Job's data claim as the local cluster provisions it: a hostPath directory."""
    from tradebot.controllers.bot_storage import _claim_dir

    volumes = job["spec"]["template"]["spec"].get("volumes") or []
    claim = next(
        (
            v["persistentVolumeClaim"]["claimName"]
            for v in volumes
            if v["name"] == "data" and v.get("persistentVolumeClaim")
        ),
        None,
    )
    return {DATA_MOUNT: str(_claim_dir(namespace, claim))} if claim else {}


def claim_root(namespace: str, claim: str) -> Path:
    """Where the claim's volume is on this machine (the local cluster's hostPath volumes);
    raises StoreError while it is not bound or not local."""
    from tradebot.controllers.bot_storage import StorageNotReady, _claim_dir

    try:
        return _claim_dir(namespace, claim)
    except StorageNotReady as e:
        raise store.StoreError(str(e)) from None


def keep_artifacts(
    outcome: Outcome, namespace: str, run_id: str, directory: Path, settings: Settings
) -> Outcome:
    """The run's artifacts copied (claim) or uploaded (bucket) into the artifact store, as the
    runner pod does itself with the kubernetes executor; the outcome's summary then names
    where each one is. Raises StoreError (the caller tries again: every put is idempotent)."""
    kind = store_kind(settings)
    try:
        summary = RunSummary.model_validate_json(outcome.message)
    except ValueError:
        return outcome  # no summary, no artifacts
    if kind is None or not summary.artifacts:
        return outcome
    root = (
        claim_root(namespace, settings.artifacts_pvc)
        if kind == "pvc" and settings.artifacts_pvc
        else None
    )
    found = store.from_settings(settings, pvc_root=root)
    assert found is not None
    kept = [
        a.model_copy(update={"path": found.put(run_id, directory / a.name).path})
        for a in summary.artifacts
    ]
    return Outcome(
        outcome.succeeded,
        outcome.exit_code,
        summary.model_copy(update={"artifacts": kept}).to_message(),
    )


def advance_backtest(
    job: Mapping[str, Any],
    pod: Mapping[str, Any] | None,
    namespace: str,
    job_name: str,
    run_id: str,
    state_dir: Path,
    settings: Settings | None = None,
    on_exit: Callable[[], None] | None = None,
) -> Outcome | None:
    """One step of a backtest Job's run on a kwok node: once its pod is Running, the runner
    runs here (its inputs from the Job's ConfigMap) and, when it has finished, its artifacts go
    to the store (when `settings` configure one) and its outcome on the pod as kwok's stage
    annotations, which make kwok finish the pod as a kubelet would. Returns the outcome when
    this step reported it. `on_exit` as for `LocalExecutor.step`."""
    if pod is None or (pod.get("status") or {}).get("phase") != "Running":
        return None
    if OUTCOME in ((pod.get("metadata") or {}).get("annotations") or {}):
        return None  # reported already; kwok finishes the pod

    def inputs() -> dict[str, str]:
        # Read only to start the runner: a round that finds it going costs no API call.
        return dict(kube.core().read_namespaced_config_map(job_name, namespace).data or {})

    outcome = LocalExecutor(state_dir).step(
        run_id,
        container_args(job),
        inputs,
        {"TRADEBOT_CORRELATION_ID": run_id},
        _data_mounts(job, namespace),
        on_exit,
    )
    if outcome is None:
        return None
    if settings is not None:
        outcome = keep_artifacts(
            outcome, namespace, run_id, LocalExecutor(state_dir).artifacts_dir(run_id), settings
        )
    kube.core().patch_namespaced_pod(
        pod["metadata"]["name"], namespace, {"metadata": {"annotations": outcome.annotations()}}
    )
    return outcome
