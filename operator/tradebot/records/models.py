"""The records' value types: runs, artifacts, registered strategies and exact metric values."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Context, Decimal
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
)

RunKind = Literal["backtest", "dryrun", "live", "hyperopt"]
RunStatus = Literal["queued", "running", "succeeded", "failed"]

# A status may only move to a higher rank (or repeat). succeeded and failed share the top rank,
# so neither can replace the other: a finished run stays finished however events are replayed.
STATUS_RANK: Final[Mapping[str, int]] = {"queued": 0, "running": 1, "succeeded": 2, "failed": 2}

# PostgreSQL stores metrics as numeric(38, 8): 30 digits before the point, 8 after. Both
# backends enforce the same limits here, so a value one backend accepts the other accepts too.
METRIC_PLACES: Final = 8
METRIC_QUANTUM: Final = Decimal(1).scaleb(-METRIC_PLACES)
METRIC_INTEGER_DIGITS: Final = 30
# The default decimal context keeps 28 digits and would round a 38-digit figure.
_EXACT: Final = Context(prec=METRIC_INTEGER_DIGITS + METRIC_PLACES)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _to_utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC)


# Naive datetimes are refused (AwareDatetime): guessing their zone is how timestamps drift.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
NonEmpty = Annotated[str, Field(min_length=1)]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


def exact_metric(key: str, value: object) -> Decimal:
    """`value` as a Decimal with exactly 8 places, or ValueError.

    Floats are refused because they have already lost the exact figure; values with more than
    8 places are refused rather than rounded, because rounding silently would make a replayed
    write look identical while the caller's figure differs.
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"metric keys must be non-empty strings, got {key!r}")
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise ValueError(
            f"metric {key!r} must be a Decimal or an int, not {type(value).__name__} "
            f'({value!r}); build it from a string: Decimal("...")'
        )
    amount = Decimal(value)
    if not amount.is_finite():
        raise ValueError(f"metric {key!r} must be finite, got {amount}")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -METRIC_PLACES:
        raise ValueError(f"metric {key!r} has more than {METRIC_PLACES} decimal places: {amount}")
    if amount and amount.adjusted() >= METRIC_INTEGER_DIGITS:
        raise ValueError(
            f"metric {key!r} has more than {METRIC_INTEGER_DIGITS} digits before the point: "
            f"{amount}"
        )
    return amount.quantize(METRIC_QUANTUM, context=_EXACT)


def check_json(value: object, where: str = "interface") -> None:
    """Refuse anything that would not round-trip exactly through JSON: floats among them."""
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        raise ValueError(f"{where} holds a float ({value!r}); pass figures as strings")
    if isinstance(value, list):
        for i, item in enumerate(value):
            check_json(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where} has a non-string key {k!r}")
            check_json(item, f"{where}.{k}")
        return
    raise ValueError(f"{where} holds a {type(value).__name__}, which is not JSON")


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    check_json(value)
    return value


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RunRecord(_Record):
    """One backtest, dry run or live run, keyed by the id its controller gave it."""

    id: NonEmpty
    resource_uid: NonEmpty
    namespace: NonEmpty
    name: NonEmpty
    kind: RunKind
    status: RunStatus = "queued"
    strategy_code_hash: str | None = None
    # sha256 of the strategy parameter set the run used (domain.parameters_hash), if any.
    parameters_hash: str | None = None
    config_hash: str | None = None
    data_hash: str | None = None
    data_window_start: UtcDatetime | None = None
    data_window_end: UtcDatetime | None = None
    correlation_id: str | None = None
    error: str | None = None
    # Kept from the first write of a run; a replay with a later default does not move it.
    created_at: UtcDatetime = Field(default_factory=utc_now)
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None


class ArtifactRecord(_Record):
    """A file a run produced, with its content hash so a copy can be verified."""

    name: NonEmpty
    path: NonEmpty
    sha256: Sha256Hex
    size: Annotated[int, Field(ge=0)]


class StrategyRecord(_Record):
    """One version (code hash) of a Strategy resource, as introspection saw it."""

    namespace: NonEmpty
    name: NonEmpty
    uid: NonEmpty
    class_name: NonEmpty
    code_hash: NonEmpty
    interface: Annotated[dict[str, Any], AfterValidator(_json_object)]
    first_seen: UtcDatetime
    last_seen: UtcDatetime


Severity = Literal["info", "warning", "critical"]
BotMode = Literal["dryRun", "testnet", "live"]


def _refuse_floats(value: object, info: ValidationInfo) -> object:
    # Pydantic would turn 0.1 into Decimal("0.1") before an after-validator could tell it was
    # a float; the figure the float stood for is already lost, so refuse it here.
    pairs = value.items() if isinstance(value, dict) else [(info.field_name or "figure", value)]
    for key, figure in pairs:
        if isinstance(figure, float):
            exact_metric(str(key), figure)  # raises, naming the figure
    return value


def _exact_figure(value: Decimal, info: ValidationInfo) -> Decimal:
    return exact_metric(info.field_name or "figure", value)


def _exact_figures(value: dict[str, Decimal]) -> dict[str, Decimal]:
    return {key: exact_metric(key, figure) for key, figure in value.items()}


# A money figure: Decimal with at most 8 places (stored as exactly 8), never a float.
ExactFigure = Annotated[Decimal, BeforeValidator(_refuse_floats), AfterValidator(_exact_figure)]


class IncidentRecord(_Record):
    """Something that went wrong with money at stake: a breaker trip, a bot whose heartbeat
    went stale. Keyed by an id its controller derives from the event itself (e.g. the breaker's
    uid and trip time), so recording the same trip twice - after a crash, from an outbox - adds
    nothing: the first write wins."""

    id: NonEmpty
    namespace: NonEmpty
    # The resource that raised it: a CircuitBreaker that tripped, a LiveBot gone stale.
    source_kind: Literal["CircuitBreaker", "LiveBot"]
    source_name: NonEmpty
    source_uid: NonEmpty
    breaker: str | None = None
    # LiveBot names (same namespace) the incident concerns.
    bots: tuple[str, ...] = ()
    run_id: str | None = None
    severity: Severity
    # Short machine-readable cause: drawdown, dailyLoss, consecutiveLosses, incidents,
    # staleHeartbeat, ...
    reason: NonEmpty
    description: NonEmpty
    # The figures that tripped it, exact (same rules as metrics).
    figures: Annotated[
        dict[str, Decimal],
        BeforeValidator(_refuse_floats),
        AfterValidator(_exact_figures),
    ] = Field(default_factory=dict)
    correlation_id: str | None = None
    created_at: UtcDatetime = Field(default_factory=utc_now)


class BotSnapshot(_Record):
    """A bot's figures at one moment: the recorded history the promotion gates read."""

    bot_uid: NonEmpty
    namespace: NonEmpty
    name: NonEmpty
    run_id: str | None = None
    code_hash: NonEmpty
    mode: BotMode
    # Keyed by (bot_uid, taken_at): a replayed snapshot replaces itself.
    taken_at: UtcDatetime
    profit: ExactFigure
    drawdown: ExactFigure
    open_trades: Annotated[int, Field(ge=0)]
    equity: ExactFigure | None = None


class DcaBuyRecord(_Record):
    """One DcaSchedule slot's outcome: a buy (with its order, when the bot reported it) or the
    reason there was none. Keyed by (schedule_uid, slot): a replay replaces itself, and the
    record outlives the schedule and its bounded status history."""

    schedule_uid: NonEmpty
    namespace: NonEmpty
    schedule: NonEmpty
    bot: NonEmpty
    pair: NonEmpty
    slot: UtcDatetime
    # Bought, Skipped, Missed, Failed, Unconfirmed (domain.dca.Outcome).
    outcome: NonEmpty
    reason: NonEmpty
    message: str = ""
    entry_tag: str | None = None
    stake: ExactFigure
    cost: ExactFigure | None = None
    amount: ExactFigure | None = None
    trade_id: int | None = None
    recorded_at: UtcDatetime = Field(default_factory=utc_now)


# ---- a backtest's result in detail (parsed once from Freqtrade's result zip) ------------------
Breakdown = Literal["pair", "exit_reason"]


class BacktestTrade(_Record):
    """One trade of a backtest, as Freqtrade's result lists it (seq: its place in that list)."""

    seq: Annotated[int, Field(ge=0)]
    pair: NonEmpty
    open_date: UtcDatetime
    # Freqtrade closes every trade at the end of a backtest; None only for one it left open.
    close_date: UtcDatetime | None = None
    profit_ratio: ExactFigure
    profit_abs: ExactFigure
    exit_reason: str = ""
    is_short: bool = False
    stake_amount: ExactFigure | None = None
    open_rate: ExactFigure | None = None
    close_rate: ExactFigure | None = None
    enter_tag: str = ""


class BreakdownRow(_Record):
    """One row of a per-pair or per-exit-reason table (Freqtrade's results_per_pair and
    exit_reason_summary), its TOTAL row left out: the run's metrics hold the totals."""

    key: NonEmpty
    trades: Annotated[int, Field(ge=0)]
    profit_total_abs: ExactFigure
    # Profit as a fraction of the starting balance, and the mean profit ratio per trade.
    profit_total: ExactFigure | None = None
    profit_mean: ExactFigure | None = None
    wins: Annotated[int, Field(ge=0)] = 0
    draws: Annotated[int, Field(ge=0)] = 0
    losses: Annotated[int, Field(ge=0)] = 0


class DailyProfit(_Record):
    day: dt.date
    profit_abs: ExactFigure


class EquityPoint(_Record):
    """The wallet after each closed trade (the first point: the starting balance), with the
    drawdown below the highest wallet so far as a fraction of that peak."""

    at: UtcDatetime
    equity: ExactFigure
    drawdown: ExactFigure


class BacktestDetail(_Record):
    starting_balance: ExactFigure
    stake_currency: NonEmpty
    trades: tuple[BacktestTrade, ...] = ()
    per_pair: tuple[BreakdownRow, ...] = ()
    exit_reasons: tuple[BreakdownRow, ...] = ()
    daily: tuple[DailyProfit, ...] = ()
    equity: tuple[EquityPoint, ...] = ()
