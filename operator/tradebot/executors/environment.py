"""The environment the local executors give the processes that run user code (a bot's
`freqtrade trade`, a backtest's runner): what a pod would have, never the operator's own.

The operator's environment holds its records DSN, kubeconfig, PG* and TRADEBOT_* settings; a
strategy is arbitrary Python, so a process running one gets only a search path, a home of its
own, a locale and time zone, and the variables its pod would get (the bot's FREQTRADE__*
secrets, the run's correlation id).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import tradebot

# The same as a container's: Freqtrade and the runner read times as UTC, and text as UTF-8.
LOCALE = {"LANG": "C.UTF-8", "TZ": "UTC"}
# The names a user-code process may see besides those its pod gets (tests check this set).
BASE_NAMES = frozenset({"PATH", "HOME", *LOCALE})


def _path() -> str:
    # The interpreter's own bin first (console scripts of its environment), then the system's.
    return os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"])


def package_root() -> str:
    """The directory holding the `tradebot` package this operator runs: the runner must import
    the same code (in a checkout it is not necessarily the installed one)."""
    return str(Path(tradebot.__file__).resolve().parent.parent)


def user_environment(
    home: Path, own: Mapping[str, str], *, import_tradebot: bool = False
) -> dict[str, str]:
    """PATH, HOME (`home`, created), LANG and TZ, PYTHONPATH only with `import_tradebot`,
    plus `own`: the variables the process's pod would have."""
    home.mkdir(parents=True, exist_ok=True)
    env = {"PATH": _path(), "HOME": str(home), **LOCALE}
    if import_tradebot:
        env["PYTHONPATH"] = package_root()
    return {**env, **own}
