"""What a runner subcommand (backtest, hyperopt) does alike with the files of its run: hashes
them, names them as artifacts, places the strategy, and says where the summary goes."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

from tradebot.api.backtest import Artifact
from tradebot.domain.freqtrade_config import PARAMETER_FILE_KEY, TRADEBOT_KEY


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def freqtrade_version() -> str | None:
    try:
        return metadata.version("freqtrade")
    except metadata.PackageNotFoundError:
        return None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def artifact(path: Path) -> Artifact:
    return Artifact(name=path.name, sha256=sha256_file(path), size=path.stat().st_size)


def no_constants(name: str) -> Any:
    """json.loads' parse_constant: NaN and Infinity are no numbers a config may hold."""
    raise ValueError(f"{name} is not a number JSON allows")


TERMINATION_LOG = Path("/dev/termination-log")
SUMMARY_NAME = "summary.json"


def summary_target(arg: Path | None, output: Path) -> Path:
    """Where the summary goes: the --summary path, else the container's termination message
    when it has one (a Job's pod), else summary.json in the output directory."""
    if arg is not None:
        return arg
    if TERMINATION_LOG.exists() and os.access(TERMINATION_LOG, os.W_OK):
        return TERMINATION_LOG
    return output / SUMMARY_NAME


def prepare_strategy(config: dict[str, Any], strategy_file: Path, strategies: Path) -> Path:
    """A private copy of the strategy, alone in its directory: Freqtrade imports every .py file
    of a strategy directory, and a mounted ConfigMap directory holds more than the strategy.
    Beside it, the parameter file the config carries, which Freqtrade reads from there."""
    strategies.mkdir(parents=True)
    copy = strategies / strategy_file.name
    shutil.copyfile(strategy_file, copy)
    extra = config.get(TRADEBOT_KEY)
    parameter_file = extra.get(PARAMETER_FILE_KEY) if isinstance(extra, dict) else None
    mounted = _mounted_parameter_file(strategy_file)
    if mounted is not None and mounted != parameter_file:
        # The pod's projected file and the config's set come from one builder; a difference
        # means one of them was edited, and a run of an unknown set is no evidence.
        raise ValueError(
            f"the parameter file beside {strategy_file.name} is not the set the config names "
            f"({'none' if mounted is None else 'a file'} beside the strategy, "
            f"{'none' if parameter_file is None else 'a set'} in the config)"
        )
    if parameter_file is not None:
        copy.with_suffix(".json").write_text(json.dumps(parameter_file, indent=2))
    return copy


def _mounted_parameter_file(strategy_file: Path) -> Any:
    """The parameter file projected beside the strategy file (the run's ConfigMap), if any.
    Absent in a run started by hand without one: then only the config's set applies."""
    beside = strategy_file.with_suffix(".json")
    if not beside.is_file():
        return None
    return json.loads(beside.read_text(), parse_constant=no_constants)


def add_run_inputs(parser: argparse.ArgumentParser) -> None:
    """The inputs every subcommand runs Freqtrade on: the config, the strategy, the data."""
    parser.add_argument(
        "--config",
        type=Path,
        required=True,
        help="Freqtrade config JSON, as the operator generated it",
    )
    parser.add_argument(
        "--strategy-file", type=Path, required=True, help="the strategy's Python file"
    )
    parser.add_argument(
        "--data",
        required=True,
        help="bundled data set name (e.g. sample) or a Freqtrade data directory",
    )
