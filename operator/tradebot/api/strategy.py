"""Strategy: Freqtrade strategy code, introspected (never executed), hashed and registered."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, WithJsonSchema, model_validator

from tradebot.api.base import ApiModel, StatusModel, cel, with_rules
from tradebot.api.kind import AGE, Kind, PrinterColumn
from tradebot.api.types import (
    ConfigMapKeyRef,
    Fraction,
    LocalObjectReference,
    ResourceStatus,
    Timeframe,
)

MAX_CODE_BYTES = 262144

ParameterValue = Annotated[
    int | float | str | bool,
    WithJsonSchema(
        {
            "x-kubernetes-preserve-unknown-fields": True,
            "description": "A number, string or boolean.",
        }
    ),
]
Stoploss = Annotated[
    Decimal,
    # Freqtrade refuses a stop-loss of 0: it must be below zero.
    Field(ge=-1, lt=0),
    WithJsonSchema(
        {
            "type": "number",
            "minimum": -1,
            "maximum": 0,
            "exclusiveMaximum": True,
            "description": "Stop-loss as a negative fraction (-0.10 is -10 %).",
        }
    ),
]


class StrategyParameters(ApiModel):
    """Overrides of the strategy's own settings, as Freqtrade's parameter file has them."""

    # Free-form values leave CEL no type to check key names against; the operator checks them.
    buy: dict[str, ParameterValue] | None = Field(
        default=None,
        max_length=64,
        description="Entry (buy) hyperopt parameters by name (Python identifiers).",
    )
    sell: dict[str, ParameterValue] | None = Field(
        default=None,
        max_length=64,
        description="Exit (sell) hyperopt parameters by name (Python identifiers).",
    )
    minimal_roi: dict[str, Fraction] | None = Field(
        default=None,
        max_length=32,
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.all(k, k.matches('^[0-9]{1,6}$'))",
                    'minimalRoi keys are minutes after entry, e.g. "0", "30"',
                )
            ]
        },
        description='Minutes after entry -> minimum ROI to exit, e.g. {"0": 0.04}.',
    )
    stoploss: Stoploss | None = Field(default=None, description="Stop-loss override.")

    @model_validator(mode="after")
    def _keys(self) -> StrategyParameters:
        for section in (self.buy or {}, self.sell or {}):
            bad = [k for k in section if not k.isidentifier()]
            if bad:
                raise ValueError(f"parameter names must be Python identifiers: {bad}")
        if self.minimal_roi and not all(k.isdigit() for k in self.minimal_roi):
            raise ValueError('minimalRoi keys are minutes after entry, e.g. "0", "30"')
        return self


class ParametersFrom(ApiModel):
    """Where a Strategy's parameter set comes from, instead of inline `parameters`."""

    hyperopt_ref: LocalObjectReference = Field(
        description="A Hyperopt of this Strategy: its best parameter set "
        "(status.best.parameters), used once the Hyperopt has Succeeded."
    )


_ONE_PARAMETER_SOURCE = (
    "spec.parameters and spec.parametersFrom are mutually exclusive: "
    "give the parameter set inline or take it from a Hyperopt, not both"
)


class FreqAISpec(ApiModel):
    """Marks a FreqAI strategy: its backtests and bots need GPU scheduling."""

    enabled: bool = Field(default=True, description="Whether FreqAI is used.")
    identifier: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="FreqAI model identifier.",
    )
    model: str | None = Field(
        default=None,
        max_length=128,
        pattern=r"^[A-Za-z0-9_]+$",
        description="freqaimodel class, e.g. LightGBMRegressor.",
    )


class StrategySpec(ApiModel):
    """Strategy code (inline or from a ConfigMap) and its parameter overrides."""

    model_config = with_rules(
        cel(
            "has(self.code) != has(self.configMapRef)",
            "exactly one of spec.code or spec.configMapRef must be set",
            ".code",
        ),
        cel(
            "!(has(self.parameters) && has(self.parametersFrom))",
            _ONE_PARAMETER_SOURCE,
            ".parametersFrom",
        ),
    )

    class_name: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        max_length=128,
        description="The IStrategy subclass to use.",
    )
    code: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CODE_BYTES,
        description="Python source of the strategy (inline).",
    )
    config_map_ref: ConfigMapKeyRef | None = Field(
        default=None, description="A ConfigMap key holding the Python source."
    )
    timeframe: Timeframe | None = Field(
        default=None, description="Overrides the strategy's timeframe."
    )
    parameters: StrategyParameters | None = Field(
        default=None, description="Overrides of the strategy's parameters."
    )
    parameters_from: ParametersFrom | None = Field(
        default=None,
        description="Take the parameter set from a Hyperopt instead "
        "(mutually exclusive with parameters).",
    )
    freqai: FreqAISpec | None = Field(default=None, description="FreqAI settings, if used.")

    @model_validator(mode="after")
    def _one_source(self) -> StrategySpec:
        if (self.code is None) == (self.config_map_ref is None):
            raise ValueError("exactly one of spec.code or spec.configMapRef must be set")
        if self.parameters is not None and self.parameters_from is not None:
            raise ValueError(_ONE_PARAMETER_SOURCE)
        return self


class StrategyInterface(StatusModel):
    """What introspection found in the code (by parsing; the code is never run)."""

    class_name: str | None = None
    methods: list[str] | None = Field(default=None, description="Methods the class defines.")
    timeframe: str | None = None
    stoploss: str | None = None
    minimal_roi: dict[str, str] | None = None
    can_short: bool | None = None
    startup_candle_count: int | None = None
    interface_version: int | None = None
    uses_freqai: bool | None = None


class StrategyStatus(ResourceStatus):
    phase: Literal["Pending", "Ready", "Invalid"] | None = Field(
        default=None, description="Pending, Ready or Invalid."
    )
    code_hash: str | None = Field(default=None, description="sha256 of the code, hex.")
    interface: StrategyInterface | None = None
    parameters: str | None = Field(
        default=None,
        description="The parameter set backtests and bots of this Strategy "
        "run with, as Freqtrade's parameter file (JSON text): the Hyperopt's best set exactly, "
        "or the inline parameters in that form. Absent: the strategy's own values.",
    )
    parameters_hash: str | None = Field(
        default=None,
        description="sha256 of the canonical parameter set (the Hyperopt's "
        "best.parametersHash when taken from one); recorded beside codeHash.",
    )
    parameters_source: str | None = Field(default=None, description="inline, or Hyperopt/<name>.")


KIND = Kind(
    kind="Strategy",
    plural="strategies",
    short_names=("strat",),
    spec=StrategySpec,
    status=StrategyStatus,
    description="Freqtrade strategy code, introspected (never executed), hashed, registered.",
    columns=(
        PrinterColumn("Class", ".spec.className"),
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Timeframe", ".status.interface.timeframe"),
        PrinterColumn("Hash", ".status.codeHash", priority=1),
        PrinterColumn("Parameters", ".status.parametersSource", priority=1),
        PrinterColumn("Message", ".status.message", priority=1),
        AGE,
    ),
)
