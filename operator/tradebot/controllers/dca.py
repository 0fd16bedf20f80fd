"""DcaSchedule controller: at each slot, one market buy of a fixed stake through the LiveBot's
REST force-entry, or a recorded reason why not (domain/dca.py decides).

Every decision is made from the schedule as the API server has it now (read fresh, not from
kopf's cached body, which may lag this controller's own writes), and every write carries the
resourceVersion read: a tick that decided from an older status changes nothing. A buy's intent
(slot, entry tag) is written before the bot is called, so a restarted operator looks the tag
up in the bot's trades before it would buy that slot again.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from tradebot import kube
from tradebot.api.base import GROUP, VERSION
from tradebot.api.dcaschedule import DcaScheduleSpec
from tradebot.api.livebot import InvalidSpec, parse_spec
from tradebot.controllers import bot_control, runtime
from tradebot.controllers.livebot import fleet_stop_in_progress, read_breakers
from tradebot.controllers.status import post_event
from tradebot.domain import dca, livebot_round
from tradebot.domain.conditions import set_condition
from tradebot.domain.time import format_time, parse_time
from tradebot.faults import crash_point
from tradebot.freqtrade.rest import BotApiError, BotClient, BotRefused, BotUnreachable
from tradebot.observability import metrics
from tradebot.observability.logging import logger
from tradebot.records import DcaBuyRecord, RecordsError
from tradebot.records.models import METRIC_QUANTUM

PLURAL = "dcaschedules"
KIND = "DcaSchedule"
# Longer than a monitoring call: an entry places an order on the exchange. Well below
# dca.SETTLE, so an unanswered request is over before its slot may be tried again.
FORCE_ENTRY_TIMEOUT_SECONDS = 10.0
LOOKUP_TIMEOUT_SECONDS = 3.0
CLOSED_TRADES_SEARCHED = 500


class _Stale(Exception):
    """The schedule changed since it was read (a 409): the next tick decides again."""


def _spec(raw: dict[str, Any]) -> tuple[DcaScheduleSpec | None, str | None]:
    try:
        return DcaScheduleSpec.model_validate(raw), None
    except (ValidationError, ValueError) as e:
        errors = e.errors() if isinstance(e, ValidationError) else []
        if errors:
            where = ".".join(str(p) for p in errors[0]["loc"])
            message = str(errors[0]["msg"]).removeprefix("Value error, ")
            return None, f"{where}: {message}" if where else message
        return None, str(e)


def _worth_a_round(
    spec: dict[str, Any], status: dict[str, Any], meta: kopf.Meta, now: dt.datetime
) -> bool:
    """Cheap, from kopf's view, in its event loop: most ticks find no slot due."""
    if status.get("pending") or status.get("observedGeneration") != meta.get("generation"):
        return True
    model, _ = _spec(spec)
    if model is None:
        return False  # already reported for this generation
    schedule = dca.schedule_of(model.schedule.cron, model.schedule.every)
    slot = schedule.latest_at_or_before(now)
    created = parse_time(meta.get("creationTimestamp")) or now
    last = parse_time(status.get("lastSlot"))
    if slot is not None and slot > created and (last is None or slot > last):
        return True
    upcoming = schedule.next_after(now)
    return parse_time(status.get("nextSlot")) != upcoming


@kopf.timer(GROUP, VERSION, PLURAL, interval=2.0)
async def tick_dca(
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    namespace: str | None,
    name: str,
    **_: object,
) -> None:
    assert namespace is not None
    if not _worth_a_round(dict(spec), dict(status), meta, dt.datetime.now(dt.UTC)):
        return
    rt = runtime.get()
    await runtime.in_thread(
        rt.pool("dca", rt.settings.handler_threads), _reconcile, namespace=namespace, name=name
    )


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def dca_deleted(namespace: str | None, name: str, **_: object) -> None:
    """No finalizer (nothing outside the object to clean up): its metric series go."""
    metrics.forget_dca(str(namespace), name)


@metrics.counted(KIND)
def _reconcile(namespace: str, name: str) -> None:
    if fleet_stop_in_progress(namespace):
        return  # a breaker is stopping bots here: it goes first, a buy certainly waits
    obj = kube.read_or_none(
        kube.custom().get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
    )
    if obj is None:
        return
    try:
        _Round(obj).run()
    except _Stale:
        return


class _Round:
    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        meta = obj["metadata"]
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.rv = str(meta["resourceVersion"])
        self.generation = int(meta.get("generation") or 0)
        self.status: dict[str, Any] = dict(obj.get("status") or {})
        self.now = dt.datetime.now(dt.UTC)
        self.log = logger(
            kind=KIND,
            namespace=self.namespace,
            name=self.name,
            correlation_id=f"{self.uid}/{self.generation}",
        )
        self.client: BotClient | None = None

    def run(self) -> None:
        spec, error = _spec(dict(self.obj.get("spec") or {}))
        if spec is None:
            self._invalid(error or "invalid spec")
            return
        self.spec = spec
        o = self._observe(spec)
        decision = dca.decide(o)
        if isinstance(decision, dca.AskBot):
            o = replace(o, bot_state=self._bot_state(decision.tag))
            decision = dca.decide(o)
        if isinstance(decision, dca.Idle):
            self._idle(decision)
        elif isinstance(decision, dca.Wait):
            self._wait(decision)
        elif isinstance(decision, dca.Record):
            self._record(decision)
        elif isinstance(decision, dca.Buy):
            self._buy(decision)

    # -- observing -----------------------------------------------------------------------

    def _observe(self, spec: DcaScheduleSpec) -> dca.Observation:
        pending = self.status.get("pending")
        deadline = spec.starting_deadline_seconds
        return dca.Observation(
            now=self.now,
            uid=self.uid,
            created=parse_time(self.obj["metadata"].get("creationTimestamp")) or self.now,
            schedule=dca.schedule_of(spec.schedule.cron, spec.schedule.every),
            pair=spec.pair,
            stake=spec.stake_amount,
            suspend=spec.suspend,
            starting_deadline=dt.timedelta(seconds=deadline) if deadline else None,
            last_slot=parse_time(self.status.get("lastSlot")),
            pending=dca.Pending(
                slot=parse_time(pending["slot"]) or self.now,
                entry_tag=pending["entryTag"],
                attempts=int(pending.get("attempts") or 1),
                intended_at=parse_time(pending.get("intendedAt")) or self.now,
            )
            if pending
            else None,
            bot=self._bot_view(spec.bot_ref.name),
        )

    def _bot_view(self, bot_name: str) -> dca.BotView | None:
        bot = kube.read_or_none(
            kube.custom().get_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            "livebots",
            bot_name,
        )
        if bot is None:
            return None
        self.bot_ref = bot_control.BotRef.of(bot)
        phase = (bot.get("status") or {}).get("phase")
        labels = bot["metadata"].get("labels") or {}
        breaker = livebot_round.tripped_by(
            bot_name, labels, read_breakers(self.namespace), self.now
        )
        try:
            spec = parse_spec(bot.get("spec") or {})
        except InvalidSpec:
            return dca.BotView(
                "Failed", "dryRun", (), False, None, 1, breaker.name if breaker else None
            )
        limits = spec.limits
        most = min(
            [spec.max_open_trades]
            + ([limits.max_open_trades] if limits and limits.max_open_trades else [])
        )
        return dca.BotView(
            phase,
            spec.mode,
            tuple(spec.pairs),
            spec.suspend,
            limits.max_stake_per_trade if limits else None,
            most,
            breaker.name if breaker else None,
        )

    def _bot_state(self, tag: str | None) -> dca.BotState:
        """The bot's own view over its REST API: trader state, open trades and, for an
        unconfirmed slot, the order with its tag among open and recent closed trades."""
        ref = getattr(self, "bot_ref", None)
        url = bot_control.bot_url(ref) if ref is not None else None
        credentials = bot_control.api_credentials(ref) if ref is not None else None
        if url is None or credentials is None:
            return dca.BotState(error="the bot has no API to call (not started)")
        self.client = BotClient(
            url, credentials.username, credentials.password, timeout=LOOKUP_TIMEOUT_SECONDS
        )
        try:
            config = self.client.show_config()
            open_trades = self.client.status()
            found = None
            if tag is not None:
                found = dca.tagged_order(open_trades, tag) or dca.tagged_order(
                    self.client.trades(limit=CLOSED_TRADES_SEARCHED), tag
                )
        except (BotUnreachable, BotApiError) as e:
            return dca.BotState(error=str(e))
        return dca.BotState(
            running=config.get("state") == "running",
            position_adjustment=bool(config.get("position_adjustment_enable")),
            open_stakes=dca.open_stakes(open_trades),
            found=found,
        )

    # -- writing -------------------------------------------------------------------------

    def _write(self, status: dict[str, Any]) -> None:
        """One status patch, only if the schedule is still as read (else _Stale)."""
        try:
            answer = kube.custom().patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                self.name,
                {"metadata": {"resourceVersion": self.rv}, "status": status},
            )
        except ApiException as e:
            if kube.is_conflict(e) or kube.is_not_found(e):
                raise _Stale from None
            raise
        self.rv = str(answer["metadata"]["resourceVersion"])
        self.status.update(status)

    def _ready(self, ok: bool, reason: str, message: str) -> dict[str, Any]:
        return {
            "conditions": set_condition(
                self.status.get("conditions"),
                "Ready",
                ok,
                reason,
                message,
                self.generation,
                at=format_time(self.now.replace(microsecond=0)),
            ),
            "observedGeneration": self.generation,
        }

    def _changed(self, update: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in update.items() if self.status.get(k) != v}

    def _event(self, reason: str, message: str, warning: bool = False) -> None:
        try:
            post_event(self.obj, KIND, reason, message, warning=warning)
        except ApiException as e:  # an Event is a notice: the status holds the record
            self.log.warning("event not posted", reason=reason, status=e.status)

    def _invalid(self, error: str) -> None:
        message = f"invalid spec: {error}"
        if (
            self.status.get("message") == message
            and self.status.get("observedGeneration") == self.generation
        ):
            return
        self._write(
            {"phase": "Invalid", "message": message, **self._ready(False, "InvalidSpec", message)}
        )
        self._event("InvalidSpec", message, warning=True)
        self.log.warning("invalid DcaSchedule", error=error)

    def _idle(self, d: dca.Idle) -> None:
        phase = "Suspended" if self.spec.suspend else "Active"
        message = (
            f"next slot {format_time(d.next_slot)}"
            if d.next_slot
            else "the schedule never fires again"
        )
        update = self._changed(
            {
                "phase": phase,
                "message": message,
                "nextSlot": format_time(d.next_slot) if d.next_slot else None,
                "observedGeneration": self.generation,
            }
        )
        if update:
            self._write({**update, **self._ready(True, phase, message)})

    def _wait(self, d: dca.Wait) -> None:
        if self.status.get("message") == d.message and self.status.get("phase") == "Waiting":
            return
        # One Event per reason, not one per slot of a bot that stays down.
        was = next(
            (
                c.get("reason")
                for c in self.status.get("conditions") or []
                if c.get("type") == "Ready"
            ),
            None,
        )
        self._write(
            {"phase": "Waiting", "message": d.message, **self._ready(False, d.reason, d.message)}
        )
        if was != d.reason:
            self._event(d.reason, d.message, warning=d.reason != "Confirming")
        self.log.info("slot waits", slot=format_time(d.slot), reason=d.reason, message=d.message)

    def _record(self, d: dca.Record) -> None:
        update = dca.recorded_status(self.status, d, self.spec.stake_amount, self.now)
        following = dca.schedule_of(self.spec.schedule.cron, self.spec.schedule.every).next_after(
            self.now
        )
        message = f"slot {format_time(d.slot)}: {d.outcome}: {d.message}"
        self._write(
            {
                **update,
                "phase": "Suspended" if self.spec.suspend else "Active",
                "message": message,
                "nextSlot": format_time(following) if following else None,
                **self._ready(True, d.outcome, message),
            }
        )
        metrics.DCA_SLOTS.labels(self.namespace, self.name, d.outcome).inc()
        if d.outcome == "Bought":
            metrics.DCA_BOUGHT_STAKE.labels(self.namespace, self.name).inc(
                float(
                    d.order.cost if d.order is not None and d.order.cost else self.spec.stake_amount
                )
            )
        self._event(d.outcome, message, warning=d.outcome in ("Failed", "Unconfirmed", "Missed"))
        self._keep(d)
        self.log.info(
            "slot recorded",
            slot=format_time(d.slot),
            outcome=d.outcome,
            reason=d.reason,
            entry_tag=d.tag,
            missed_before=d.missed_before,
        )

    def _keep(self, d: dca.Record) -> None:
        """The slot's outcome in the records database too, where it outlives the bounded
        history and the schedule. Only a notice: the status just written is what keeps a slot
        from being bought twice, so a records failure never holds the schedule up."""
        order = d.order
        try:
            runtime.get().store().record_dca_buy(
                DcaBuyRecord(
                    schedule_uid=self.uid,
                    namespace=self.namespace,
                    schedule=self.name,
                    bot=self.spec.bot_ref.name,
                    pair=self.spec.pair,
                    slot=d.slot,
                    outcome=d.outcome,
                    reason=d.reason,
                    message=d.message,
                    entry_tag=d.tag,
                    stake=self.spec.stake_amount,
                    cost=_places(order.cost) if order is not None else None,
                    amount=_places(order.amount) if order is not None else None,
                    trade_id=order.trade_id if order is not None else None,
                    recorded_at=self.now,
                )
            )
        except (RecordsError, ValueError) as e:
            metrics.RECORD_FAILURES.inc()
            self.log.error("slot not recorded in the records database", error=str(e))

    def _buy(self, d: dca.Buy) -> None:
        # The intent first: from here on a restart looks the tag up before buying again.
        self._write(
            {
                "pending": {
                    "slot": format_time(d.slot),
                    "entryTag": d.tag,
                    "attempts": d.attempt,
                    "intendedAt": format_time(self.now),
                },
                "phase": "Active",
                "message": f"buying slot {format_time(d.slot)}",
            }
        )
        assert self.client is not None
        self.client.timeout = FORCE_ENTRY_TIMEOUT_SECONDS
        try:
            trade = self.client.force_enter(
                self.spec.pair,
                stake_amount=self.spec.stake_amount,
                entry_tag=d.tag,
                order_type="market",
            )
        except BotRefused as e:
            self._record(
                dca.Record(
                    d.slot,
                    "Failed",
                    "Refused",
                    f"the bot refused: {e}",
                    d.tag,
                    missed_before=d.missed_before,
                )
            )
            return
        except (BotUnreachable, BotApiError) as e:
            # Placed or not: the next ticks look the tag up in the bot's trades.
            self.log.warning(
                "force entry unanswered", slot=format_time(d.slot), entry_tag=d.tag, error=str(e)
            )
            return
        crash_point("dca-entry-sent")  # the order is placed, its outcome not yet recorded
        order = dca.tagged_order([trade], d.tag)
        if order is None:
            self.log.warning(
                "force entry answered without the order",
                entry_tag=d.tag,
                answer=str(trade.get("status") or "")[:200],
            )
            return  # the lookup decides once it settles
        self._record(
            dca.bought(
                d.slot, d.tag, order, self.spec.stake_amount, self.spec.pair, d.missed_before
            )
        )


def _places(value: Decimal) -> Decimal:
    """An exchange figure at the records' 8 places: an amount may carry more (some assets
    have 18), and the records keep what a report needs, not the exchange's precision."""
    return value.quantize(METRIC_QUANTUM, rounding=ROUND_HALF_EVEN)
