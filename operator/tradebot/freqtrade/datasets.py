"""Where candles come from: bundled data sets by name, or a Freqtrade data directory.

Resolution of `--data VALUE`:

* VALUE made only of `a-z 0-9 -` (the API's `data.bundled` pattern) is a bundled data set
  name. Its directory is `<data root>/<BUNDLED[name]>`, and Freqtrade's datadir is that
  directory's `<exchange>/` subdirectory (Freqtrade's own layout, `user_data/data/binance`).
* Anything else (it has a `/`, e.g. `/data/candles` from a PVC or `./mydata`) is used as the
  Freqtrade datadir itself.

The data root is, first match wins: `$TRADEBOT_DATA_ROOT`; `user_data/data` of the source
checkout this package runs from (an editable install); `/opt/tradebot/user_data/data` (where
a runner image puts the repository's user_data).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

DATA_ROOT_ENV = "TRADEBOT_DATA_ROOT"
IMAGE_DATA_ROOT = Path("/opt/tradebot/user_data/data")
# operator/tradebot/freqtrade/datasets.py -> the checkout's root is three levels above the
# package directory.
CHECKOUT_DATA_ROOT = Path(__file__).resolve().parents[3] / "user_data" / "data"

# Bundled set name -> its directory relative to the data root. "sample" is the root itself so
# that the repository's user_data/ stays a plain Freqtrade user directory.
BUNDLED: dict[str, str] = {"sample": "."}

_NAME = re.compile(r"^[a-z0-9-]{1,63}$")


class DataError(Exception):
    pass


def data_root() -> Path:
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return Path(env)
    if CHECKOUT_DATA_ROOT.is_dir():
        return CHECKOUT_DATA_ROOT
    return IMAGE_DATA_ROOT


def is_bundled_name(value: str) -> bool:
    return bool(_NAME.fullmatch(value))


def resolve_datadir(value: str, exchange: str) -> Path:
    """Freqtrade's --datadir for `--data value`; raises DataError when it does not exist."""
    if is_bundled_name(value):
        if value not in BUNDLED:
            raise DataError(
                f"unknown bundled data set {value!r} (bundled: {', '.join(sorted(BUNDLED))})"
            )
        root = data_root()
        datadir = (root / BUNDLED[value] / exchange).resolve()
        if not datadir.is_dir():
            raise DataError(
                f"bundled data set {value!r} has no {exchange} candles: {datadir} "
                f"does not exist (data root {root}; set ${DATA_ROOT_ENV} to move it)"
            )
        return datadir
    datadir = Path(value).resolve()
    if not datadir.is_dir():
        raise DataError(f"data directory {value} does not exist")
    return datadir


def data_hash(files: Iterable[Path], datadir: Path) -> str:
    """sha256 over the candle files, in order of their path relative to the datadir, each as
    its path, its size and its bytes (so neither a rename nor a change of content goes
    unnoticed, and no two file lists hash alike)."""
    base = datadir.resolve()
    named = []
    for f in set(files):
        resolved = f.resolve()
        rel = (
            resolved.relative_to(base).as_posix()
            if resolved.is_relative_to(base)
            else resolved.as_posix()
        )
        named.append((rel, resolved))
    digest = hashlib.sha256()
    for rel, path in sorted(named):
        content = path.read_bytes()
        digest.update(f"{rel}\n{len(content)}\n".encode())
        digest.update(content)
    return digest.hexdigest()
