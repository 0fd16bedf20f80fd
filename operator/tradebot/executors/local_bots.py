"""Running LiveBots' `freqtrade trade` as local processes, for the kwok-based local cluster
where pods run no containers (the bot counterpart of executors/local.py).

Each bot has a directory under the state dir with its config, strategy, log, pid and API
port. Its trade database is where the pod keeps it (PodStorage): a pod's emptyDir is a fresh
directory per pod, a PersistentVolumeClaim the directory of its volume, a PostgreSQL URL is
used as is; so a test passes here only if the pod's storage keeps the trades. Secrets reach
the process only through its environment, exactly as in the pod: nothing secret is written to
the state dir. A restarted operator adopts a bot that is still running; a changed config (its
hash) restarts it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tradebot.domain import supervision
from tradebot.domain.bots import USER_DATA_DIR
from tradebot.domain.freqtrade_config import (
    config_hash,
    parameter_file_data,
    parameter_file_name,
)
from tradebot.executors.environment import user_environment
from tradebot.processes import alive
from tradebot.sidecar import deadman


@dataclass(frozen=True)
class LocalBot:
    pid: int
    port: int
    config_hash: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class PodStorage:
    """The pod's user-data volume and trade database, as this machine plays them."""

    pod_uid: str
    # The directory of the claim's volume; None: user-data is the pod's own emptyDir.
    claim_dir: Path | None = None
    # The pod's --db-url argument (a path under USER_DATA_DIR); None: the URL comes from the
    # environment (FREQTRADE__DB_URL), exactly as in the pod.
    db_url_arg: str | None = None


# How long stopping sidecars waits for them to exit on SIGTERM before SIGKILL.
SIDECAR_STOP_SECONDS = 2.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ExecutorStopped(RuntimeError):
    """The executor's bots were all stopped (the operator is shutting down): none starts
    until `resume()`."""


class LocalBotExecutor:
    def __init__(self, state_dir: Path, python: str = sys.executable) -> None:
        self.state_dir = state_dir.resolve()
        self.python = python

    def bot_dir(self, bot_id: str) -> Path:
        return self.state_dir / "bots" / bot_id

    def running(self, bot_id: str) -> LocalBot | None:
        state = self.bot_dir(bot_id) / "process.json"
        try:
            info = json.loads(state.read_text())
        except (OSError, ValueError):
            return None
        bot = LocalBot(int(info["pid"]), int(info["port"]), str(info["config_hash"]))
        cmdline = Path(f"/proc/{bot.pid}/cmdline")
        try:
            ours = str(self.bot_dir(bot_id)) in cmdline.read_bytes().decode(errors="replace")
        except OSError:
            ours = False
        return bot if alive(bot.pid) and ours else None

    def ensure(
        self,
        bot_id: str,
        config: dict[str, Any],
        strategy_class: str,
        strategy_code: str,
        env: dict[str, str],
        storage: PodStorage | None = None,
    ) -> LocalBot:
        """The bot running with `config`; started, or restarted if its config changed (or,
        with `storage`, if it is another pod's process)."""
        wanted = config_hash(config) + (f"/{storage.pod_uid}" if storage is not None else "")
        current = self.running(bot_id)
        if current is not None and current.config_hash == wanted:
            return current
        if current is not None:
            self.stop(bot_id)
        return self._start(bot_id, config, wanted, strategy_class, strategy_code, env, storage)

    def _user_data(self, bot_id: str, storage: PodStorage | None) -> tuple[Path, list[str]]:
        """The user directory standing in for the pod's, and the --db-url arguments."""
        d = self.bot_dir(bot_id)
        if storage is None:
            return d / "user_data", ["--db-url", f"sqlite:///{d / 'trades.sqlite'}"]
        pods = d / "pods"
        for gone in pods.glob("*"):
            if gone.name != storage.pod_uid:
                # An emptyDir goes with its pod.
                shutil.rmtree(gone, ignore_errors=True)
        user_data = storage.claim_dir or pods / storage.pod_uid / "user_data"
        if storage.db_url_arg is None:
            return user_data, []
        return user_data, ["--db-url", storage.db_url_arg.replace(USER_DATA_DIR, str(user_data))]

    def _state_file(self, bot_id: str, wanted: str) -> Path:
        """The bot's kept state (supervision.STATE_FILE) for one pod: `wanted` (config hash
        and pod uid) stands for the pod, as a new pod gets a new emptyDir."""
        pod = hashlib.sha256(wanted.encode()).hexdigest()[:16]
        return self.bot_dir(bot_id) / "state" / pod / supervision.STATE_FILE

    @property
    def _stopped_marker(self) -> Path:
        return self.state_dir / "bots.stopped"

    def resume(self) -> None:
        """Allows bots to start again after `stop_all` (a new operator starting)."""
        self._stopped_marker.unlink(missing_ok=True)

    def _start(
        self,
        bot_id: str,
        config: dict[str, Any],
        wanted: str,
        strategy_class: str,
        strategy_code: str,
        env: dict[str, str],
        storage: PodStorage | None = None,
    ) -> LocalBot:
        if self._stopped_marker.exists():
            raise ExecutorStopped(f"local bots are stopped under {self.state_dir}")
        d = self.bot_dir(bot_id)
        strategies = d / "strategies"
        strategies.mkdir(parents=True, exist_ok=True)
        user_data, db_url = self._user_data(bot_id, storage)
        user_data.mkdir(parents=True, exist_ok=True)  # Freqtrade refuses a missing user dir
        port = _free_port()
        local = json.loads(json.dumps(config))
        # In a pod the API listens on the pod's address; here only loopback is ours.
        local["api_server"]["listen_ip_address"] = "127.0.0.1"
        local["api_server"]["listen_port"] = port
        (strategies / f"{strategy_class}.py").write_text(strategy_code)
        # The same file the pod's config volume projects beside the strategy; none left from
        # an earlier config whose set is gone (a new pod's volume would not have it either).
        (strategies / parameter_file_name(strategy_class)).unlink(missing_ok=True)
        for name, text in parameter_file_data(config, strategy_class).items():
            (strategies / name).write_text(text)
        (d / "config.json").write_text(json.dumps(local, indent=2))
        # The pod's init container: the state file of this pod, kept across restarts of its
        # process (a crashed bot started again by `ensure`), new for a new pod.
        state_file = self._state_file(bot_id, wanted)
        for gone in state_file.parent.parent.glob("*"):
            if gone != state_file.parent:
                shutil.rmtree(gone, ignore_errors=True)
        state_file.parent.mkdir(parents=True, exist_ok=True)
        if deadman.read_state(state_file) is None:
            deadman.keep_state(state_file, str(config.get("initial_state") or "running"))
        command = [
            self.python,
            "-m",
            "freqtrade",
            "trade",
            "--config",
            str(d / "config.json"),
            "--strategy",
            strategy_class,
            "--strategy-path",
            str(strategies),
            "--userdir",
            str(user_data),
            "--config",
            str(state_file),
            *db_url,
            "--logfile",
            str(d / "freqtrade.log"),
        ]
        # What its pod would get, never the operator's environment (records DSN, kubeconfig,
        # TRADEBOT_*): a strategy is arbitrary code.
        with (d / "console.log").open("ab") as console:
            proc = subprocess.Popen(
                command,
                cwd=d,
                env=user_environment(d / "home", env),
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _await_exec(proc.pid)
        (d / "process.json").write_text(
            json.dumps({"pid": proc.pid, "port": port, "config_hash": wanted})
        )
        # A round still in flight while the operator shuts down: stop_all marks, then scans
        # for process.json; this writes process.json, then looks for the mark. One of the two
        # sees the other, so the bot cannot outlive the operator.
        if self._stopped_marker.exists():
            self.stop(bot_id)
            raise ExecutorStopped(f"local bots are stopped under {self.state_dir}")
        return LocalBot(proc.pid, port, wanted)

    def stop(self, bot_id: str, timeout: float = 20.0) -> bool:
        """Stops the bot process (SIGTERM, Freqtrade's clean shutdown; SIGKILL after
        `timeout`). True if one was running."""
        return bool(self.stop_many([bot_id], timeout))

    def bot_ids(self) -> list[str]:
        """Every bot with a directory under the state dir, running or not."""
        bots = self.state_dir / "bots"
        return sorted(p.name for p in bots.iterdir() if p.is_dir()) if bots.is_dir() else []

    def running_bots(self) -> dict[str, LocalBot]:
        """The bots whose process runs now, by id."""
        found = {bot_id: self.running(bot_id) for bot_id in self.bot_ids()}
        return {bot_id: bot for bot_id, bot in found.items() if bot is not None}

    def stop_all(self, timeout: float = 20.0) -> list[str]:
        """Stops every bot running under the state dir (the operator shutting down, the local
        cluster going away) and lets none start until `resume()`; returns their ids."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._stopped_marker.touch()
        return self.stop_many(self.bot_ids(), timeout)

    def stop_many(self, bot_ids: list[str], timeout: float = 20.0) -> list[str]:
        """Stops these bots together: SIGTERM to all, then SIGKILL to those still running
        after `timeout`, so a fleet stops in one timeout, not one per bot (their sidecars
        first, likewise together). Returns the ids that were running."""
        self._stop_supervisions(bot_ids)
        bots = {bot_id: bot for bot_id in bot_ids if (bot := self.running(bot_id)) is not None}
        _stop_groups([bot.pid for bot in bots.values()], timeout, interval=0.1)
        for bot_id in bots:
            (self.bot_dir(bot_id) / "process.json").unlink(missing_ok=True)
        return sorted(bots)

    # ---- the dead-man's switch: the pod's sidecar, as a process beside the bot ---------------
    def supervise(
        self,
        bot_id: str,
        annotations: Mapping[str, str],
        deadline: dt.timedelta,
        env: dict[str, str],
    ) -> int | None:
        """Stands in for the kubelet and the sidecar container: writes the pod's `annotations`
        where the sidecar reads them (as the downward API does), and keeps the sidecar running
        for the bot now running. The sidecar's pid, or None when no bot runs. `env` holds the
        bot API's username and password, which reach the sidecar only through its environment.

        The sidecar has a session of its own (a process cannot join the bot's session from
        outside it): stop() ends it with the bot, and a bot started anew gets a new one."""
        bot = self.running(bot_id)
        if bot is None or self._stopped_marker.exists():
            return None
        d = self.bot_dir(bot_id)
        podinfo = d / "podinfo"
        podinfo.mkdir(exist_ok=True)
        _write_if_changed(
            podinfo / supervision.ANNOTATIONS_FILE, supervision.annotations_file(annotations)
        )
        script = d / supervision.SCRIPT_KEY
        _write_if_changed(script, supervision.SCRIPT)
        current = self._supervisor(bot_id)
        if current is not None and current[1] == bot.pid:
            return current[0]
        self._stop_supervision(bot_id)
        command = supervision.command(
            self.python,
            str(script),
            deadline,
            str(podinfo / supervision.ANNOTATIONS_FILE),
            bot.url,
            str(self._state_file(bot_id, bot.config_hash)),
        )
        with (d / "deadman.log").open("ab") as log:
            proc = subprocess.Popen(
                command,
                cwd=d,
                env=user_environment(d / "home", env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _await_exec(proc.pid)
        (d / "deadman.json").write_text(json.dumps({"pid": proc.pid, "bot_pid": bot.pid}))
        # As in _start: stop_all may have marked and scanned between the check above and the
        # write; one of the two sees the other, so no sidecar outlives the operator.
        if self._stopped_marker.exists():
            self._stop_supervision(bot_id)
            return None
        return proc.pid

    def _supervisor(self, bot_id: str) -> tuple[int, int] | None:
        """(sidecar pid, pid of the bot it guards) while the sidecar runs."""
        d = self.bot_dir(bot_id)
        try:
            info = json.loads((d / "deadman.json").read_text())
            pid, bot_pid = int(info["pid"]), int(info["bot_pid"])
            ours = str(d) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError, KeyError):
            return None
        return (pid, bot_pid) if ours and alive(pid) else None

    def _stop_supervision(self, bot_id: str) -> None:
        self._stop_supervisions([bot_id])

    def _stop_supervisions(self, bot_ids: list[str]) -> None:
        """Stops these bots' sidecars together (SIGKILL to those still running after
        SIDECAR_STOP_SECONDS), so a fleet's sidecars cost one wait, not one each."""
        sidecars = [
            current[0] for bot_id in bot_ids if (current := self._supervisor(bot_id)) is not None
        ]
        # Nothing to save: SIGTERM ends a sidecar at once. Waited for, so that a stopped
        # operator leaves no sidecar behind, not even for a moment.
        _stop_groups(sidecars, SIDECAR_STOP_SECONDS, interval=0.05)
        for bot_id in bot_ids:
            (self.bot_dir(bot_id) / "deadman.json").unlink(missing_ok=True)


def _stop_groups(pids: list[int], timeout: float, interval: float) -> None:
    """SIGTERM to every one of these process groups, then one wait for all of them, then
    SIGKILL to those still running after `timeout`: many cost one timeout, not one each."""
    for pid in pids:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(interval)
    for pid in pids:
        if alive(pid):
            _signal_group(pid, signal.SIGKILL)


def _await_exec(pid: int, timeout: float = 5.0) -> None:
    """Waits until `pid` shows its own program's arguments. Popen returns once the child's
    close-on-exec pipe closes, which the kernel does before it sets up the new program's
    arguments: for a moment /proc/PID/cmdline reads empty, and `running` (which knows a
    process by its arguments, against pid reuse) would miss a process just started, so a
    stop right then would leave it running."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        try:
            if cmdline.read_bytes():
                return
        except OSError:  # exited meanwhile
            return
        time.sleep(0.001)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # The bot leads its own session (start_new_session): its group is the bot and whatever
    # it started.
    with contextlib.suppress(ProcessLookupError):  # exited between the check and the signal
        os.killpg(pid, sig)


def _write_if_changed(path: Path, text: str) -> None:
    """Replaces the file whole (as the kubelet swaps its downward-API files), and only when
    the text changed."""
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
