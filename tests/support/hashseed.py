"""Running a builder in another Python process with another hash seed: a check that a value is
"deterministic" inside one process cannot see a dependence on PYTHONHASHSEED (set order,
hash()), because both sides share the seed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def hash_in_other_process(builder: str, *, seed: int) -> str:
    """config_hash(<module:function>()) computed by a fresh interpreter with PYTHONHASHSEED
    `seed`."""
    module, _, function = builder.partition(":")
    code = (
        "import importlib\n"
        "from tradebot.domain.freqtrade_config import config_hash\n"
        f"print(config_hash(getattr(importlib.import_module({module!r}), {function!r})()))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": str(seed)}
    paths = [str(ROOT), str(ROOT / "operator"), str(ROOT / "testing"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
