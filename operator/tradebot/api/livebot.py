"""LiveBot: a running Freqtrade bot, dry-run unless its promotion gates pass."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field, model_validator

from tradebot.api.base import ApiModel, StatusModel, cel, with_rules
from tradebot.api.exchanges import SANDBOX_EXCHANGES, has_sandbox
from tradebot.api.kind import AGE, Kind, PrinterColumn
from tradebot.api.types import (
    PAIRS_IN_STAKE_CURRENCY,
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


class Supervision(ApiModel):
    """The dead-man's switch: a bot the operator has not supervised for `deadline` stops
    entering trades by itself."""

    deadline: Duration = Field(
        default="10m",
        description="How long a bot may go without the "
        "operator's supervision before it stops entering trades.",
    )


Mode = Literal["dryRun", "testnet", "live"]


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
            "self.mode == 'dryRun' || !has(self.image) || "
            "self.image.matches('@sha256:[0-9a-f]{64}$')",
            "modes testnet and live run only an image pinned by digest: spec.image must be "
            "repository@sha256:<64 hex> (or left out for the operator's pinned bot image)",
            ".image",
        ),
        _SANDBOX_RULE,
        PAIRS_IN_STAKE_CURRENCY,
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
        if self.mode == "testnet" and not has_sandbox(self.exchange.name):
            raise ValueError(no_sandbox_message(self.exchange.name))
        check_pairs_in_stake(self.pairs, self.stake_currency)
        return self


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
