"""What one hyperopt worker reports: a compact summary (the container's termination message,
at most 4096 bytes, and DIR/summary.json) and its epochs (DIR/epochs.jsonl, and one JSON line
per epoch on stdout prefixed with EPOCH_PREFIX, so the operator can read them from the pod's
log when the summary alone must stay small)."""

from __future__ import annotations

import datetime as dt

from pydantic import Field

from tradebot.api.backtest import Artifact, BacktestResults
from tradebot.api.base import StatusModel
from tradebot.api.types import Figure

EPOCH_PREFIX = "tradebot-epoch "
EPOCHS_NAME = "epochs.jsonl"


class EpochRecord(StatusModel):
    """One finished epoch (Optuna trial) as the records keep it."""

    epoch: int = Field(
        description="Optuna trial number + 1 (shared study) or the worker's "
        "own epoch number (independent workers)."
    )
    worker: int = Field(description="Index of the worker that ran it.")
    loss: Figure = Field(description="Loss, 8 decimals.")
    profit_total: Figure | None = None
    profit_total_abs: Figure | None = None
    trades: int | None = None
    max_drawdown: Figure | None = None
    parameters_hash: str = Field(description="sha256 of the canonical parameters.")


class BestEpoch(StatusModel):
    epoch: int
    loss: Figure
    parameters: str = Field(description="Freqtrade's strategy parameter JSON, exact.")
    parameters_hash: str
    results: BacktestResults | None = None


class HyperoptSummary(StatusModel):
    ok: bool = Field(description="True when Freqtrade ran its epochs and they were read back.")
    error: str | None = None
    exit_code: int | None = None
    strategy: str
    worker: int = Field(description="This worker's index.")
    storage: str = Field(description="shared (one Optuna study) or independent.")
    epochs_done: int = Field(default=0, description="Epochs this worker finished.")
    study_epochs_done: int | None = Field(
        default=None,
        description="Finished epochs of the whole shared study, as this worker last saw it.",
    )
    best: BestEpoch | None = Field(
        default=None, description="Best epoch this worker saw (of the whole study when shared)."
    )
    artifacts: list[Artifact] = Field(default_factory=list)
    epochs_owed: int | None = Field(
        default=None,
        description="Epochs this run of the worker "
        "set out to run: its share minus what earlier runs of "
        "the same index completed (shared study).",
    )
    duplicates_dropped: int | None = Field(
        default=None, description="Proposed points told FAIL instead of evaluated: already tried."
    )
    stale_trials_failed: int | None = Field(
        default=None,
        description="Trials a killed earlier run of this worker left RUNNING, failed on start.",
    )
    truncated: bool | None = Field(
        default=None,
        description="Parts left out to fit the "
        "termination message; the whole is DIR/summary.json and "
        "the log's last line.",
    )
    code_hash: str | None = None
    config_hash: str | None = None
    data_hash: str | None = None
    freqtrade_version: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
