"""The Job (and its ConfigMap) that runs one Backtest with the runner image."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tradebot.api.backtest import BacktestSpec, DataSource
from tradebot.api.base import API_VERSION
from tradebot.api.types import GpuRequest, ResourceRequirements
from tradebot.artifacts.location import store_kind
from tradebot.domain.freqtrade_config import parameter_file_data
from tradebot.domain.images import runner_image
from tradebot.domain.market_data import MARKETS_FILE, volume_path
from tradebot.domain.naming import (
    LABEL_BACKTEST,
    LABEL_KIND,
    LABEL_RUN,
    LABEL_STRATEGY,
    MANAGED_BY,
    backtest_job_name,
    name_labels,
    owner_reference,
)
from tradebot.settings import Settings

CONFIG_MOUNT = "/etc/tradebot"
# Where the runner image keeps Freqtrade's user directory. The runner passes the data
# directory it resolves on the command line; these config values only keep the config (and so
# its hash) the same for every executor.
USER_DATA_DIR = "/opt/tradebot/user_data"
DATA_DIR = f"{USER_DATA_DIR}/data"
ARTIFACTS_MOUNT = "/artifacts"
DATA_MOUNT = "/data"
CONTAINER = "runner"
UPLOAD_CONTAINER = "upload"
# Set on the runner with a bucket: it hands its artifacts to the upload step
# (artifacts/uploader.py HANDOFF_ENV; the name is repeated here to keep domain/ free of it).
HANDOFF_ENV = "TRADEBOT_ARTIFACTS_HANDOFF"


@dataclass(frozen=True)
class BacktestRun:
    """Everything needed to build the run's objects, gathered by the controller."""

    namespace: str
    name: str
    uid: str
    spec: BacktestSpec
    strategy_name: str
    strategy_class: str
    strategy_code: str
    config: dict[str, Any]
    run_id: str
    correlation_id: str
    # data.marketDataRef: the MarketData's claim, mounted at DATA_MOUNT (read-only).
    data_claim: str | None = None
    # The Strategy's startup_candle_count as introspection found it (recursive analysis).
    startup_candle_count: int | None = None

    @property
    def job_name(self) -> str:
        return backtest_job_name(self.name, self.uid)

    @property
    def labels(self) -> dict[str, str]:
        return {**MANAGED_BY, LABEL_KIND: "backtest", LABEL_RUN: self.run_id, **self._names[0]}

    @property
    def annotations(self) -> dict[str, str]:
        """The whole names behind the name labels (those may be hashed: naming.named)."""
        return self._names[1]

    @property
    def _names(self) -> tuple[dict[str, str], dict[str, str]]:
        return name_labels({LABEL_BACKTEST: self.name, LABEL_STRATEGY: self.strategy_name})

    @property
    def strategy_file(self) -> str:
        return f"{self.strategy_class}.py"

    def runner_args(self, config_dir: str, output_dir: str) -> list[str]:
        """The runner's command line; the local executor runs the same one."""
        args = [
            "backtest",
            "--config",
            f"{config_dir}/config.json",
            "--strategy-file",
            f"{config_dir}/{self.strategy_file}",
            "--output",
            output_dir,
        ]
        args += data_args(self.spec.data)
        if self.spec.timerange is not None:
            args += ["--timerange", self.spec.timerange.freqtrade()]
        if self.spec.enable_protections:
            args.append("--enable-protections")
        analyses = self.spec.analyses
        if analyses is not None:
            if analyses.lookahead:
                args.append("--lookahead-analysis")
                if analyses.minimum_trade_amount is not None:
                    args += ["--minimum-trade-amount", str(analyses.minimum_trade_amount)]
                if analyses.targeted_trade_amount is not None:
                    args += ["--targeted-trade-amount", str(analyses.targeted_trade_amount)]
            if analyses.recursive:
                args.append("--recursive-analysis")
                # The count the backtest itself ran with: what the strategy's indicators
                # saw at the start of the timerange, and about what a live bot loads.
                if self.startup_candle_count:
                    args += ["--startup-candle", str(self.startup_candle_count)]
        return args


def data_args(data: DataSource) -> list[str]:
    """The runner's --data (and --markets) for a data source, as the pod mounts it."""
    if data.pvc is not None:
        return ["--data", f"{DATA_MOUNT}/{data.pvc.path}"]
    if data.market_data_ref is not None:
        directory = f"{DATA_MOUNT}/{volume_path(data.market_data_ref.name)}"
        return ["--data", directory, "--markets", f"{directory}/{MARKETS_FILE}"]
    return ["--data", data.bundled or "sample"]


def restricted_container() -> dict[str, Any]:
    """The container securityContext of every pod the operator makes (backtests and bots):
    the Pod Security Standards' restricted profile."""
    return {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _owner(run: BacktestRun) -> dict[str, object]:
    return owner_reference(API_VERSION, "Backtest", run.name, run.uid)


def config_map(run: BacktestRun) -> dict[str, Any]:
    """The generated Freqtrade config and the strategy code, mounted into the pod."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": run.job_name,
            "namespace": run.namespace,
            "labels": run.labels,
            "annotations": run.annotations,
            "ownerReferences": [_owner(run)],
        },
        "data": {
            "config.json": json.dumps(run.config, indent=2, sort_keys=True),
            run.strategy_file: run.strategy_code,
            # Beside the strategy file, where Freqtrade reads it (the runner checks it is
            # the set the config names).
            **parameter_file_data(run.config, run.strategy_class),
        },
    }


# Kubernetes' limit on a ConfigMap's data (keys and values, data and binaryData together);
# the API server refuses a larger one with 422, whatever the retry.
CONFIG_MAP_MAX_BYTES = 1024 * 1024


def config_map_size(body: dict[str, Any]) -> int:
    """The bytes of a ConfigMap's data as the API server counts them against its limit."""
    size = 0
    for section in ("data", "binaryData"):
        for key, value in (body.get(section) or {}).items():
            size += len(key.encode()) + len(str(value).encode())
    return size


def config_map_too_large(body: dict[str, Any]) -> str | None:
    """Why a run's ConfigMap (config and strategy code) cannot be created, or None."""
    size = config_map_size(body)
    if size <= CONFIG_MAP_MAX_BYTES:
        return None
    return (
        f"the run's config and strategy code take {size} bytes; a ConfigMap holds at most "
        f"{CONFIG_MAP_MAX_BYTES} (Kubernetes' limit): make the strategy smaller"
    )


def scheduling(
    requested: ResourceRequirements | None, gpu: GpuRequest | None, settings: Settings
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Resources and pod-spec fields that place a pod (a backtest's or a bot's): GPU nodes for
    GPU work through the vendor's profile, never for the rest."""
    resources: dict[str, Any] = {
        "requests": {"cpu": "1", "memory": "1Gi"},
        "limits": {"memory": "2Gi"},
    }
    if requested is not None:
        resources = {k: v for k, v in requested.to_wire().items() if v}
    placement: dict[str, Any] = {}
    if gpu is not None:
        profile = settings.gpu_profiles[gpu.vendor]
        limits = dict(resources.get("limits", {}))
        limits[profile.resource] = str(gpu.count)
        resources["limits"] = limits
        placement["nodeSelector"] = dict(profile.node_selector)
        placement["tolerations"] = [dict(t) for t in profile.tolerations]
    else:
        off_gpu_nodes = [
            {"key": label, "operator": "DoesNotExist"} for label in settings.gpu_node_labels
        ]
        placement["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": off_gpu_nodes}]
                }
            }
        }
    return resources, placement


def artifact_env(run_id: str, settings: Settings) -> list[dict[str, str]]:
    """What a runner needs to keep its artifacts in the store (no credentials: those come
    from the Secret, see artifact_secret)."""
    store = store_kind(settings)
    if store is None:
        return []
    values = {"TRADEBOT_RUN_ID": run_id, "TRADEBOT_ARTIFACTS_STORE": store}
    if store == "pvc":
        values["TRADEBOT_ARTIFACTS_PVC"] = settings.artifacts_pvc or ""
    else:
        values.update(
            {
                "TRADEBOT_ARTIFACTS_S3_BUCKET": settings.artifacts_s3_bucket or "",
                "TRADEBOT_ARTIFACTS_S3_PREFIX": settings.artifacts_s3_prefix,
                **(
                    {"TRADEBOT_ARTIFACTS_S3_ENDPOINT_URL": settings.artifacts_s3_endpoint_url}
                    if settings.artifacts_s3_endpoint_url
                    else {}
                ),
                **(
                    {"TRADEBOT_ARTIFACTS_S3_REGION": settings.artifacts_s3_region}
                    if settings.artifacts_s3_region
                    else {}
                ),
            }
        )
    return [{"name": k, "value": v} for k, v in values.items()]


def artifact_secret(settings: Settings) -> dict[str, Any]:
    """The container's envFrom for the bucket's credentials: the Secret's keys become its
    environment (referenced, so their values appear in no Job, ConfigMap or status)."""
    if store_kind(settings) != "s3" or not settings.artifacts_s3_secret:
        return {}
    return {"envFrom": [{"secretRef": {"name": settings.artifacts_s3_secret}}]}


def upload_step(
    run: BacktestRun, settings: Settings, mounts: list[dict[str, Any]]
) -> dict[str, Any]:
    """The Job's upload step (artifacts/uploader.py) with a bucket: the only container with
    the bucket's credentials. A native sidecar (restartPolicy Always): it starts before the
    runner, waits for its hand-over, and is stopped when the runner ends. Always the
    operator's own runner image, whatever image the run asked for: it holds the keys."""
    return {
        "name": UPLOAD_CONTAINER,
        "image": settings.runner_image,
        "imagePullPolicy": "IfNotPresent",
        "restartPolicy": "Always",
        "command": ["python", "-m", "tradebot.artifacts.uploader", "--dir", ARTIFACTS_MOUNT],
        "env": artifact_env(run.run_id, settings),
        **artifact_secret(settings),
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        # The artifacts (shared) and a /tmp of its own, where each file is copied before the
        # upload; never the config (the strategy's code).
        "volumeMounts": [m for m in mounts if m["name"] == "artifacts"]
        + [{"name": "upload-tmp", "mountPath": "/tmp"}],  # noqa: S108 - its own scratch
        "securityContext": restricted_container(),
    }


def job(run: BacktestRun, settings: Settings) -> dict[str, Any]:
    resources, placement = scheduling(run.spec.resources, run.spec.gpu, settings)
    image = runner_image(
        run.spec.image, run.spec.gpu is not None and run.spec.gpu.vendor == "amd", settings
    )
    store = store_kind(settings)
    on_claim = store == "pvc" and settings.artifacts_pvc
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": run.job_name}},
        {
            "name": "artifacts",
            **(
                {"persistentVolumeClaim": {"claimName": settings.artifacts_pvc}}
                if on_claim
                else {"emptyDir": {}}
            ),
        },
        {"name": "tmp", "emptyDir": {}},
        *([{"name": "upload-tmp", "emptyDir": {}}] if store == "s3" else []),
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
        # On the claim, the run's output directory is its place in the store: <runId>/.
        {
            "name": "artifacts",
            "mountPath": ARTIFACTS_MOUNT,
            **({"subPath": run.run_id} if on_claim else {}),
        },
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the container's own scratch space
    ]
    claim = run.spec.data.pvc.claim_name if run.spec.data.pvc is not None else run.data_claim
    if claim is not None:
        volumes.append(
            {"name": "data", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
        mounts.append({"name": "data", "mountPath": DATA_MOUNT, "readOnly": True})
    on_bucket = store == "s3"
    container = {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": run.runner_args(CONFIG_MOUNT, ARTIFACTS_MOUNT),
        "env": [
            {"name": "TRADEBOT_CORRELATION_ID", "value": run.correlation_id},
            # The runner runs the strategy: with a bucket it gets no credentials (not even the
            # bucket's settings) and hands its files to the upload step instead.
            *(
                [
                    {"name": "TRADEBOT_RUN_ID", "value": run.run_id},
                    {"name": HANDOFF_ENV, "value": "1"},
                ]
                if on_bucket
                else artifact_env(run.run_id, settings)
            ),
        ],
        "resources": resources,
        "volumeMounts": mounts,
        "terminationMessagePath": "/dev/termination-log",
        # The summary is the termination message; if the runner dies before writing it, the
        # log tail says why.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": restricted_container(),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": run.job_name,
            "namespace": run.namespace,
            "labels": run.labels,
            "annotations": run.annotations,
            "ownerReferences": [_owner(run)],
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": settings.backtest_deadline_seconds,
            "ttlSecondsAfterFinished": settings.job_ttl_seconds,
            "template": {
                "metadata": {"labels": run.labels, "annotations": run.annotations},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {
                        "fsGroup": 1000,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    **(
                        {"initContainers": [upload_step(run, settings, mounts)]}
                        if on_bucket
                        else {}
                    ),
                    "containers": [container],
                    "volumes": volumes,
                    **placement,
                },
            },
        },
    }
