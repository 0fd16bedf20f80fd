"""The admission queue, event-driven: an in-memory index of the work waiting for a slot (by
namespace, priority and creation) and of the Jobs holding slots, kept by informers (one list,
then watches) of the queued kinds, their Jobs and their Jobs' pods; a pass runs when an event
frees or needs a slot and costs the few items it looks at, never a list of the cluster.

A slot is held from the Job's creation until the Job can start no more pods: a pod of it
Succeeded, as many pods Failed as its backoffLimit allows plus one, or the Job itself is finished
or gone. The pods' own phases free it at once, while the Job's status lags (the Job controller
batches pod updates for a second) and the Job object lingers until its result is recorded. A
Failed pod alone frees nothing: a Job with retries left (Hyperopt workers) starts a replacement,
which runs in the same slot. So at most `limit` runs are running at once; finished Jobs waiting
to be recorded do not count.

The queue is still the cluster's own state: a restarted operator lists it again and picks it
up exactly where it was.

Admission interface for other kinds (e.g. market data downloads): `register(QueueKind(...))`
before the operator starts. A kind's Jobs and their pods carry `tradebot.dev/kind=<label>`
and `<item_label>=<object name>`; the kind says from a raw object whether it waits (and with
what priority, creation time and group) and starts one (creates its Job). Its items share the
limits with Backtests; the per-strategy limit applies per `group`.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

from tradebot import kube
from tradebot.api.backtest import BacktestSpec
from tradebot.api.base import GROUP, VERSION
from tradebot.api.strategy import StrategySpec
from tradebot.controllers import runtime
from tradebot.controllers.backtest_records import record
from tradebot.controllers.informer import Informer, RawObject
from tradebot.controllers.marketdata import market_data_claim
from tradebot.controllers.objects import CustomObject
from tradebot.controllers.status import now, post_event
from tradebot.controllers.strategy import CodeUnavailable, read_code
from tradebot.domain import images, jobs, launch
from tradebot.domain.conditions import set_condition
from tradebot.domain.freqtrade_config import backtest_config, config_hash, parameters_hash
from tradebot.domain.naming import (
    LABEL_BACKTEST,
    LABEL_KIND,
    LABEL_STRATEGY,
    backtest_job_name,
    backtest_run_id,
    named,
)
from tradebot.domain.queue import (
    GpuNeed,
    Key,
    Limits,
    QueuedBacktest,
    RunningBacktest,
    WaitingOrder,
    decide,
    next_admissions,
    position_worth_writing,
)
from tradebot.domain.strategy_parameters import run_parameter_file
from tradebot.domain.time import parse_time
from tradebot.observability import metrics
from tradebot.observability.logging import logger
from tradebot.settings import Settings

_log = logger(component="queue")

# How often, at most, queued items' positions are written: each admission moves everyone
# behind it, and the writes must not compete with admissions for the API server.
POSITIONS_INTERVAL = 2.0
# An item whose start failed for a passing reason (the API server) waits this long.
RETRY_AFTER = 5.0


class Refused(Exception):
    """A kind's `start` refused the item for good and said why in its status (back to
    Pending, Failed): it leaves the queue until its next change."""


class Unstartable(Exception):
    """The item can never start as it is: the API server refused its Job or ConfigMap (400,
    422: a name or label it cannot take), or its run cannot fit a ConfigMap. The kind's
    `refuse` fails the object with `reason` and this message (status, Event, log) instead of
    a retry every RETRY_AFTER seconds that nobody sees."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def api_refusal(error: ApiException) -> str | None:
    """The API server's own message when it refused a create as invalid (400 Bad Request,
    422 Unprocessable Entity): retrying the same body can only fail again. None for
    anything else (an outage, a conflict, a forbidden quota that may free up)."""
    if error.status not in (400, 422):
        return None
    try:
        body = json.loads(error.body or "")
        message = body.get("message") if isinstance(body, dict) else None
    except ValueError:
        message = None
    return str(message or error.reason or f"HTTP {error.status}")


class NotWaiting(Exception):
    """The item is no longer waiting (deleted, or started already): nothing to do."""


@dataclass(frozen=True)
class QueueKind:
    """A kind of work that waits in the admission queue for a slot.

    label      the value of tradebot.dev/kind on its Jobs and their pods
    plural     its custom resource (tradebot.dev/v1alpha1)
    item_label the label on its Jobs and pods naming the object the Job runs
    waiting    from a raw object: (priority, created, group, gpu) if it waits, else None
    start      (namespace, name, group, settings): creates its Job (idempotent, deterministic
               name) and returns the Job's name; raises Refused or NotWaiting, or anything else to
               be retried after RETRY_AFTER seconds
    refuse     (namespace, name, reason, message): fails the object for good when `start`
               raises Unstartable or the API server refuses its Job as invalid (400/422);
               None: such a start is retried like any other failure
    units      optional, for an object that needs several slots (a Hyperopt's workers): from a
               raw object, the indices of its units that still want one; each unit is its own
               item, named "<name>#<index>" (what `start` gets), whose Job carries the index in
               the label `unit_label`
    """

    label: str
    plural: str
    item_label: str
    waiting: Callable[[RawObject], tuple[int, dt.datetime, str, GpuNeed | None] | None]
    start: Callable[[str, str, str, Settings], str]
    units: Callable[[RawObject], list[int]] | None = None
    unit_label: str | None = None
    refuse: Callable[[str, str, str, str], None] | None = None


_KINDS: dict[str, QueueKind] = {}


def register(kind: QueueKind) -> None:
    """Adds a kind to the queue; call before the operator starts (at import)."""
    _KINDS[kind.label] = kind


class Watcher(Protocol):
    """Another follower of the queue's informers (the Backtest controller's fast path), so
    no second watch of the same objects is needed: told each complete list and each change
    (`what`: a queued kind's plural, "jobs" or "pods"), from the informer's thread, after the
    queue. It must return quickly. `on_start` comes first: what an earlier loop told it is
    void; `on_stop` comes when the loop stops: nothing may start from it any more."""

    def on_start(self) -> None: ...

    def on_list(self, what: str, namespace: str | None, objs: list[RawObject]) -> None: ...

    def on_event(self, what: str, type_: str, obj: RawObject) -> None: ...

    def on_stop(self) -> None: ...


WATCHERS: list[Watcher] = []


def _tee_list(
    what: str, namespace: str | None, own: Callable[[list[RawObject]], None]
) -> Callable[[list[RawObject]], None]:
    def call(objs: list[RawObject]) -> None:
        own(objs)
        for w in WATCHERS:
            w.on_list(what, namespace, objs)

    return call


def _tee_event(
    what: str, own: Callable[[str, RawObject], None]
) -> Callable[[str, RawObject], None]:
    def call(type_: str, obj: RawObject) -> None:
        own(type_, obj)
        for w in WATCHERS:
            w.on_event(what, type_, obj)

    return call


def _domain_name(kind: str, name: str) -> str:
    # Keys are (namespace, name) in domain/queue.py; other kinds' names get a prefix so a
    # Backtest and, say, a download of the same name stay two items.
    return name if kind == "backtest" else f"{kind}:{name}"


def _split(domain_name: str) -> tuple[str, str]:
    kind, sep, name = domain_name.partition(":")
    return (kind, name) if sep else ("backtest", domain_name)


# The API server's default for a Job that names none.
DEFAULT_BACKOFF_LIMIT = 6


@dataclass
class _Job:
    key: Key
    strategy: str
    finished: bool
    seen_at: float
    backoff_limit: int = DEFAULT_BACKOFF_LIMIT


# Job conditions after which it starts no more pods (the last two: Kubernetes 1.31+, set before
# Complete/Failed while the Job's last pods terminate).
_JOB_ENDED = ("Complete", "Failed", "FailureTarget", "SuccessCriteriaMet")


@dataclass
class _Item:
    """What the queue keeps of a queued object: enough to order it and to write its
    position, nothing of its spec."""

    kind: str
    phase: str | None
    # What the kind said at its last event: (priority, created, group, gpu) if it waits.
    waits: tuple[int, dt.datetime, str, GpuNeed | None] | None
    resource_version: str
    generation: int | None
    conditions: list[dict[str, Any]]
    position: int | None
    message: str


class QueueState:
    """The in-memory index. Every change comes from an informer thread or the admission
    loop, under one lock held only for dict and list operations."""

    def __init__(
        self, wakeup: threading.Event, waiting_cap: int = 5000, ttl_default: int | None = None
    ) -> None:
        self.lock = threading.Lock()
        self.wakeup = wakeup
        self.waiting_cap, self.ttl_default = waiting_cap, ttl_default
        # Refused for the namespace's waiting cap, their status not yet written.
        self.over_cap: dict[Key, _Item] = {}
        # Finished Backtests to delete at their TTL: key -> (when, uid).
        self.expiries: dict[Key, tuple[dt.datetime, str]] = {}
        self.waiting = WaitingOrder()
        self.items: dict[Key, _Item] = {}
        self.jobs: dict[tuple[str, str], _Job] = {}  # (namespace, job name)
        self.job_of: dict[Key, str] = {}
        # Pods seen finished, by (namespace, job name): a success ends the Job; failures end
        # it only once they exceed its backoffLimit.
        self.pods_succeeded: set[tuple[str, str]] = set()
        self.pods_failed: dict[tuple[str, str], set[str]] = {}
        self.assumed: dict[Key, str] = {}  # started by this process, Job not seen yet
        self.strategy_of_assumed: dict[Key, str] = {}
        self.retry_at: dict[Key, float] = {}
        self.positions_dirty = threading.Event()

    # --- the queued objects -------------------------------------------------------------
    def _item(self, kind: QueueKind, obj: RawObject) -> None:
        meta = obj["metadata"]
        status = obj.get("status") or {}
        waits = None if meta.get("deletionTimestamp") else kind.waiting(obj)
        names = [meta["name"]]
        if kind.units is not None:
            names = [f"{meta['name']}#{i}" for i in kind.units(obj)]
            self._drop_units(
                kind, meta["namespace"], meta["name"], {_domain_name(kind.label, n) for n in names}
            )
        for name in names:
            key = (meta["namespace"], _domain_name(kind.label, name))
            self.items[key] = _Item(
                kind.label,
                status.get("phase"),
                waits,
                meta["resourceVersion"],
                meta.get("generation"),
                list(status.get("conditions") or []),
                status.get("queuePosition"),
                status.get("message") or "",
            )
            self._maybe_wait(key)
        key = (meta["namespace"], _domain_name(kind.label, meta["name"]))
        if kind.label == "backtest":
            self._expiry(key, obj)

    def _expiry(self, key: Key, obj: RawObject) -> None:
        """A finished Backtest whose result is recorded and whose Job is gone is deleted at
        finishedAt + its TTL (spec, else the operator's); the run record stays."""
        status = obj.get("status") or {}
        ttl = (obj.get("spec") or {}).get("ttlSecondsAfterFinished", self.ttl_default)
        finished = parse_time(status.get("finishedAt")) if status.get("finishedAt") else None
        recorded = any(
            c.get("type") == "Recorded" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        if (
            ttl is None
            or finished is None
            or not recorded
            or not status.get("cleanedUp")
            or status.get("phase") not in ("Succeeded", "Failed")
        ):
            self.expiries.pop(key, None)
            return
        self.expiries[key] = (finished + dt.timedelta(seconds=int(ttl)), obj["metadata"]["uid"])

    def _maybe_wait(self, key: Key) -> None:
        """Into the queue if its object waits and nothing runs for it, else out of it."""
        item = self.items.get(key)
        if item is None or item.waits is None or key in self.job_of or key in self.assumed:
            if self.waiting.remove(key):
                self.positions_dirty.set()
            return
        priority, created, group, gpu = item.waits
        if key not in self.waiting and self.waiting.in_namespace(key[0]) >= self.waiting_cap:
            self.over_cap[key] = item
            self.positions_dirty.set()
            return
        if self.waiting.upsert(QueuedBacktest(key[0], key[1], group, priority, created, gpu)):
            self.wakeup.set()
            self.positions_dirty.set()

    def _drop_units(
        self, kind: QueueKind, namespace: str, name: str, keep: set[str] | None = None
    ) -> None:
        """An object's unit items but those in `keep` (a finished unit leaves)."""
        prefix = _domain_name(kind.label, f"{name}#")
        for key in [
            k
            for k in self.items
            if k[0] == namespace and k[1].startswith(prefix) and k[1] not in (keep or set())
        ]:
            self.items.pop(key)
            if self.waiting.remove(key):
                self.positions_dirty.set()

    def on_object(self, kind: QueueKind, type_: str, obj: RawObject) -> None:
        with self.lock:
            if type_ == "DELETED":
                meta = obj["metadata"]
                if kind.units is not None:
                    self._drop_units(kind, meta["namespace"], meta["name"])
                key = (meta["namespace"], _domain_name(kind.label, meta["name"]))
                self.items.pop(key, None)
                self.waiting.remove(key)
                self.retry_at.pop(key, None)
                self.expiries.pop(key, None)
                self.over_cap.pop(key, None)
                return
            self._item(kind, obj)

    def on_objects(self, kind: QueueKind, objs: list[RawObject]) -> None:
        with self.lock:
            for key in [k for k, v in self.items.items() if v.kind == kind.label]:
                self.items.pop(key)
                self.waiting.remove(key)
            for obj in objs:
                self._item(kind, obj)
            self.wakeup.set()

    # --- Jobs and pods ------------------------------------------------------------------
    def _job(self, obj: RawObject) -> None:
        meta = obj["metadata"]
        labels = meta.get("labels") or {}
        kind = _KINDS.get(labels.get(LABEL_KIND, ""))
        item = named(meta, kind.item_label) if kind is not None else None
        if kind is None or not item:
            return
        ns = meta["namespace"]
        jk = (ns, meta["name"])
        if kind.unit_label is not None:
            item = f"{item}#{labels.get(kind.unit_label, '')}"
        key = (ns, _domain_name(kind.label, item))
        status = obj.get("status") or {}
        backoff = (obj.get("spec") or {}).get("backoffLimit")
        backoff = DEFAULT_BACKOFF_LIMIT if backoff is None else int(backoff)
        finished = (
            bool(status.get("succeeded"))
            or int(status.get("failed") or 0) > backoff
            or any(
                c.get("type") in _JOB_ENDED and c.get("status") == "True"
                for c in status.get("conditions") or []
            )
            or self._pods_ended(jk, backoff)
        )
        old = self.jobs.get(jk)
        self.jobs[jk] = _Job(
            key,
            named(meta, LABEL_STRATEGY) or "",
            finished,
            old.seen_at if old else time.monotonic(),
            backoff,
        )
        self.job_of[key] = meta["name"]
        self.assumed.pop(key, None)
        self.strategy_of_assumed.pop(key, None)
        self._maybe_wait(key)
        if finished and (old is None or not old.finished):
            self.wakeup.set()

    def _pods_ended(self, jk: tuple[str, str], backoff_limit: int) -> bool:
        """Whether the Job's pods seen so far leave it nothing to start: one succeeded, or
        more failed than its backoffLimit allows."""
        return jk in self.pods_succeeded or len(self.pods_failed.get(jk, ())) > backoff_limit

    def _job_gone(self, ns: str, name: str) -> None:
        job = self.jobs.pop((ns, name), None)
        self.pods_succeeded.discard((ns, name))
        self.pods_failed.pop((ns, name), None)
        if job is None:
            return
        if self.job_of.get(job.key) == name:
            del self.job_of[job.key]
        self.wakeup.set()  # a slot freed
        self._maybe_wait(job.key)  # an item still waiting as last seen is queued again

    def on_job(self, type_: str, obj: RawObject) -> None:
        with self.lock:
            if type_ == "DELETED":
                self._job_gone(obj["metadata"]["namespace"], obj["metadata"]["name"])
            else:
                self._job(obj)

    def on_jobs(self, objs: list[RawObject]) -> None:
        with self.lock:
            seen = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objs}
            for ns, name in [jk for jk in self.jobs if jk not in seen]:
                self._job_gone(ns, name)
            for obj in objs:
                self._job(obj)
            self.wakeup.set()

    def _pod(self, obj: RawObject) -> None:
        meta = obj["metadata"]
        job = (meta.get("labels") or {}).get("job-name")
        phase = (obj.get("status") or {}).get("phase")
        if job is None or phase not in ("Succeeded", "Failed"):
            return
        jk = (meta["namespace"], job)
        if phase == "Succeeded":
            self.pods_succeeded.add(jk)
        else:
            self.pods_failed.setdefault(jk, set()).add(meta["name"])
        held = self.jobs.get(jk)
        if held is not None and not held.finished and self._pods_ended(jk, held.backoff_limit):
            held.finished = True
            self.wakeup.set()

    def on_pod(self, type_: str, obj: RawObject) -> None:
        if type_ == "DELETED":
            return  # the Job's own events say when its slot frees
        with self.lock:
            self._pod(obj)

    def on_pods(self, objs: list[RawObject]) -> None:
        with self.lock:
            self.pods_succeeded.clear()
            self.pods_failed.clear()
            for obj in objs:
                self._pod(obj)
            self.wakeup.set()

    # --- what a pass reads --------------------------------------------------------------
    def running(self) -> list[RunningBacktest]:
        held = [
            RunningBacktest(j.key[0], j.key[1], j.strategy)
            for j in self.jobs.values()
            if not j.finished
        ]
        held += [
            RunningBacktest(k[0], k[1], self.strategy_of_assumed.get(k, "")) for k in self.assumed
        ]
        return held

    def ordered(self, at: float) -> Iterator[QueuedBacktest]:
        for q in self.waiting:
            retry = self.retry_at.get(q.key)
            if retry is None or retry <= at:
                yield q

    def assume(self, key: Key, strategy: str) -> None:
        self.waiting.remove(key)
        self.assumed[key] = strategy
        self.strategy_of_assumed[key] = strategy
        self.retry_at.pop(key, None)

    def release(self, key: Key, retry_at: float | None) -> None:
        """A start that did not happen: the slot is free again; with `retry_at` the item
        waits again from then (its next event would re-add it otherwise)."""
        with self.lock:
            self.assumed.pop(key, None)
            self.strategy_of_assumed.pop(key, None)
            if retry_at is not None:
                self.retry_at[key] = retry_at
                self._maybe_wait(key)
            self.wakeup.set()


# --- the Backtest kind ----------------------------------------------------------------------


def _created(obj: CustomObject | RawObject) -> dt.datetime:
    created = parse_time(obj["metadata"]["creationTimestamp"])
    assert created is not None  # the API server sets it on every object
    return created


def _backtest_waits(obj: RawObject) -> tuple[int, dt.datetime, str, GpuNeed | None] | None:
    if (obj.get("status") or {}).get("phase") != "Queued":
        return None
    spec = obj.get("spec") or {}
    gpu = spec.get("gpu")
    return (
        int(spec.get("priority") or 0),
        _created(obj),
        (spec.get("strategyRef") or {}).get("name", ""),
        GpuNeed(gpu.get("vendor", "amd"), int(gpu["count"])) if gpu else None,
    )


class StrategyNotReady(Exception):
    """The Strategy changed while the Backtest waited: it goes back to Pending."""


def _start_backtest(namespace: str, name: str, strategy_name: str, settings: Settings) -> str:
    """Reads the Backtest afresh and its Strategy (at once: two reads in parallel), creates
    its run's ConfigMap and Job (also in parallel; both idempotent) and hands the status patch,
    Event and run record to the bookkeeping pool: the next admission need not wait for them.
    A Backtest stopped before its patch stays Queued with a Job, which the queue's upkeep
    marks Running."""
    io = _io()
    strategy_read = io.submit(_read_strategy, namespace, strategy_name)
    try:
        bt = kube.custom().get_namespaced_custom_object(
            GROUP, VERSION, namespace, "backtests", name
        )
    except ApiException as e:
        if kube.is_not_found(e):
            raise NotWaiting(name) from None
        raise
    if (bt.get("status") or {}).get("phase") != "Queued" or bt["metadata"].get("deletionTimestamp"):
        raise NotWaiting(name)
    strategy = strategy_read.result()
    ref = ((bt.get("spec") or {}).get("strategyRef") or {}).get("name", "")
    if ref != strategy_name:  # the spec is immutable, so only a queue that guessed wrong
        strategy = _read_strategy(namespace, ref)
    try:
        run, strategy, config, launched = _create_run(bt, strategy, settings)
    except StrategyNotReady as e:
        _back_to_pending(bt, str(e))
        raise Refused(str(e)) from None
    except ImageRefused as e:
        # The Backtest's round refuses it before the queue; this is the allowlist changed
        # (or an older operator queued it) meanwhile.
        _reject(bt, e, images.REASON)
        raise Refused(str(e)) from None
    except (ValueError, CodeUnavailable) as e:
        # Bad input (a spec the config cannot carry, strategy code gone): retrying will not
        # help, so the Backtest fails with the reason.
        _reject(bt, e)
        raise Refused(str(e)) from None
    _bookkeeping().submit(_mark_admitted, bt, run, strategy, config, launched)
    return run.job_name


def _startup_candle_count(strategy: CustomObject) -> int | None:
    """What introspection found in the Strategy's code (None: not found or not a count)."""
    interface = (strategy.get("status") or {}).get("interface") or {}
    count = interface.get("startupCandleCount")
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else None


def _read_strategy(namespace: str, name: str) -> CustomObject | None:
    found: CustomObject | None = kube.read_or_none(
        kube.custom().get_namespaced_custom_object, GROUP, VERSION, namespace, "strategies", name
    )
    return found


class ImageRefused(ValueError):
    """The run's image is not on the operator's allowlist."""


def _create_run(
    bt: CustomObject, strategy: CustomObject | None, settings: Settings
) -> tuple[jobs.BacktestRun, CustomObject, dict[str, Any], dict[str, Any]]:
    """The run's ConfigMap and Job, and what it launched (`status.launched`, also kept on the
    Job, so that a status write lost to a crash is made again from the Job)."""
    meta = bt["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    spec = BacktestSpec.model_validate(bt["spec"])
    image = _allowed_image(spec, settings)
    if strategy is None:
        raise StrategyNotReady(f"Strategy {spec.strategy_ref.name} not found")
    phase = (strategy.get("status") or {}).get("phase")
    if phase != "Ready":
        raise StrategyNotReady(f"Strategy {spec.strategy_ref.name} is {phase or 'not ready'}")
    strategy_spec = StrategySpec.model_validate(strategy["spec"])
    code = read_code(strategy_spec, namespace)
    try:
        parameters = run_parameter_file(strategy)
    except ValueError as e:  # a spec change the Strategy controller has not resolved yet
        raise StrategyNotReady(f"Strategy {spec.strategy_ref.name}: {e}") from None
    config = backtest_config(
        spec,
        strategy_spec,
        datadir=jobs.DATA_DIR,
        user_data_dir=jobs.USER_DATA_DIR,
        parameter_file=parameters,
    )
    parameters_set = _run_parameters_hash(spec, strategy)
    launched = launch.launch_record(
        spec, spec.timerange, strategy_spec, strategy.get("status"), code, parameters_set, image
    )
    run_id = backtest_run_id(uid)
    run = jobs.BacktestRun(
        namespace,
        name,
        uid,
        spec,
        spec.strategy_ref.name,
        strategy_spec.class_name,
        code,
        config,
        run_id,
        run_id,
        data_claim=market_data_claim(spec, namespace),
        startup_candle_count=_startup_candle_count(strategy),
    )
    body = jobs.config_map(run)
    too_large = jobs.config_map_too_large(body)
    if too_large:
        raise Unstartable("RunTooLarge", too_large)
    # In parallel: the pod waits for its ConfigMap to mount, the Job need not.
    config_map = _io().submit(
        kube.create_if_absent, kube.core().create_namespaced_config_map, namespace, body
    )
    job = jobs.job(run, settings)
    job["metadata"].setdefault("annotations", {})[launch.ANNOTATION] = json.dumps(launched)
    kube.create_if_absent(kube.batch().create_namespaced_job, namespace, job)
    config_map.result()
    return run, strategy, config, launched


def _allowed_image(spec: BacktestSpec, settings: Settings) -> str:
    """The run's image; ImageRefused when the operator's allowlist does not take it."""
    amd = spec.gpu is not None and spec.gpu.vendor == "amd"
    image = images.runner_image(spec.image, amd, settings)
    problem = images.image_allowed(image, images.allowed(settings))
    if problem is not None:
        raise ImageRefused(problem)
    return image


def _run_parameters_hash(spec: BacktestSpec, strategy: CustomObject) -> str | None:
    """The parameter set the run gets: the Backtest's own, else its Strategy's."""
    if spec.parameters is not None:
        return parameters_hash(spec.parameters)
    found = (strategy.get("status") or {}).get("parametersHash")
    return str(found) if found else None


def _mark_admitted(
    bt: CustomObject,
    run: jobs.BacktestRun,
    strategy: CustomObject,
    config: dict[str, Any],
    launched: dict[str, Any],
) -> None:
    meta = bt["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    log = _log.bind(namespace=namespace, name=name, correlation_id=run.run_id)
    try:
        status = bt.get("status") or {}
        started = now()
        new_status = {
            "phase": "Running",
            "jobName": run.job_name,
            "queuePosition": None,
            "startedAt": started,
            "runId": run.run_id,
            "codeHash": (strategy.get("status") or {}).get("codeHash"),
            "configHash": config_hash(config),
            "message": f"running as Job {run.job_name}",
            "parametersHash": _run_parameters_hash(run.spec, strategy),
            # In the write that records the Job: the evidence is what was launched.
            "launched": launched,
            "conditions": set_condition(
                status.get("conditions"),
                "Admitted",
                True,
                "Admitted",
                f"Job {run.job_name} created",
                meta.get("generation"),
                at=started,
            ),
        }
        kube.custom().patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "backtests", name, {"status": new_status}
        )
        # No Event: the phase and the Admitted condition say it; every Backtest takes this
        # path, and the final outcome (and every failure) has its Event.
        error = record(namespace, name, uid, "running", {**status, **new_status}, run.spec)
        log.info("backtest admitted", job=run.job_name)
        metrics.ADMISSIONS.inc()
        metrics.QUEUE_WAIT.observe((dt.datetime.now(dt.UTC) - _created(bt)).total_seconds())
        if error:
            log.warning("run record not written", error=error)
    except Exception as e:
        # The Job runs; the Backtest's status says Queued until the queue's repair marks it.
        log.warning("admission bookkeeping failed", error=str(e))


def _mark_running(namespace: str, name: str, uid_name: str, resource_version: str) -> None:
    """Admitted, but the operator stopped before it wrote Running: written now (only over the
    version the queue saw), so the Backtest's own reconciler follows its Job again."""
    try:
        kube.custom().patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            "backtests",
            name,
            {
                "metadata": {"resourceVersion": resource_version},
                "status": {
                    "phase": "Running",
                    "jobName": uid_name,
                    "queuePosition": None,
                    "message": f"running as Job {uid_name}",
                },
            },
        )
    except ApiException as e:
        if not (kube.is_conflict(e) or kube.is_not_found(e)):
            raise


def _back_to_pending(bt: CustomObject, why: str) -> None:
    meta = bt["metadata"]
    status = bt.get("status") or {}
    kube.custom().patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        meta["namespace"],
        "backtests",
        meta["name"],
        {
            "status": {
                "phase": "Pending",
                "message": why,
                "queuePosition": None,
                "conditions": set_condition(
                    status.get("conditions"),
                    "StrategyReady",
                    False,
                    "StrategyNotReady",
                    why,
                    meta.get("generation"),
                    at=now(),
                ),
            }
        },
    )
    _log.info(
        "backtest back to pending", namespace=meta["namespace"], name=meta["name"], reason=why
    )


def _refuse_backtest(namespace: str, name: str, reason: str, message: str) -> None:
    bt = kube.custom().get_namespaced_custom_object(GROUP, VERSION, namespace, "backtests", name)
    if (bt.get("status") or {}).get("phase") == "Queued":
        _reject(bt, message, reason)


def _reject(bt: CustomObject, error: Exception | str, reason: str = "AdmissionFailed") -> None:
    meta = bt["metadata"]
    message = f"cannot start: {error}"
    status = bt.get("status") or {}
    finished = now()
    conditions = status.get("conditions")
    if reason == images.REASON:
        conditions = set_condition(
            conditions, "Ready", False, reason, message, meta.get("generation"), at=finished
        )
    patch = {
        "status": {
            "phase": "Failed",
            "message": message,
            "queuePosition": None,
            "finishedAt": finished,
            "conditions": set_condition(
                conditions,
                "Complete",
                False,
                reason,
                message,
                meta.get("generation"),
                at=finished,
            ),
        }
    }
    kube.custom().patch_namespaced_custom_object_status(
        GROUP, VERSION, meta["namespace"], "backtests", meta["name"], patch
    )
    post_event(bt, "Backtest", reason, message, warning=True)
    _log.warning(
        "backtest rejected",
        namespace=meta["namespace"],
        name=meta["name"],
        reason=reason,
        error=message,
    )


def fail_refused(
    plural: str,
    kind: str,
    namespace: str,
    name: str,
    reason: str,
    message: str,
    condition: str = "Complete",
    extra: dict[str, Any] | None = None,
) -> None:
    """A queued object its Job can never be made for: Failed, with the reason in a condition
    (`condition` False for Complete, True for a Failed condition), an Event and a log line.
    For the kinds whose `refuse` has nothing of its own to add."""
    obj = kube.custom().get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    meta, status = obj["metadata"], obj.get("status") or {}
    text = f"cannot start: {message}"
    at = now()
    patch = {
        "phase": "Failed",
        "message": text,
        "queuePosition": None,
        "conditions": set_condition(
            status.get("conditions"),
            condition,
            condition != "Complete",
            reason,
            text,
            meta.get("generation"),
            at=at,
        ),
        **(extra or {}),
    }
    kube.custom().patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, plural, name, {"status": patch}
    )
    post_event(obj, kind, reason, text, warning=True)
    _log.warning(
        "start refused", kind=kind, namespace=namespace, name=name, reason=reason, error=text
    )


BACKTEST = QueueKind(
    label="backtest",
    plural="backtests",
    item_label=LABEL_BACKTEST,
    waiting=_backtest_waits,
    start=_start_backtest,
    refuse=_refuse_backtest,
)
register(BACKTEST)


def _bookkeeping() -> ThreadPoolExecutor:
    return runtime.get().pool("admission-bookkeeping", 4)


def _io() -> ThreadPoolExecutor:
    """For the reads and creates a start makes in parallel (never nested in itself)."""
    return runtime.get().pool("admission-io", 8)


# --- GPU capacity ---------------------------------------------------------------------------


def _gpu_quantity(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def gpu_capacity(settings: Settings) -> dict[str, int]:
    """Free GPUs per vendor: allocatable on Ready nodes minus what live pods on those nodes
    ask for. Read only while a GPU item waits, and only the pods of nodes with GPUs."""
    resources = {vendor: p.resource for vendor, p in settings.gpu_profiles.items()}
    allocatable = dict.fromkeys(resources, 0)
    in_use = dict.fromkeys(resources, 0)
    for node in kube.core().list_node().items:
        ready = any(
            c.type == "Ready" and c.status == "True" for c in (node.status.conditions or [])
        )
        has = {
            v: _gpu_quantity((node.status.allocatable or {}).get(res, 0))
            for v, res in resources.items()
        }
        if not ready or node.spec.unschedulable or not any(has.values()):
            continue
        for vendor, n in has.items():
            allocatable[vendor] += n
        pods = (
            kube.core()
            .list_pod_for_all_namespaces(
                field_selector=f"spec.nodeName={node.metadata.name},"
                "status.phase!=Succeeded,status.phase!=Failed"
            )
            .items
        )
        for pod in pods:
            for c in pod.spec.containers:
                req = c.resources
                asked = {
                    **((req.requests or {}) if req else {}),
                    **((req.limits or {}) if req else {}),
                }
                for vendor, res in resources.items():
                    in_use[vendor] += _gpu_quantity(asked.get(res, 0))
    return {v: max(0, allocatable[v] - in_use[v]) for v in resources}


# --- the loop -------------------------------------------------------------------------------


def _limits(settings: Settings) -> Limits:
    return Limits(
        settings.max_concurrent_backtests,
        settings.max_backtests_per_namespace,
        settings.max_backtests_per_strategy,
        hold=settings.queue_hold != "None",
    )


def _list_call(
    settings: Settings, namespace: str | None, what: str, kind: QueueKind | None = None
) -> Callable[..., Any]:
    if what == "objects":
        assert kind is not None
        plural = kind.plural
        if namespace is None:
            return lambda **kw: kube.custom().list_cluster_custom_object(
                GROUP, VERSION, plural, **kw
            )
        return lambda **kw: kube.custom().list_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, **kw
        )
    api = kube.batch() if what == "jobs" else kube.core()
    if namespace is None:
        fn = api.list_job_for_all_namespaces if what == "jobs" else api.list_pod_for_all_namespaces
        return fn  # type: ignore[no-any-return]
    fn = api.list_namespaced_job if what == "jobs" else api.list_namespaced_pod
    return lambda **kw: fn(namespace, **kw)


# The admission loop's name in runtime.liveness.
LIVENESS = "admission"


class AdmissionLoop:
    """Starts the informers, waits for their first lists, then runs a pass whenever woken
    (and at the reconcile interval as a safety net), until stopped. A second thread writes
    queued items' positions, at most every POSITIONS_INTERVAL seconds."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._wakeup = runtime.get().admission_wakeup
        self.state = QueueState(
            self._wakeup,
            settings.max_waiting_backtests_per_namespace,
            settings.backtest_ttl_seconds,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="admission", daemon=True)
        self._positions = threading.Thread(
            target=self._write_positions_loop, name="queue-positions", daemon=True
        )
        self._gpus: dict[str, int] = {}
        self._informers: list[Informer] = []
        selector = f"{LABEL_KIND} in ({','.join(sorted(_KINDS))})"
        namespaces: list[str | None] = list(settings.namespaces) or [None]
        st = self.state
        for ns in namespaces:
            for kind in _KINDS.values():
                self._informers.append(
                    Informer(
                        f"{kind.plural}-{ns or 'all'}",
                        _list_call(settings, ns, "objects", kind),
                        _tee_list(kind.plural, ns, functools.partial(st.on_objects, kind)),
                        _tee_event(kind.plural, functools.partial(st.on_object, kind)),
                        watch_timeout=settings.api_watch_timeout_seconds,
                    )
                )
            self._informers.append(
                Informer(
                    f"jobs-{ns or 'all'}",
                    _list_call(settings, ns, "jobs"),
                    _tee_list("jobs", ns, st.on_jobs),
                    _tee_event("jobs", st.on_job),
                    selector,
                    watch_timeout=settings.api_watch_timeout_seconds,
                )
            )
            self._informers.append(
                Informer(
                    f"pods-{ns or 'all'}",
                    _list_call(settings, ns, "pods"),
                    _tee_list("pods", ns, st.on_pods),
                    _tee_event("pods", st.on_pod),
                    selector,
                    watch_timeout=settings.api_watch_timeout_seconds,
                )
            )
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="admit")

    def start(self) -> None:
        for w in WATCHERS:
            w.on_start()
        for informer in self._informers:
            informer.start()
        self._thread.start()
        self._positions.start()

    def stop(self) -> None:
        self._stop.set()
        runtime.get().liveness.forget(LIVENESS)
        for informer in self._informers:
            informer.stop()
        for w in WATCHERS:
            w.on_stop()
        self._wakeup.set()
        self.state.positions_dirty.set()
        self._thread.join(timeout=10)
        self._positions.join(timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)
        # Starts already running create Jobs: they end (bounded) before the Lease may go.
        runtime.join_threads(list(self._pool._threads), time.monotonic() + 10)

    def synced(self) -> bool:
        return all(i.synced.is_set() for i in self._informers)

    def _run(self) -> None:
        # Nothing is admitted before every first list is in: a Job not yet seen would let
        # the queue start more than the limit.
        liveness = runtime.get().liveness
        while not self._stop.is_set() and not self.synced():
            liveness.beat(LIVENESS)  # the informers' calls are bounded (kube.timeouts)
            self._stop.wait(0.05)
        while not self._stop.is_set():
            liveness.beat(LIVENESS)
            # Cleared before the pass: an event during the pass sets it again, and the next
            # wait returns at once. No wake-up is lost.
            self._wakeup.clear()
            try:
                self.admission_pass()
            except Exception as e:
                # The API server restarting or a network blip must not end the loop.
                _log.warning("admission pass failed", error=str(e))
            self._wakeup.wait(self.settings.reconcile_interval_seconds)

    def admission_pass(self) -> tuple[Key, ...]:
        settings = self.settings
        limits = _limits(settings)
        st = self.state
        with st.lock:
            gpu_waiting = st.waiting.any_gpu()
        gpus = gpu_capacity(settings) if gpu_waiting and not limits.hold else {}
        self._gpus = gpus
        with st.lock:
            running = st.running()
            if settings.queue_hold == "HoldAndDrain":
                draining = [(ns, name) for (ns, name), j in st.jobs.items() if not j.finished]
            else:
                draining = []
            admit = next_admissions(st.ordered(time.monotonic()), running, limits, gpus)
            starts = []
            for key in admit:
                q = st.waiting.get(key)
                st.assume(key, q.strategy if q else "")
                starts.append(key)
            metrics.QUEUE_LENGTH.set(len(st.waiting))
            metrics.RUNNING_BACKTESTS.set(len(running) + len(starts))
        for vendor, free in gpus.items():
            metrics.GPUS_FREE.labels(vendor).set(free)
        for ns, name in draining:
            _drain(ns, name)
        for key in starts:
            self._pool.submit(self._start, key)
        if starts:
            st.positions_dirty.set()
        return tuple(starts)

    def _start(self, key: Key) -> None:
        kind_label, name = _split(key[1])
        kind = _KINDS[kind_label]
        retry: float | None = None
        with self.state.lock:
            group = self.state.strategy_of_assumed.get(key, "")
        try:
            kind.start(key[0], name, group, self.settings)
            return  # the slot stays assumed until the Job's event arrives
        except (NotWaiting, Refused):
            pass
        except (Unstartable, ApiException) as e:
            refused = api_refusal(e) if isinstance(e, ApiException) else str(e)
            reason = e.reason if isinstance(e, Unstartable) else "CreateRefused"
            if refused is None or not self._refuse(kind, key[0], name, reason, refused):
                _log.exception("admission failed", namespace=key[0], name=name, error=str(e))
                retry = time.monotonic() + RETRY_AFTER
        except Exception as e:
            _log.exception("admission failed", namespace=key[0], name=name, error=str(e))
            retry = time.monotonic() + RETRY_AFTER
        self.state.release(key, retry)

    def _refuse(
        self, kind: QueueKind, namespace: str, name: str, reason: str, message: str
    ) -> bool:
        """Fails the object for good (its kind's `refuse`); False when that could not be
        written (then the start is retried as before)."""
        if kind.refuse is None:
            return False
        try:
            kind.refuse(namespace, name.partition("#")[0], reason, message)
        except ApiException as e:
            return kube.is_not_found(e)  # gone meanwhile: nothing left to tell
        return True  # the kind's refuse logged it

    # --- positions, and the repair of a start whose status was never written ------------
    def _write_positions_loop(self) -> None:
        dirty = self.state.positions_dirty
        while not self._stop.is_set():
            dirty.wait(self.settings.reconcile_interval_seconds * 5)
            if self._stop.is_set():
                return
            dirty.clear()
            for step in (self.refuse_over_cap, self.write_positions, self.delete_expired):
                try:
                    step()
                except Exception as e:
                    _log.warning("queue upkeep failed", step=step.__name__, error=str(e))
            self._stop.wait(POSITIONS_INTERVAL)

    def refuse_over_cap(self) -> None:
        """Backtests beyond the namespace's waiting cap fail with a condition saying so."""
        st = self.state
        with st.lock:
            refused, st.over_cap = st.over_cap, {}
        cap = self.settings.max_waiting_backtests_per_namespace
        for (ns, name), item in refused.items():
            if item.kind != "backtest":
                continue
            message = (
                f"refused: namespace {ns} already has {cap} Backtests waiting (the "
                "operator's max_waiting_backtests_per_namespace); apply it again later"
            )
            at = now()
            patch = {
                "metadata": {"resourceVersion": item.resource_version},
                "status": {
                    "phase": "Failed",
                    "message": message,
                    "queuePosition": None,
                    "finishedAt": at,
                    "conditions": set_condition(
                        item.conditions,
                        "Admitted",
                        False,
                        "QueueFull",
                        message,
                        item.generation,
                        at=at,
                    ),
                },
            }
            try:
                kube.custom().patch_namespaced_custom_object_status(
                    GROUP, VERSION, ns, "backtests", name, patch
                )
                _log.warning("backtest refused: waiting cap", namespace=ns, name=name, cap=cap)
            except ApiException as e:
                if not (kube.is_not_found(e) or kube.is_conflict(e)):
                    raise

    def delete_expired(self) -> None:
        st = self.state
        at = dt.datetime.now(dt.UTC)
        with st.lock:
            due = [(k, uid) for k, (when, uid) in st.expiries.items() if when <= at]
        for (ns, name), uid in due:
            try:
                kube.custom().delete_namespaced_custom_object(
                    GROUP, VERSION, ns, "backtests", name, body={"preconditions": {"uid": uid}}
                )
                _log.info("finished backtest deleted at its TTL", namespace=ns, name=name)
            except ApiException as e:
                if not (kube.is_not_found(e) or kube.is_conflict(e)):
                    raise
            with st.lock:
                st.expiries.pop((ns, name), None)

    def write_positions(self) -> None:
        st = self.state
        with st.lock:
            queued = list(st.waiting)
            running = st.running()
            items = {q.key: st.items.get(q.key) for q in queued}
            # A Job seen for a while whose Backtest still says Queued: its start's status
            # patch never happened (the operator stopped in between).
            stale = time.monotonic() - 10 * self.settings.reconcile_interval_seconds
            repair = [
                (k, st.job_of[k], v.resource_version)
                for k, v in st.items.items()
                if v.kind == "backtest"
                and v.phase == "Queued"
                and k in st.job_of
                and st.jobs[(k[0], st.job_of[k])].seen_at < stale
            ]
        limits = _limits(self.settings)
        decision = decide(queued, running, limits, self._gpus)
        for key, position in decision.positions.items():
            item = items.get(key)
            if item is None or item.kind != "backtest":
                continue
            reason = decision.waiting_for.get(key, "")
            message = f"queued at position {position}: waiting for {reason}"
            if not position_worth_writing(item.position, position) and (
                item.message.split(": waiting for ")[-1] == reason
            ):
                continue
            patch = {
                "metadata": {"resourceVersion": item.resource_version},
                "status": {
                    "queuePosition": position,
                    "message": message,
                    "conditions": set_condition(
                        item.conditions,
                        "Admitted",
                        False,
                        "Waiting",
                        message,
                        item.generation,
                        at=now(),
                    ),
                },
            }
            try:
                kube.custom().patch_namespaced_custom_object_status(
                    GROUP, VERSION, key[0], "backtests", key[1], patch
                )
            except ApiException as e:
                # Changed meanwhile (admitted, deleted): its next event brings it back here
                # if it still waits.
                if not (kube.is_not_found(e) or kube.is_conflict(e)):
                    raise
        for (ns, name), job_name, rv in repair:
            _mark_running(ns, name, job_name, rv)


def _drain(namespace: str, job_name: str) -> None:
    """Like Kueue's HoldAndDrain: stop what runs; the Backtests go back to the queue."""
    _log.info("draining", namespace=namespace, job=job_name)
    try:
        kube.batch().delete_namespaced_job(job_name, namespace, propagation_policy="Background")
    except ApiException as e:
        if not kube.is_not_found(e):
            raise


def wake() -> None:
    """A slot has freed or an item needs one: run the next pass now."""
    runtime.get().admission_wakeup.set()


__all__ = [
    "BACKTEST",
    "AdmissionLoop",
    "NotWaiting",
    "QueueKind",
    "Refused",
    "Watcher",
    "backtest_job_name",
    "register",
    "wake",
]
