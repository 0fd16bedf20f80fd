"""CircuitBreaker controller: reads the selected LiveBots' monitored figures, asks the pure
state machine (domain/breaker.py) what to do, and on a trip stops every selected bot at once.

Crash safety comes from the order of the steps and from keeping each one's result in the
cluster or the records:
1. the decision to trip is written to status (state Open, trippedAt, reason) before anything
   else happens; from then on the LiveBot controller refuses the selected bots a pod;
2. the bots are stopped (in parallel: REST API, then their pods), each LiveBot marked Tripped;
3. the incident is recorded under an id derived from the breaker's uid and trippedAt;
4. status.incidentId says the trip is fully handled.
An operator that dies anywhere after 1 finds an Open breaker whose incidentId is not this
trip's, and does 2-4 again; each step is idempotent, so nothing is stopped twice in a harmful
way and the incident is recorded once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError
from structlog.typing import FilteringBoundLogger

from tradebot import kube
from tradebot.api.base import GROUP, VERSION
from tradebot.api.circuitbreaker import CircuitBreakerSpec, CircuitBreakerStatus
from tradebot.controllers import bot_control, bot_records, cache, runtime
from tradebot.controllers.livebot import stopping_fleet
from tradebot.controllers.status import condition, drop_unchanged, event
from tradebot.domain import breaker, evidence, monitoring
from tradebot.domain.livebot_round import tripped_message
from tradebot.domain.selectors import selects
from tradebot.domain.time import parse_time
from tradebot.faults import crash_point
from tradebot.observability import metrics
from tradebot.observability.logging import logger

PLURAL = "circuitbreakers"
RESET_ANNOTATION = "tradebot.dev/reset"
TRIP_ANNOTATION = "tradebot.dev/trip"
INCIDENT_WINDOW = dt.timedelta(days=1)
_SEVERE = frozenset({"drawdown", "dailyLoss", "consecutiveLosses"})


# Breakers get threads of their own (created by the runtime on first use, sized by the
# settings): a trip must never wait behind bot monitoring rounds in kopf's shared pool (each
# of those may wait on a bot's API).
def _rounds() -> ThreadPoolExecutor:
    rt = runtime.get()
    return rt.pool("breaker", rt.settings.breaker_threads)


def _stops() -> ThreadPoolExecutor:
    rt = runtime.get()
    return rt.pool("breaker-stop", rt.settings.breaker_stop_threads)


def _marks() -> ThreadPoolExecutor:
    rt = runtime.get()
    return rt.pool("breaker-mark", rt.settings.breaker_mark_threads)


def reading(bot: dict[str, Any], incidents: int = 0) -> breaker.BotReading:
    """A bot's figures as monitoring left them. Only a running bot's figures count: a stopped
    bot's last figures are history, not a reason to trip (again)."""
    status = bot.get("status") or {}
    running = status.get("phase") == "Running"
    if not running:
        status = {}
    return breaker.BotReading(
        name=bot["metadata"]["name"],
        equity=monitoring.figure(status, "equity") or Decimal(0),
        peak_equity=monitoring.figure(status, "peakEquity") or Decimal(0),
        daily_loss=monitoring.daily_loss(status),
        consecutive_losses=int(status.get("consecutiveLosses") or 0),
        incidents_in_window=incidents,
        last_heartbeat=parse_time(status.get("lastHeartbeat")),
        running_since=parse_time(status.get("runningSince")) if running else None,
    )


def _incident_counts(
    namespace: str, bots: list[dict[str, Any]], now: dt.datetime
) -> dict[str, int]:
    """Each running bot's own incidents in the last day, since its pod started (a reset
    starts it afresh, and the window with it): one read of the records per round."""
    recent = bot_records.bot_incidents(namespace, now - INCIDENT_WINDOW)
    counts: dict[str, int] = {}
    for bot in bots:
        status = bot.get("status") or {}
        if status.get("phase") != "Running":
            continue
        name = str(bot["metadata"]["name"])
        since = max(now - INCIDENT_WINDOW, parse_time(status.get("runningSince")) or now)
        counts[name] = sum(
            1 for i in recent if (name in i.bots or i.source_name == name) and i.created_at >= since
        )
    return counts


def _stop_one(bot: dict[str, Any], spec: CircuitBreakerSpec) -> tuple[str, bot_control.StopOutcome]:
    ref = bot_control.BotRef.of(bot)
    return ref.name, bot_control.stop(
        ref,
        spec.action,
        force_exit=spec.force_exit,
        use_api=bot_control.answered_last(bot.get("status") or {}),
    )


def _selected(spec: CircuitBreakerSpec, bots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    selector = spec.selector.to_wire()
    return [b for b in bots if selects(selector, b["metadata"].get("labels") or {})]


def _mark_tripped(bot: dict[str, Any], message: str, outcome: bot_control.StopOutcome) -> None:
    ref = bot_control.BotRef.of(bot)
    # The kept promotion decision goes in the same write: evidence from before a trip no
    # longer counts, and a fast auto reset must not bring the bot back on it before a LiveBot
    # round has seen the breaker Open.
    status: dict[str, Any] = {"phase": "Tripped", "message": message, "gateDecision": None}
    if outcome.pod_removed:
        status["podName"] = None
    try:
        kube.custom().patch_namespaced_custom_object_status(
            GROUP, VERSION, ref.namespace, "livebots", ref.name, {"status": status}
        )
    except ApiException as e:
        if not kube.is_not_found(e):
            raise


class _Rounds:
    """Per breaker: the lock that lets one round at a time evaluate it (the timer's, or one
    an event asked for), and when its last timed round began. Only a serialiser and a pacer:
    every round reads the breaker afresh, and nothing is decided from what is kept here."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._timed: dict[str, float] = {}
        self._lock = threading.Lock()

    def lock(self, uid: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(uid, threading.Lock())

    def due(self, uid: str, interval: float) -> bool:
        """Whether the timed round is due (`interval` from the last one, give or take half
        a tick of kopf's timer), and if so, that it begins now."""
        now = time.monotonic()
        with self._lock:
            last = self._timed.get(uid)
            if last is not None and now - last < interval - TIMER_SECONDS / 2:
                return False
            self._timed[uid] = now
            return True

    def forget(self, uid: str) -> None:
        with self._lock:
            self._locks.pop(uid, None)
            self._timed.pop(uid, None)


_ROUNDS = _Rounds()
# kopf's tick; the rounds themselves come every TRADEBOT_BREAKER_INTERVAL_SECONDS.
TIMER_SECONDS = 1.0


@kopf.timer(GROUP, VERSION, PLURAL, interval=TIMER_SECONDS)
async def reconcile_breaker(uid: str, **kwargs: object) -> None:
    if _ROUNDS.due(uid, runtime.get().settings.breaker_interval_seconds):
        await runtime.in_thread(_rounds(), _round, uid=uid, **kwargs)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def breaker_requested(body: kopf.Body, type: str | None, uid: str, **kwargs: object) -> None:
    """A person's trip or reset (the annotations) is handled as its watch event arrives, not
    at the next timed round: the kill switch is for when every second counts. The round is
    the timer's own (the same lock, a fresh read), so an event and a timed round that both
    see the token trip once."""
    if type == "DELETED":
        _ROUNDS.forget(uid)
    elif _requested(body.meta.get("annotations") or {}, body.status):
        await runtime.in_thread(_rounds(), _round, uid=uid, **kwargs)


def _requested(annotations: Mapping[str, str], status: Mapping[str, Any]) -> bool:
    """Whether the object shows a trip or reset token its status has not consumed yet."""
    trip, reset = annotations.get(TRIP_ANNOTATION), annotations.get(RESET_ANNOTATION)
    return (trip is not None and trip != status.get("lastTripToken")) or (
        reset is not None and reset != status.get("lastResetToken")
    )


def _round(
    namespace: str | None,
    name: str,
    uid: str,
    livebots_by_namespace: Mapping[Any, Iterable[dict[str, Any]]],
    **_: object,
) -> None:
    """One evaluation of the breaker, alone (its lock), from the breaker as the API server
    has it now, its status changes written before the lock is let go. Not kopf's body and
    patch: a timed round and an event's round hold bodies of different ages, and kopf would
    write a round's patch after the lock is free, over what a later round wrote (a stale
    round's Closed over a trip's Open)."""
    assert namespace is not None  # the kind is namespaced
    with _ROUNDS.lock(uid):
        live = kube.read_or_none(
            kube.custom().get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
        )
        if live is None or live["metadata"].get("uid") != uid:
            return  # deleted (or replaced: the new one has rounds of its own)
        body = kopf.Body(live)
        patch = kopf.Patch()
        _reconcile(
            body=body,
            spec=body.spec,
            status=body.status,
            meta=body.meta,
            namespace=namespace,
            name=name,
            uid=uid,
            patch=patch,
            livebots_by_namespace=livebots_by_namespace,
        )
        drop_unchanged(patch, live.get("status") or {})
        if patch.get("status"):
            kube.custom().patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, {"status": dict(patch["status"])}
            )


@metrics.counted("CircuitBreaker")
def _reconcile(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    namespace: str | None,
    name: str,
    uid: str,
    patch: kopf.Patch,
    livebots_by_namespace: Mapping[Any, Iterable[dict[str, Any]]],
    **_: object,
) -> None:
    assert namespace is not None  # the kinds are namespaced
    generation = int(meta.get("generation") or 0)
    current = dict(status)
    correlation_id = f"{uid}/{generation}"
    log = logger(
        kind="CircuitBreaker", namespace=namespace, name=name, correlation_id=correlation_id
    )
    parsed = _parse(spec, current, patch, generation)
    if parsed is None:
        return
    model, state = parsed
    # The bots as the operator last saw them (its watch), not a list every second: their
    # figures come from monitoring rounds seconds apart anyway.
    bots = _selected(model, cache.entries(livebots_by_namespace, namespace))
    now = dt.datetime.now(dt.UTC)
    readings = _readings(model, namespace, bots, now)
    reset_token = (meta.get("annotations") or {}).get(RESET_ANNOTATION)
    decision = breaker.evaluate(
        model,
        state,
        readings,
        now,
        reset_token,
        trip_token_requested=(meta.get("annotations") or {}).get(TRIP_ANNOTATION),
        watching_since=runtime.get().watching_since,
    )
    new_status = {**breaker.to_status(decision.state), "observedGeneration": generation}
    opened = decision.state
    incident_id = _incident_id(uid, opened)
    _settle_pending(meta, current, patch, incident_id, correlation_id, generation, log)
    # From the decision on, this namespace's LiveBot rounds wait until the trip is handled:
    # the API server serves the stops first, and nothing else of the fleet's is written.
    handling = _handling(namespace, name, decision, current, incident_id)
    with stopping_fleet(namespace) if handling else contextlib.nullcontext():
        if decision.tripped:
            _write_open(namespace, name, uid, model, decision, readings, new_status, now, log)
            current.update(new_status)
        patch.status.update(new_status)
        metrics.BREAKER_OPEN.labels(namespace, name).set(1 if opened.state == "Open" else 0)
        if handling:
            assert incident_id is not None
            _handle_trip(
                body, model, opened, bots, current, patch, incident_id, correlation_id, generation
            )
            return
    _announce(body, decision, current, patch, reset_token, generation, log)


def _announce(
    body: kopf.Body,
    decision: breaker.BreakerDecision,
    current: dict[str, Any],
    patch: kopf.Patch,
    reset_token: str | None,
    generation: int,
    log: FilteringBoundLogger,
) -> None:
    """A reset or a change of state, told as an Event (and the log, for a reset)."""
    if decision.reset:
        event(body, "Reset", f"reset by token {reset_token!r}; bots may run again")
        log.info("breaker reset", token=reset_token)
        condition(
            current, patch, "Tripped", False, "Reset", f"reset by token {reset_token!r}", generation
        )
    elif decision.state.state != current.get("state"):
        event(body, decision.state.state, f"breaker is {decision.state.state}")


def _parse(
    spec: kopf.Spec, current: dict[str, Any], patch: kopf.Patch, generation: int
) -> tuple[CircuitBreakerSpec, breaker.BreakerState] | None:
    """The spec and the state it left; None (and the Valid condition) when they don't parse."""
    try:
        model = CircuitBreakerSpec.model_validate(dict(spec))
        return model, breaker.BreakerState.from_status(CircuitBreakerStatus.model_validate(current))
    except ValidationError as e:
        condition(
            current, patch, "Valid", False, "InvalidSpec", str(e.errors()[0]["msg"]), generation
        )
        return None


def _incident_id(uid: str, opened: breaker.BreakerState) -> str | None:
    if opened.state == "Open" and opened.tripped_at is not None:
        return evidence.breaker_incident_id(uid, opened.tripped_at)
    return None


def _readings(
    spec: CircuitBreakerSpec, namespace: str, bots: list[dict[str, Any]], now: dt.datetime
) -> list[breaker.BotReading]:
    counts = _incident_counts(namespace, bots, now) if spec.limits.max_incidents is not None else {}
    return [reading(b, counts.get(b["metadata"]["name"], 0)) for b in bots]


def _handling(
    namespace: str,
    name: str,
    decision: breaker.BreakerDecision,
    current: dict[str, Any],
    incident_id: str | None,
) -> bool:
    """Whether this round handles a trip (steps 2-4): a new one, or one whose incident is not
    written yet."""
    if incident_id is None:
        return False
    if decision.tripped:
        return True
    if current.get("incidentId") == incident_id:
        return False
    # A trip handled moments ago may not be in kopf's view of this breaker yet (hundreds of
    # bot events go first): the API server says whether step 4 is written.
    live = kube.custom().get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return bool((live.get("status") or {}).get("incidentId") != incident_id)


def _write_open(
    namespace: str,
    name: str,
    spec_uid: str,
    spec: CircuitBreakerSpec,
    decision: breaker.BreakerDecision,
    readings: list[breaker.BotReading],
    new_status: dict[str, Any],
    now: dt.datetime,
    log: FilteringBoundLogger,
) -> None:
    """Step 1 of a trip: Open is in the cluster before any bot is touched."""
    limits = list(decision.limits)
    new_status["tripLimits"] = limits
    opened = decision.state
    assert opened.tripped_at is not None
    # In the same patch as Open: from here on the incident cannot be lost, whatever happens
    # before it is recorded (a crash, then a reset by a person before the restart).
    new_status["pendingIncident"] = {
        "id": evidence.breaker_incident_id(spec_uid, opened.tripped_at),
        "trippedAt": new_status["trippedAt"],
        "reason": opened.reason,
        "affectedBots": list(opened.affected_bots),
    }
    new_status["tripFigures"] = {
        k: format(v, "f") for k, v in breaker.trip_figures(readings).items()
    }
    kube.custom().patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": new_status}
    )
    metrics.BREAKER_TRIPS.labels(namespace, name).inc()
    log.warning(
        "breaker tripped",
        reason=decision.reason,
        limits=limits,
        bots=list(decision.stop_bots),
        action=spec.action,
        force_exit=spec.force_exit,
        tripped_at=new_status["trippedAt"],
        open_written_seconds=round((dt.datetime.now(dt.UTC) - now).total_seconds(), 3),
    )
    crash_point("breaker-open-persisted")


def _handle_trip(
    body: kopf.Body,
    spec: CircuitBreakerSpec,
    opened: breaker.BreakerState,
    bots: list[dict[str, Any]],
    current: dict[str, Any],
    patch: kopf.Patch,
    incident_id: str,
    correlation_id: str,
    generation: int,
) -> None:
    """Steps 2-4 of a trip (see the module's docstring); repeated until step 4 is written."""
    meta = body["metadata"]
    namespace, name = str(meta["namespace"]), str(meta["name"])
    assert opened.tripped_at is not None
    outcomes, stopped_after = _stop_all(spec, opened, bots, namespace, name)
    description = _trip_description(name, spec, opened, outcomes)
    if not _write_incident(meta, opened, current, description, incident_id, correlation_id):
        # The bots are stopped; the record is retried next round (and buffered by the store).
        condition(
            current,
            patch,
            "IncidentRecorded",
            False,
            "RecordsUnavailable",
            "the incident could not be recorded yet; retrying",
            generation,
        )
        return
    crash_point("breaker-incident-recorded")
    patch.status["incidentId"] = incident_id
    patch.status["pendingIncident"] = None
    condition(current, patch, "Tripped", True, "LimitCrossed", opened.reason or "", generation)
    condition(current, patch, "IncidentRecorded", True, "Recorded", incident_id, generation)
    event(
        body,
        "Tripped",
        f"{opened.reason}; stopped {len(outcomes)} bot(s) "
        f"({spec.action}) in {stopped_after.total_seconds():.2f}s; incident {incident_id}",
        warning=True,
    )
    logger(
        kind="CircuitBreaker", namespace=namespace, name=name, correlation_id=correlation_id
    ).warning(
        "trip handled",
        incident=incident_id,
        bots=sorted(outcomes),
        stop_seconds=round(stopped_after.total_seconds(), 3),
    )


def _settle_pending(
    meta: Mapping[str, Any],
    current: dict[str, Any],
    patch: kopf.Patch,
    handled_now: str | None,
    correlation_id: str,
    generation: int,
    log: FilteringBoundLogger,
) -> None:
    """A trip written Open whose incident was never recorded (a crash in between) and that
    this round will not handle (a reset since, or a newer trip): its incident is recorded
    from status.pendingIncident before anything else of the round; cleared once
    recorded. A failure leaves it pending for the next round (a reset still applies: a person
    asked for it, and the record is kept, not lost)."""
    pending = current.get("pendingIncident")
    if not pending or pending.get("id") in (current.get("incidentId"), handled_now):
        return
    tripped_at = parse_time(pending.get("trippedAt"))
    if tripped_at is None:
        return
    trip = breaker.BreakerState(
        "Open",
        tripped_at=tripped_at,
        reason=pending.get("reason"),
        affected_bots=tuple(pending.get("affectedBots") or ()),
    )
    description = (
        f"CircuitBreaker {meta['name']} tripped: {trip.reason}. Recorded after the trip's own "
        "handling was cut short (the operator stopped before recording it, and the breaker "
        "was reset or tripped again since)."
    )
    if not _write_incident(meta, trip, current, description, pending["id"], correlation_id):
        condition(
            current,
            patch,
            "IncidentRecorded",
            False,
            "RecordsUnavailable",
            f"incident {pending['id']} could not be recorded yet; retrying",
            generation,
        )
        return
    log.warning("pending incident recorded", incident=pending["id"])
    patch.status["pendingIncident"] = None
    current["pendingIncident"] = None


def _write_incident(
    meta: Mapping[str, Any],
    opened: breaker.BreakerState,
    current: dict[str, Any],
    description: str,
    incident_id: str,
    correlation_id: str,
) -> bool:
    """Step 3 of a trip: the incident, recorded (or buffered); False when it could not be."""
    assert opened.tripped_at is not None
    name = str(meta["name"])
    limits = list(current.get("tripLimits") or ["unknown"])
    figures = {k: Decimal(v) for k, v in (current.get("tripFigures") or {}).items()}
    return bot_records.write_incident(
        bot_records.incident(
            incident_id=incident_id,
            namespace=str(meta["namespace"]),
            source_kind="CircuitBreaker",
            source_name=name,
            source_uid=str(meta["uid"]),
            breaker=name,
            bots=opened.affected_bots,
            severity="critical" if _SEVERE.intersection(limits) else "warning",
            reason=",".join(limits),
            description=description,
            figures=figures,
            created_at=opened.tripped_at,
            correlation_id=correlation_id,
        )
    )


def _stop_all(
    spec: CircuitBreakerSpec,
    opened: breaker.BreakerState,
    bots: list[dict[str, Any]],
    namespace: str,
    name: str,
) -> tuple[dict[str, bot_control.StopOutcome], dt.timedelta]:
    """Step 2 of a trip: every affected bot stopped, then marked Tripped."""
    assert opened.tripped_at is not None
    targets = [b for b in bots if b["metadata"]["name"] in opened.affected_bots]
    # Every bot is stopped before any status is written: the statuses are bookkeeping
    # (the LiveBot controller writes them too), the stops are what limits the loss.
    outcomes = dict(_stops().map(lambda b: _stop_one(b, spec), targets))
    stopped_after = dt.datetime.now(dt.UTC) - opened.tripped_at
    # The cached view may lag the cluster by an event: a selected bot it had not seen
    # yet is stopped too, from the API server's own list.
    late = [
        b
        for b in _selected(spec, kube.list_metadata(GROUP, VERSION, namespace, "livebots"))
        if b["metadata"]["name"] not in outcomes
    ]
    outcomes.update(_stops().map(lambda b: _stop_one(b, spec), late))
    targets += late
    metrics.BREAKER_STOP_SECONDS.observe(max(stopped_after.total_seconds(), 0.0))
    crash_point("breaker-bots-stopped")
    # The LiveBot controller's own words, so that it sees nothing new to announce; on
    # fewer threads than the stops, so that the kubelets' watches (who must see the
    # deletions) are not crowded out by bookkeeping.
    list(
        _marks().map(
            lambda b: _mark_tripped(b, tripped_message(name), outcomes[b["metadata"]["name"]]),
            targets,
        )
    )
    return outcomes, stopped_after


def _trip_description(
    name: str,
    spec: CircuitBreakerSpec,
    opened: breaker.BreakerState,
    outcomes: dict[str, bot_control.StopOutcome],
) -> str:
    summary = "; ".join(f"{bot}: {o.describe()}" for bot, o in sorted(outcomes.items()))
    return (
        f"CircuitBreaker {name} tripped: {opened.reason}. Action {spec.action}"
        f"{' with force exit' if spec.force_exit else ''}. {summary or 'no bots'}"
    )
