"""Backtest controller: Pending until its Strategy is Ready, Queued until the admission loop
(controllers/queue.py) starts its Job, Running, then Succeeded or Failed with the results the
runner left in the pod's termination message.

Every step reads the cluster and is safe to repeat: the Job has a deterministic name, the run
record is keyed by the Backtest's uid, and the Job is deleted only once the final status has
been stored.
"""

from __future__ import annotations

from typing import Any, cast

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError
from structlog.typing import FilteringBoundLogger

from tradebot import kube
from tradebot.api.backtest import BacktestSpec
from tradebot.api.base import GROUP, VERSION
from tradebot.controllers import runtime
from tradebot.controllers.backtest_records import record, recorded_message
from tradebot.controllers.objects import ContainerState, Job, JobStatus, Pod, PodStatus
from tradebot.controllers.status import condition, event, now
from tradebot.domain.naming import backtest_job_name, backtest_run_id
from tradebot.executors import local
from tradebot.freqtrade.summary import RunSummary
from tradebot.observability import metrics
from tradebot.observability.logging import logger
from tradebot.records.models import RunStatus

PLURAL = "backtests"
TERMINAL = ("Succeeded", "Failed")


def read_job(namespace: str, name: str) -> Job | None:
    try:
        return cast(Job, kube.to_dict(kube.batch().read_namespaced_job(name, namespace)))
    except ApiException as e:
        if kube.is_not_found(e):
            return None
        raise


def job_finished(job: Job) -> bool:
    s: JobStatus = job.get("status") or {}
    if s.get("succeeded") or s.get("failed"):
        return True
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in s.get("conditions") or [])


def job_pod(namespace: str, name: str) -> Pod | None:
    pods = kube.core().list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
    if not pods:
        return None
    newest = max(pods, key=lambda p: p.metadata.creation_timestamp)
    return cast(Pod, kube.to_dict(newest))


def termination(pod: Pod | None) -> tuple[int | None, str]:
    status: PodStatus = (pod or {}).get("status") or {}
    for cs in status.get("containerStatuses") or []:
        state: ContainerState = cs.get("state") or {}
        terminated = state.get("terminated")
        if terminated:
            return terminated.get("exitCode"), terminated.get("message") or ""
    return None, ""


def _failure_reason(job: Job, exit_code: int | None, message: str,
                    summary: RunSummary | None) -> str:
    if summary is not None and summary.error:
        return summary.error
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Failed" and c.get("status") == "True":
            return f"{c.get('reason')}: {c.get('message')}"
    if exit_code is not None:
        return f"runner exited with code {exit_code}: {message[-500:]}"
    return "the Job failed without a pod result"


def needs_attention(status: kopf.Status, **_: object) -> bool:
    """Queued Backtests belong to the admission loop, and finished ones whose Job is gone and
    whose record is written need nothing: no timer runs for them, so a queue of thousands costs
    no polling."""
    phase = status.get("phase")
    if phase == "Queued":
        return False
    if phase in TERMINAL:
        recorded = any(c.get("type") == "Recorded" and c.get("status") == "True"
                       for c in status.get("conditions") or [])
        return not (recorded and status.get("cleanedUp"))
    return True


@kopf.timer(GROUP, VERSION, PLURAL, interval=2.0, when=needs_attention)
@metrics.counted("Backtest")
def reconcile_backtest(body: kopf.Body, spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta,
                       namespace: str | None, name: str, uid: str, patch: kopf.Patch,
                       **_: object) -> None:
    assert namespace is not None  # the kinds are namespaced
    generation = int(meta.get("generation") or 0)
    run_id = backtest_run_id(uid)
    log = logger(kind="Backtest", namespace=namespace, name=name, correlation_id=run_id)
    phase = status.get("phase")
    current = dict(status)

    try:
        model = BacktestSpec.model_validate(dict(spec))
    except ValidationError as e:
        if phase not in TERMINAL:
            message = f"invalid spec: {e.errors()[0]['msg']}"
            _finish(patch, current, "Failed", "InvalidSpec", message, generation)
            event(body, "InvalidSpec", message, warning=True)
            log.warning("backtest spec invalid", error=message)
        return

    jname = backtest_job_name(name, uid)
    if phase in TERMINAL:
        _after_finish(body, current, patch, model, namespace, name, uid, jname, generation)
        return

    job = read_job(namespace, jname)
    if job is not None:
        if job_finished(job):
            _complete(body, current, patch, model, job, namespace, name, uid, jname,
                      generation, log)
            return
        if phase != "Running":
            patch.status.update({"phase": "Running", "jobName": jname, "queuePosition": None,
                                 "startedAt": current.get("startedAt") or now()})
        if runtime.get().settings.executor == "local":
            outcome = local.advance_backtest(job, job_pod(namespace, jname), namespace, jname,
                                             run_id, runtime.get().settings.local_state_dir)
            if outcome is not None:
                log.info("local run finished", succeeded=outcome.succeeded,
                         exit_code=outcome.exit_code)
        return

    if phase == "Running":
        # The Job is gone though the run never finished (deleted by hand, or drained): the
        # Backtest goes back to the queue and will run again.
        patch.status.update({"phase": "Queued", "jobName": None, "startedAt": None})
        event(body, "Requeued", f"Job {jname} disappeared before it finished", warning=True)
        log.warning("job vanished, requeued", job=jname)
        return

    strategy_ref = model.strategy_ref.name
    try:
        strategy = kube.custom().get_namespaced_custom_object(
            GROUP, VERSION, namespace, "strategies", strategy_ref)
    except ApiException as e:
        if not kube.is_not_found(e):
            raise
        strategy = None
    if strategy is None or (strategy.get("status") or {}).get("phase") != "Ready":
        if strategy is None:
            why = f"Strategy {strategy_ref} not found"
        else:
            st = strategy.get("status") or {}
            why = (f"Strategy {strategy_ref} is {st.get('phase') or 'not introspected yet'}: "
                   f"{st.get('message') or ''}").rstrip(": ")
        reason = "StrategyNotFound" if strategy is None else "StrategyNotReady"
        patch.status.update({"phase": "Pending", "message": why,
                             "observedGeneration": generation})
        condition(current, patch, "StrategyReady", False, reason, why, generation)
        if phase != "Pending" or status.get("message") != why:
            event(body, reason, why, warning=True)
            log.info("waiting for strategy", reason=why)
        return

    if phase != "Queued":
        message = "waiting for admission"
        patch.status.update({"phase": "Queued", "message": message,
                             "observedGeneration": generation})
        condition(current, patch, "StrategyReady", True, "Ready",
                  f"Strategy {strategy_ref} is Ready", generation)
        event(body, "Queued", f"queued behind the concurrency limits (priority "
              f"{model.priority})")
        log.info("backtest queued", priority=model.priority)
        error = record(namespace, name, uid, "queued", current, model)
        if error:
            log.warning("run record not written", error=error)


def _finish(patch: kopf.Patch, status: dict[str, Any], phase: str, reason: str, message: str,
            generation: int) -> None:
    metrics.BACKTESTS_FINISHED.labels(phase).inc()
    patch.status.update({"phase": phase, "message": message, "queuePosition": None,
                         "finishedAt": now(), "observedGeneration": generation})
    condition(status, patch, "Complete", phase == "Succeeded", reason, message, generation)


def _complete(body: kopf.Body, status: dict[str, Any], patch: kopf.Patch, spec: BacktestSpec,
              job: Job, namespace: str, name: str, uid: str, jname: str,
              generation: int, log: FilteringBoundLogger) -> None:
    exit_code, message = termination(job_pod(namespace, jname))
    summary: RunSummary | None
    try:
        summary = RunSummary.model_validate_json(message) if message.startswith("{") else None
    except ValidationError:
        summary = None
    succeeded = bool((job.get("status") or {}).get("succeeded")) and bool(summary and summary.ok)
    if summary is not None:
        patch.status.update({
            "results": summary.results.to_wire() if summary.results else None,
            "artifacts": [a.to_wire() for a in summary.artifacts] or None,
            "configHash": summary.config_hash, "dataHash": summary.data_hash,
            "codeHash": summary.code_hash,
        })
    patch.status.update({"runId": backtest_run_id(uid), "jobName": jname,
                         "startedAt": status.get("startedAt") or now()})
    if succeeded:
        assert summary is not None
        assert summary.results is not None
        r = summary.results
        text = (f"profit {r.profit_total} ({r.profit_total_abs} {spec.stake_currency}), "
                f"max drawdown {r.max_drawdown}, {r.trades} trades")
        _finish(patch, status, "Succeeded", "BacktestSucceeded", text, generation)
        event(body, "Succeeded", text)
        log.info("backtest succeeded", results=summary.results.to_wire())
    else:
        why = _failure_reason(job, exit_code, message, summary)
        _finish(patch, status, "Failed", "BacktestFailed", why, generation)
        event(body, "Failed", why, warning=True)
        log.warning("backtest failed", error=why)
    # Record now from what this status will hold; if the store is down the terminal branch
    # retries (records are keyed by run id, so a replay never duplicates).
    final = {**status, **dict(patch.status)}
    error = record(namespace, name, uid, "succeeded" if succeeded else "failed", final, spec,
                   None if succeeded else final.get("message"))
    condition(status, patch, "Recorded", error is None, "Recorded" if error is None else
              "RecordsUnavailable", error or recorded_message(), generation)


def _after_finish(body: kopf.Body, status: dict[str, Any], patch: kopf.Patch,
                  spec: BacktestSpec, namespace: str, name: str, uid: str, jname: str,
                  generation: int) -> None:
    """Once the final status is stored: free the slot (delete the Job and its ConfigMap) and
    retry the run record if the store was down."""
    recorded = next((c for c in status.get("conditions") or [] if c.get("type") == "Recorded"),
                    None)
    if recorded is None or recorded.get("status") != "True":
        run_status: RunStatus = "succeeded" if status.get("phase") == "Succeeded" else "failed"
        error = record(namespace, name, uid, run_status, status, spec,
                       None if run_status == "succeeded" else status.get("message"))
        condition(status, patch, "Recorded", error is None,
                  "Recorded" if error is None else "RecordsUnavailable",
                  error or recorded_message(), generation)
    try:
        kube.batch().delete_namespaced_job(jname, namespace, propagation_policy="Background")
    except ApiException as e:
        if not kube.is_not_found(e):
            raise
    # Deleted now or gone already: either way a slot is free for the admission loop.
    runtime.get().admission_wakeup.set()
    try:
        kube.core().delete_namespaced_config_map(jname, namespace)
    except ApiException as e:
        if not kube.is_not_found(e):
            raise
    patch.status["cleanedUp"] = True
