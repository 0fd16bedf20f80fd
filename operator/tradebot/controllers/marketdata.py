"""MarketData controller: downloads the candles with Freqtrade (tradebot.freqtrade.marketdata)
when the spec is new or changed, when `refresh` has passed, and after a failure once its
backoff has passed; reports per series what is on the volume.

With the local executor the download runs as a subprocess of the operator (LocalExecutor: a
restarted operator adopts it, or starts it again if it died) on the claim's hostPath volume;
with the kubernetes executor it runs in a Job that mounts the claim, and its result comes back
as the pod's termination message.

Layout: the data of MarketData NAME is `marketdata/NAME/` in its volume (several MarketData
may share one claim), the exchange's markets in `markets.json` there.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
from pathlib import Path
from typing import Any, cast

import kopf
from kubernetes.client import V1Job
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError
from structlog.typing import FilteringBoundLogger

from tradebot import kube
from tradebot.api.backtest import BacktestSpec
from tradebot.api.base import API_VERSION, GROUP, VERSION
from tradebot.api.marketdata import MarketDataSpec, MarketDataStatus
from tradebot.controllers import runtime
from tradebot.controllers.bot_storage import StorageNotReady, _claim_dir
from tradebot.controllers.status import condition, event, now
from tradebot.domain import images, jobs, market_data
from tradebot.domain.naming import (
    LABEL_KIND,
    MANAGED_BY,
    child_name,
    label_value,
    name_labels,
    owner_reference,
)
from tradebot.domain.time import parse_time
from tradebot.executors.local import OUTCOME, LocalExecutor, Outcome
from tradebot.observability.logging import logger
from tradebot.settings import Settings

PLURAL = "marketdata"
LABEL_MARKETDATA = "tradebot.dev/marketdata"
RUNNER = [sys.executable, "-m", "tradebot.freqtrade.marketdata"]
SPEC_FILE = "spec.json"
RESULT_FILE = "result.json"


def claim_name(spec: MarketDataSpec, name: str) -> str:
    return spec.storage.claim_name or f"md-{name}"


def data_path(name: str) -> str:
    return market_data.volume_path(name)


def read(namespace: str, name: str) -> dict[str, Any] | None:
    return cast(
        dict[str, Any] | None,
        kube.read_or_none(
            kube.custom().get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
        ),
    )


def market_data_claim(spec: BacktestSpec, namespace: str) -> str | None:
    """The claim a Backtest on `data.marketDataRef` mounts (None for other data): the hook
    the admission loop calls when it builds the run's Job."""
    ref = spec.data.market_data_ref
    if ref is None:
        return None
    found = read(namespace, ref.name)
    if found is None:
        return None
    return claim_name(MarketDataSpec.model_validate(found["spec"]), ref.name)


def local_dir(namespace: str, spec: MarketDataSpec, name: str) -> Path:
    """Where the local executor finds the data (the claim's hostPath volume). Raises
    StorageNotReady while the claim is not bound."""
    return _claim_dir(namespace, claim_name(spec, name)) / data_path(name)


def _series(status: MarketDataStatus) -> list[market_data.Series]:
    return [
        market_data.Series(s.pair, s.timeframe, s.first, s.last, s.candles)
        for s in status.series or []
    ]


def covered(md: dict[str, Any], pairs: list[str], timeframe: str, spec: BacktestSpec) -> list[str]:
    """What the MarketData does not cover of a Backtest (see market_data.uncovered)."""
    status = MarketDataStatus.model_validate(md.get("status") or {})
    if not status.series:
        return [f"MarketData {md['metadata']['name']} has no data yet"]
    return market_data.uncovered(
        _series(status), pairs, timeframe, spec.timerange, dt.datetime.now(dt.UTC)
    )


def pvc(spec: MarketDataSpec, namespace: str, name: str, uid: str) -> dict[str, Any] | None:
    template = spec.storage.volume_claim_template
    if template is None:
        return None
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": claim_name(spec, name),
            "namespace": namespace,
            "labels": {**MANAGED_BY, LABEL_MARKETDATA: label_value(name)},
            "annotations": {LABEL_MARKETDATA: name},
            "ownerReferences": [owner_reference(API_VERSION, "MarketData", name, uid)],
        },
        "spec": {
            "accessModes": list(template.access_modes),
            "resources": {"requests": {"storage": template.storage}},
        },
    }
    if template.storage_class_name:
        body["spec"]["storageClassName"] = template.storage_class_name
    return body


def job_name(name: str, run: str, uid: str) -> str:
    """The Job of download `run` (deterministic: the queue and the controller agree on it)."""
    return child_name("md", f"{name}-{run.rsplit('-', 1)[-1]}", uid)


def runner_args(settings: Settings, config_dir: str, output_dir: str, datadir: str) -> list[str]:
    args = [
        "--spec",
        f"{config_dir}/{SPEC_FILE}",
        "--datadir",
        datadir,
        "--result",
        f"{output_dir}/{RESULT_FILE}",
    ]
    if settings.exchange_double_url:
        args += ["--exchange-url", settings.exchange_double_url]
    return args


# The container's own scratch space (an emptyDir): the root file system is read-only.
_TMP_MOUNT = {"name": "tmp", "mountPath": "/tmp"}  # noqa: S108


def download_job(
    spec: MarketDataSpec, namespace: str, name: str, uid: str, job_name: str, settings: Settings
) -> dict[str, Any]:
    """The Job of one download (kubernetes executor): the runner image, the claim at /data."""
    names, annotations = name_labels({LABEL_MARKETDATA: name})
    labels = {**MANAGED_BY, LABEL_KIND: "marketdata", **names}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(API_VERSION, "MarketData", name, uid)],
        },
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": settings.job_ttl_seconds,
            "activeDeadlineSeconds": settings.backtest_deadline_seconds,
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {
                        "fsGroup": 1000,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [_download_container(spec, name, settings)],
                    "volumes": [
                        {
                            "name": "data",
                            "persistentVolumeClaim": {"claimName": claim_name(spec, name)},
                        },
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def _download_container(spec: MarketDataSpec, name: str, settings: Settings) -> dict[str, Any]:
    return {
        "name": jobs.CONTAINER,
        "image": images.runner_image(spec.image, False, settings),
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "tradebot.freqtrade.marketdata"],
        "args": [
            "--spec-json",
            spec.model_dump_json(by_alias=True, exclude_none=True),
            "--datadir",
            f"/data/{data_path(name)}",
            *(
                ["--exchange-url", settings.exchange_double_url]
                if settings.exchange_double_url
                else []
            ),
        ],
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, _TMP_MOUNT],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": jobs.restricted_container(),
    }


# ---- the round ------------------------------------------------------------------------------
def _due(
    status: dict[str, Any], spec: MarketDataSpec, generation: int, at: dt.datetime
) -> str | None:
    """Why a download should start now, or None."""
    if status.get("observedGeneration") != generation:
        return "spec changed" if status.get("observedGeneration") else "new"
    if status.get("phase") == "Failed":
        retry = parse_time(status.get("retryAt"))
        return "retry" if retry is not None and at >= retry else None
    nxt = market_data.next_refresh(spec.refresh, parse_time(status.get("lastRefresh")))
    return "refresh" if nxt is not None and at >= nxt else None


# Every second: an idle MarketData costs nothing per tick (no API call), and a download's
# end is noticed within a second (the benchmark's bar is 1.2 x Freqtrade alone + 2 s).
@kopf.timer(GROUP, VERSION, PLURAL, interval=1.0)
def reconcile_marketdata(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    namespace: str | None,
    name: str,
    uid: str,
    patch: kopf.Patch,
    **_: object,
) -> None:
    assert namespace is not None
    generation = int(meta.get("generation") or 0)
    log = logger(kind="MarketData", namespace=namespace, name=name)
    current = dict(status)
    model = _parse(spec, current, patch, generation)
    if model is None:
        return
    settings = runtime.get().settings
    refused = image_refused(model, settings)
    if refused is not None:
        _refuse_image(body, current, patch, generation, refused, log)
        return
    run = current.get("currentRun")
    at = dt.datetime.now(dt.UTC)
    if run is None and current.get("jobName"):
        # The last download's result is in status: its Job has served its purpose (deleted
        # only now, so the queue never sees a waiting download without its Job).
        _delete_job(namespace, str(current["jobName"]))
        patch.status["jobName"] = None
    if run is None:
        why = _due(current, model, generation, at)
        if why is None:
            return  # idle: no API call at all
        run = _start(body, model, namespace, name, uid, current, patch, generation, why, log)
    jname = job_name(name, str(run), uid)
    job = _admitted(namespace, jname, current, patch, generation)
    if job is None:
        return  # waiting in the admission queue, which creates the Job
    if settings.executor == "local":
        result = _step_local(
            model, namespace, name, str(run), settings, current, patch, generation, jname
        )
    else:
        result = _step_job(namespace, job, jname)
    if result is None:
        return
    patch.status["jobName"] = jname
    _finish(body, model, current, patch, generation, result, at, log)


def image_refused(spec: MarketDataSpec, settings: Settings) -> str | None:
    """Why the download's image may not run (None: it may)."""
    return images.image_allowed(
        images.runner_image(spec.image, False, settings), images.allowed(settings)
    )


def _refuse_image(
    body: kopf.Body,
    status: dict[str, Any],
    patch: kopf.Patch,
    generation: int,
    message: str,
    log: FilteringBoundLogger,
) -> None:
    """No download (the queue drops one that waits: no currentRun, no Job). observedGeneration
    is left as it was, so that a fixed spec, or an allowlist that takes the image, downloads
    again at once."""
    if (
        status.get("phase") == "Failed"
        and status.get("message") == message
        and not status.get("currentRun")
    ):
        return  # said already: no write every second
    patch.status.update({"phase": "Failed", "message": message, "currentRun": None})
    condition(status, patch, "Ready", False, images.REASON, message, generation)
    condition(status, patch, "Downloading", False, images.REASON, message, generation)
    event(body, images.REASON, message, warning=True)
    log.warning("download image not allowed", error=message)


def _parse(
    spec: kopf.Spec, status: dict[str, Any], patch: kopf.Patch, generation: int
) -> MarketDataSpec | None:
    """The spec; None (and Failed, said once) when it does not parse."""
    try:
        return MarketDataSpec.model_validate(dict(spec))
    except ValidationError as e:
        message = str(e.errors()[0]["msg"])
        if status.get("phase") != "Failed" or status.get("message") != message:
            patch.status.update(
                {"phase": "Failed", "message": message, "observedGeneration": generation}
            )
            condition(status, patch, "Ready", False, "InvalidSpec", message, generation)
        return None


def _start(
    body: kopf.Body,
    spec: MarketDataSpec,
    namespace: str,
    name: str,
    uid: str,
    status: dict[str, Any],
    patch: kopf.Patch,
    generation: int,
    why: str,
    log: FilteringBoundLogger,
) -> str:
    """A new download run: its claim, and its number in status (the queue then admits it)."""
    claim_body = pvc(spec, namespace, name, uid)
    if claim_body is not None:
        kube.create_if_absent(
            kube.core().create_namespaced_persistent_volume_claim, namespace, claim_body
        )
    runs = int(status.get("runs") or 0) + 1
    run = f"{uid[:8]}-{runs}"
    patch.status.update(
        {
            "phase": "Downloading",
            "currentRun": run,
            "runs": runs,
            "observedGeneration": generation,
            "claimName": claim_name(spec, name),
            "path": data_path(name),
            "marketsFile": market_data.MARKETS_FILE,
            "message": f"downloading ({why})",
        }
    )
    condition(
        status,
        patch,
        "Downloading",
        True,
        "Downloading",
        f"downloading {len(spec.pairs)} pairs x {len(spec.timeframes)} timeframes ({why})",
        generation,
    )
    event(body, "Downloading", f"download started ({why})")
    log.info("download started", run=run, why=why)
    return run


WAITING = "waiting for a download slot (the admission queue's limits)"


def _admitted(
    namespace: str, name: str, status: dict[str, Any], patch: kopf.Patch, generation: int
) -> V1Job | None:
    """The download's Job once the admission queue has created it; None while it waits (its
    status says so, once)."""
    job: V1Job | None = kube.read_or_none(kube.batch().read_namespaced_job, name, namespace)
    if job is None and status.get("message") != WAITING:
        patch.status["message"] = WAITING
        condition(status, patch, "Admitted", False, "Waiting", WAITING, generation)
    elif job is not None and status.get("message") == WAITING:
        patch.status["message"] = f"downloading as Job {name}"
        condition(status, patch, "Admitted", True, "Admitted", f"Job {name} created", generation)
    return job


def _delete_job(namespace: str, name: str) -> None:
    try:
        kube.batch().delete_namespaced_job(name, namespace, propagation_policy="Background")
    except ApiException as e:
        if not kube.is_not_found(e):
            raise


def _job_pod(namespace: str, job: str) -> dict[str, Any] | None:
    pods = kube.core().list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
    if not pods:
        return None
    found: dict[str, Any] = kube.to_dict(max(pods, key=lambda p: p.metadata.creation_timestamp))
    return found


def _step_local(
    spec: MarketDataSpec,
    namespace: str,
    name: str,
    run: str,
    settings: Settings,
    status: dict[str, Any],
    patch: kopf.Patch,
    generation: int,
    job_name: str,
) -> dict[str, Any] | None:
    """The download as a subprocess of the operator, once the queue's Job has a Running pod
    (a kwok pod runs nothing): its outcome then goes on the pod, which kwok finishes, and the
    slot frees as a Backtest's does."""
    pod = _job_pod(namespace, job_name)
    if pod is None:
        return None
    reported = OUTCOME in (pod["metadata"].get("annotations") or {})
    if not reported and (pod.get("status") or {}).get("phase") != "Running":
        return None
    try:
        directory = local_dir(namespace, spec, name)
    except StorageNotReady as e:
        condition(status, patch, "Downloading", False, "StorageNotReady", str(e), generation)
        return None
    executor = LocalExecutor(settings.local_state_dir, runner=RUNNER)
    files = {SPEC_FILE: spec.model_dump_json(by_alias=True, exclude_none=True)}
    args = runner_args(settings, jobs.CONFIG_MOUNT, jobs.ARTIFACTS_MOUNT, str(directory))
    outcome = executor.step(f"marketdata-{run}", args, files, {})
    if outcome is None:
        return None
    if not reported:
        kube.core().patch_namespaced_pod(
            pod["metadata"]["name"],
            namespace,
            {
                "metadata": {
                    "annotations": Outcome(outcome.succeeded, outcome.exit_code, "").annotations()
                }
            },
        )
    return _local_result(executor, run, outcome.exit_code)


def _local_result(executor: LocalExecutor, run: str, exit_code: int | None) -> dict[str, Any]:
    """A local download's result file, or a failure naming its log's tail."""
    # Earlier runs of this MarketData are done with: keep only this one's directory (its log),
    # or a refresh every hour would leave 24 a day.
    prefix = f"marketdata-{run.rsplit('-', 1)[0]}-"
    for old in executor.run_dir("x").parent.glob(prefix + "*"):
        if old.name != f"marketdata-{run}":
            shutil.rmtree(old, ignore_errors=True)
    result_file = executor.artifacts_dir(f"marketdata-{run}") / RESULT_FILE
    try:
        result: dict[str, Any] = json.loads(result_file.read_text())
    except (OSError, ValueError):
        log = executor.run_dir(f"marketdata-{run}") / "runner.log"
        tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
        result = {
            "ok": False,
            "exitCode": exit_code,
            "series": [],
            "problems": {},
            "errors": [f"the download exited with {exit_code} without a result: {tail}"],
        }
    return result


def _step_job(namespace: str, job: V1Job, job_name: str) -> dict[str, Any] | None:
    if not (job.status and (job.status.succeeded or job.status.failed)):
        return None
    pods = kube.core().list_namespaced_pod(namespace, label_selector=f"job-name={job_name}")
    exit_code: int | None = None
    message = ""
    for pod in pods.items:
        for cs in (pod.status.container_statuses or []) if pod.status else []:
            if cs.state and cs.state.terminated:
                exit_code = cs.state.terminated.exit_code
                message = cs.state.terminated.message or ""
    try:
        result: dict[str, Any] = json.loads(message)
        result.setdefault("series", [])
    except ValueError:
        result = {
            "ok": False,
            "exitCode": exit_code,
            "series": [],
            "problems": {},
            "errors": [f"the download Job failed: {message[-500:]}"],
        }
    # The Job is deleted once this result is in status (see reconcile_marketdata): a refresh
    # every hour would otherwise keep a day of them until their TTL.
    return result


def _finish(
    body: kopf.Body,
    spec: MarketDataSpec,
    status: dict[str, Any],
    patch: kopf.Patch,
    generation: int,
    result: dict[str, Any],
    at: dt.datetime,
    log: FilteringBoundLogger,
) -> None:
    series = [dict(s) for s in result.get("series") or []]
    have = {(s["pair"], s["timeframe"]) for s in series if s.get("candles")}
    wanted = market_data.requested(spec)
    complete = [w for w in wanted if w in have]
    model_series = [
        market_data.Series(
            s["pair"],
            s["timeframe"],
            parse_time(s.get("first")),
            parse_time(s.get("last")),
            int(s.get("candles") or 0),
        )
        for s in series
    ]
    patch.status.update(
        {
            "currentRun": None,
            "series": series or status.get("series"),
            "pairsReady": f"{len(complete)}/{len(wanted)}",
            "coverage": market_data.coverage(model_series),
            "marketsSha256": result.get("marketsSha256") or status.get("marketsSha256"),
        }
    )
    if result.get("ok"):
        _downloaded(
            body,
            spec,
            status,
            patch,
            generation,
            at,
            log,
            complete,
            wanted,
            market_data.coverage(model_series),
        )
    else:
        _failed(
            body,
            status,
            patch,
            generation,
            result,
            at,
            log,
            ready=len(complete) == len(wanted),
            counted=f"{len(complete)}/{len(wanted)} series",
        )


def _downloaded(
    body: kopf.Body,
    spec: MarketDataSpec,
    status: dict[str, Any],
    patch: kopf.Patch,
    generation: int,
    at: dt.datetime,
    log: FilteringBoundLogger,
    complete: list[Any],
    wanted: list[Any],
    coverage: str | None,
) -> None:
    stamp = now()
    nxt = market_data.next_refresh(spec.refresh, at)
    patch.status.update(
        {
            "phase": "Ready",
            "lastRefresh": stamp,
            "attempts": None,
            "retryAt": None,
            "message": f"{len(complete)} series downloaded",
            "nextRefresh": nxt.strftime("%Y-%m-%dT%H:%M:%SZ") if nxt else None,
        }
    )
    condition(
        status,
        patch,
        "Ready",
        True,
        "Downloaded",
        f"{len(complete)}/{len(wanted)} series, coverage {coverage}",
        generation,
    )
    condition(status, patch, "Downloading", False, "Idle", "download finished", generation)
    condition(status, patch, "Failed", False, "Downloaded", "", generation)
    event(body, "Downloaded", f"{len(complete)} series")
    log.info("download finished", series=len(complete))


def _failed(
    body: kopf.Body,
    status: dict[str, Any],
    patch: kopf.Patch,
    generation: int,
    result: dict[str, Any],
    at: dt.datetime,
    log: FilteringBoundLogger,
    *,
    ready: bool,
    counted: str,
) -> None:
    problems: dict[str, list[str]] = result.get("problems") or {}
    attempts = int(status.get("attempts") or 0) + 1
    retry = at + market_data.backoff(attempts)
    named = "; ".join(f"{pair}: {why[0]}" for pair, why in sorted(problems.items()))
    message = named or "; ".join(result.get("errors") or []) or "download failed"
    message = message[:1500]
    patch.status.update(
        {
            "phase": "Failed",
            "attempts": attempts,
            "message": message,
            "retryAt": retry.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )
    condition(status, patch, "Failed", True, "DownloadFailed", message, generation)
    condition(
        status,
        patch,
        "Downloading",
        False,
        "RetryScheduled",
        f"attempt {attempts} failed; retrying at {retry:%H:%M:%S} UTC",
        generation,
    )
    condition(
        status, patch, "Ready", ready, "Downloaded" if ready else "Incomplete", counted, generation
    )
    event(body, "DownloadFailed", message, warning=True)
    log.warning("download failed", attempts=attempts, error=message)
