"""The demo's fleet page stops with the local cluster: `make demo` starts `tradebot ui` with a
pid file in .local/run (ui.pid), and `tradebot cluster down` (`make down`) stops every process
with a pid file there whose command line names it."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

from tradebot.localcluster import LocalCluster
from tradebot.processes import alive
from tradebot.records import open_store


def test_cluster_stop_stops_the_fleet_page(tmp_path: Path) -> None:
    dsn = f"sqlite:///{tmp_path}/records.db"
    with open_store(dsn) as store:
        store.migrate()
    cluster = LocalCluster(tmp_path / "root", tmp_path / "no-tools")
    run = cluster.layout.run
    run.mkdir(parents=True)
    # As hack/demo.sh starts it: a session of its own, its pid in run/ui.pid.
    process = subprocess.Popen(
        [sys.executable, "-m", "tradebot.cli", "ui", "--no-cluster", "--port", "0", "--dsn", dsn],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    (run / "ui.pid").write_text(f"{process.pid}\n")
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip().removeprefix("fleet page: ")
        with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 - local server
            assert answer.status == 200  # it serves: the positive control
        assert cluster.stop() == ["ui"]
        process.wait(timeout=30)
        assert not alive(process.pid)
        assert not (run / "ui.pid").exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
