"""MarketData: candles of an exchange, downloaded with `freqtrade download-data` and kept up to
date on a volume, with the exchange's markets beside them, for Backtests to run on."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field, WithJsonSchema, model_validator

from tradebot.api.base import ApiModel, StatusModel, cel, with_rules
from tradebot.api.kind import AGE, Kind, PrinterColumn
from tradebot.api.types import (
    Duration,
    ExchangeName,
    K8sName,
    Pair,
    ResourceStatus,
    Timeframe,
    Timerange,
)

_QUANTITY = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$"


# One value for now: pydantic would write it as `const`, which a CRD schema does not allow.
TradingMode = Annotated[Literal["spot"], WithJsonSchema({"type": "string", "enum": ["spot"]})]
AccessMode = Literal["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod"]


def _read_write_once() -> list[AccessMode]:
    return ["ReadWriteOnce"]


class VolumeClaimSpec(ApiModel):
    """The PersistentVolumeClaim the operator creates for the data (owned by the MarketData)."""

    storage: str = Field(
        default="1Gi", pattern=_QUANTITY, max_length=32, description="Requested size, e.g. 5Gi."
    )
    storage_class_name: str | None = Field(
        default=None, max_length=253, description="StorageClass; the cluster default when left out."
    )
    access_modes: list[AccessMode] = Field(
        default_factory=_read_write_once,
        min_length=1,
        max_length=4,
        json_schema_extra={"default": ["ReadWriteOnce"]},
        description="ReadWriteMany lets Backtests on other nodes read while it refreshes.",
    )


class MarketDataStorage(ApiModel):
    """Where the candles are kept: an existing PVC, or one the operator creates."""

    model_config = with_rules(
        cel(
            "has(self.claimName) != has(self.volumeClaimTemplate)",
            "exactly one of storage.claimName or storage.volumeClaimTemplate must be set",
        ),
    )

    claim_name: K8sName | None = Field(default=None, description="An existing PVC, same namespace.")
    volume_claim_template: VolumeClaimSpec | None = Field(
        default=None, description="A PVC the operator creates, named md-<name>."
    )

    @model_validator(mode="after")
    def _one(self) -> MarketDataStorage:
        if (self.claim_name is None) == (self.volume_claim_template is None):
            raise ValueError(
                "exactly one of storage.claimName or storage.volumeClaimTemplate must be set"
            )
        return self


class MarketDataSpec(ApiModel):
    """What to download: pairs x timeframes over a timerange (or the last N days)."""

    model_config = with_rules(
        cel(
            "has(self.timerange) != has(self.days)", "exactly one of timerange or days must be set"
        ),
    )

    exchange: ExchangeName = Field(default="binance", description="Exchange (ccxt id).")
    pairs: list[Pair] = Field(
        min_length=1,
        max_length=200,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Pairs to download, e.g. SOL/USDT.",
    )
    timeframes: list[Timeframe] = Field(
        min_length=1,
        max_length=15,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Timeframes to download, e.g. 5m, 1h.",
    )
    timerange: Timerange | None = Field(
        default=None, description="Candles from start to end (open-ended: up to now)."
    )
    days: int | None = Field(
        default=None,
        ge=1,
        le=5000,
        description="The last N days up to now, instead of a timerange.",
    )
    trading_mode: TradingMode = Field(
        default="spot", description="Market type (spot only for now)."
    )
    refresh: Duration | None = Field(
        default=None, description="Download new candles this often (e.g. 1h); once when left out."
    )
    storage: MarketDataStorage = Field(description="Volume the data lives on.")
    image: str | None = Field(
        default=None,
        max_length=512,
        pattern=r"^[^\s]+$",
        description="Runner image override (one of the operator's allowed images).",
    )

    @model_validator(mode="after")
    def _window(self) -> MarketDataSpec:
        if (self.timerange is None) == (self.days is None):
            raise ValueError("exactly one of timerange or days must be set")
        return self


class SeriesStatus(StatusModel):
    """One downloaded file: a pair in a timeframe."""

    pair: str
    timeframe: str
    first: dt.datetime | None = Field(default=None, description="Open time of the first candle.")
    last: dt.datetime | None = Field(default=None, description="Open time of the last candle.")
    candles: int = Field(default=0, ge=0)
    file: str = Field(default="", description="File name in the data directory.")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


MarketDataPhase = Literal["Pending", "Downloading", "Ready", "Failed"]


class MarketDataStatus(ResourceStatus):
    phase: MarketDataPhase | None = None
    claim_name: str | None = Field(default=None, description="The PVC holding the data.")
    path: str | None = Field(default=None, description="Data directory inside the volume.")
    markets_file: str | None = Field(
        default=None, description="The exchange's markets, in the directory."
    )
    markets_sha256: str | None = None
    series: list[SeriesStatus] | None = Field(default=None, description="Per pair and timeframe.")
    coverage: str | None = Field(
        default=None, description="Earliest first to latest last candle common to all series."
    )
    pairs_ready: str | None = Field(default=None, description="Series complete / requested.")
    last_refresh: dt.datetime | None = None
    next_refresh: dt.datetime | None = None
    attempts: int | None = Field(default=None, description="Failed downloads in a row.")
    runs: int | None = Field(default=None, description="Downloads started so far.")
    current_run: str | None = Field(default=None, description="The download in progress.")
    job_name: str | None = Field(
        default=None,
        description=(
            "The download's Job: waited for in the admission queue, kept until its result is "
            "in status, then deleted."
        ),
    )
    retry_at: dt.datetime | None = None


KIND = Kind(
    kind="MarketData",
    plural="marketdata",
    short_names=("md",),
    spec=MarketDataSpec,
    status=MarketDataStatus,
    description="Candles and markets of an exchange, downloaded by Freqtrade onto a volume.",
    columns=(
        PrinterColumn("Exchange", ".spec.exchange"),
        PrinterColumn("Pairs", ".status.pairsReady", description="series complete/requested"),
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Coverage", ".status.coverage"),
        PrinterColumn("Refreshed", ".status.lastRefresh", "date"),
        AGE,
    ),
)
