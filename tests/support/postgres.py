"""A private PostgreSQL server for tests: Debian's binaries, initdb + pg_ctl in a temp dir."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError(
        "PostgreSQL server binaries not found (initdb); run `make deps` "
        "(apt-get install postgresql)"
    )


@dataclass
class LocalPostgres:
    """One throw-away server listening on 127.0.0.1:port, with trust auth for the test user."""

    directory: Path
    port: int
    user: str = "tradebot"

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        cmd = list(argv)
        if os.geteuid() == 0:
            # initdb and postgres refuse to run as root.
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True)

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def start(self) -> None:
        bin_dir = _pg_bin()
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.directory, pw.pw_uid, pw.pw_gid)
        self._run(
            str(bin_dir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        self.resume()

    def resume(self) -> None:
        """Starts the server again after stop(), on the same data and port."""
        self._run(
            str(_pg_bin() / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.directory / "log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.directory} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off",
            "start",
        )

    def stop(self) -> None:
        """Stops the server (fast: open connections are cut, as in a crash or failover)."""
        if (self.data / "postmaster.pid").exists():
            self._run(str(_pg_bin() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """Creates an empty database; returns its DSN."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    @contextmanager
    def scratch_database(self, prefix: str = "t_") -> Iterator[str]:
        """A fresh, empty database under a unique name; dropped on exit."""
        import psycopg

        name = f"{prefix}{uuid.uuid4().hex[:12]}"
        try:
            yield self.create_database(name)
        finally:
            with psycopg.connect(self.dsn(), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def temporary_postgres(prefix: str = "tradebot-pg-") -> Iterator[LocalPostgres]:
    """A started server in a fresh directory on a free port; stopped and removed on exit."""
    from tradebot.localcluster import Ports

    # Not under pytest's tmp_path: its parents are private, and the server runs as the
    # postgres user when we are root.
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    directory.chmod(0o755)
    server = LocalPostgres(directory / "pg", Ports.free().etcd_client)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
