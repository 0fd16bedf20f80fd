"""The objects that run a Hyperopt's workers: one ConfigMap (config and strategy code) shared by
all workers, and one Job per worker, all owned by the Hyperopt, so deleting it stops them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tradebot.api.base import API_VERSION
from tradebot.api.hyperopt import HyperoptSpec
from tradebot.domain.freqtrade_config import parameter_file_data
from tradebot.domain.images import runner_image
from tradebot.domain.jobs import (
    ARTIFACTS_MOUNT,
    CONFIG_MOUNT,
    CONTAINER,
    DATA_MOUNT,
    data_args,
    restricted_container,
    scheduling,
)
from tradebot.domain.naming import (
    LABEL_KIND,
    LABEL_RUN,
    LABEL_STRATEGY,
    MANAGED_BY,
    child_name,
    label_value,
    name_labels,
    owner_reference,
)
from tradebot.settings import Settings

LABEL_HYPEROPT = "tradebot.dev/hyperopt"
LABEL_WORKER = "tradebot.dev/worker"
STORAGE_ENV = "TRADEBOT_STUDY_STORAGE"
STORAGE_ITEM = "url"
# A killed worker pod (node drain, OOM) is replaced and continues the shared study; a worker
# that keeps failing stops after these retries.
WORKER_RETRIES = 3


def run_id(uid: str) -> str:
    """A Hyperopt's spec is immutable, so it has exactly one run: its id follows the uid."""
    return f"ho-{uid}"


def worker_run_id(uid: str, index: int) -> str:
    """One worker's own run directory (local executor) and artifacts subpath."""
    return f"{run_id(uid)}-w{index}"


def study_name(uid: str) -> str:
    return run_id(uid)


def config_map_name(name: str, uid: str) -> str:
    return child_name("ho", name, uid)


def job_name(name: str, uid: str, index: int) -> str:
    return child_name(f"ho{index}", name, uid)


def storage_secret_name(name: str, uid: str) -> str:
    return child_name("ho-db", name, uid)


def owner(name: str, uid: str) -> dict[str, object]:
    return owner_reference(API_VERSION, "Hyperopt", name, uid)


@dataclass(frozen=True)
class HyperoptRun:
    """Everything a worker's objects are built from, gathered by the controller."""

    namespace: str
    name: str
    uid: str
    spec: HyperoptSpec
    strategy_class: str
    strategy_code: str
    config: dict[str, Any]
    shares: tuple[int, ...]
    # shared: the study's URL is in this Secret; None: independent workers.
    storage_secret: str | None = None
    data_claim: str | None = None

    @property
    def run_id(self) -> str:
        return run_id(self.uid)

    @property
    def strategy_file(self) -> str:
        return f"{self.strategy_class}.py"

    @property
    def config_map_name(self) -> str:
        return config_map_name(self.name, self.uid)

    def labels(self, index: int | None = None) -> dict[str, str]:
        labels = {**MANAGED_BY, LABEL_KIND: "hyperopt", LABEL_RUN: self.run_id, **self._names[0]}
        if index is not None:
            labels[LABEL_WORKER] = str(index)
        return labels

    @property
    def annotations(self) -> dict[str, str]:
        """The whole names behind the name labels (those may be hashed: naming.named)."""
        return self._names[1]

    @property
    def _names(self) -> tuple[dict[str, str], dict[str, str]]:
        return name_labels({LABEL_HYPEROPT: self.name, LABEL_STRATEGY: self.spec.strategy_ref.name})

    def runner_args(self, index: int, config_dir: str, output_dir: str) -> list[str]:
        """Worker `index`'s runner command line; the local executor runs the same one."""
        spec = self.spec
        args = [
            "hyperopt",
            "--config",
            f"{config_dir}/config.json",
            "--strategy-file",
            f"{config_dir}/{self.strategy_file}",
            *data_args(spec.data),
            "--output",
            output_dir,
            "--timerange",
            spec.timerange.freqtrade(),
            "--spaces",
            *spec.spaces,
            "--loss",
            spec.loss_function,
            "--epochs",
            str(self.shares[index]),
        ]
        if spec.sampler is not None:
            args += ["--sampler", spec.sampler]
        if spec.random_state is not None:
            # The runner seeds worker i with randomState + i.
            args += ["--random-state", str(spec.random_state)]
        if spec.min_trades is not None:
            args += ["--min-trades", str(spec.min_trades)]
        return [*args, "--worker", str(index), "--study", study_name(self.uid)]


def config_map(run: HyperoptRun) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": run.config_map_name,
            "namespace": run.namespace,
            "labels": run.labels(),
            "annotations": run.annotations,
            "ownerReferences": [owner(run.name, run.uid)],
        },
        "data": {
            "config.json": json.dumps(run.config, indent=2, sort_keys=True),
            run.strategy_file: run.strategy_code,
            # Beside the strategy file, where Freqtrade reads it (the runner checks it is
            # the set the config names).
            **parameter_file_data(run.config, run.strategy_class),
        },
    }


def storage_secret(namespace: str, name: str, uid: str, url: str) -> dict[str, Any]:
    """The operator-owned Secret with the study's own PostgreSQL URL (its own role)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": storage_secret_name(name, uid),
            "namespace": namespace,
            "labels": {**MANAGED_BY, LABEL_KIND: "hyperopt", LABEL_HYPEROPT: label_value(name)},
            "annotations": {LABEL_HYPEROPT: name},
            "ownerReferences": [owner(name, uid)],
        },
        "stringData": {STORAGE_ITEM: url},
    }


def _env(run: HyperoptRun) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": "TRADEBOT_CORRELATION_ID", "value": run.run_id}]
    if run.storage_secret is not None:
        env.append(
            {
                "name": STORAGE_ENV,
                "valueFrom": {"secretKeyRef": {"name": run.storage_secret, "key": STORAGE_ITEM}},
            }
        )
    return env


def job(run: HyperoptRun, index: int, settings: Settings) -> dict[str, Any]:
    spec = run.spec
    resources, placement = scheduling(spec.resources, spec.gpu, settings)
    image = runner_image(spec.image, spec.gpu is not None and spec.gpu.vendor == "amd", settings)
    artifacts: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": settings.artifacts_pvc}}
        if settings.artifacts_pvc
        else {"emptyDir": {}}
    )
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": run.config_map_name}},
        {"name": "artifacts", **artifacts},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
        {
            "name": "artifacts",
            "mountPath": ARTIFACTS_MOUNT,
            **(
                {"subPath": f"{run.namespace}/{worker_run_id(run.uid, index)}"}
                if settings.artifacts_pvc
                else {}
            ),
        },
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the container's own scratch space
    ]
    claim = spec.data.pvc.claim_name if spec.data.pvc is not None else run.data_claim
    if claim is not None:
        volumes.append(
            {"name": "data", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
        mounts.append({"name": "data", "mountPath": DATA_MOUNT, "readOnly": True})
    container = {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": run.runner_args(index, CONFIG_MOUNT, ARTIFACTS_MOUNT),
        "env": _env(run),
        "resources": resources,
        "volumeMounts": mounts,
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": restricted_container(),
    }
    labels = run.labels(index)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(run.name, run.uid, index),
            "namespace": run.namespace,
            "labels": labels,
            "annotations": run.annotations,
            "ownerReferences": [owner(run.name, run.uid)],
        },
        "spec": {
            "backoffLimit": WORKER_RETRIES,
            "activeDeadlineSeconds": settings.backtest_deadline_seconds,
            # No TTL: the controller deletes the Jobs once the merged result is stored (a
            # Job gone earlier would look like a worker that never ran).
            "template": {
                "metadata": {"labels": labels, "annotations": run.annotations},
                "spec": {
                    # A killed pod is replaced (backoffLimit); a crashed process restarts in
                    # place. Either way the worker rejoins the study it was in.
                    "restartPolicy": "OnFailure",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {
                        "fsGroup": 1000,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": volumes,
                    **placement,
                },
            },
        },
    }
