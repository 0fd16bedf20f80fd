"""Headless Chromium (Debian's package) loading a page: the DOM after its scripts ran, what
its console printed, and a screenshot."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Chromium writes each console message to stderr as `...:INFO:CONSOLE:<line>] "<text>", source:`.
CONSOLE_MARK = ":CONSOLE"
# No network here: without these, Chromium spends its time on background requests that fail.
QUIET = [
    "--headless",
    "--disable-gpu",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is not installed (hack/install-deps.sh installs Debian's package)"
    return found


@dataclass(frozen=True)
class Page:
    dom: str
    console: list[str]

    def charts(self) -> dict[str, bool]:
        """Each chart's div (id chart-*): whether Plotly drew into it, that is marked it
        js-plotly-plot and put its main-svg inside (before the next chart's div)."""
        opened = [m for m in _DIV.finditer(self.dom) if m.group("id").startswith("chart-")]
        drawn = {}
        for i, m in enumerate(opened):
            end = opened[i + 1].start() if i + 1 < len(opened) else len(self.dom)
            inside = self.dom[m.end() : end]
            drawn[m.group("id")] = "js-plotly-plot" in m.group(0) and 'class="main-svg"' in inside
        return drawn


_DIV = re.compile(r"<div\b[^>]*\bid=\"(?P<id>[^\"]+)\"[^>]*>")


def load(url: str, screenshot: Path | None = None, timeout: float = 180) -> Page:
    """The page at `url` after its scripts ran (--dump-dom), with every console message it
    printed; with `screenshot`, a PNG of it too (a second load, 1280 wide)."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        flags = [*QUIET, f"--user-data-dir={profile}"]
        done = subprocess.run(
            [chromium(), *flags, "--enable-logging=stderr", "--v=0", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        if screenshot is not None:
            shot = subprocess.run(
                [chromium(), *flags, "--window-size=1200,1000", f"--screenshot={screenshot}", url],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            assert shot.returncode == 0, shot.stderr[-2000:]
            assert screenshot.is_file(), shot.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if CONSOLE_MARK in line]
    return Page(done.stdout, console)
