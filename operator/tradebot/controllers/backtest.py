"""Backtest controller: Pending until its Strategy is Ready, Queued until the admission loop
(controllers/queue.py) starts its Job, Running, then Succeeded or Failed with the results the
runner left in the pod's termination message.

Every step reads the cluster and is safe to repeat: the Job has a deterministic name, the run
record is keyed by the Backtest's uid, and the Job is deleted only once the final status has
been stored.

Not a kopf handler: kopf would keep a body, a per-object memory and a finalizer for every
Backtest, and a flood of waiting ones is the case to keep cheap. `step` runs from
controllers/backtest_watch.py, which the admission queue's informers feed: at once for a new
Backtest or a changed spec; as soon as something a running one waits for happens (its pod
Running or finished, its Job finished or gone, its local runner exited); and from a ticker
every `reconcile_interval_seconds` as the safety net. Steps run one at a time per Backtest,
from the newest copy known, and write status only over that copy's resourceVersion: a stale
copy loses the write and reads again, and Events, records and metrics follow only a write
that landed, so nothing is done twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
from tradebot.controllers.backtest_watch import (
    KOPF_FINALIZER,
    WATCH,
    done,
    needs_steps,
    pod_phase,
    rv_number,
)
from tradebot.controllers.objects import ContainerState, Job, JobStatus, Pod, PodStatus
from tradebot.controllers.status import condition, drop_unchanged, now, post_event
from tradebot.domain import backtest_round, images, launch
from tradebot.domain.naming import backtest_job_name, backtest_run_id
from tradebot.executors import local
from tradebot.freqtrade.summary import RunSummary
from tradebot.observability import metrics
from tradebot.observability.logging import logger
from tradebot.records.models import RunStatus

PLURAL = "backtests"
TERMINAL = backtest_round.TERMINAL
# The steps of a Backtest with a Job: `advance` runs them, whoever woke it.
_RUN_STEPS = frozenset({"cleanup", "complete", "follow", "requeue"})


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


def _cached_job(namespace: str, name: str) -> Job | None:
    """The Job as the queue's informer last saw it; read from the API server when it has
    not seen it (absence is never taken from a watch that may lag a creation)."""
    return cast(Job | None, WATCH.job(namespace, name)) or read_job(namespace, name)


def _cached_pod(namespace: str, name: str) -> Pod | None:
    """The Job's pod as the informer last saw it (None: none yet, once it has listed)."""
    found = WATCH.pod(namespace, name)
    if found is not None or WATCH.synced("pods"):
        return cast(Pod | None, found)
    return job_pod(namespace, name)


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


@metrics.counted("Backtest")
def step(namespace: str, name: str, urgent: bool = True) -> None:
    """One step of a Backtest (controllers/backtest_watch.py runs it: `urgent` when something
    it waits for happened, not when its ticker's safety-net round does). A running or
    finishing one is advanced (`advance`), by the ticker only when nothing did so for the
    reconcile interval; any other goes Pending or Queued, or Failed on a spec that does not
    validate. A write that lost to a newer version reads the Backtest again and decides
    again."""
    with WATCH.holding(namespace, name):
        bt = WATCH.backtest(namespace, name) or _read_backtest(namespace, name)
        for _ in range(4):
            if bt is None or not needs_steps(bt):
                return
            status = bt.get("status") or {}
            phase = status.get("phase")
            if phase in TERMINAL or (phase == "Running" and _validates(bt.get("spec") or {})):
                interval = runtime.get().settings.reconcile_interval_seconds
                if urgent or not WATCH.recently(namespace, name, interval):
                    advance(namespace, name, bt)
                return
            if _first_steps(bt):
                return
            bt = _read_backtest(namespace, name)


def _first_steps(bt: dict[str, Any]) -> bool:
    """The steps of a Backtest before its Job (wait, queue, fail an invalid spec), or the
    Job's steps where one exists. False: the status write lost to a newer version."""
    meta, status = bt["metadata"], dict(bt.get("status") or {})
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    jname = backtest_job_name(name, uid)
    model, job, strategy, decision = _observe(bt.get("spec") or {}, status, namespace, jname)
    if decision.step in _RUN_STEPS:
        advance(namespace, name, bt)  # a Job exists: the same step as when woken by it
        return True
    if decision.step == "idle":
        return True
    log = logger(
        kind="Backtest", namespace=namespace, name=name, correlation_id=backtest_run_id(uid)
    )
    generation = int(meta.get("generation") or 0)
    body = cast(kopf.Body, bt)  # posted to by post_event only, never handed to kopf
    if model is None:  # decision "invalid"
        return _invalid(body, status, decision, generation, log)
    refused = _image_refused(model)
    if refused is not None:
        # Before the queue: a run of a foreign image never gets a Job (nor a slot).
        return _refuse_image(body, status, refused, generation, log)
    r = _Round(
        body, status, kopf.Patch(), model, namespace, name, uid, jname, generation, log, job,
        decision, None,
    )  # fmt: skip
    missing = None
    if decision.step == "queue" and model.data.market_data_ref:
        missing = _data_missing(model, namespace, strategy)
    if missing:
        _data_wait(r, missing)
    else:
        _STEPS[decision.step](r)
    return _write_and_announce(body, status, r.patch, r.effects, log) is not None


def _write_and_announce(
    body: kopf.Body,
    status: dict[str, Any],
    patch: kopf.Patch,
    effects: list[Callable[[], None]],
    log: FilteringBoundLogger,
) -> dict[str, Any] | None:
    """The status patch (conditional on the version it was decided from), then what follows
    a write that landed. The Backtest as written (`body` itself when nothing changed); None:
    it lost to a newer version."""
    drop_unchanged(patch, status)
    written = _write_status(body, patch, log) if patch.get("status") else dict(body)
    if written is None:
        return None
    for effect in effects:
        effect()
    return written


def _invalid(
    body: kopf.Body,
    status: dict[str, Any],
    d: backtest_round.BacktestDecision,
    generation: int,
    log: FilteringBoundLogger,
) -> bool:
    patch = kopf.Patch()
    _finish(patch, status, "Failed", d.reason, d.message, generation)
    effects: list[Callable[[], None]] = [
        lambda: metrics.BACKTESTS_FINISHED.labels("Failed").inc(),
        lambda: post_event(body, "Backtest", d.reason, d.message, warning=True),
        lambda: log.warning("backtest spec invalid", error=d.message),
    ]
    return _write_and_announce(body, status, patch, effects, log) is not None


def _image_refused(spec: BacktestSpec) -> str | None:
    settings = runtime.get().settings
    image = images.runner_image(
        spec.image, spec.gpu is not None and spec.gpu.vendor == "amd", settings
    )
    return images.image_allowed(image, images.allowed(settings))


def _refuse_image(
    body: kopf.Body,
    status: dict[str, Any],
    message: str,
    generation: int,
    log: FilteringBoundLogger,
) -> bool:
    patch = kopf.Patch()
    _finish(patch, status, "Failed", images.REASON, message, generation)
    condition(status, patch, "Ready", False, images.REASON, message, generation)
    effects: list[Callable[[], None]] = [
        lambda: metrics.BACKTESTS_FINISHED.labels("Failed").inc(),
        lambda: post_event(body, "Backtest", images.REASON, message, warning=True),
        lambda: log.warning("backtest image not allowed", error=message),
    ]
    return _write_and_announce(body, status, patch, effects, log) is not None


def _launched(status: Mapping[str, Any], job: Job | None) -> dict[str, Any] | None:
    """The run's launch record: the status's, else the one kept on its Job (the admission's
    status write was lost to a crash)."""
    found = status.get("launched")
    if found:
        return dict(found)
    annotations = ((job or {}).get("metadata") or {}).get("annotations") or {}
    text = annotations.get(launch.ANNOTATION)
    if not text:
        return None
    try:
        kept = json.loads(text)
    except ValueError:
        return None
    return kept if isinstance(kept, dict) else None


def _validates(spec: Mapping[str, Any]) -> bool:
    try:
        BacktestSpec.model_validate(dict(spec))
    except ValidationError:
        return False
    return True


def _observe(
    spec: Mapping[str, Any], status: Mapping[str, Any], namespace: str, jname: str
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
    # The Job is read only while it matters: not for a finished Backtest or an invalid spec;
    # before the queue (no phase, Pending) there is none unless the informer has seen it.
    job = (
        None
        if spec_error is not None or phase in TERMINAL
        else cast(Job | None, WATCH.job(namespace, jname))
        if WATCH.synced("jobs")
        else read_job(namespace, jname)
    )
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


def _data_wait(r: _Round, missing: str) -> None:
    announce = r.status.get("message") != missing
    r.patch.status.update(
        {"phase": "Pending", "message": missing, "observedGeneration": r.generation}
    )
    condition(r.status, r.patch, "DataMissing", True, "DataMissing", missing, r.generation)
    if announce:
        r.announce("DataMissing", missing, warning=True)
        r.log.info("waiting for data", missing=missing)


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
    pod: Pod | None
    # What follows a status write that landed (Events, metrics): nothing twice.
    effects: list[Callable[[], None]] = field(default_factory=list)

    def announce(self, reason: str, message: str, warning: bool = False) -> None:
        self.effects.append(
            lambda: post_event(self.body, "Backtest", reason, message, warning=warning)
        )


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
    if not r.status.get("launched"):
        r.patch.status["launched"] = _launched(r.status, r.job)
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
                r.pod,
                r.namespace,
                r.jname,
                backtest_run_id(r.uid),
                settings.local_state_dir,
                settings,
                on_exit=lambda: WATCH.wake(r.namespace, r.name),
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
    r.announce(r.decision.reason, f"Job {r.jname} {r.decision.message}", warning=True)
    r.log.warning("job vanished, requeued", job=r.jname)


def _wait(r: _Round) -> None:
    d = r.decision
    r.patch.status.update(
        {"phase": "Pending", "message": d.message, "observedGeneration": r.generation}
    )
    condition(r.status, r.patch, "StrategyReady", False, d.reason, d.message, r.generation)
    if d.announce:
        r.announce(d.reason, d.message, warning=True)
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
    # No Event: the phase and the StrategyReady condition say it, and an Event per Backtest
    # is one more write on the path every Backtest takes (the final outcome has one).
    r.effects.append(lambda: _record_queued(r))


def _record_queued(r: _Round) -> None:
    r.log.info("backtest queued", priority=r.spec.priority)
    error = record(r.namespace, r.name, r.uid, "queued", r.status, r.spec)
    if error:
        r.log.warning("run record not written", error=error)


def _cleanup(r: _Round) -> None:
    _after_finish(
        r.body, r.status, r.patch, r.spec, r.namespace, r.name, r.uid, r.jname, r.generation
    )


def _finish(
    patch: kopf.Patch,
    status: dict[str, Any],
    phase: str,
    reason: str,
    message: str,
    generation: int,
) -> None:
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


def _complete(r: _Round) -> None:
    assert r.job is not None
    status, patch, generation = r.status, r.patch, r.generation
    pod = r.pod if termination(r.pod)[0] is not None else job_pod(r.namespace, r.jname)
    exit_code, message = termination(pod)
    summary = _summary(message)
    # The pod's phase says it first (the Job's status follows a second later; backoffLimit 0).
    ran = bool((r.job.get("status") or {}).get("succeeded")) or pod_phase(pod) == "Succeeded"
    succeeded = ran and bool(summary and summary.ok)
    _keep_summary(status, patch, summary, r.uid, r.jname)
    launched = _launched(status, r.job)
    if not status.get("launched"):
        patch.status["launched"] = launched
    # Judged for a run that says it succeeded: a failed one is no evidence anyway.
    mismatch = (
        launch.evidence_mismatch(launched, summary.code_hash)
        if succeeded and summary is not None
        else None
    )
    if mismatch is not None:
        # A runner that reports other code than it was given is not evidence of anything.
        succeeded = False
        _finish(patch, status, "Failed", launch.REASON_MISMATCH, mismatch, generation)
        r.announce(launch.REASON_MISMATCH, mismatch, warning=True)
        r.log.warning("backtest evidence mismatch", error=mismatch)
    elif succeeded:
        assert summary is not None
        _succeeded(r, summary)
    else:
        why = _failure_reason(r.job, exit_code, message, summary)
        _finish(patch, status, "Failed", "BacktestFailed", why, generation)
        r.announce("Failed", why, warning=True)
        r.log.warning("backtest failed", error=why)
    phase = "Succeeded" if succeeded else "Failed"
    r.effects.append(lambda: metrics.BACKTESTS_FINISHED.labels(phase).inc())
    namespace, name, uid, spec = r.namespace, r.name, r.uid, r.spec
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
                "bias": summary.bias.to_wire() if summary.bias else None,
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


def _succeeded(r: _Round, summary: RunSummary) -> None:
    assert summary.results is not None
    res = summary.results
    text = (
        f"profit {res.profit_total} ({res.profit_total_abs} {r.spec.stake_currency}), "
        f"max drawdown {res.max_drawdown}, {res.trades} trades"
    )
    _finish(r.patch, r.status, "Succeeded", "BacktestSucceeded", text, r.generation)
    r.announce("Succeeded", text)
    r.log.info("backtest succeeded", results=res.to_wire())


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


_STEPS: Mapping[backtest_round.Step, Callable[[_Round], None]] = MappingProxyType(
    {
        "cleanup": _cleanup,
        "complete": _complete,
        "follow": _follow,
        "requeue": _requeue,
        "wait": _wait,
        "queue": _queue,
    }
)


# --- the step of a Backtest with a Job, from the timer or the fast path ----------------------


def advance(namespace: str, name: str, seen: Mapping[str, Any] | None = None) -> None:
    """Steps a Backtest that has a Job (follow, complete, clean up, requeue) from the newest
    copy known (`seen`: the timer's; the watch's; else read), one step at a time per
    Backtest. A completion is cleaned up at once (the final status is stored by then); a
    write that lost to a newer version reads the Backtest again and decides again."""
    with WATCH.holding(namespace, name):
        bt = _newest(seen, WATCH.backtest(namespace, name)) or _read_backtest(namespace, name)
        for _ in range(4):
            if bt is None or done(bt):
                return
            again, written = _advance_once(bt)
            if not again:
                return
            bt = written or _read_backtest(namespace, name)


def _newest(*copies: Mapping[str, Any] | None) -> dict[str, Any] | None:
    usable = [dict(c) for c in copies if c is not None and "spec" in c and "metadata" in c]
    return max(usable, key=rv_number, default=None)


def _read_backtest(namespace: str, name: str) -> dict[str, Any] | None:
    return cast(
        dict[str, Any] | None,
        kube.read_or_none(
            kube.custom().get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
        ),
    )


def _advance_once(bt: dict[str, Any]) -> tuple[bool, dict[str, Any] | None]:
    """One step; (go on, the Backtest as written): go on after a completion (clean up
    next, from what was written) or a lost write (None: read it again)."""
    meta, status = bt["metadata"], dict(bt.get("status") or {})
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    try:
        model = BacktestSpec.model_validate(bt.get("spec") or {})
    except ValidationError:
        return False, None  # the timer's round fails it and says why
    jname = backtest_job_name(name, uid)
    phase = status.get("phase")
    job = None if phase in TERMINAL else _cached_job(namespace, jname)
    pod = _cached_pod(namespace, jname) if job is not None else None
    finished = job is not None and (job_finished(job) or (pod_phase(pod) or "") in TERMINAL)
    seen: backtest_round.JobSeen = (
        "absent" if job is None else "finished" if finished else "running"
    )
    decision = backtest_round.before_strategy(phase, None, seen)
    if decision is None or decision.step not in _RUN_STEPS:
        return False, None
    log = logger(
        kind="Backtest", namespace=namespace, name=name, correlation_id=backtest_run_id(uid)
    )
    generation = int(meta.get("generation") or 0)
    body = cast(kopf.Body, bt)  # posted to by post_event only, never handed to kopf
    r = _Round(
        body, status, kopf.Patch(), model, namespace, name, uid, jname, generation, log, job,
        decision, pod,
    )  # fmt: skip
    _STEPS[decision.step](r)
    written = _write_and_announce(r.body, status, r.patch, r.effects, log)
    return written is None or decision.step == "complete", written


def _write_status(
    body: Mapping[str, Any], patch: kopf.Patch, log: FilteringBoundLogger
) -> dict[str, Any] | None:
    """The status patch, only over the version it was decided from; None if that is stale."""
    meta = body["metadata"]
    conditional = {
        "metadata": {"resourceVersion": meta["resourceVersion"]},
        "status": dict(patch["status"]),
    }
    try:
        written: dict[str, Any] = kube.custom().patch_namespaced_custom_object_status(
            GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], conditional
        )
    except ApiException as e:
        if kube.is_conflict(e) or kube.is_not_found(e):
            log.info("status changed meanwhile; reading it again")
            return None
        raise
    WATCH.keep(written)
    return written


def release_finalizer(bt: Mapping[str, Any]) -> None:
    """Removes the finalizer kopf put on every Backtest while it ran their timer, from one
    being deleted (nothing else would, and the deletion would hang). Conditional on the
    version seen: if another finalizer changed meanwhile, that is an event of its own."""
    meta = bt["metadata"]
    rest = [f for f in meta.get("finalizers") or [] if f != KOPF_FINALIZER]
    try:
        kube.custom().patch_namespaced_custom_object(
            GROUP, VERSION, meta["namespace"], PLURAL, meta["name"],
            {"metadata": {"finalizers": rest or None, "resourceVersion": meta["resourceVersion"]}},
        )  # fmt: skip
    except ApiException as e:
        if not (kube.is_conflict(e) or kube.is_not_found(e)):
            raise


WATCH.handler = step
WATCH.release = release_finalizer
