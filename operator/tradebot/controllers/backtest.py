"""Backtest controller: Pending until its Strategy is Ready, Queued until the admission loop
(controllers/queue.py) starts its Job, Running, then Succeeded or Failed with the results the
runner left in the pod's termination message.

Every step reads the cluster and is safe to repeat: the Job has a deterministic name, the run
record is keyed by the Backtest's uid, and the Job is deleted only once the final status has
been stored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, cast

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError
from structlog.typing import FilteringBoundLogger

from tradebot import kube
from tradebot.api.backtest import BacktestSpec
from tradebot.api.base import GROUP, VERSION
from tradebot.artifacts.store import StoreError
from tradebot.controllers import marketdata, runtime
from tradebot.controllers.backtest_records import record, recorded_message
from tradebot.controllers.objects import ContainerState, Job, JobStatus, Pod, PodStatus
from tradebot.controllers.status import condition, event, now
from tradebot.domain import backtest_round
from tradebot.domain.naming import backtest_job_name, backtest_run_id
from tradebot.executors import local
from tradebot.freqtrade.summary import RunSummary
from tradebot.observability import metrics
from tradebot.observability.logging import logger
from tradebot.records.models import RunStatus

PLURAL = "backtests"
TERMINAL = backtest_round.TERMINAL


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
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in s.get("conditions") or []
    )


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


def _failure_reason(
    job: Job, exit_code: int | None, message: str, summary: RunSummary | None
) -> str:
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
        recorded = any(
            c.get("type") == "Recorded" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        return not (recorded and status.get("cleanedUp"))
    return True


@kopf.timer(GROUP, VERSION, PLURAL, interval=2.0, when=needs_attention)
@metrics.counted("Backtest")
def reconcile_backtest(
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
    assert namespace is not None  # the kinds are namespaced
    generation = int(meta.get("generation") or 0)
    log = logger(
        kind="Backtest", namespace=namespace, name=name, correlation_id=backtest_run_id(uid)
    )
    current = dict(status)
    jname = backtest_job_name(name, uid)
    model, job, strategy, decision = _observe(spec, status, namespace, jname)
    if decision.step == "queue" and model is not None and model.data.market_data_ref:
        missing = _data_missing(model, namespace, strategy)
        if missing:
            _data_wait(body, current, patch, generation, missing, log)
            return
    if decision.step == "invalid":
        _finish(patch, current, "Failed", decision.reason, decision.message, generation)
        event(body, decision.reason, decision.message, warning=True)
        log.warning("backtest spec invalid", error=decision.message)
    elif decision.step != "idle":
        assert model is not None
        _STEPS[decision.step](
            _Round(
                body,
                current,
                patch,
                model,
                namespace,
                name,
                uid,
                jname,
                generation,
                log,
                job,
                decision,
            )
        )


def _observe(
    spec: kopf.Spec, status: kopf.Status, namespace: str, jname: str
) -> tuple[BacktestSpec | None, Job | None, dict[str, Any] | None, backtest_round.BacktestDecision]:
    """The round's reads, cheapest first, each only when the decision needs it: the spec,
    the Job, the Strategy."""
    phase = status.get("phase")
    model: BacktestSpec | None = None
    spec_error: str | None = None
    try:
        model = BacktestSpec.model_validate(dict(spec))
    except ValidationError as e:
        spec_error = str(e.errors()[0]["msg"])
    # The Job is read only while it matters: not for a finished Backtest or an invalid spec.
    job = None if spec_error is not None or phase in TERMINAL else read_job(namespace, jname)
    seen: backtest_round.JobSeen = (
        "absent" if job is None else "finished" if job_finished(job) else "running"
    )
    decision = backtest_round.before_strategy(phase, spec_error, seen)
    strategy: dict[str, Any] | None = None
    if decision is None:
        assert model is not None
        ref = model.strategy_ref.name
        strategy = _read_strategy(namespace, ref)
        decision = backtest_round.with_strategy(
            phase,
            status.get("message"),
            ref,
            (strategy or {}).get("status"),
            found=strategy is not None,
        )
    return model, job, strategy, decision


def _data_missing(
    spec: BacktestSpec, namespace: str, strategy: dict[str, Any] | None
) -> str | None:
    """What the Backtest's MarketData does not cover yet (pair, timeframe, part of the
    timerange), or None when it covers it all."""
    ref = spec.data.market_data_ref
    assert ref is not None
    md = marketdata.read(namespace, ref.name)
    if md is None:
        return f"MarketData {ref.name} not found"
    timeframe = (
        spec.timeframe
        or ((strategy or {}).get("spec") or {}).get("timeframe")
        or (((strategy or {}).get("status") or {}).get("interface") or {}).get("timeframe")
    )
    if not timeframe:
        return "the strategy's timeframe is not known yet"
    missing = marketdata.covered(md, list(spec.pairs), str(timeframe), spec)
    return f"MarketData {ref.name} lacks " + "; ".join(missing) if missing else None


def _data_wait(
    body: kopf.Body,
    status: dict[str, Any],
    patch: kopf.Patch,
    generation: int,
    missing: str,
    log: FilteringBoundLogger,
) -> None:
    announce = status.get("message") != missing
    patch.status.update({"phase": "Pending", "message": missing, "observedGeneration": generation})
    condition(status, patch, "DataMissing", True, "DataMissing", missing, generation)
    if announce:
        event(body, "DataMissing", missing, warning=True)
        log.info("waiting for data", missing=missing)


@dataclass(frozen=True)
class _Round:
    """What a step of the round works with: the object, its patch and what was observed."""

    body: kopf.Body
    status: dict[str, Any]
    patch: kopf.Patch
    spec: BacktestSpec
    namespace: str
    name: str
    uid: str
    jname: str
    generation: int
    log: FilteringBoundLogger
    job: Job | None
    decision: backtest_round.BacktestDecision


def _read_strategy(namespace: str, ref: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = kube.custom().get_namespaced_custom_object(
            GROUP, VERSION, namespace, "strategies", ref
        )
    except ApiException as e:
        if not kube.is_not_found(e):
            raise
        return None
    return found


def _follow(r: _Round) -> None:
    assert r.job is not None
    if r.decision.mark_running:
        r.patch.status.update(
            {
                "phase": "Running",
                "jobName": r.jname,
                "queuePosition": None,
                "startedAt": r.status.get("startedAt") or now(),
            }
        )
    settings = runtime.get().settings
    if settings.executor == "local":
        try:
            outcome = local.advance_backtest(
                r.job,
                job_pod(r.namespace, r.jname),
                r.namespace,
                r.jname,
                backtest_run_id(r.uid),
                settings.local_state_dir,
                settings,
            )
        except StoreError as e:
            # The run is done but its files are not kept yet: the next round tries again.
            condition(
                r.status, r.patch, "ArtifactsKept", False, "StoreUnavailable", str(e), r.generation
            )
            r.log.warning("artifacts not kept yet", error=str(e))
            return
        if outcome is not None:
            r.log.info(
                "local run finished", succeeded=outcome.succeeded, exit_code=outcome.exit_code
            )
            if any(c.get("type") == "ArtifactsKept" for c in r.status.get("conditions") or []):
                condition(
                    r.status,
                    r.patch,
                    "ArtifactsKept",
                    True,
                    "Kept",
                    "artifacts kept in the store",
                    r.generation,
                )


def _requeue(r: _Round) -> None:
    # The Job is gone though the run never finished (deleted by hand, or drained): the
    # Backtest goes back to the queue and will run again.
    r.patch.status.update({"phase": "Queued", "jobName": None, "startedAt": None})
    event(r.body, r.decision.reason, f"Job {r.jname} {r.decision.message}", warning=True)
    r.log.warning("job vanished, requeued", job=r.jname)


def _wait(r: _Round) -> None:
    d = r.decision
    r.patch.status.update(
        {"phase": "Pending", "message": d.message, "observedGeneration": r.generation}
    )
    condition(r.status, r.patch, "StrategyReady", False, d.reason, d.message, r.generation)
    if d.announce:
        event(r.body, d.reason, d.message, warning=True)
        r.log.info("waiting for strategy", reason=d.message)


def _queue(r: _Round) -> None:
    r.patch.status.update(
        {"phase": "Queued", "message": "waiting for admission", "observedGeneration": r.generation}
    )
    if r.spec.data.market_data_ref is not None:
        condition(
            r.status,
            r.patch,
            "DataMissing",
            False,
            "DataCovered",
            f"MarketData {r.spec.data.market_data_ref.name} covers it",
            r.generation,
        )
    condition(
        r.status,
        r.patch,
        "StrategyReady",
        True,
        r.decision.reason,
        r.decision.message,
        r.generation,
    )
    event(r.body, "Queued", f"queued behind the concurrency limits (priority {r.spec.priority})")
    r.log.info("backtest queued", priority=r.spec.priority)
    error = record(r.namespace, r.name, r.uid, "queued", r.status, r.spec)
    if error:
        r.log.warning("run record not written", error=error)


def _complete_step(r: _Round) -> None:
    assert r.job is not None
    _complete(
        r.body,
        r.status,
        r.patch,
        r.spec,
        r.job,
        r.namespace,
        r.name,
        r.uid,
        r.jname,
        r.generation,
        r.log,
    )


def _cleanup(r: _Round) -> None:
    _after_finish(
        r.body, r.status, r.patch, r.spec, r.namespace, r.name, r.uid, r.jname, r.generation
    )


_STEPS: Mapping[backtest_round.Step, Callable[[_Round], None]] = MappingProxyType(
    {
        "cleanup": _cleanup,
        "complete": _complete_step,
        "follow": _follow,
        "requeue": _requeue,
        "wait": _wait,
        "queue": _queue,
    }
)


def _finish(
    patch: kopf.Patch,
    status: dict[str, Any],
    phase: str,
    reason: str,
    message: str,
    generation: int,
) -> None:
    metrics.BACKTESTS_FINISHED.labels(phase).inc()
    patch.status.update(
        {
            "phase": phase,
            "message": message,
            "queuePosition": None,
            "finishedAt": now(),
            "observedGeneration": generation,
        }
    )
    condition(status, patch, "Complete", phase == "Succeeded", reason, message, generation)


def _complete(
    body: kopf.Body,
    status: dict[str, Any],
    patch: kopf.Patch,
    spec: BacktestSpec,
    job: Job,
    namespace: str,
    name: str,
    uid: str,
    jname: str,
    generation: int,
    log: FilteringBoundLogger,
) -> None:
    exit_code, message = termination(job_pod(namespace, jname))
    summary = _summary(message)
    succeeded = bool((job.get("status") or {}).get("succeeded")) and bool(summary and summary.ok)
    _keep_summary(status, patch, summary, uid, jname)
    if succeeded:
        assert summary is not None
        _succeeded(body, status, patch, spec, summary, generation, log)
    else:
        why = _failure_reason(job, exit_code, message, summary)
        _finish(patch, status, "Failed", "BacktestFailed", why, generation)
        event(body, "Failed", why, warning=True)
        log.warning("backtest failed", error=why)
    # Record now from what this status will hold; if the store is down the terminal branch
    # retries (records are keyed by run id, so a replay never duplicates).
    final = {**status, **dict(patch.status)}
    error = record(
        namespace,
        name,
        uid,
        "succeeded" if succeeded else "failed",
        final,
        spec,
        None if succeeded else final.get("message"),
    )
    condition(
        status,
        patch,
        "Recorded",
        error is None,
        "Recorded" if error is None else "RecordsUnavailable",
        error or recorded_message(),
        generation,
    )


def _keep_summary(
    status: dict[str, Any], patch: kopf.Patch, summary: RunSummary | None, uid: str, jname: str
) -> None:
    if summary is not None:
        patch.status.update(
            {
                "results": summary.results.to_wire() if summary.results else None,
                "artifacts": [a.to_wire() for a in summary.artifacts] or None,
                "configHash": summary.config_hash,
                "dataHash": summary.data_hash,
                "codeHash": summary.code_hash,
            }
        )
    patch.status.update(
        {
            "runId": backtest_run_id(uid),
            "jobName": jname,
            "startedAt": status.get("startedAt") or now(),
        }
    )


def _summary(message: str) -> RunSummary | None:
    """The runner's summary from the termination message; None when it left none."""
    try:
        return RunSummary.model_validate_json(message) if message.startswith("{") else None
    except ValidationError:
        return None


def _succeeded(
    body: kopf.Body,
    status: dict[str, Any],
    patch: kopf.Patch,
    spec: BacktestSpec,
    summary: RunSummary,
    generation: int,
    log: FilteringBoundLogger,
) -> None:
    assert summary.results is not None
    r = summary.results
    text = (
        f"profit {r.profit_total} ({r.profit_total_abs} {spec.stake_currency}), "
        f"max drawdown {r.max_drawdown}, {r.trades} trades"
    )
    _finish(patch, status, "Succeeded", "BacktestSucceeded", text, generation)
    event(body, "Succeeded", text)
    log.info("backtest succeeded", results=r.to_wire())


def _after_finish(
    body: kopf.Body,
    status: dict[str, Any],
    patch: kopf.Patch,
    spec: BacktestSpec,
    namespace: str,
    name: str,
    uid: str,
    jname: str,
    generation: int,
) -> None:
    """Once the final status is stored: free the slot (delete the Job and its ConfigMap) and
    retry the run record if the store was down."""
    recorded = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Recorded"), None
    )
    if recorded is None or recorded.get("status") != "True":
        run_status: RunStatus = "succeeded" if status.get("phase") == "Succeeded" else "failed"
        error = record(
            namespace,
            name,
            uid,
            run_status,
            status,
            spec,
            None if run_status == "succeeded" else status.get("message"),
        )
        condition(
            status,
            patch,
            "Recorded",
            error is None,
            "Recorded" if error is None else "RecordsUnavailable",
            error or recorded_message(),
            generation,
        )
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
