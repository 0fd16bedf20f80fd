"""Finding the processes a test's subject left behind, by what their command lines name."""

from __future__ import annotations

import os
from pathlib import Path

from tradebot.processes import alive


def processes_mentioning(text: str) -> list[int]:
    """Every live process (zombies count as gone) other than this one whose command line
    contains `text`, whoever started it."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and alive(int(entry.name)):
            found.append(int(entry.name))
    return found
