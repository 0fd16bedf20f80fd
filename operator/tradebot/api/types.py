"""Types shared by the resources: money, ratios, durations, references, conditions."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

from tradebot.api.base import ApiModel, StatusModel, cel, with_rules

# ---- money -----------------------------------------------------------------------------------
MONEY_PLACES = 8
MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_PLACES)
_MONEY_PATTERN = r"^[0-9]{1,15}(\.[0-9]{1,8})?$"
_SIGNED_MONEY_PATTERN = r"^-?[0-9]{1,15}(\.[0-9]{1,8})?$"


def parse_money(value: object, *, signed: bool = False) -> Decimal:
    """A Decimal with at most 8 places from a string or an integer; floats are refused,
    because a float has already lost the exact amount before we see it."""
    if isinstance(value, (bool, float)):
        raise ValueError(
            f'money must be a string or an integer, not a float ({value!r}); quote it: "{value}"'
        )
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, Decimal):
        amount = value
    elif isinstance(value, str):
        pattern = _SIGNED_MONEY_PATTERN if signed else _MONEY_PATTERN
        if not re.fullmatch(pattern, value.strip()):
            raise ValueError(
                f"{value!r} is not an amount: digits with at most {MONEY_PLACES} decimal places"
                + ("" if signed else ", not negative")
            )
        amount = Decimal(value.strip())
    else:
        raise ValueError(f"money must be a string or an integer, got {type(value).__name__}")
    if not amount.is_finite():
        raise ValueError("money must be a finite amount")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MONEY_PLACES:
        raise ValueError(f"{value!r} has more than {MONEY_PLACES} decimal places")
    if not signed and amount < 0:
        raise ValueError(f"{value!r} must not be negative")
    return amount.quantize(MONEY_QUANTUM)


def format_money(amount: Decimal) -> str:
    return format(amount.quantize(MONEY_QUANTUM), "f")


def _money_schema(pattern: str, description: str) -> dict[str, Any]:
    return {
        "x-kubernetes-int-or-string": True,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": pattern,
        "description": description,
    }


Money = Annotated[
    Decimal,
    BeforeValidator(lambda v: parse_money(v)),
    PlainSerializer(format_money, return_type=str),
    WithJsonSchema(
        _money_schema(
            _MONEY_PATTERN,
            "An amount: a quoted decimal with at most 8 places, or an integer (never a float).",
        )
    ),
]
SignedMoney = Annotated[
    Decimal,
    BeforeValidator(lambda v: parse_money(v, signed=True)),
    PlainSerializer(format_money, return_type=str),
    WithJsonSchema({"type": "string", "pattern": _SIGNED_MONEY_PATTERN}),
]


def _parse_ratio(value: object) -> Decimal:
    if isinstance(value, bool):
        raise ValueError("a ratio must be a number")
    try:
        # str() first: Decimal(0.1) would carry the float's binary error into the ratio.
        ratio = Decimal(str(value)) if isinstance(value, (int, float, str, Decimal)) else None
    except InvalidOperation:
        ratio = None
    if ratio is None or not ratio.is_finite():
        raise ValueError(f"{value!r} is not a number")
    return ratio.quantize(MONEY_QUANTUM)


def _ratio(minimum: int, maximum: float | None, description: str) -> tuple[Any, ...]:
    schema: dict[str, Any] = {"type": "number", "minimum": minimum, "description": description}
    if maximum is not None:
        schema["maximum"] = maximum
    bounds = Field(ge=minimum) if maximum is None else Field(ge=minimum, le=maximum)
    return (
        BeforeValidator(_parse_ratio),
        bounds,
        PlainSerializer(float, return_type=float),
        WithJsonSchema(schema),
    )


# Ratios (0.2 is 20 %) are kept as Decimal as well, so comparisons with results are exact.
Fraction = Annotated[Decimal, *_ratio(0, 1, "A fraction between 0 and 1 (0.2 is 20 %).")]
ProfitRatio = Annotated[Decimal, *_ratio(-1, None, "A profit ratio (0.05 is +5 %), at least -1.")]
FeeRatio = Annotated[Decimal, *_ratio(0, 0.1, "A fee per side as a fraction (0.001 is 0.1 %).")]

# A status figure: signed, any size, 8 places, a string so it survives JSON exactly.
Figure = SignedMoney

# ---- durations and time -------------------------------------------------------------------------
# At most five digits a unit and 32 characters: five groups of 99999d are under 1,400 years, so
# no duration can overflow timedelta or a datetime it is added to (31 nines and a "d" would
# raise OverflowError, not a ValueError, deep inside a round). The API server refuses longer
# numbers at apply with the same pattern.
_DURATION_RE = re.compile(r"^([0-9]{1,5}(ms|s|m|h|d))+$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_MAX_LENGTH = 32


def parse_duration(text: str) -> dt.timedelta:
    """The duration `text` says; ValueError (never OverflowError) for anything else."""
    if len(text) > DURATION_MAX_LENGTH or not _DURATION_RE.fullmatch(text):
        raise ValueError(
            f"{text[:40]!r} is not a duration such as 30s, 5m, 1h30m or 2d "
            f"(at most 5 digits per unit, {DURATION_MAX_LENGTH} characters)"
        )
    seconds = sum(int(n) * _DURATION_UNITS[u] for n, u in re.findall(r"([0-9]+)(ms|s|m|h|d)", text))
    return dt.timedelta(seconds=seconds)


def _check_duration(text: str) -> str:
    parse_duration(text)
    return text


Duration = Annotated[
    str,
    AfterValidator(_check_duration),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _DURATION_RE.pattern,
            "maxLength": DURATION_MAX_LENGTH,
            "description": "A duration: digits and a unit (ms, s, m, h, d), e.g. 30s, 5m, 1h30m.",
        }
    ),
]

TIMEFRAMES = (
    "1m",
    "3m",
    "5m",
    "15m",
    "30m",
    "1h",
    "2h",
    "4h",
    "6h",
    "8h",
    "12h",
    "1d",
    "3d",
    "1w",
    "1M",
)
Timeframe = Literal[
    "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M"
]

_DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


def _check_date(text: str) -> str:
    if not re.fullmatch(_DATE_PATTERN, text):
        raise ValueError(f"{text!r} is not a date YYYY-MM-DD")
    dt.date.fromisoformat(text)
    return text


Date = Annotated[
    str,
    AfterValidator(_check_date),
    WithJsonSchema({"type": "string", "format": "date", "pattern": _DATE_PATTERN, "maxLength": 10}),
]


class Timerange(ApiModel):
    """The window of candles to use, start inclusive, end exclusive (UTC dates)."""

    model_config = with_rules(
        cel(
            "!has(self.end) || self.start < self.end",
            "timerange.start must be before timerange.end",
        ),
    )

    start: Date = Field(description="First day, YYYY-MM-DD (UTC).")
    end: Date | None = Field(
        default=None, description="Day after the last, YYYY-MM-DD (UTC); open-ended when left out."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Timerange:
        if self.end is not None and self.start >= self.end:
            raise ValueError("timerange.start must be before timerange.end")
        return self

    def freqtrade(self) -> str:
        """Freqtrade's --timerange form, e.g. 20240101-20240301."""
        return f"{self.start.replace('-', '')}-{(self.end or '').replace('-', '')}"


# ---- Kubernetes shapes ------------------------------------------------------------------------
_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
K8sName = Annotated[str, Field(pattern=_NAME_PATTERN, min_length=1, max_length=253)]
_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
_QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?"
    r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def _parse_quantity(value: object) -> str | int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(_QUANTITY_PATTERN, value):
        return value
    raise ValueError(f"{value!r} is not a Kubernetes quantity such as 500m, 2 or 4Gi")


Quantity = Annotated[
    str | int,
    BeforeValidator(_parse_quantity),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": _QUANTITY_PATTERN,
        }
    ),
]


class LocalObjectReference(ApiModel):
    """A reference to an object of the same namespace."""

    name: K8sName = Field(description="Name of the object, in the same namespace.")


class ConfigMapKeyRef(ApiModel):
    """A key of a ConfigMap in the same namespace."""

    name: K8sName = Field(description="Name of the ConfigMap.")
    key: str = Field(pattern=_KEY_PATTERN, max_length=253, description="Key within the ConfigMap.")


class ResourceRequirements(ApiModel):
    """CPU and memory for the pod, as in a container's resources."""

    limits: dict[str, Quantity] | None = Field(default=None, description="Upper bounds.")
    requests: dict[str, Quantity] | None = Field(default=None, description="Reserved amounts.")


GpuVendor = Literal["amd", "nvidia"]


class GpuRequest(ApiModel):
    """GPUs for FreqAI. AMD (ROCm, `amd.com/gpu`) by default; NVIDIA (`nvidia.com/gpu`) too."""

    count: int = Field(ge=1, le=16, description="How many GPUs; at least 1.")
    vendor: GpuVendor = Field(default="amd", description="amd (ROCm) or nvidia.")


class LabelSelectorRequirement(ApiModel):
    key: str = Field(max_length=317, description="The label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How the key's value is compared."
    )
    values: list[Annotated[str, Field(max_length=63)]] | None = Field(
        default=None, max_length=64, description="Values for In and NotIn."
    )


class LabelSelector(ApiModel):
    """A standard Kubernetes label selector; empty selects every object."""

    match_labels: dict[str, Annotated[str, Field(max_length=63)]] | None = Field(
        default=None, description="Labels that must all match."
    )
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None, max_length=32, description="Expressions that must all hold."
    )


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(StatusModel):
    """A standard Kubernetes condition."""

    type: str = Field(max_length=316, description="Type in CamelCase, e.g. Ready.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(default="", max_length=1024, description="CamelCase reason.")
    message: str = Field(default="", max_length=32768, description="What a person should know.")
    last_transition_time: dt.datetime | None = Field(
        default=None, description="When status last changed."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The spec generation this condition describes."
    )


class ResourceStatus(StatusModel):
    """What every kind's status has: a message, the generation seen, standard conditions."""

    message: str | None = Field(default=None, description="What a person should know now.")
    observed_generation: int | None = Field(
        default=None, description="The spec generation the status describes."
    )
    conditions: list[Condition] | None = Field(
        default=None,
        description="Standard conditions, one per type.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


# ---- stake -----------------------------------------------------------------------------------
UNLIMITED = "unlimited"


def parse_stake(value: object) -> Decimal | str:
    if value == UNLIMITED:
        return UNLIMITED
    amount = parse_money(value)
    if amount <= 0:
        raise ValueError(f"stake amount must be greater than 0 or {UNLIMITED!r}, got {value!r}")
    return amount


def _format_stake(value: Decimal | str) -> str:
    return value if isinstance(value, str) else format_money(value)


StakeAmount = Annotated[
    Decimal | str,
    BeforeValidator(parse_stake),
    PlainSerializer(_format_stake, return_type=str),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": r"^(unlimited|[0-9]{1,15}(\.[0-9]{1,8})?)$",
            "description": 'Stake per trade: "unlimited" (share the wallet) or an amount > 0 in '
            "stakeCurrency, quoted, at most 8 decimal places.",
            "x-kubernetes-validations": [
                cel(
                    "type(self) == int ? self > 0 : (self == 'unlimited' || "
                    "!self.matches('^0*[.]?0*$'))",
                    'stake amount must be greater than 0 or "unlimited"',
                )
            ],
        }
    ),
]

_PAIR_PATTERN = r"^[A-Z0-9]{1,20}/[A-Z0-9]{1,10}(:[A-Z0-9]{1,10})?$"
Pair = Annotated[str, Field(pattern=_PAIR_PATTERN, max_length=43)]
Currency = Annotated[str, Field(pattern=r"^[A-Z0-9]{2,10}$", max_length=10)]
ExchangeName = Annotated[str, Field(pattern=r"^[a-z0-9_]{2,32}$", max_length=32)]


def pair_quote(pair: str) -> str:
    """The quote (stake) currency of a pair: BTC/USDT -> USDT, BTC/USDT:USDT -> USDT."""
    return pair.split("/", 1)[1].split(":", 1)[0]


PAIRS_IN_STAKE_CURRENCY = cel(
    "self.pairs.all(p, p.endsWith('/' + self.stakeCurrency) || "
    "p.contains('/' + self.stakeCurrency + ':'))",
    "every pair must be quoted in stakeCurrency (e.g. BTC/USDT with stakeCurrency USDT)",
    ".pairs",
)


def check_pairs_in_stake(pairs: list[str], stake_currency: str) -> None:
    wrong = [p for p in pairs if pair_quote(p) != stake_currency]
    if wrong:
        raise ValueError(
            f"every pair must be quoted in stakeCurrency {stake_currency}: {', '.join(wrong)}"
        )
