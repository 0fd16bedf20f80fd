"""Hyperopt: a `freqtrade hyperopt` search across worker pods sharing one Optuna study, and the
best parameter set's check on a window it was not fitted to (walk-forward validation)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field, model_validator

from tradebot.api.backtest import Artifact, BacktestResults, LaunchRecord, RunSettings
from tradebot.api.base import ApiModel, StatusModel, cel, with_rules
from tradebot.api.kind import AGE, Kind, PrinterColumn
from tradebot.api.types import (
    PAIRS_IN_STAKE_CURRENCY,
    Figure,
    LocalObjectReference,
    ResourceStatus,
    Timerange,
)

# Freqtrade's built-in spaces (constants.HYPEROPT_BUILTIN_SPACES) that a search may name.
HyperoptSpace = Literal[
    "buy", "sell", "enter", "exit", "roi", "stoploss", "trailing", "protection", "trades"
]
# Freqtrade's built-in loss classes (constants.HYPEROPT_LOSS_BUILTIN).
LOSS_FUNCTIONS = (
    "ShortTradeDurHyperOptLoss",
    "OnlyProfitHyperOptLoss",
    "SharpeHyperOptLoss",
    "SharpeHyperOptLossDaily",
    "SortinoHyperOptLoss",
    "SortinoHyperOptLossDaily",
    "CalmarHyperOptLoss",
    "MaxDrawDownHyperOptLoss",
    "MaxDrawDownRelativeHyperOptLoss",
    "MaxDrawDownPerPairHyperOptLoss",
    "ProfitDrawDownHyperOptLoss",
    "MultiMetricHyperOptLoss",
)
LossFunction = Literal[
    "ShortTradeDurHyperOptLoss",
    "OnlyProfitHyperOptLoss",
    "SharpeHyperOptLoss",
    "SharpeHyperOptLossDaily",
    "SortinoHyperOptLoss",
    "SortinoHyperOptLossDaily",
    "CalmarHyperOptLoss",
    "MaxDrawDownHyperOptLoss",
    "MaxDrawDownRelativeHyperOptLoss",
    "MaxDrawDownPerPairHyperOptLoss",
    "ProfitDrawDownHyperOptLoss",
    "MultiMetricHyperOptLoss",
]
# Freqtrade's optuna samplers (hyperopt_optimizer's sampler table).
Sampler = Literal[
    "TPESampler", "GPSampler", "CmaEsSampler", "NSGAIISampler", "NSGAIIISampler", "QMCSampler"
]

_TRAINING_END = "timerange.end is required: the training window must end where validation can start"
_NO_OVERLAP = (
    "validation.timerange must not overlap timerange (the training window): "
    "out-of-sample data is data the search never saw"
)


def windows_overlap(training: Timerange, validation: Timerange) -> bool:
    """Whether two windows (start inclusive, end exclusive; open end = forever) share a day."""
    after = training.end is not None and validation.start >= training.end
    before = validation.end is not None and validation.end <= training.start
    return not (after or before)


def _default_spaces() -> list[HyperoptSpace]:
    return ["buy", "sell"]


class Validation(ApiModel):
    """The out-of-sample window the best parameters are backtested on when the search ends."""

    timerange: Timerange = Field(
        description="Out-of-sample window; must not overlap the training timerange."
    )


class HyperoptSpec(RunSettings):
    """What to search, on which data, with which money. Immutable once created."""

    model_config = with_rules(
        cel(
            "self == oldSelf",
            "Hyperopt spec is immutable (its results must describe it): create a new Hyperopt",
        ),
        cel("has(self.timerange.end)", _TRAINING_END),
        cel(
            "!has(self.validation) || self.validation.timerange.start >= self.timerange.end || "
            "(has(self.validation.timerange.end) && "
            "self.validation.timerange.end <= self.timerange.start)",
            _NO_OVERLAP,
        ),
        PAIRS_IN_STAKE_CURRENCY,
    )

    strategy_ref: LocalObjectReference = Field(
        description="The Strategy whose parameters are searched."
    )
    spaces: list[HyperoptSpace] = Field(
        default_factory=_default_spaces,
        min_length=1,
        max_length=9,
        json_schema_extra={"x-kubernetes-list-type": "set", "default": ["buy", "sell"]},
        description="Freqtrade hyperopt spaces to search.",
    )
    loss_function: LossFunction = Field(
        default="SharpeHyperOptLoss", description="Freqtrade's loss class."
    )
    epochs: int = Field(ge=1, le=100_000, description="Epochs (trials) in all, across workers.")
    sampler: Sampler | None = Field(
        default=None,
        description="Optuna sampler; the strategy's "
        "(Freqtrade's default, NSGAIIISampler) when left out.",
    )
    timerange: Timerange = Field(description="Training window (in sample); must have an end.")
    validation: Validation | None = Field(
        default=None, description="Out-of-sample check run by the operator when the search ends."
    )
    workers: int = Field(default=1, ge=1, le=64, description="Worker pods sharing the study.")
    random_state: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="Seed; worker i uses randomState + i."
    )
    min_trades: int | None = Field(
        default=None, ge=1, le=100_000, description="Freqtrade's --min-trades."
    )

    @model_validator(mode="after")
    def _check(self) -> HyperoptSpec:
        if self.timerange.end is None:
            raise ValueError(_TRAINING_END)
        if self.validation and windows_overlap(self.timerange, self.validation.timerange):
            raise ValueError(_NO_OVERLAP)
        return self


class EpochFigures(StatusModel):
    """One side of the walk-forward comparison."""

    profit_total: Figure | None = Field(default=None, description="Profit ratio.")
    profit_total_abs: Figure | None = None
    max_drawdown: Figure | None = None
    trades: int | None = None


class HyperoptBest(StatusModel):
    """The best epoch of the whole study."""

    epoch: int = Field(description="Epoch (Optuna trial number + 1) that found it.")
    loss: Figure = Field(description="Its loss (lower is better), 8 decimals.")
    parameters: str = Field(
        description="Freqtrade's strategy parameter JSON, exactly as "
        "`freqtrade hyperopt` exports it (`<Strategy>.json`)."
    )
    parameters_hash: str = Field(
        description="sha256 of the canonical parameters (sorted keys, no export time)."
    )
    results: BacktestResults | None = Field(default=None, description="Its in-sample figures.")


class WorkerStatus(StatusModel):
    index: int
    job_name: str | None = None
    phase: Literal["Queued", "Running", "Succeeded", "Failed"] | None = None
    epochs_done: int | None = None


class ValidationStatus(StatusModel):
    """Walk-forward: the best parameters backtested out of sample by the operator."""

    backtest_name: str | None = Field(default=None, description="The Backtest it created.")
    phase: Literal["Pending", "Running", "Succeeded", "Failed"] | None = None
    in_sample: EpochFigures | None = None
    out_of_sample: EpochFigures | None = None
    profit_ratio: Figure | None = Field(
        default=None,
        description="Out-of-sample profit divided by in-sample profit, when both are known.",
    )


HyperoptPhase = Literal["Pending", "Queued", "Running", "Validating", "Succeeded", "Failed"]


class HyperoptStatus(ResourceStatus):
    phase: HyperoptPhase | None = Field(
        default=None,
        description="Pending (strategy not Ready), Queued, Running, Validating "
        "(the out-of-sample Backtest), Succeeded, Failed.",
    )
    storage: Literal["shared", "independent"] | None = Field(
        default=None,
        description="shared: one Optuna study in PostgreSQL; independent: "
        "workers with their own seeds, merged by the operator (SQLite records).",
    )
    epochs_total: int | None = None
    epochs_done: int | None = None
    progress: str | None = Field(default=None, description="e.g. 40/100, for kubectl get.")
    best_loss: Figure | None = None
    best_profit: Figure | None = Field(default=None, description="Best epoch's profit ratio.")
    workers: list[WorkerStatus] | None = None
    best: HyperoptBest | None = None
    validation: ValidationStatus | None = None
    artifacts: list[Artifact] | None = None
    run_id: str | None = None
    code_hash: str | None = None
    config_hash: str | None = None
    data_hash: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    cleaned_up: bool | None = Field(
        default=None, description="The workers' Jobs and ConfigMap are deleted."
    )
    launched: LaunchRecord | None = Field(
        default=None, description="What the operator launched (its workers' common run)."
    )


KIND = Kind(
    kind="Hyperopt",
    plural="hyperopts",
    short_names=("ho",),
    spec=HyperoptSpec,
    status=HyperoptStatus,
    description="A Freqtrade hyperopt search across worker pods sharing one Optuna study, "
    "validated out of sample.",
    columns=(
        PrinterColumn("Strategy", ".spec.strategyRef.name"),
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Progress", ".status.progress", description="epochs done/total"),
        PrinterColumn("Best-Loss", ".status.bestLoss"),
        PrinterColumn("Best-Profit", ".status.bestProfit", description="profit ratio"),
        PrinterColumn(
            "OOS-Profit",
            ".status.validation.outOfSample.profitTotal",
            description="out-of-sample profit ratio",
        ),
        PrinterColumn("Run", ".status.runId", priority=1),
        AGE,
    ),
)
