"""Crash points for tests of crash safety: `TRADEBOT_CRASH_AT=<point>` makes the operator
process die at once (no cleanup, like a SIGKILL or a node loss) when it reaches that point.
Unset in production, where each call costs one dictionary lookup."""

from __future__ import annotations

import os
import sys
from typing import Final

ENV: Final = "TRADEBOT_CRASH_AT"
EXIT_CODE: Final = 97


def crash_point(name: str) -> None:
    if os.environ.get(ENV) == name:
        sys.stderr.write(f"tradebot: crash point {name} reached ({ENV}); exiting\n")
        sys.stderr.flush()
        os._exit(EXIT_CODE)
