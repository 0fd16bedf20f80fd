"""Operator settings, from TRADEBOT_* environment variables through pydantic-settings (the Helm
chart sets them from values)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from contextvars import ContextVar
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "TRADEBOT_"
# In outbox_path: this pod's name (records_outbox).
POD_PLACEHOLDER = "{pod}"


def _pod_name() -> str:
    return os.environ.get("POD_NAME") or socket.gethostname()


class GpuProfile(BaseModel):
    """How a GPU vendor's pods are scheduled: the resource name, node labels, tolerations."""

    model_config = ConfigDict(frozen=True)

    resource: str
    node_selector: dict[str, str]
    tolerations: tuple[dict[str, str], ...]


DEFAULT_GPU_PROFILES: dict[str, GpuProfile] = {
    # As the AMD GPU operator (device plugin + Node Feature Discovery) labels ROCm nodes.
    "amd": GpuProfile(
        resource="amd.com/gpu",
        node_selector={"feature.node.kubernetes.io/amd-gpu": "true"},
        tolerations=({"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
    ),
    "nvidia": GpuProfile(
        resource="nvidia.com/gpu",
        node_selector={"nvidia.com/gpu.present": "true"},
        tolerations=({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
    ),
}

QueueHold = Literal["None", "Hold", "HoldAndDrain"]
BotMode = Literal["dryRun", "testnet", "live"]


class ModeFloor(BaseModel):
    """The loosest promotion thresholds the operator accepts for one mode: a LiveBot's spec
    may ask for more evidence, never for less."""

    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, populate_by_name=True, extra="forbid"
    )

    min_profit: Decimal = Field(default=Decimal(0), ge=-1)
    max_drawdown: Decimal = Field(default=Decimal("0.25"), ge=0, le=1)
    min_trades: int = Field(default=10, ge=0)
    min_dry_run_hours: int = Field(default=24, ge=0)
    # Out-of-sample evidence (promotion.hyperoptRef): required for the mode when true, and
    # its minimum profit never below this.
    require_hyperopt: bool = False
    min_out_of_sample_profit: Decimal = Field(default=Decimal(-1), ge=-1)
    # Bias evidence: a clean lookahead analysis and a recursive analysis within this
    # tolerance (a ratio: 0.01 = 1 %) of the exact code, parameters and timeframe promoted.
    require_bias_analysis: bool = True
    max_recursive_difference: Decimal = Field(default=Decimal("0.01"), ge=0, le=1)


class PromotionFloors(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Testnet trades the exchange's sandbox (no money), so its floor asks for little.
    testnet: ModeFloor = ModeFloor(
        min_profit=Decimal(-1), max_drawdown=Decimal(1), min_trades=1, min_dry_run_hours=0
    )
    live: ModeFloor = ModeFloor(
        min_profit=Decimal(0), max_drawdown=Decimal("0.25"), min_trades=20, min_dry_run_hours=24
    )

    def for_mode(self, mode: str) -> ModeFloor | None:
        return {"testnet": self.testnet, "live": self.live}.get(mode)


class Settings(BaseSettings):
    # Values arrive as the strings the chart writes; the validators below parse JSON objects
    # and comma lists themselves (enable_decoding=False), as they did before pydantic-settings.
    # Unknown TRADEBOT_* are ignored. (case_sensitive=True would want TRADEBOT_field_name.)
    model_config = SettingsConfigDict(
        frozen=True, env_prefix=ENV_PREFIX, enable_decoding=False, extra="ignore"
    )

    namespaces: tuple[str, ...] = Field(
        default=(), description="Namespaces to watch; empty watches all."
    )
    executor: Literal["kubernetes", "local"] = "kubernetes"
    max_concurrent_backtests: int = Field(
        default=4,
        ge=0,
        description=(
            "Running backtests at once in the watched namespaces (all, or TRADEBOT_NAMESPACES)."
        ),
    )
    max_backtests_per_namespace: int = Field(default=4, ge=0)
    max_backtests_per_strategy: int = Field(default=2, ge=0)
    queue_hold: QueueHold = "None"
    max_waiting_backtests_per_namespace: int = Field(
        default=5000,
        ge=1,
        description=(
            "Backtests waiting in the queue per namespace; more are refused (phase Failed, "
            "condition Admitted=False, reason QueueFull), so a flood cannot grow the queue "
            "without bound."
        ),
    )
    backtest_ttl_seconds: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Seconds after a Backtest finished (its result recorded, its Job gone) before it is "
            "deleted; the run record stays. Unset: kept. A Backtest's "
            "spec.ttlSecondsAfterFinished overrides it."
        ),
    )
    runner_image: str = "ghcr.io/tradebot-operator/runner:0.1.0"
    runner_image_rocm: str = "ghcr.io/tradebot-operator/runner-rocm:0.1.0"
    # LiveBots run plain `freqtrade trade`; GPU (FreqAI) bots on AMD use the ROCm runner image.
    bot_image: str = "freqtradeorg/freqtrade:2026.9"
    images_allowed: tuple[str, ...] = Field(
        default=(),
        description=(
            "Image repositories (comma list; `registry/path/*` takes every repository under a "
            "path) that Backtests, Hyperopts, MarketData and LiveBots may run; any other gives "
            "reason ImageNotAllowed and no pod. Empty: the repositories of runner_image, "
            "runner_image_rocm and bot_image."
        ),
    )
    backtest_deadline_seconds: int = Field(default=3600, ge=60)
    # The controller reads a finished Job's result before deleting it itself; a TTL shorter
    # than a few reconcile rounds could delete it first, and the run would start again.
    job_ttl_seconds: int = Field(default=86400, ge=300)
    artifacts_pvc: str | None = Field(
        default=None,
        description=(
            "PersistentVolumeClaim (in each namespace that runs Backtests) that keeps run "
            "artifacts, at <runId>/<name>; recorded as pvc://<claim>/<runId>/<name>."
        ),
    )
    artifacts_store: Literal["auto", "pvc", "s3"] = Field(
        default="auto",
        description=(
            "Where run artifacts are kept: auto is the PVC when artifacts_pvc is set, else the S3 "
            "bucket when artifacts_s3_bucket is set, else only the Job's emptyDir (a bare name "
            "is recorded and the file is lost with the Job)."
        ),
    )
    artifacts_s3_bucket: str | None = Field(
        default=None,
        description=(
            "S3-compatible bucket for run artifacts, at <prefix><runId>/<name>; recorded as "
            "s3://<bucket>/<prefix><runId>/<name>."
        ),
    )
    artifacts_s3_prefix: str = Field(
        default="",
        description="Key prefix in that bucket, "
        "e.g. tradebot/ (the trailing slash is yours to add).",
    )
    artifacts_s3_endpoint_url: str | None = Field(
        default=None,
        description=(
            "The S3 API's URL for a store that is not AWS (MinIO, Ceph, ...); unset: AWS."
        ),
    )
    artifacts_s3_region: str | None = Field(default=None, description="The bucket's region.")
    # Credentials never pass through settings: runner pods get this Secret's keys (e.g.
    # AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) as environment; the operator its own copy.
    artifacts_s3_secret: str | None = Field(
        default=None,
        description=(
            "Secret, in each namespace that runs Backtests, whose keys runner pods get as "
            "environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...); unset: the pod's own "
            "identity (IRSA, instance role)."
        ),
    )
    # Empty: SQLite in local_state_dir (sqlite:/// + an absolute path).
    database_dsn: str = ""
    local_state_dir: Path = Path(".local/operator")
    # Empty: <local_state_dir>/records-outbox.jsonl. In a cluster it must be on a volume
    # (PVC or emptyDir), or writes waiting for the database die with the container. `{pod}`
    # in the name becomes the pod's name: replicas sharing a volume keep one outbox each, and
    # the leader delivers the others' once their owner is gone (records/outbox.py).
    outbox_path: Path | None = None
    outbox_flush_interval_seconds: float = Field(default=5.0, gt=0)
    reconcile_interval_seconds: float = Field(default=2.0, gt=0)
    operator_namespace: str = Field(
        default="tradebot-system", description="Where the operator runs (for NetworkPolicies)."
    )
    account_lease_seconds: int = Field(default=30, ge=5)
    leader_election: bool = Field(
        default=False,
        description=(
            "Act only while holding the leader Lease, so that replicas can stand by; the chart "
            "turns it on. Off: this process acts at once and alone (one replica only)."
        ),
    )
    leader_lease_name: str = Field(
        default="tradebot-operator",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="The leader Lease, in the operator's namespace.",
    )
    leader_lease_seconds: int = Field(
        default=10,
        ge=2,
        le=300,
        description=(
            "How long a standby waits, after it last saw the leader renew, before taking over."
        ),
    )
    leader_renew_deadline_seconds: float = Field(
        default=7.0,
        gt=0,
        description=(
            "A leader that cannot renew within this stops acting (exits), before any standby "
            "may take over."
        ),
    )
    leader_retry_seconds: float = Field(
        default=2.0, gt=0, description="How often the leader renews and a standby looks."
    )
    handler_threads: int = Field(
        default=32, ge=4, le=512, description="Threads for the controllers' handlers."
    )
    api_connections: int = Field(
        default=32,
        ge=4,
        le=1024,
        description=(
            "Connections kopf may hold to the API server for requests, besides its watches "
            "(each costs about 300 KiB; kopf alone sets no limit)."
        ),
    )
    api_connect_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="Client-side connect timeout of every API request."
    )
    api_request_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description=(
            "Client-side read timeout of every API request (kopf's and the operator's own): a "
            "half-open connection fails the call instead of hanging it."
        ),
    )
    api_watch_timeout_seconds: int = Field(
        default=60,
        ge=1,
        le=1800,
        description=(
            "How long each watch asks the server to stream (timeoutSeconds); the client gives a "
            "silent watch up 10 s after it and lists again."
        ),
    )
    leader_work_stall_seconds: float = Field(
        default=120.0,
        gt=0,
        description=(
            "A leader whose admission loop has not completed a pass for this long stops "
            "renewing its Lease and exits, so that a standby takes over."
        ),
    )
    shutdown_grace_seconds: float = Field(
        default=20.0,
        ge=0,
        description=(
            "On a clean stop, how long the work already running may take to end; the leader "
            "Lease is given up only after it has (otherwise the process exits at once and the "
            "Lease expires)."
        ),
    )
    # The CircuitBreaker's own pools: its rounds, the stops of a trip (parallel REST calls and
    # pod deletions) and the LiveBots marked Tripped after (fewer, so the kubelets' watches
    # are not crowded out by bookkeeping).
    breaker_threads: int = Field(
        default=8,
        ge=1,
        le=256,
        description=(
            "Threads that evaluate CircuitBreakers (their own: a busy fleet never delays them)."
        ),
    )
    breaker_interval_seconds: float = Field(
        default=1.0,
        ge=1.0,
        le=3600,
        description=(
            "How often each CircuitBreaker is evaluated from its bots' figures (a trip or reset "
            "by hand is handled as its annotation arrives)."
        ),
    )
    breaker_stop_threads: int = Field(
        default=48,
        ge=1,
        le=512,
        description=("Threads that stop a tripped breaker's bots in parallel."),
    )
    breaker_mark_threads: int = Field(
        default=16,
        ge=1,
        le=256,
        description=("Threads that mark a tripped breaker's LiveBots Tripped after the stops."),
    )
    bot_poll_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="How often a running bot gets a full round "
        "(checks and a REST API poll); changed specs and held bots are handled every 2 s.",
    )
    snapshot_interval_seconds: int = Field(
        default=60,
        ge=5,
        description="How often a running bot's figures are recorded as a "
        "snapshot (the dry-run history the promotion gates read).",
    )
    bot_db_connection_limit: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="CONNECTION LIMIT of each bot's PostgreSQL role (its pod runs user code: "
        "it must not take every connection of the records' server). Freqtrade's own pool "
        "needs at most 15.",
    )
    hyperopt_db_connections_per_worker: int = Field(
        default=8,
        ge=1,
        le=1000,
        description="Connections a Hyperopt's study role may hold per worker (its CONNECTION "
        "LIMIT is this times spec.workers).",
    )
    bot_storage_size: str = Field(
        default="1Gi",
        pattern=r"^[0-9]+(\.[0-9]+)?([KMGTPE]i|[kMGTPE])?$",
        description="Size of each bot's trade-database PersistentVolumeClaim (used when the "
        "records store is not PostgreSQL).",
    )
    bot_storage_class: str | None = Field(
        default=None, description="StorageClass of those claims; unset: the cluster's default."
    )
    exchange_double_url: str | None = Field(
        default=None,
        description="Point dry-run bots at the local exchange double (a test "
        "double of the exchange, for machines with no exchange).",
    )
    allowed_modes: tuple[BotMode, ...] = Field(
        default=("dryRun",),
        description="Modes this operator creates bot pods for (the "
        "chart's allowedModes); a LiveBot in another mode is Blocked with reason "
        "ModeNotAllowed.",
    )
    promotion_floors: PromotionFloors = Field(
        default_factory=PromotionFloors,
        description="The loosest promotion thresholds per "
        'mode (JSON, e.g. {"live": {"minTrades": 50}}): specs tighten them, never loosen.',
    )
    operator_pod_labels: dict[str, str] = Field(
        default_factory=lambda: {"app.kubernetes.io/name": "tradebot-operator"},
        description="Labels of the operator's pods (JSON object): bots' NetworkPolicies admit "
        "only pods with these labels to their API.",
    )
    metrics_port: int = Field(
        default=0, ge=0, le=65535, description="Port of /metrics; 0 serves none."
    )
    gpu_profiles: dict[str, GpuProfile] = Field(default_factory=lambda: dict(DEFAULT_GPU_PROFILES))
    # Labels that mark GPU nodes: pods without GPUs are kept off them.
    gpu_node_labels: tuple[str, ...] = (
        "feature.node.kubernetes.io/amd-gpu",
        "nvidia.com/gpu.present",
    )

    @model_validator(mode="after")
    def _default_dsn(self) -> Settings:
        if not self.database_dsn:
            path = (self.local_state_dir / "records.db").resolve()
            object.__setattr__(self, "database_dsn", f"sqlite://{path}")  # path is absolute
        if self.outbox_path is None:
            object.__setattr__(self, "outbox_path", self.local_state_dir / "records-outbox.jsonl")
        return self

    @model_validator(mode="after")
    def _leader_timing(self) -> Settings:
        from tradebot.domain.leader_election import check_timing

        problem = check_timing(
            self.leader_lease_seconds, self.leader_renew_deadline_seconds, self.leader_retry_seconds
        )
        if problem is not None:
            raise ValueError(f"leader election: {problem}")
        return self

    @model_validator(mode="after")
    def _artifact_store_placed(self) -> Settings:
        if self.artifacts_store == "pvc" and not self.artifacts_pvc:
            raise ValueError("artifacts_store is pvc but artifacts_pvc names no claim")
        if self.artifacts_store == "s3" and not self.artifacts_s3_bucket:
            raise ValueError("artifacts_store is s3 but artifacts_s3_bucket names no bucket")
        return self

    @field_validator("operator_pod_labels")
    @classmethod
    def _some_labels(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            # An empty selector would admit every pod of the operator's namespace to the bots.
            raise ValueError("operator_pod_labels must name at least one label")
        return value

    @property
    def records_outbox(self) -> Path:
        """outbox_path, always set once validated, with `{pod}` replaced by this pod's name
        (POD_NAME, else the host name): replicas on a shared volume each write their own."""
        assert self.outbox_path is not None
        return Path(str(self.outbox_path).replace(POD_PLACEHOLDER, _pod_name()))

    @property
    def outbox_family(self) -> str | None:
        """A glob of every replica's outbox beside this one's (None without `{pod}` in the
        path): the leader adopts those whose owner is gone."""
        assert self.outbox_path is not None
        name = self.outbox_path.name
        if POD_PLACEHOLDER not in name:
            return None
        # "records-outbox-{pod}.jsonl" -> "records-outbox*.jsonl": the single outbox of a
        # release from before per-pod names is adopted too.
        return name.replace(f"-{POD_PLACEHOLDER}", "*").replace(POD_PLACEHOLDER, "*")

    @model_validator(mode="after")
    def _images(self) -> Settings:
        from tradebot.domain.images import allowed

        # A list that cannot be read would refuse every run with a puzzling message.
        allowed(self)
        return self

    @field_validator(
        "namespaces", "gpu_node_labels", "allowed_modes", "images_allowed", mode="before"
    )
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(n.strip() for n in value.split(",") if n.strip())
        return value

    @field_validator("promotion_floors", "operator_pod_labels", mode="before")
    @classmethod
    def _json_object(cls, value: Any, info: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return cls.model_fields[info.field_name].get_default(call_default_factory=True)
            try:
                return json.loads(value)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"{info.field_name} is not valid JSON: {e.msg} at {e.pos}"
                ) from None
        return value

    @field_validator("gpu_profiles", mode="before")
    @classmethod
    def _json_profiles(cls, value: Any) -> Any:
        # From the environment (the chart's TRADEBOT_GPU_PROFILES): a JSON object of vendor ->
        # {resource, node_selector, tolerations}; an empty value keeps the defaults.
        if isinstance(value, str):
            if not value.strip():
                return dict(DEFAULT_GPU_PROFILES)
            try:
                return json.loads(value)
            except json.JSONDecodeError as e:
                raise ValueError(f"gpu_profiles is not valid JSON: {e.msg} at {e.pos}") from None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Arguments, then the environment; no .env file or secrets directory read silently.
        given = _GIVEN_ENV.get()
        if given is None:
            return init_settings, env_settings
        return init_settings, _GivenEnv(settings_cls, given)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Fields from TRADEBOT_<FIELD> variables, e.g. TRADEBOT_MAX_CONCURRENT_BACKTESTS=2:
        the process environment (pydantic-settings' source), or `env` in its place. Errors name
        the variable."""
        token = _GIVEN_ENV.set(env)
        try:
            return cls()
        except ValidationError as e:
            raise _naming_variables(e) from None
        finally:
            _GIVEN_ENV.reset(token)


# from_env's mapping, read by the environment source in place of os.environ.
_GIVEN_ENV: ContextVar[Mapping[str, str] | None] = ContextVar("_GIVEN_ENV", default=None)


class _GivenEnv(EnvSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        # Names as the source keeps os.environ's (case-insensitive settings: lower case).
        self.env_vars = {k.lower(): v for k, v in env.items()}


def _naming_variables(error: ValidationError) -> ValidationError:
    """The error with each field's location replaced by its variable, TRADEBOT_<FIELD>."""
    details: list[Any] = []
    for item in error.errors():
        loc = item["loc"]
        if loc and loc[0] in Settings.model_fields:
            loc = (ENV_PREFIX + str(loc[0]).upper(), *loc[1:])
        details.append(
            {
                "type": item["type"],
                "loc": loc,
                "input": item["input"],
                **({"ctx": item["ctx"]} if "ctx" in item else {}),
            }
        )
    return ValidationError.from_exception_data(error.title, details)
