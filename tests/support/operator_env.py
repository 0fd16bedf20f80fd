"""The environment of an operator run as a process of its own (kept apart from
tests/support/operator.py, which imports kopf and every controller: benchmarks need only
this)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def operator_env(kubeconfig: Path, **settings: Any) -> dict[str, str]:
    """The environment of an operator run as a process of its own: this one's without its
    TRADEBOT_* variables (only the shipped defaults and `settings` hold, each as
    TRADEBOT_<SETTING>), against the cluster of `kubeconfig`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TRADEBOT_") and k != "PYTEST_VERSION"
    }
    env["KUBECONFIG"] = str(kubeconfig)
    env.update({f"TRADEBOT_{k.upper()}": str(v) for k, v in settings.items()})
    return env
