"""Running the images `make images` built, as the kubelet would run a container: the image's
entrypoint unless the container gives a command, the container's args in place of the image's
cmd, its env, its volumes as bind mounts, the image's user. Docker where its daemon answers,
else buildah with chroot isolation (no daemon, no cgroups: what this machine allows). Either
way the container shares the host's network, so it reaches the test cluster and doubles on
127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_IMAGE = "localhost/tradebot-operator:dev"
RUNNER_IMAGE = "localhost/tradebot-runner:dev"


def _hack(*args: str) -> str:
    return subprocess.run(
        [str(ROOT / "hack" / "image-engine.sh"), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@dataclass(frozen=True)
class Mount:
    host: Path
    container: str
    read_only: bool = False


@dataclass
class Engine:
    name: str
    buildah_opts: list[str]

    @classmethod
    def detect(cls) -> Engine:
        return cls(_hack(), _hack("--buildah-opts").split())

    def has(self, image: str) -> bool:
        return (
            subprocess.run(
                [str(ROOT / "hack" / "image-engine.sh"), "--has", self.name, image], check=False
            ).returncode
            == 0
        )

    def config(self, image: str) -> dict[str, Any]:
        """The image's config: Entrypoint, Cmd, User, Env, WorkingDir."""
        if self.name == "docker":
            out = subprocess.run(
                ["docker", "image", "inspect", "-f", "{{json .Config}}", image],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            return dict(json.loads(out))
        out = subprocess.run(
            ["buildah", *self.buildah_opts, "inspect", "--type", "image", image],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return dict(json.loads(out)["OCIv1"]["config"])

    def argv(
        self, image: str, command: Sequence[str] | None, args: Sequence[str] | None
    ) -> list[str]:
        """What the kubelet runs: command replaces the entrypoint (and then the image's cmd
        is dropped), args replace the cmd."""
        config = self.config(image)
        if command:
            return [*command, *(args or [])]
        return [
            *(config.get("Entrypoint") or []),
            *(args if args is not None else config.get("Cmd") or []),
        ]

    @contextmanager
    def container(
        self,
        image: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        mounts: Sequence[Mount] = (),
        log: Path,
        user: str | None = None,
    ) -> Iterator[subprocess.Popen[bytes]]:
        """`argv` running in `image` until the block ends (SIGTERM, then SIGKILL)."""
        ctr = None
        if self.name == "docker":
            cmd = ["docker", "run", "--rm", "--network", "host", "--entrypoint", argv[0]]
            cmd += [f"-v{m.host}:{m.container}{':ro' if m.read_only else ''}" for m in mounts]
            cmd += [f"-e{k}={v}" for k, v in env.items()]
            cmd += ["--user", user] if user else []
            cmd += [image, *argv[1:]]
        else:
            ctr = subprocess.run(
                ["buildah", *self.buildah_opts, "from", "--pull=never", "-q", image],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            cmd = ["buildah", *self.buildah_opts, "run", "--isolation", "chroot"]
            cmd += [f"-v{m.host}:{m.container}:{'ro' if m.read_only else 'rw'}" for m in mounts]
            cmd += [f"--env={k}={v}" for k, v in env.items()]
            cmd += ["--user", user] if user else []
            cmd += [ctr, "--", *argv]
        with log.open("ab") as out:
            process = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            yield process
        finally:
            _stop(process)
            if ctr is not None:
                subprocess.run(
                    ["buildah", *self.buildah_opts, "rm", ctr], check=False, capture_output=True
                )

    def run(
        self,
        image: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        mounts: Sequence[Mount] = (),
        log: Path,
        timeout: float = 600,
        user: str | None = None,
    ) -> tuple[int, str]:
        """Runs to completion: (exit status, output)."""
        with self.container(
            image, argv, env=env or {}, mounts=mounts, log=log, user=user
        ) as process:
            code = process.wait(timeout=timeout)
        return code, log.read_text(errors="replace")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
