"""LiveBot: a running Freqtrade bot, dry-run unless its promotion gates pass."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError, WithJsonSchema, model_validator

from tradebot.api.base import ApiModel, StatusModel, cel, with_rules
from tradebot.api.exchanges import SANDBOX_EXCHANGES, has_sandbox
from tradebot.api.kind import AGE, Kind, PrinterColumn
from tradebot.api.types import (
    PAIRS_IN_STAKE_CURRENCY,
    UNLIMITED,
    Currency,
    Duration,
    ExchangeName,
    Figure,
    Fraction,
    GpuRequest,
    K8sName,
    LocalObjectReference,
    Money,
    Pair,
    ProfitRatio,
    ResourceRequirements,
    ResourceStatus,
    StakeAmount,
    check_pairs_in_stake,
    parse_duration,
)

_ITEM = r"^[-._a-zA-Z0-9]+$"
# Names under which people paste keys by mistake. They are declared so that the API server can
# refuse them with a clear message whichever client applies the manifest (an undeclared field
# would be pruned silently by clients that do not ask for strict validation).
PLAINTEXT_KEY_FIELDS = ("key", "secret", "password", "apiKey", "apiSecret", "uid")


class CredentialsSecretRef(ApiModel):
    """The Secret (same namespace) holding the exchange API credentials."""

    name: K8sName = Field(description="Name of the Secret.")
    api_key_key: str = Field(
        default="key",
        pattern=_ITEM,
        max_length=253,
        description="Item of the Secret holding the API key.",
    )
    api_secret_key: str = Field(
        default="secret",
        pattern=_ITEM,
        max_length=253,
        description="Item of the Secret holding the API secret.",
    )
    password_key: str | None = Field(
        default=None,
        pattern=_ITEM,
        max_length=253,
        description="Item holding the API password, for exchanges that need one.",
    )


_FORBIDDEN = "Forbidden: exchange keys come only from credentialsSecretRef, never inline."


class ExchangeSpec(ApiModel):
    """The exchange and the account's credentials."""

    model_config = with_rules(
        cel(
            " && ".join(f"!has(self.{f})" for f in PLAINTEXT_KEY_FIELDS),
            "exchange keys must not be written in the manifest: put them in a Secret and "
            "reference it with exchange.credentialsSecretRef",
        ),
    )

    name: ExchangeName = Field(default="binance", description="Exchange (ccxt id).")
    credentials_secret_ref: CredentialsSecretRef | None = Field(
        default=None,
        description="Secret with the API key and secret; required for testnet and live.",
    )
    key: str | None = Field(default=None, description=_FORBIDDEN)
    secret: str | None = Field(default=None, description=_FORBIDDEN)
    password: str | None = Field(default=None, description=_FORBIDDEN)
    api_key: str | None = Field(default=None, description=_FORBIDDEN)
    api_secret: str | None = Field(default=None, description=_FORBIDDEN)
    uid: str | None = Field(default=None, description=_FORBIDDEN)

    @model_validator(mode="before")
    @classmethod
    def _no_plaintext(cls, data: object) -> object:
        if isinstance(data, dict):
            given = [f for f in PLAINTEXT_KEY_FIELDS if f in data or _snake(f) in data]
            if given:
                # The value is deliberately not echoed: it may be a real key.
                raise ValueError(
                    f"exchange.{given[0]}: exchange keys must not be written in the manifest; "
                    "put them in a Secret and reference it with exchange.credentialsSecretRef"
                )
        return data


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


class Approval(ApiModel):
    """An explicit, reviewed approval to trade real money, committed to git."""

    approved_by: str = Field(min_length=1, max_length=253, description="Who approved.")
    approved_at: dt.datetime = Field(description="When (RFC 3339).")
    reference: str = Field(
        min_length=1, max_length=512, description="The reviewed change: a commit, PR or ticket URL."
    )
    code_hash: str | None = Field(
        default=None,
        pattern=r"^[a-f0-9]{64}$",
        description="The Strategy's status.codeHash this approval is for (required for live): "
        "a code change voids the approval.",
    )
    digest: str | None = Field(
        default=None,
        pattern=r"^[a-f0-9]{64}$",
        description="The bot's status.promotionDigest this approval is for (`tradebot "
        "promote` prints it): a live bot runs only this digest; any other change waits "
        "(ApprovalStale) unless it only makes the bot safer.",
    )


class HyperoptRequirement(ApiModel):
    """Out-of-sample evidence for the bot's parameter set: a Hyperopt whose best set the
    operator backtested on data the search never saw."""

    name: K8sName = Field(
        description="A Hyperopt of the bot's Strategy, in the same "
        "namespace, whose best set the Strategy runs (parametersFrom)."
    )
    min_out_of_sample_profit: ProfitRatio = Field(
        default=0,
        validate_default=True,
        description="Out-of-sample profit ratio "
        "(status.validation.outOfSample.profitTotal) at least this.",
    )


class Promotion(ApiModel):
    """The evidence a bot needs before it may trade on testnet or live."""

    backtest_ref: LocalObjectReference = Field(
        description="A Succeeded Backtest of the same strategy code."
    )
    min_profit: ProfitRatio = Field(
        default=0, validate_default=True, description="Backtest profit ratio at least this."
    )
    max_drawdown: Fraction = Field(
        default=0.25, validate_default=True, description="Backtest max drawdown at most this."
    )
    min_trades: int = Field(
        default=10, ge=0, le=1000000, description="Backtest trades at least this."
    )
    min_dry_run_hours: int = Field(
        default=24,
        ge=0,
        le=8760,
        description="Hours of dry-run history of the same code without a breaker trip.",
    )
    approval: Approval | None = Field(default=None, description="Required for mode live.")
    hyperopt_ref: HyperoptRequirement | None = Field(
        default=None,
        description="Require out-of-sample evidence from a Hyperopt: a "
        "curve-fitted parameter set holds the bot.",
    )
    max_recursive_difference: Fraction | None = Field(
        default=None,
        description="Largest recursive-analysis difference of an indicator accepted "
        "(0.01 = 1 %); may only tighten the operator's floor.",
    )


class BotLimits(ApiModel):
    """Hard limits the operator enforces on the bot's configuration; maxDrawdown and
    maxConsecutiveLosses also become Freqtrade protections, so the bot itself stops entering
    trades when they are crossed, with or without the operator."""

    max_stake_per_trade: Money | None = Field(
        default=None, description="Largest stake of one trade."
    )
    max_open_trades: int | None = Field(
        default=None, ge=1, le=1000, description="Most open trades at once."
    )
    max_drawdown: Fraction | None = Field(
        default=None,
        description="Drawdown at which the bot stops entering (Freqtrade's "
        "MaxDrawdown protection).",
    )
    max_consecutive_losses: int | None = Field(
        default=None,
        ge=1,
        le=10000,
        description="Stop-loss exits in a row at which the bot "
        "stops entering (Freqtrade's StoplossGuard protection).",
    )


# The dead-man's switch must not be a switch off: a deadline of days lets a bot trade
# unsupervised for days. Real money gets an hour at most, paper a day.
DEADLINE_MAX = dt.timedelta(hours=24)
DEADLINE_MAX_REAL_MONEY = dt.timedelta(hours=1)
# Go's duration units (no "d"), so the API server's CEL can compare it with duration().
_DEADLINE_RE = r"^([0-9]{1,5}(ms|s|m|h))+$"


def _check_deadline(text: str) -> str:
    if not re.fullmatch(_DEADLINE_RE, text):
        raise ValueError(
            f"supervision.deadline {text[:40]!r} is not a duration in ms, s, m or h "
            "(such as 90s, 10m or 1h)"
        )
    deadline = parse_duration(text)
    if deadline <= dt.timedelta(0):
        raise ValueError("supervision.deadline must be longer than 0s")
    if deadline > DEADLINE_MAX:
        raise ValueError(f"supervision.deadline {text} is longer than the maximum of 24h")
    return text


Deadline = Annotated[
    str,
    AfterValidator(_check_deadline),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _DEADLINE_RE,
            "maxLength": 32,
            "description": "A duration in ms, s, m or h (e.g. 90s, 10m, 1h): at most 24h, "
            "and at most 1h for modes testnet and live.",
        }
    ),
]


class Supervision(ApiModel):
    """The dead-man's switch: a bot the operator has not supervised for `deadline` stops
    entering trades by itself."""

    model_config = with_rules(
        cel(
            "!has(self.deadline) || (duration(self.deadline) > duration('0s') && "
            "duration(self.deadline) <= duration('24h'))",
            "spec.supervision.deadline must be longer than 0s and at most 24h",
            ".deadline",
        )
    )

    deadline: Deadline = Field(
        default="10m",
        description="How long a bot may go without the "
        "operator's supervision before it stops entering trades (at most 24h; 1h for "
        "testnet and live).",
    )


Mode = Literal["dryRun", "testnet", "live"]
ReclaimPolicy = Literal["Retain", "Delete"]


class BotStorageSpec(ApiModel):
    """What happens to the bot's trade database (its open positions) when the LiveBot is
    deleted."""

    reclaim_policy: ReclaimPolicy = Field(
        default="Retain",
        description="Retain (default): the trade database (PersistentVolumeClaim, or PostgreSQL "
        "database) outlives the LiveBot, so open positions are never forgotten; Delete: it goes "
        "with the LiveBot (close the positions first).",
    )


_SANDBOX_NEEDED = "mode testnet needs one, such as binance, bybit, okx or gate (or use mode dryRun)"


def no_sandbox_message(exchange: str) -> str:
    """Why a testnet bot on `exchange` is refused (by the CRD, the model and the controller)."""
    return f"exchange {exchange} has no sandbox (testnet) in ccxt; {_SANDBOX_NEEDED}"


# Testnet means ccxt's sandbox endpoints; ccxt fails at start on an exchange without one, so the
# API refuses it at apply. The list is generated from ccxt (tradebot.api.exchanges).
_SANDBOX_RULE = {
    **cel(
        "self.mode != 'testnet' || self.exchange.name in ["
        + ", ".join(f"'{name}'" for name in SANDBOX_EXCHANGES)
        + "]",
        "mode testnet requires an exchange with a sandbox (testnet) in ccxt, "
        + _SANDBOX_NEEDED.removeprefix("mode testnet needs one, "),
        ".exchange.name",
    ),
    "messageExpression": "'exchange ' + self.exchange.name + ' has no sandbox (testnet) in "
    f"ccxt; {_SANDBOX_NEEDED}'",
}


_LIVE_LIMITS = (
    "mode live requires limits.maxStakePerTrade and limits.maxOpenTrades (and a drawdown "
    "limit: limits.maxDrawdown, or a CircuitBreaker with limits.maxDrawdown)"
)
_LIVE_STAKE = 'mode live refuses stakeAmount "unlimited": set an amount per trade'


class LiveBotSpec(ApiModel):
    """A Freqtrade bot: dry-run by default, testnet or live only through promotion."""

    model_config = with_rules(
        cel(
            "self.mode != 'live' || (has(self.promotion) && has(self.promotion.approval))",
            "mode live requires promotion.approval (approvedBy, approvedAt, reference)",
            ".mode",
        ),
        cel(
            "self.mode == 'dryRun' || has(self.promotion)",
            "modes testnet and live require spec.promotion (backtest evidence and gates)",
            ".mode",
        ),
        cel(
            "self.mode == 'dryRun' || has(self.exchange.credentialsSecretRef)",
            "modes testnet and live require exchange.credentialsSecretRef",
            ".mode",
        ),
        cel(
            "self.mode != 'live' || (has(self.promotion) && has(self.promotion.approval) && "
            "has(self.promotion.approval.codeHash))",
            "mode live requires promotion.approval.codeHash (the Strategy's status.codeHash "
            "being approved)",
            ".mode",
        ),
        cel("self.mode != 'live' || has(self.limits)", "mode live requires spec.limits", ".mode"),
        cel(
            "self.mode != 'live' || (has(self.limits) && has(self.limits.maxStakePerTrade) "
            "&& has(self.limits.maxOpenTrades))",
            _LIVE_LIMITS,
            ".limits",
        ),
        cel(
            # A missing stakeAmount is defaulted to unlimited before the rules run.
            "self.mode != 'live' || (has(self.stakeAmount) && "
            "(type(self.stakeAmount) == int || self.stakeAmount != 'unlimited'))",
            _LIVE_STAKE,
            ".stakeAmount",
        ),
        cel(
            "self.mode == 'dryRun' || !has(self.image) || "
            "self.image.matches('@sha256:[0-9a-f]{64}$')",
            "modes testnet and live run only an image pinned by digest: spec.image must be "
            "repository@sha256:<64 hex> (or left out for the operator's pinned bot image)",
            ".image",
        ),
        _SANDBOX_RULE,
        PAIRS_IN_STAKE_CURRENCY,
        cel(
            "self.mode == 'dryRun' || !has(self.supervision) || "
            "!has(self.supervision.deadline) || "
            "duration(self.supervision.deadline) <= duration('1h')",
            "modes testnet and live require spec.supervision.deadline of at most 1h",
            ".supervision.deadline",
        ),
    )

    strategy_ref: LocalObjectReference = Field(description="The Strategy to run.")
    exchange: ExchangeSpec = Field(
        default_factory=ExchangeSpec,
        json_schema_extra={"default": {}},
        description="Exchange and credentials.",
    )
    mode: Mode = Field(default="dryRun", description="dryRun (default), testnet or live.")
    pairs: list[Pair] = Field(
        min_length=1,
        max_length=100,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Pairs to trade.",
    )
    stake_currency: Currency = Field(default="USDT", description="Currency of the wallet.")
    stake_amount: StakeAmount = Field(default="unlimited", description="Stake per trade.")
    max_open_trades: int = Field(default=3, ge=1, le=1000, description="Open trades at most.")
    dry_run_wallet: Money = Field(
        default="1000", validate_default=True, description="Starting balance of a dry run."
    )
    limits: BotLimits | None = Field(default=None, description="Hard limits.")
    promotion: Promotion | None = Field(default=None, description="Promotion gates.")
    suspend: bool = Field(default=False, description="Stop entries, then stop the bot.")
    supervision: Supervision = Field(
        default_factory=Supervision,
        json_schema_extra={"default": {}},
        description="The dead-man's switch.",
    )
    stale_heartbeat: Duration = Field(
        default="5m",
        description="A running bot whose API has not answered for this long "
        "gets an incident record (and trips breakers with a staleHeartbeat limit).",
    )
    storage: BotStorageSpec = Field(
        default_factory=BotStorageSpec,
        json_schema_extra={"default": {}},
        description="The trade database's fate when the LiveBot is deleted.",
    )
    resources: ResourceRequirements | None = Field(default=None, description="Pod resources.")
    gpu: GpuRequest | None = Field(default=None, description="GPUs (FreqAI).")
    image: str | None = Field(
        default=None, max_length=512, pattern=r"^[^\s]+$", description="Bot image override."
    )

    @model_validator(mode="after")
    def _rules(self) -> LiveBotSpec:
        if self.mode == "live" and (self.promotion is None or self.promotion.approval is None):
            raise ValueError(
                "mode live requires promotion.approval (approvedBy, approvedAt, reference)"
            )
        if self.mode != "dryRun" and self.promotion is None:
            raise ValueError("modes testnet and live require spec.promotion")
        if self.mode != "dryRun" and self.exchange.credentials_secret_ref is None:
            raise ValueError("modes testnet and live require exchange.credentialsSecretRef")
        if self.mode == "live":
            approval = self.promotion.approval if self.promotion is not None else None
            if approval is not None and approval.code_hash is None:
                raise ValueError(
                    "mode live requires promotion.approval.codeHash (the "
                    "Strategy's status.codeHash being approved)"
                )
            if self.limits is None:
                raise ValueError("mode live requires spec.limits")
            if self.limits.max_stake_per_trade is None or self.limits.max_open_trades is None:
                raise ValueError(_LIVE_LIMITS)
            if self.stake_amount == UNLIMITED:
                raise ValueError(_LIVE_STAKE)
        if (
            self.mode != "dryRun"
            and parse_duration(self.supervision.deadline) > DEADLINE_MAX_REAL_MONEY
        ):
            raise ValueError(
                f"modes testnet and live require spec.supervision.deadline of at most 1h "
                f"(it is {self.supervision.deadline})"
            )
        if self.mode == "testnet" and not has_sandbox(self.exchange.name):
            raise ValueError(no_sandbox_message(self.exchange.name))
        check_pairs_in_stake(self.pairs, self.stake_currency)
        return self


class InvalidSpec(ValueError):
    """A LiveBot spec that cannot be parsed, whatever the parser raised."""


def parse_spec(raw: Mapping[str, Any]) -> LiveBotSpec:
    """The spec as a model, or InvalidSpec with one line saying why. Not only pydantic's
    ValidationError: a validator can raise anything (an OverflowError from a huge number, a
    TypeError from an odd value), and a round that let it escape would crash on every tick
    for this bot instead of failing it with a reason."""
    try:
        return LiveBotSpec.model_validate(dict(raw))
    except ValidationError as e:
        first = e.errors()[0] if e.errors() else {"msg": str(e)}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InvalidSpec(f"{where}: {message}" if where else message) from None
    except Exception as e:
        raise InvalidSpec(f"{type(e).__name__}: {str(e)[:300]}") from None


class Gate(StatusModel):
    name: str
    passed: bool
    message: str = ""


class Thresholds(StatusModel):
    """The promotion thresholds in force: the spec's, tightened by the operator's floors."""

    min_profit: Figure | None = None
    max_drawdown: Figure | None = None
    min_trades: int | None = None
    min_dry_run_hours: int | None = None
    min_out_of_sample_profit: Figure | None = None
    max_recursive_difference: Figure | None = None


class GateDecision(StatusModel):
    """The last promotion decision, kept so that a running bot is not judged again (nor
    stopped) while its spec and code are unchanged, even if the records store is down."""

    mode: Mode
    generation: int
    code_hash: str | None = None
    parameters_hash: str | None = None
    image: str | None = Field(default=None, description="The image the decision was for.")
    passed: bool
    decided_at: dt.datetime


BotPhase = Literal["Pending", "Running", "Suspended", "Blocked", "Tripped", "Failed"]


class LiveBotStatus(ResourceStatus):
    phase: BotPhase | None = None
    mode: Mode | None = Field(default=None, description="The mode the pod runs in.")
    image: str | None = Field(
        default=None,
        description="The image the bot runs, resolved (its spec's, else the operator's), with "
        "its digest when pinned; part of the pod's hash.",
    )
    pod_name: str | None = None
    gates: list[Gate] | None = None
    thresholds: Thresholds | None = Field(
        default=None,
        description="Promotion thresholds in force (the spec's, never looser than the floors).",
    )
    gate_decision: GateDecision | None = None
    profit: Figure | None = Field(default=None, description="Closed profit, stake currency.")
    profit_ratio: Figure | None = None
    drawdown: Figure | None = Field(default=None, description="Drawdown from peak equity.")
    open_trades: int | None = None
    last_heartbeat: dt.datetime | None = None
    equity: Figure | None = Field(default=None, description="Total balance, stake currency.")
    peak_equity: Figure | None = Field(
        default=None, description="Highest equity seen: the drawdown base."
    )
    day_start_equity: Figure | None = Field(
        default=None, description="Equity at the first reading of the UTC day."
    )
    day: str | None = Field(default=None, description="The UTC day of dayStartEquity.")
    consecutive_losses: int | None = Field(
        default=None, description="Losing closed trades in a row."
    )
    running_since: dt.datetime | None = Field(
        default=None, description="When the current pod started."
    )
    code_hash: str | None = None
    parameters_hash: str | None = Field(
        default=None,
        description="The parameter set the current pod runs (its Strategy's parametersHash).",
    )
    run_id: str | None = Field(default=None, description="The records' run of the current pod.")
    last_snapshot_at: dt.datetime | None = Field(
        default=None, description="When the figures were last recorded as a snapshot."
    )
    stale_incident_id: str | None = Field(
        default=None, description="The incident recorded for the current silence, if any."
    )
    promotion_digest: str | None = Field(
        default=None,
        description="sha256 over everything that decides what the bot trades (image, code, "
        "class, timeframe, parameters, FreqAI, mode, exchange, pairs, stake, limits, "
        "supervision, credentials Secret name and content fingerprint): what "
        "spec.promotion.approval.digest must name for mode live.",
    )
    promotion_inputs: str | None = Field(
        default=None,
        description="The canonical JSON of promotionDigest's inputs (no secret values): what "
        "`tradebot promote` starts from.",
    )
    approved_inputs: str | None = Field(
        default=None,
        description="The canonical JSON of the approved digest's inputs (no secret values), "
        "kept to name what a later change differs in and to let a safer change apply.",
    )


KIND = Kind(
    kind="LiveBot",
    plural="livebots",
    short_names=("bot",),
    spec=LiveBotSpec,
    status=LiveBotStatus,
    description="A running Freqtrade bot; dry-run unless its promotion gates pass.",
    columns=(
        PrinterColumn("Strategy", ".spec.strategyRef.name"),
        PrinterColumn("Mode", ".spec.mode"),
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Profit", ".status.profit"),
        PrinterColumn("Drawdown", ".status.drawdown"),
        PrinterColumn("Open", ".status.openTrades", "integer"),
        PrinterColumn("Heartbeat", ".status.lastHeartbeat", "date"),
        AGE,
    ),
)
