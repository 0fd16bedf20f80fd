"""Hyperopt controller: Pending until its Strategy is Ready (Failed at once when the strategy
has nothing to search in the chosen spaces), Queued while its workers wait for slots in the
admission queue (controllers/hyperopt_queue.py), Running while any works, then the workers'
results merged (best = lowest loss), recorded, and, with spec.validation, Validating while a
Backtest of the best parameters runs on the out-of-sample window; Succeeded or Failed.

Every step reads the cluster and is safe to repeat: the workers' Jobs, the study's Secret and
the validation Backtest have deterministic names and are created only if absent; the run
record is keyed by the Hyperopt's uid; the Jobs are deleted only once the merged result is in
the status.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError
from structlog.typing import FilteringBoundLogger

from tradebot import kube
from tradebot.api.base import API_VERSION, GROUP, VERSION
from tradebot.api.hyperopt import HyperoptSpec
from tradebot.api.strategy import StrategySpec
from tradebot.controllers import hyperopt_queue, hyperopt_storage, runtime
from tradebot.controllers.backtest import job_pod, termination
from tradebot.controllers.hyperopt_records import record
from tradebot.controllers.hyperopt_results import (
    best_running,
    local_epochs,
    local_summary,
    merge,
    pod_epochs,
    summary_from_message,
)
from tradebot.controllers.objects import Job
from tradebot.controllers.status import condition, event, now
from tradebot.controllers.strategy import CodeUnavailable, read_code
from tradebot.domain import hyperopt_jobs, images, launch
from tradebot.domain.hyperopt_round import (
    TERMINAL,
    WorkerPhase,
    WorkerSeen,
    backtest_spec,
    epoch_shares,
    figure,
    nothing_to_search,
    progress,
    ratio,
    search_step,
)
from tradebot.domain.naming import label_value
from tradebot.executors import local_hyperopt
from tradebot.freqtrade.hyperopt_summary import EpochRecord, HyperoptSummary
from tradebot.freqtrade.parameters import hyperopt_parameters
from tradebot.observability.logging import logger
from tradebot.records.errors import RecordsUnavailable

PLURAL = hyperopt_queue.PLURAL


@dataclass(frozen=True)
class _Round:
    body: kopf.Body
    status: dict[str, Any]
    patch: kopf.Patch
    spec: HyperoptSpec
    namespace: str
    name: str
    uid: str
    generation: int
    log: FilteringBoundLogger

    @property
    def local(self) -> bool:
        return runtime.get().settings.executor == "local"

    @property
    def state_dir(self) -> Path:
        return runtime.get().settings.local_state_dir

    def phase(
        self, phase: str, reason: str, message: str, warning: bool = False, announce: bool = True
    ) -> None:
        self.patch.status.update(
            {"phase": phase, "message": message, "observedGeneration": self.generation}
        )
        if phase in TERMINAL:
            self.patch.status["finishedAt"] = now()
            condition(
                self.status,
                self.patch,
                "Complete",
                phase == "Succeeded",
                reason,
                message,
                self.generation,
            )
        if announce:
            event(self.body, reason, message, warning=warning)
            (self.log.warning if warning else self.log.info)(message, phase=phase)


def needs_attention(status: kopf.Status, **_: object) -> bool:
    """Finished Hyperopts whose Jobs are gone and whose record is written need nothing."""
    if status.get("phase") not in TERMINAL:
        return True
    recorded = any(
        c.get("type") == "Recorded" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    # An invalid spec never had a run to record.
    return not ((recorded or not status.get("runId")) and status.get("cleanedUp"))


# Every second: a search has few objects, and each tick its workers wait to be started or
# read costs the search time.
@kopf.timer(GROUP, VERSION, PLURAL, interval=1.0, when=needs_attention)
def reconcile_hyperopt(
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
    log = logger(
        kind="Hyperopt", namespace=namespace, name=name, correlation_id=hyperopt_jobs.run_id(uid)
    )
    phase = status.get("phase")
    try:
        model = HyperoptSpec.model_validate(dict(spec))
    except ValidationError as e:
        if phase not in TERMINAL:
            message = f"invalid spec: {e.errors()[0]['msg']}"
            patch.status.update(
                {"phase": "Failed", "message": message, "finishedAt": now(), "cleanedUp": True}
            )
            event(body, "InvalidSpec", message, warning=True)
        return
    r = _Round(
        body,
        dict(status),
        patch,
        model,
        namespace,
        name,
        uid,
        int(meta.get("generation") or 0),
        log,
    )
    if phase in (None, "Pending", "Queued") and _refuse_image(r):
        return
    if phase in (None, "Pending"):
        _prepare(r)
    elif phase in ("Queued", "Running"):
        _follow(r)
    elif phase == "Validating":
        _validating(r)
    else:
        _cleanup(r)


@kopf.on.delete(GROUP, VERSION, PLURAL)
def hyperopt_deleted(
    name: str, namespace: str | None, uid: str, status: kopf.Status, spec: kopf.Spec, **_: object
) -> None:
    """A finalizer: the workers stop (the Jobs go with their owner; local processes are
    killed here) and the study's database and role are dropped."""
    settings = runtime.get().settings
    workers = len(epoch_shares(int(spec.get("epochs") or 1), int(spec.get("workers") or 1)))
    stopped = 0
    if settings.executor == "local":
        for i in range(workers):
            stopped += local_hyperopt.stop(
                settings.local_state_dir, hyperopt_jobs.worker_run_id(uid, i)
            )
    try:
        dropped = hyperopt_storage.remove(uid, settings)
    except RecordsUnavailable as e:
        raise kopf.TemporaryError(f"study database not dropped yet: {e}", delay=10) from None
    logger(kind="Hyperopt", namespace=namespace, name=name).info(
        "hyperopt deleted", workers_stopped=stopped, study_dropped=dropped
    )


# --- Pending -> Queued ------------------------------------------------------------------------


def _read_strategy(namespace: str, name: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = kube.read_or_none(
        kube.custom().get_namespaced_custom_object, GROUP, VERSION, namespace, "strategies", name
    )
    return found


def _wait(r: _Round, reason: str, message: str) -> None:
    announce = r.status.get("phase") != "Pending" or r.status.get("message") != message
    r.phase("Pending", reason, message, warning=True, announce=announce)
    condition(r.status, r.patch, "StrategyReady", False, reason, message, r.generation)


def image(spec: HyperoptSpec) -> str:
    """The image the workers run."""
    return images.runner_image(
        spec.image, spec.gpu is not None and spec.gpu.vendor == "amd", runtime.get().settings
    )


def _refuse_image(r: _Round) -> bool:
    """A search of an image the operator does not allow fails before any worker's Job (a
    queued one too: the allowlist may have changed since it was queued)."""
    problem = images.image_allowed(image(r.spec), images.allowed(runtime.get().settings))
    if problem is None:
        return False
    condition(r.status, r.patch, "Ready", False, images.REASON, problem, r.generation)
    r.phase("Failed", images.REASON, problem, warning=True)
    r.patch.status["cleanedUp"] = r.status.get("phase") != "Queued"
    return True


def _prepare(r: _Round) -> None:
    ref = r.spec.strategy_ref.name
    strategy = _read_strategy(r.namespace, ref)
    if strategy is None or (strategy.get("status") or {}).get("phase") != "Ready":
        state = (
            "not found"
            if strategy is None
            else f"{(strategy.get('status') or {}).get('phase') or 'not introspected yet'}"
        )
        _wait(r, "StrategyNotReady", f"Strategy {ref} is {state}")
        return
    strategy_spec = StrategySpec.model_validate(strategy["spec"])
    try:
        code = read_code(strategy_spec, r.namespace)
    except CodeUnavailable as e:
        _wait(r, e.reason, str(e))
        return
    why = nothing_to_search(r.spec.spaces, hyperopt_parameters(code, strategy_spec.class_name))
    if why is not None:
        condition(r.status, r.patch, "Searchable", False, "NoHyperoptParameters", why, r.generation)
        r.phase("Failed", "NoHyperoptParameters", why, warning=True)
        r.patch.status.update({"cleanedUp": True, "runId": hyperopt_jobs.run_id(r.uid)})
        _record(r, "failed", why)
        return
    settings = runtime.get().settings
    storage = "independent"
    if hyperopt_storage.shared(settings):
        try:
            hyperopt_storage.ensure(r.namespace, r.name, r.uid, settings, workers=r.spec.workers)
        except RecordsUnavailable as e:
            _wait(r, "StudyStorageUnavailable", f"study storage not ready: {e}")
            return
        storage = "shared"
    parameters = (
        None
        if strategy_spec.parameters_from is not None
        else ((strategy.get("status") or {}).get("parametersHash"))
    )
    launched = launch.launch_record(
        r.spec,
        r.spec.timerange,
        strategy_spec,
        strategy.get("status"),
        code,
        parameters,
        image(r.spec),
    )
    _queue(r, storage, launched)


def _queue(r: _Round, storage: str, launched: dict[str, Any]) -> None:
    shares = epoch_shares(r.spec.epochs, r.spec.workers)
    condition(
        r.status,
        r.patch,
        "StrategyReady",
        True,
        "Ready",
        f"Strategy {r.spec.strategy_ref.name} is Ready",
        r.generation,
    )
    r.patch.status.update(
        {
            "storage": storage,
            "epochsTotal": r.spec.epochs,
            "epochsDone": 0,
            "progress": progress(0, r.spec.epochs),
            "runId": hyperopt_jobs.run_id(r.uid),
            "workers": [{"index": i, "phase": "Queued"} for i in range(len(shares))],
            # In the write that puts the workers in the queue: what they will run.
            "launched": launched,
        }
    )
    r.phase(
        "Queued",
        "Queued",
        f"{len(shares)} workers ({', '.join(map(str, shares))} epochs) "
        f"queued, study storage {storage}",
    )
    _record(r, "queued")
    runtime.get().admission_wakeup.set()


# --- Queued/Running: follow the workers -------------------------------------------------------


def _job_state(job: Job) -> str:
    s = job.get("status") or {}
    for c in s.get("conditions") or []:
        if c.get("status") == "True" and c.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "Succeeded"
        if c.get("status") == "True" and c.get("type") in ("Failed", "FailureTarget"):
            return "Failed"
    return "Succeeded" if s.get("succeeded") else "Running"


def _jobs(r: _Round) -> dict[int, Job]:
    found = (
        kube.batch()
        .list_namespaced_job(
            r.namespace,
            label_selector=f"{hyperopt_jobs.LABEL_HYPEROPT}={label_value(r.name)},"
            f"tradebot.dev/run-id={hyperopt_jobs.run_id(r.uid)}",
        )
        .items
    )
    jobs: dict[int, Job] = {}
    for j in found:
        job = cast(Job, kube.to_dict(j))
        index = ((job.get("metadata") or {}).get("labels") or {}).get(hyperopt_jobs.LABEL_WORKER)
        if index is not None and index.isdigit():
            jobs[int(index)] = job
    return jobs


def _seen(r: _Round, jobs: dict[int, Job]) -> list[WorkerSeen]:
    before = {int(w["index"]): w for w in r.status.get("workers") or []}
    workers = []
    for i in range(len(epoch_shares(r.spec.epochs, r.spec.workers))):
        job = jobs.get(i)
        old = before.get(i, {})
        if job is None:
            ended: WorkerPhase = old["phase"] if old.get("phase") in TERMINAL else "Queued"
            workers.append(WorkerSeen(i, old.get("jobName"), ended, old.get("epochsDone")))
            continue
        state = _job_state(job)
        jname = str((job.get("metadata") or {}).get("name"))
        if state == "Running" and r.local:
            outcome = local_hyperopt.advance_worker(
                job,
                job_pod(r.namespace, jname),
                r.namespace,
                hyperopt_jobs.worker_run_id(r.uid, i),
                r.state_dir,
            )
            if outcome is not None:
                state = "Succeeded" if outcome.succeeded else "Failed"
        workers.append(WorkerSeen(i, jname, state, old.get("epochsDone")))  # type: ignore[arg-type]
    return workers


def _follow(r: _Round) -> None:
    jobs = _jobs(r)
    workers = _seen(r, jobs)
    step = search_step(workers)
    if step == "merge":
        _merge(r, workers, jobs)
        return
    if step == "fail":
        _workers_status(r, workers)
        reasons = "; ".join(_failure(r, w, jobs.get(w.index)) for w in workers)
        r.phase("Failed", "WorkersFailed", f"every worker failed: {reasons}", warning=True)
        _record(r, "failed", r.patch.status["message"])
        return
    workers = _progress(r, workers)
    _workers_status(r, workers)
    if step == "run" and r.status.get("phase") != "Running":
        r.patch.status["startedAt"] = r.status.get("startedAt") or now()
        r.phase(
            "Running",
            "Running",
            f"{sum(w.phase != 'Queued' for w in workers)} of {len(workers)} workers started",
        )
        _record(r, "running")


def _workers_status(r: _Round, workers: list[WorkerSeen]) -> None:
    r.patch.status["workers"] = [
        {"index": w.index, "jobName": w.job_name, "phase": w.phase, "epochsDone": w.epochs_done}
        for w in workers
    ]


def _progress(r: _Round, workers: list[WorkerSeen]) -> list[WorkerSeen]:
    """epochsDone, best loss so far: from the shared study's tables, else from the local
    workers' epochs files (independent workers on a cluster report at their end)."""
    done: int | None = None
    best_loss = best_profit = None
    if r.status.get("storage") == "shared":
        url = hyperopt_storage.study_url(r.namespace, r.name, r.uid)
        if url is not None:
            try:
                seen = hyperopt_storage.progress(url, hyperopt_jobs.study_name(r.uid))
            except RecordsUnavailable as e:
                r.log.info("study progress not readable now", error=str(e))
            else:
                done, best_loss = seen.done, figure(seen.best_loss)
    if r.local:
        per_worker = {
            w.index: local_epochs(r.state_dir, hyperopt_jobs.worker_run_id(r.uid, w.index))
            for w in workers
        }
        workers = [
            WorkerSeen(w.index, w.job_name, w.phase, len(per_worker[w.index])) for w in workers
        ]
        everything = [e for es in per_worker.values() for e in es]
        local_best, best_profit = best_running(everything)
        if done is None:
            done, best_loss = len(everything), local_best
    if done is not None:
        r.patch.status.update(
            {
                "epochsDone": done,
                "progress": progress(done, r.spec.epochs),
                "bestLoss": best_loss,
                "bestProfit": best_profit,
            }
        )
    return workers


def _failure(r: _Round, w: WorkerSeen, job: Job | None) -> str:
    summary = _summary(r, w, job)
    if summary is not None and summary.error:
        return f"worker {w.index}: {summary.error}"
    if job is not None:
        _, message = termination(job_pod(r.namespace, str(job["metadata"]["name"])))
        return f"worker {w.index}: {message[-300:] or 'failed'}"
    return f"worker {w.index}: failed"


# --- the end of the search -----------------------------------------------------------------


def _summary(r: _Round, w: WorkerSeen, job: Job | None) -> HyperoptSummary | None:
    if r.local:
        found = local_summary(r.state_dir, hyperopt_jobs.worker_run_id(r.uid, w.index))
        if found is not None:
            return found
    if job is None:
        return None
    _, message = termination(job_pod(r.namespace, str(job["metadata"]["name"])))
    return summary_from_message(message)


def _epochs(r: _Round, w: WorkerSeen, job: Job | None) -> list[EpochRecord]:
    if r.local:
        return local_epochs(r.state_dir, hyperopt_jobs.worker_run_id(r.uid, w.index))
    if job is None:
        return []
    return pod_epochs(r.namespace, job_pod(r.namespace, str(job["metadata"]["name"])))


def _merge(r: _Round, workers: list[WorkerSeen], jobs: dict[int, Job]) -> None:
    summaries = [s for w in workers if (s := _summary(r, w, jobs.get(w.index))) is not None]
    epochs = [e for w in workers for e in _epochs(r, w, jobs.get(w.index))]
    merged = merge(summaries, epochs, r.status.get("storage") == "shared")
    _workers_status(r, workers)
    r.patch.status.update(merged.status)
    r.patch.status["progress"] = progress(int(merged.status["epochsDone"]), r.spec.epochs)
    launched = r.status.get("launched")
    wrong = next(
        (
            m
            for s in summaries
            if s.code_hash is not None and (m := launch.evidence_mismatch(launched, s.code_hash))
        ),
        None,
    )
    if wrong is not None:
        # A worker that reports other code than it was given: its epochs are no evidence.
        r.phase("Failed", launch.REASON_MISMATCH, wrong, warning=True)
        _record(r, "failed", wrong, merged.epochs)
        return
    best = merged.status.get("best")
    if best is None:
        why = "the search found no epoch with a result: " + "; ".join(
            _failure(r, w, jobs.get(w.index)) for w in workers
        )
        r.phase("Failed", "NoResult", why, warning=True)
        _record(r, "failed", why, merged.epochs)
        return
    text = f"best epoch {best['epoch']}: loss {best['loss']}, profit {merged.status['bestProfit']}"
    if r.spec.validation is None:
        r.phase("Succeeded", "HyperoptSucceeded", text)
        _record(r, "succeeded", epochs=merged.epochs)
        return
    name = _create_validation(r, best["parameters"])
    results = best.get("results") or {}
    r.patch.status["validation"] = {
        "backtestName": name,
        "phase": "Pending",
        "inSample": {
            k: results.get(k) for k in ("profitTotal", "profitTotalAbs", "maxDrawdown", "trades")
        },
    }
    r.phase("Validating", "Validating", f"{text}; validating out of sample as Backtest {name}")
    _record(r, "running", epochs=merged.epochs)


def validation_name(name: str) -> str:
    whole = f"{name}-oos"
    if len(whole) <= 253:  # an object name's limit
        return whole
    # A Hyperopt named near the limit: its validation Backtest's name would be refused (422).
    return f"{name[:236].rstrip('-.')}-{hashlib.sha256(name.encode()).hexdigest()[:8]}-oos"


def _create_validation(r: _Round, parameters: str) -> str:
    assert r.spec.validation is not None
    name = validation_name(r.name)
    spec = backtest_spec(r.spec, r.spec.validation.timerange, parameters)
    kube.create_if_absent(
        lambda ns, body: kube.custom().create_namespaced_custom_object(
            GROUP, VERSION, ns, "backtests", body
        ),
        r.namespace,
        {
            "apiVersion": API_VERSION,
            "kind": "Backtest",
            "metadata": {
                "name": name,
                "namespace": r.namespace,
                "labels": {hyperopt_jobs.LABEL_HYPEROPT: label_value(r.name)},
                "annotations": {hyperopt_jobs.LABEL_HYPEROPT: r.name},
                "ownerReferences": [hyperopt_jobs.owner(r.name, r.uid)],
            },
            "spec": spec.to_wire(),
        },
    )
    return name


def _validating(r: _Round) -> None:
    validation = dict(r.status.get("validation") or {})
    best = r.status.get("best") or {}
    name = validation.get("backtestName") or validation_name(r.name)
    bt = kube.read_or_none(
        kube.custom().get_namespaced_custom_object, GROUP, VERSION, r.namespace, "backtests", name
    )
    if bt is None:
        _create_validation(r, best["parameters"])
        return
    phase = (bt.get("status") or {}).get("phase") or "Pending"
    if phase not in TERMINAL:
        if validation.get("phase") != phase:
            r.patch.status["validation"] = {**validation, "phase": phase}
        return
    results = (bt.get("status") or {}).get("results") or {}
    oos = {k: results.get(k) for k in ("profitTotal", "profitTotalAbs", "maxDrawdown", "trades")}
    in_profit = (validation.get("inSample") or {}).get("profitTotal")
    r.patch.status["validation"] = {
        **validation,
        "phase": phase,
        "outOfSample": oos,
        "profitRatio": ratio(oos.get("profitTotal"), in_profit),
    }
    if phase == "Succeeded":
        r.phase(
            "Succeeded",
            "Validated",
            f"out of sample: profit {oos['profitTotal']} "
            f"(in sample {in_profit}), {oos['trades']} trades",
        )
        _record(r, "succeeded")
    else:
        why = f"validation Backtest {name} failed: {(bt.get('status') or {}).get('message')}"
        r.phase("Failed", "ValidationFailed", why, warning=True)
        _record(r, "failed", why)


# --- finished -------------------------------------------------------------------------------


def _cleanup(r: _Round) -> None:
    """Once the final status is stored: the record (retried while the store was down), the
    workers' Jobs and ConfigMap deleted, their slots freed."""
    recorded = next(
        (c for c in r.status.get("conditions") or [] if c.get("type") == "Recorded"), None
    )
    if recorded is None or recorded.get("status") != "True":
        _record(
            r,
            "succeeded" if r.status.get("phase") == "Succeeded" else "failed",
            None if r.status.get("phase") == "Succeeded" else r.status.get("message"),
        )
    if r.status.get("cleanedUp"):
        return
    for i in range(len(epoch_shares(r.spec.epochs, r.spec.workers))):
        if r.local:
            local_hyperopt.stop(r.state_dir, hyperopt_jobs.worker_run_id(r.uid, i))
        _delete(
            kube.batch().delete_namespaced_job,
            hyperopt_jobs.job_name(r.name, r.uid, i),
            r.namespace,
        )
    _delete(
        kube.core().delete_namespaced_config_map,
        hyperopt_jobs.config_map_name(r.name, r.uid),
        r.namespace,
    )
    runtime.get().admission_wakeup.set()
    r.patch.status["cleanedUp"] = True


def _delete(delete: Any, name: str, namespace: str) -> None:  # noqa: ANN401 - a client method
    try:
        delete(name, namespace, propagation_policy="Background")
    except ApiException as e:
        if not kube.is_not_found(e):
            raise


def _record(
    r: _Round, run_status: str, error: str | None = None, epochs: list[EpochRecord] | None = None
) -> None:
    final = {**r.status, **dict(r.patch.status)}
    failure = record(r.namespace, r.name, r.uid, run_status, final, r.spec, error, epochs)
    condition(
        r.status,
        r.patch,
        "Recorded",
        failure is None and run_status in ("succeeded", "failed"),
        "Recorded" if failure is None else "RecordsUnavailable",
        failure or f"run recorded as {run_status}",
        r.generation,
    )
