"""CircuitBreaker controller: reads the selected LiveBots' monitored figures, asks the pure
state machine (domain/breaker.py) what to do, and on a trip stops every selected bot at once
(before the LiveBots' own controller marks them Tripped and keeps them stopped).

The state lives in status, so a restarted operator derives the same state; the bots are
stopped by this controller and kept stopped by the LiveBot controller, which refuses a pod
while any breaker selecting the bot is Open.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import kopf
from pydantic import ValidationError

from tradebot import kube
from tradebot.api.base import GROUP, VERSION
from tradebot.api.circuitbreaker import CircuitBreakerSpec, CircuitBreakerStatus
from tradebot.controllers.livebot import _selects, stop_bot
from tradebot.controllers.status import condition, event
from tradebot.domain import breaker, monitoring
from tradebot.domain.naming import child_name
from tradebot.observability import metrics
from tradebot.observability.logging import logger

PLURAL = "circuitbreakers"
RESET_ANNOTATION = "tradebot.dev/reset"


def _when(value: object) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _figure(status: dict[str, Any], key: str) -> Decimal:
    value = status.get(key)
    return Decimal(str(value)) if value not in (None, "") else Decimal(0)


def reading(bot: dict[str, Any]) -> breaker.BotReading:
    """A bot's figures as monitoring left them. Only a running bot's figures count: a stopped
    bot's last figures are history, not a reason to trip (again)."""
    status = bot.get("status") or {}
    running = status.get("phase") == "Running"
    if not running:
        status = {}
    return breaker.BotReading(
        name=bot["metadata"]["name"],
        equity=_figure(status, "equity"),
        peak_equity=_figure(status, "peakEquity"),
        daily_loss=monitoring.daily_loss(status),
        consecutive_losses=int(status.get("consecutiveLosses") or 0),
        incidents_in_window=0,
        last_heartbeat=_when(status.get("lastHeartbeat")),
        running_since=_when(status.get("runningSince")) if running else None,
    )


@kopf.timer(GROUP, VERSION, PLURAL, interval=1.0)
@metrics.counted("CircuitBreaker")
def reconcile_breaker(body: kopf.Body, spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta,
                      namespace: str | None, name: str, uid: str, patch: kopf.Patch,
                      **_: Any) -> None:
    assert namespace is not None  # the kinds are namespaced
    generation = int(meta.get("generation") or 0)
    current = dict(status)
    log = logger(kind="CircuitBreaker", namespace=namespace, name=name,
                 correlation_id=f"{uid}/{generation}")
    try:
        model = CircuitBreakerSpec.model_validate(dict(spec))
        state = breaker.BreakerState.from_status(CircuitBreakerStatus.model_validate(current))
    except ValidationError as e:
        condition(current, patch, "Valid", False, "InvalidSpec", str(e.errors()[0]["msg"]),
                  generation)
        return
    bots = [b for b in kube.custom().list_namespaced_custom_object(
        GROUP, VERSION, namespace, "livebots")["items"]
        if _selects(model.selector.to_wire(), b["metadata"].get("labels") or {})]
    now = dt.datetime.now(dt.UTC)
    token = (meta.get("annotations") or {}).get(RESET_ANNOTATION)
    decision = breaker.evaluate(model, state, [reading(b) for b in bots], now, token)
    patch.status.update(breaker.to_status(decision.state))
    patch.status["observedGeneration"] = generation
    metrics.BREAKER_OPEN.labels(namespace, name).set(1 if decision.state.state == "Open" else 0)
    if decision.tripped:
        metrics.BREAKER_TRIPS.labels(namespace, name).inc()
        # Stop first, write down second: a crash in between leaves Open in status (written
        # with this round) or a still-Closed breaker that trips again next round.
        for bot in bots:
            meta_b = bot["metadata"]
            if meta_b["name"] in decision.stop_bots:
                stop_bot(namespace, child_name("bot", meta_b["name"], meta_b["uid"]),
                         meta_b["uid"])
        event(body, "Tripped", f"{decision.reason}; stopped {len(decision.stop_bots)} bot(s): "
              f"{', '.join(decision.stop_bots)}", warning=True)
        log.warning("breaker tripped", reason=decision.reason,
                    bots=list(decision.stop_bots), action=model.action)
        condition(current, patch, "Tripped", True, "LimitCrossed", decision.reason or "",
                  generation)
    elif decision.reset:
        event(body, "Reset", f"reset by token {token!r}; bots may run again")
        log.info("breaker reset", token=token)
        condition(current, patch, "Tripped", False, "Reset", f"reset by token {token!r}",
                  generation)
    elif decision.state.state != current.get("state"):
        event(body, decision.state.state, f"breaker is {decision.state.state}")
