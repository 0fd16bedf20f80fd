"""Backtest: a `freqtrade backtesting` run in a Job, queued under the cluster's limits."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from tradebot.api.base import ApiModel, StatusModel, cel, with_rules
from tradebot.api.kind import AGE, Kind, PrinterColumn
from tradebot.api.types import (
    PAIRS_IN_STAKE_CURRENCY,
    Currency,
    ExchangeName,
    FeeRatio,
    Figure,
    GpuRequest,
    K8sName,
    LocalObjectReference,
    Money,
    Pair,
    ResourceRequirements,
    ResourceStatus,
    StakeAmount,
    Timeframe,
    Timerange,
    check_pairs_in_stake,
)

DEFAULT_DATASET = "sample"
_NO_PARENT = cel(
    "!self.matches('(^|/)[.][.](/|$)')",
    "data.pvc.path must stay inside the volume: no `..` segment",
)


class PvcData(ApiModel):
    """Candles on a PersistentVolumeClaim, laid out as Freqtrade's data directory."""

    claim_name: K8sName = Field(description="The PersistentVolumeClaim, same namespace.")
    # No `..` segment: the path must stay inside the volume, not reach the rest of the
    # runner's file system. Refused by the API server (CEL) and by the model alike.
    path: str = Field(
        default="data",
        max_length=512,
        pattern=r"^[^/].*$",
        json_schema_extra={"x-kubernetes-validations": [_NO_PARENT]},
        description="Directory inside the volume (relative, no `..`).",
    )

    @field_validator("path")
    @classmethod
    def _inside_the_volume(cls, path: str) -> str:
        if ".." in path.split("/"):
            raise ValueError(_NO_PARENT["message"])
        return path


_ONE_SOURCE = "exactly one of data.bundled, data.pvc or data.marketDataRef must be set"


class DataSource(ApiModel):
    """Where the candles come from: a data set bundled with the runner, a PVC, or a
    MarketData."""

    model_config = with_rules(
        cel(
            "(has(self.bundled) ? 1 : 0) + (has(self.pvc) ? 1 : 0) + "
            "(has(self.marketDataRef) ? 1 : 0) == 1",
            _ONE_SOURCE,
        ),
    )

    bundled: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9-]{1,63}$",
        max_length=63,
        description="Name of a bundled data set, e.g. sample.",
    )
    pvc: PvcData | None = Field(default=None, description="A PVC with Freqtrade data.")
    market_data_ref: LocalObjectReference | None = Field(
        default=None,
        description="A MarketData (same namespace): its candles and the "
        "markets saved with them. The Backtest waits (DataMissing) until they cover it.",
    )

    @model_validator(mode="after")
    def _one(self) -> DataSource:
        if sum(x is not None for x in (self.bundled, self.pvc, self.market_data_ref)) != 1:
            raise ValueError(_ONE_SOURCE)
        return self


class RunSettings(ApiModel):
    """What a Freqtrade run (a Backtest, a Hyperopt's workers) trades, on which data, with
    which money, and how it queues: the fields both kinds share."""

    exchange: ExchangeName = Field(
        default="binance", description="Exchange whose markets and fees apply (ccxt id)."
    )
    pairs: list[Pair] = Field(
        min_length=1,
        max_length=100,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Pairs to trade, e.g. BTC/USDT.",
    )
    timeframe: Timeframe | None = Field(
        default=None, description="Overrides the strategy's timeframe."
    )
    stake_currency: Currency = Field(default="USDT", description="Currency of the wallet.")
    stake_amount: StakeAmount = Field(default="unlimited", description="Stake per trade.")
    dry_run_wallet: Money = Field(
        default="1000", validate_default=True, description="Starting balance in stakeCurrency."
    )
    max_open_trades: int = Field(default=3, ge=1, le=1000, description="Open trades at most.")
    fee: FeeRatio | None = Field(
        default=None, description="Fee per side; the exchange's when left out."
    )
    enable_protections: bool = Field(default=False, description="Apply the strategy's protections.")
    data: DataSource = Field(
        default_factory=lambda: DataSource(bundled=DEFAULT_DATASET),
        json_schema_extra={"default": {"bundled": DEFAULT_DATASET}},
        description="Where the candles come from.",
    )
    priority: int = Field(
        default=0,
        ge=-1000,
        le=1000,
        description="Higher runs first in the admission queue; ties run oldest first.",
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="Resources of each pod."
    )
    gpu: GpuRequest | None = Field(default=None, description="GPUs of each pod (FreqAI).")
    image: str | None = Field(
        default=None, max_length=512, pattern=r"^[^\s]+$", description="Runner image override."
    )

    @model_validator(mode="after")
    def _pairs_in_stake(self) -> Self:
        check_pairs_in_stake(self.pairs, self.stake_currency)
        return self


class BiasAnalyses(ApiModel):
    """Freqtrade's bias checks, run after the backtest on the same data, image, config and
    parameters (in the same Job, so through the same admission queue)."""

    lookahead: bool = Field(
        default=False,
        description="Run `freqtrade lookahead-analysis`: does a signal or an indicator "
        "change when the candles after it are cut off?",
    )
    recursive: bool = Field(
        default=False,
        description="Run `freqtrade recursive-analysis`: how much do indicators change "
        "with the number of candles before them?",
    )
    minimum_trade_amount: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="Signals the lookahead analysis needs to be conclusive (Freqtrade's "
        "--minimum-trade-amount; its default 10 when left out).",
    )
    targeted_trade_amount: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="Signals the lookahead analysis checks at most (Freqtrade's "
        "--targeted-trade-amount; its default 20 when left out).",
    )

    @property
    def any(self) -> bool:
        return self.lookahead or self.recursive


class BacktestSpec(RunSettings):
    """What to backtest, on which data, with which money. Immutable once created."""

    model_config = with_rules(
        cel(
            "self == oldSelf",
            "Backtest spec is immutable (its results must describe it): create a new Backtest",
        ),
        PAIRS_IN_STAKE_CURRENCY,
    )

    strategy_ref: LocalObjectReference = Field(description="The Strategy to backtest.")
    timerange: Timerange | None = Field(
        default=None, description="Window of candles; all data when left out."
    )
    parameters: str | None = Field(
        default=None,
        min_length=2,
        max_length=262_144,
        description="Freqtrade's strategy parameter JSON (the `<Strategy>.json` file "
        "`freqtrade hyperopt` exports), exactly as text: the strategy runs with these values "
        "instead of the Strategy's own. A Hyperopt's validation Backtest sets it.",
    )
    analyses: BiasAnalyses | None = Field(
        default=None,
        description="Bias analyses (lookahead, recursive) to run after the backtest; "
        "their findings go to status.bias.",
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None,
        ge=0,
        le=31_536_000,
        description="Delete the Backtest this many seconds "
        "after it finished and its result was recorded (the run record stays); the "
        "operator's default when left out.",
    )

    @model_validator(mode="after")
    def _parameters(self) -> BacktestSpec:
        if self.parameters is not None:
            parameter_file(self.parameters)
        return self


def parameter_file(text: str) -> dict[str, Any]:
    """The parameter JSON as Freqtrade reads it: an object with a `params` object."""
    try:
        parsed = json.loads(text)
    except ValueError as e:
        raise ValueError(f"parameters is not JSON: {e}") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("params"), dict):
        raise ValueError(
            'parameters must be Freqtrade\'s parameter file: a JSON object with a "params" object'
        )
    return parsed


class BacktestResults(StatusModel):
    """Figures from Freqtrade's result file; ratios and amounts as exact decimal strings."""

    profit_total: Figure | None = Field(default=None, description="Profit ratio (0.05 = 5 %).")
    profit_total_abs: Figure | None = Field(default=None, description="Profit in stake currency.")
    max_drawdown: Figure | None = Field(default=None, description="Max drawdown (account ratio).")
    max_drawdown_abs: Figure | None = Field(default=None, description="Max drawdown, absolute.")
    trades: int | None = None
    wins: int | None = None
    losses: int | None = None
    draws: int | None = None
    win_rate: Figure | None = None
    sharpe: Figure | None = None
    sortino: Figure | None = None
    calmar: Figure | None = None
    profit_factor: Figure | None = None
    market_change: Figure | None = None
    starting_balance: Figure | None = None
    final_balance: Figure | None = None
    backtest_start: str | None = Field(default=None, description="First candle used (UTC).")
    backtest_end: str | None = Field(default=None, description="Last candle used (UTC).")


class Artifact(StatusModel):
    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)
    path: str | None = Field(
        default=None,
        description=(
            "Where the artifact store keeps it (pvc://CLAIM/RUN/NAME or s3://BUCKET/KEY); absent "
            "when no store is configured and the file lived only in the Job's emptyDir."
        ),
    )


class LookaheadFindings(StatusModel):
    """What `freqtrade lookahead-analysis` found for the strategy, over all pairs."""

    clean: bool = Field(
        description="Conclusive and no bias: enough signals were checked and none changed."
    )
    has_bias: bool | None = Field(default=None, description="Freqtrade's has_bias.")
    signals: int | None = Field(default=None, description="Signals checked (total_signals).")
    biased_entry_signals: int | None = None
    biased_exit_signals: int | None = None
    biased_indicators: list[str] | None = Field(
        default=None, description="Indicators whose values read future candles."
    )
    inconclusive: str | None = Field(
        default=None, description="Why the analysis could not decide (too few signals...)."
    )


class IndicatorDifference(StatusModel):
    name: str
    difference: Figure = Field(
        description="Largest relative change of the indicator's last value between the "
        "startup candle counts checked and the full history (0.01 = 1 %)."
    )


class RecursiveFindings(StatusModel):
    """What `freqtrade recursive-analysis` found (Freqtrade checks the first pair)."""

    pair: str | None = None
    startup_candles: list[int] | None = Field(
        default=None, description="Startup candle counts compared with the full history."
    )
    max_difference: Figure = Field(
        description="Largest difference of any indicator (a ratio: 0.032 = 3.2 %)."
    )
    indicators: list[IndicatorDifference] | None = Field(
        default=None, description="Indicators that differ, largest first."
    )


class BiasFindings(StatusModel):
    summary: str = Field(
        description='For people: "clean", "lookahead: <indicators>", "recursive 3.2%: <name>".'
    )
    lookahead: LookaheadFindings | None = None
    recursive: RecursiveFindings | None = None
    checked_at: dt.datetime | None = None


class LaunchRecord(StatusModel):
    """What the operator launched for a run, written in the same status write that records
    the run's creation: the evidence a promotion gate compares a bot with. It is the
    operator's own account, never what the run's container reports."""

    code_hash: str = Field(description="sha256 of the strategy code the run got.")
    class_name: str = Field(description="The strategy class it ran.")
    timeframe: str | None = Field(
        default=None,
        description="The timeframe it ran (the spec's, the Strategy's, or the "
        "one the code declares).",
    )
    parameters_hash: str | None = Field(
        default=None, description="The parameter set it ran with (None: the code's own values)."
    )
    freqai_hash: str | None = Field(
        default=None, description="sha256 of the Strategy's freqai settings (None: no FreqAI)."
    )
    image: str = Field(description="The image it ran, with its digest when the spec named one.")
    exchange: str | None = None
    pairs: list[str] = Field(default_factory=list)
    timerange: Timerange | None = None
    stake_currency: str | None = None
    stake_amount: str | None = Field(default=None, description='"unlimited" or an amount.')
    max_open_trades: int | None = None
    dry_run_wallet: str | None = None


BacktestPhase = Literal["Pending", "Queued", "Running", "Succeeded", "Failed"]


class BacktestStatus(ResourceStatus):
    phase: BacktestPhase | None = Field(
        default=None,
        description="Pending (strategy not Ready), Queued, Running, Succeeded, Failed.",
    )
    queue_position: int | None = Field(default=None, description="1 is next, while Queued.")
    job_name: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    results: BacktestResults | None = None
    artifacts: list[Artifact] | None = None
    run_id: str | None = None
    code_hash: str | None = None
    config_hash: str | None = None
    data_hash: str | None = None
    parameters_hash: str | None = Field(
        default=None,
        description="sha256 of the parameter "
        "set it ran with: spec.parameters when set, else its "
        "Strategy's parametersHash.",
    )
    cleaned_up: bool | None = Field(
        default=None, description="The run's Job and ConfigMap are deleted."
    )
    bias: BiasFindings | None = Field(
        default=None, description="Findings of the bias analyses (spec.analyses)."
    )
    launched: LaunchRecord | None = Field(
        default=None, description="What the operator launched: the promotion gate's evidence."
    )


KIND = Kind(
    kind="Backtest",
    plural="backtests",
    short_names=("bt",),
    spec=BacktestSpec,
    status=BacktestStatus,
    description="A Freqtrade backtest run in a Job under the operator's concurrency limits.",
    columns=(
        PrinterColumn("Strategy", ".spec.strategyRef.name"),
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Queue", ".status.queuePosition", "integer"),
        PrinterColumn("Profit", ".status.results.profitTotal", description="profit ratio"),
        PrinterColumn("Drawdown", ".status.results.maxDrawdown"),
        PrinterColumn("Trades", ".status.results.trades", "integer"),
        PrinterColumn("Bias", ".status.bias.summary", description="bias analyses' findings"),
        PrinterColumn("Run", ".status.runId", priority=1),
        AGE,
    ),
)
