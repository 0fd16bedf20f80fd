"""The admission loop: one pass looks at the whole cluster (queued Backtests, backtest Jobs,
GPU capacity), asks domain/queue.py what may start, creates those Jobs and writes every
queued Backtest's position. The queue is the cluster's own state, so a restarted operator
picks it up exactly where it was.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from kubernetes.client.exceptions import ApiException

from tradebot import kube
from tradebot.api.backtest import BacktestSpec
from tradebot.api.base import GROUP, VERSION
from tradebot.api.strategy import StrategySpec
from tradebot.controllers import runtime
from tradebot.controllers.backtest_records import record
from tradebot.controllers.marketdata import market_data_claim
from tradebot.controllers.objects import CustomObject
from tradebot.controllers.status import now, post_event
from tradebot.controllers.strategy import CodeUnavailable, read_code
from tradebot.domain import jobs
from tradebot.domain.conditions import set_condition
from tradebot.domain.freqtrade_config import backtest_config, config_hash
from tradebot.domain.naming import (
    LABEL_BACKTEST,
    LABEL_KIND,
    LABEL_STRATEGY,
    backtest_job_name,
    backtest_run_id,
)
from tradebot.domain.queue import (
    Decision,
    GpuNeed,
    Limits,
    QueuedBacktest,
    RunningBacktest,
    decide,
    position_worth_writing,
)
from tradebot.domain.time import parse_time
from tradebot.observability import metrics
from tradebot.observability.logging import logger
from tradebot.settings import Settings

_log = logger(component="queue")


def _created(obj: CustomObject) -> dt.datetime:
    created = parse_time(obj["metadata"]["creationTimestamp"])
    assert created is not None  # the API server sets it on every object
    return created


def _gpu_quantity(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def gpu_capacity(settings: Settings) -> dict[str, int]:
    """Free GPUs per vendor: allocatable on Ready nodes minus what live pods ask for."""
    resources = {vendor: p.resource for vendor, p in settings.gpu_profiles.items()}
    allocatable = dict.fromkeys(resources, 0)
    for node in kube.core().list_node().items:
        ready = any(c.type == "Ready" and c.status == "True"
                    for c in (node.status.conditions or []))
        if not ready or node.spec.unschedulable:
            continue
        for vendor, res in resources.items():
            allocatable[vendor] += _gpu_quantity((node.status.allocatable or {}).get(res, 0))
    in_use = dict.fromkeys(resources, 0)
    pods = kube.core().list_pod_for_all_namespaces(
        field_selector="status.phase!=Succeeded,status.phase!=Failed").items
    for pod in pods:
        for c in pod.spec.containers:
            req = c.resources
            asked = {**((req.requests or {}) if req else {}), **((req.limits or {}) if req else {})}
            for vendor, res in resources.items():
                in_use[vendor] += _gpu_quantity(asked.get(res, 0))
    return {v: max(0, allocatable[v] - in_use[v]) for v in resources}


def _list_backtests(settings: Settings) -> list[CustomObject]:
    api = kube.custom()
    if not settings.namespaces:
        return list(api.list_cluster_custom_object(GROUP, VERSION, "backtests")["items"])
    items: list[CustomObject] = []
    for ns in settings.namespaces:
        items += api.list_namespaced_custom_object(GROUP, VERSION, ns, "backtests")["items"]
    return items


def _list_backtest_jobs(settings: Settings) -> list[Any]:
    """The backtest Jobs this operator counts against its limits: those of the namespaces it
    watches (all of them, or the listed ones; another operator's namespaces are its own)."""
    selector = f"{LABEL_KIND}=backtest"
    if not settings.namespaces:
        return list(kube.batch().list_job_for_all_namespaces(label_selector=selector).items)
    return [job for ns in settings.namespaces
            for job in kube.batch().list_namespaced_job(ns, label_selector=selector).items]


def snapshot(settings: Settings) -> tuple[list[QueuedBacktest], list[RunningBacktest],
                                          dict[tuple[str, str], CustomObject]]:
    backtests = _list_backtests(settings)
    job_list = _list_backtest_jobs(settings)
    # Every backtest Job holds a slot until the controller deletes it after recording its
    # result, so the number of Job objects never exceeds the limit.
    running = [RunningBacktest(j.metadata.namespace, j.metadata.labels.get(LABEL_BACKTEST, ""),
                               j.metadata.labels.get(LABEL_STRATEGY, "")) for j in job_list]
    with_job = {(r.namespace, r.name) for r in running}
    queued, objects = [], {}
    for bt in backtests:
        meta = bt["metadata"]
        key = (meta["namespace"], meta["name"])
        if (bt.get("status") or {}).get("phase") != "Queued":
            continue
        if key in with_job:
            # Admitted, but the operator stopped before it wrote Running: write it now, so
            # the Backtest's own reconciler follows its Job again.
            _mark_running(bt)
            continue
        if meta.get("deletionTimestamp"):
            continue
        spec = bt.get("spec") or {}
        gpu = spec.get("gpu")
        queued.append(QueuedBacktest(
            key[0], key[1], (spec.get("strategyRef") or {}).get("name", ""),
            int(spec.get("priority") or 0), _created(bt),
            GpuNeed(gpu.get("vendor", "amd"), int(gpu["count"])) if gpu else None))
        objects[key] = bt
    return queued, running, objects


class StrategyNotReady(Exception):
    """The Strategy changed while the Backtest waited: it goes back to Pending."""


def admit(bt: CustomObject, settings: Settings) -> None:
    """Creates the run's ConfigMap and Job (idempotent) and marks the Backtest Running."""
    meta = bt["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    spec = BacktestSpec.model_validate(bt["spec"])
    try:
        strategy = kube.custom().get_namespaced_custom_object(
            GROUP, VERSION, namespace, "strategies", spec.strategy_ref.name)
    except ApiException as e:
        if kube.is_not_found(e):
            raise StrategyNotReady(f"Strategy {spec.strategy_ref.name} not found") from None
        raise
    phase = (strategy.get("status") or {}).get("phase")
    if phase != "Ready":
        raise StrategyNotReady(f"Strategy {spec.strategy_ref.name} is {phase or 'not ready'}")
    strategy_spec = StrategySpec.model_validate(strategy["spec"])
    code = read_code(strategy_spec, namespace)
    config = backtest_config(spec, strategy_spec, datadir=jobs.DATA_DIR,
                             user_data_dir=jobs.USER_DATA_DIR)
    run_id = backtest_run_id(uid)
    run = jobs.BacktestRun(namespace, name, uid, spec, spec.strategy_ref.name,
                           strategy_spec.class_name, code, config, run_id, run_id,
                           data_claim=market_data_claim(spec, namespace))
    for create, body in ((kube.core().create_namespaced_config_map, jobs.config_map(run)),
                         (kube.batch().create_namespaced_job, jobs.job(run, settings))):
        try:
            create(namespace, body)
        except ApiException as e:
            if not kube.is_conflict(e):
                raise
    status = bt.get("status") or {}
    started = now()
    new_status = {
        "phase": "Running", "jobName": run.job_name, "queuePosition": None,
        "startedAt": started, "runId": run_id,
        "codeHash": (strategy.get("status") or {}).get("codeHash"),
        "configHash": config_hash(config), "message": f"running as Job {run.job_name}",
        "conditions": set_condition(status.get("conditions"), "Admitted", True, "Admitted",
                                    f"Job {run.job_name} created", meta.get("generation"),
                                    at=started),
    }
    kube.custom().patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "backtests", name, {"status": new_status})
    post_event(bt, "Backtest", "Admitted", f"Job {run.job_name} created")
    error = record(namespace, name, uid, "running", {**status, **new_status}, spec)
    log = _log.bind(namespace=namespace, name=name, correlation_id=run_id)
    log.info("backtest admitted", job=run.job_name)
    metrics.ADMISSIONS.inc()
    metrics.QUEUE_WAIT.observe(
        (dt.datetime.now(dt.UTC) - _created(bt)).total_seconds())
    if error:
        log.warning("run record not written", error=error)


def _mark_running(bt: CustomObject) -> None:
    meta = bt["metadata"]
    name = backtest_job_name(meta["name"], meta["uid"])
    kube.custom().patch_namespaced_custom_object_status(
        GROUP, VERSION, meta["namespace"], "backtests", meta["name"],
        {"status": {"phase": "Running", "jobName": name, "queuePosition": None,
                    "message": f"running as Job {name}"}})


def _write_positions(decision: Decision, objects: dict[tuple[str, str], CustomObject]) -> None:
    for key, position in decision.positions.items():
        bt = objects[key]
        status = bt.get("status") or {}
        reason = decision.waiting_for.get(key, "")
        message = f"queued at position {position}: waiting for {reason}"
        if not position_worth_writing(status.get("queuePosition"), position) and (
                status.get("message", "").split(": waiting for ")[-1] == reason):
            continue
        patch = {"status": {
            "queuePosition": position, "message": message,
            "conditions": set_condition(status.get("conditions"), "Admitted", False, "Waiting",
                                        message, bt["metadata"].get("generation"),
                                        at=now())}}
        try:
            kube.custom().patch_namespaced_custom_object_status(
                GROUP, VERSION, key[0], "backtests", key[1], patch)
        except ApiException as e:
            if not kube.is_not_found(e):
                raise


def _back_to_pending(bt: CustomObject, why: str) -> None:
    meta = bt["metadata"]
    status = bt.get("status") or {}
    kube.custom().patch_namespaced_custom_object_status(
        GROUP, VERSION, meta["namespace"], "backtests", meta["name"], {"status": {
            "phase": "Pending", "message": why, "queuePosition": None,
            "conditions": set_condition(status.get("conditions"), "StrategyReady", False,
                                        "StrategyNotReady", why, meta.get("generation"),
                                        at=now())}})
    _log.info("backtest back to pending", namespace=meta["namespace"], name=meta["name"],
              reason=why)


def _reject(bt: CustomObject, error: Exception) -> None:
    meta = bt["metadata"]
    message = f"cannot start: {error}"
    status = bt.get("status") or {}
    finished = now()
    patch = {"status": {
        "phase": "Failed", "message": message, "queuePosition": None, "finishedAt": finished,
        "conditions": set_condition(status.get("conditions"), "Complete", False,
                                    "AdmissionFailed", message, meta.get("generation"),
                                    at=finished)}}
    kube.custom().patch_namespaced_custom_object_status(
        GROUP, VERSION, meta["namespace"], "backtests", meta["name"], patch)
    post_event(bt, "Backtest", "AdmissionFailed", message, warning=True)
    _log.warning("backtest rejected", namespace=meta["namespace"], name=meta["name"],
                 error=message)


def _drain(running: list[RunningBacktest]) -> None:
    """Like Kueue's HoldAndDrain: stop what runs; the Backtests go back to the queue."""
    for r in running:
        jobs_of = kube.batch().list_namespaced_job(
            r.namespace, label_selector=f"{LABEL_BACKTEST}={r.name},{LABEL_KIND}=backtest").items
        for j in jobs_of:
            if (j.status.succeeded or j.status.failed):
                continue  # finished: its result is being recorded, keep it
            _log.info("draining", namespace=r.namespace, name=r.name, job=j.metadata.name)
            try:
                kube.batch().delete_namespaced_job(j.metadata.name, r.namespace,
                                                   propagation_policy="Background")
            except ApiException as e:
                if not kube.is_not_found(e):
                    raise


def admission_pass(settings: Settings) -> Decision:
    rt = runtime.get()
    with rt.admission_lock:
        queued, running, objects = snapshot(settings)
        limits = Limits(settings.max_concurrent_backtests, settings.max_backtests_per_namespace,
                        settings.max_backtests_per_strategy,
                        hold=settings.queue_hold != "None")
        if settings.queue_hold == "HoldAndDrain":
            _drain(running)
        gpus = gpu_capacity(settings) if any(q.gpu for q in queued) else {}
        decision = decide(queued, running, limits, gpus)
        metrics.QUEUE_LENGTH.set(len(queued) - len(decision.admit))
        metrics.RUNNING_BACKTESTS.set(len(running) + len(decision.admit))
        for vendor, free in gpus.items():
            metrics.GPUS_FREE.labels(vendor).set(free)
        for key in decision.admit:
            try:
                admit(objects[key], settings)
            except StrategyNotReady as e:
                _back_to_pending(objects[key], str(e))
            except (ValueError, CodeUnavailable) as e:
                # Bad input (a spec the config cannot carry, strategy code gone): retrying
                # will not help, so the Backtest fails with the reason.
                _reject(objects[key], e)
            except Exception as e:
                _log.exception("admission failed", namespace=key[0], name=key[1], error=str(e))
        _write_positions(decision, objects)
        return decision


def wake() -> None:
    """A slot has freed (a Job was deleted): run the next pass now rather than at the tick."""
    runtime.get().admission_wakeup.set()


class AdmissionLoop:
    """Runs admission passes every `interval` seconds, or sooner when woken, until stopped."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._wakeup = runtime.get().admission_wakeup
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="admission", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wakeup.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                admission_pass(self.settings)
            except Exception as e:
                # The API server restarting or a network blip must not end the loop.
                _log.warning("admission pass failed", error=str(e))
            self._wakeup.wait(self.settings.reconcile_interval_seconds)
            self._wakeup.clear()


__all__ = ["AdmissionLoop", "admission_pass", "wake"]
