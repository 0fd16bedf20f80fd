"""Starting and stopping the cluster's component processes, tracked by pid files.

Processes are detached (their own session) so that `make up` can return and leave the cluster
running; `make down` finds them again through the pid files alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from tradebot.localcluster.layout import Layout
from tradebot.processes import alive


class ComponentExited(RuntimeError):
    """A component process ended while the cluster needed it."""


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def tail(path: Path, lines: int = 15) -> str:
    try:
        content = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(content[-lines:])


def _pid_alive(pid: int) -> bool:
    # A zombie child of ours must be reaped, or it would stay "alive" to kill(0) forever.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return alive(pid)


def _cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace") if raw else None


class Supervisor:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        # Children started by this process: between fork and exec their cmdline is still ours,
        # so the pid-reuse guard below would wrongly call them gone.
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def pid(self, component: str) -> int | None:
        """The pid of a running component, or None; a stale pid file is removed."""
        child = self._children.get(component)
        if child is not None and child.poll() is None:
            return child.pid
        pidfile = self.layout.pidfile(component)
        try:
            pid = int(pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        cmdline = _cmdline(pid)
        # Guard against pid reuse: the process must still be our binary.
        if _pid_alive(pid) and cmdline is not None and component in cmdline:
            return pid
        pidfile.unlink(missing_ok=True)
        return None

    def start(self, component: str, argv: list[str]) -> int:
        self.layout.logs.mkdir(parents=True, exist_ok=True)
        self.layout.run.mkdir(parents=True, exist_ok=True)
        log_path = self.layout.log(component)
        with log_path.open("ab") as log:
            log.write(f"\n--- starting: {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        self._children[component] = proc
        self.layout.pidfile(component).write_text(f"{proc.pid}\n")
        return proc.pid

    def check_alive(self, component: str) -> None:
        if self.pid(component) is None:
            raise ComponentExited(
                f"{component} exited during start-up; see {self.layout.log(component)}:\n"
                + tail(self.layout.log(component))
            )

    def stop(self, component: str, timeout: float = 10.0) -> bool:
        """Stops a component: SIGTERM, then SIGKILL after `timeout`. True if one was running."""
        pid = self.pid(component)
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.1)
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while _pid_alive(pid):
                time.sleep(0.05)
        child = self._children.pop(component, None)
        if child is not None:
            child.wait()
        self.layout.pidfile(component).unlink(missing_ok=True)
        return True
