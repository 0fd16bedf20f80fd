"""The operator's Prometheus metrics. One registry, so tests can read it without a server."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILIATIONS = Counter(
    "tradebot_reconciliations_total",
    "Reconciliations by kind and outcome.",
    ["kind", "outcome"],
    registry=REGISTRY,
)
QUEUE_LENGTH = Gauge(
    "tradebot_backtest_queue_length", "Backtests waiting for admission.", registry=REGISTRY
)
LEADER = Gauge(
    "tradebot_operator_leader",
    "1 while this replica holds the leader Lease and acts, 0 while it stands by.",
    registry=REGISTRY,
)
RUNNING_BACKTESTS = Gauge(
    "tradebot_backtests_running", "Backtest Jobs that hold a slot.", registry=REGISTRY
)
GPUS_FREE = Gauge(
    "tradebot_gpus_free",
    "Free GPUs by vendor at the last admission pass that needed them.",
    ["vendor"],
    registry=REGISTRY,
)
ADMISSIONS = Counter(
    "tradebot_backtest_admissions_total", "Backtests admitted (Jobs created).", registry=REGISTRY
)
QUEUE_WAIT = Histogram(
    "tradebot_backtest_queue_wait_seconds",
    "Time from creation to admission.",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200),
    registry=REGISTRY,
)
BACKTESTS_FINISHED = Counter(
    "tradebot_backtests_finished_total",
    "Backtests that ended, by phase.",
    ["phase"],
    registry=REGISTRY,
)
RECORD_FAILURES = Counter(
    "tradebot_record_failures_total", "Writes to the records store that failed.", registry=REGISTRY
)
RECORDS_SET_ASIDE = Gauge(
    "tradebot_records_set_aside",
    "Record writes set aside as never applicable (kept with their error in the outbox's "
    "`.rejected` file; `tradebot records list --failed`).",
    registry=REGISTRY,
)
OUTBOX_DEPTH = Gauge(
    "tradebot_records_outbox_depth",
    "Record writes waiting in the outbox for the database.",
    registry=REGISTRY,
)
# Labelled by store operation (record_run, record_metrics, ...): a fixed handful.
RECORD_WRITE_SECONDS = Histogram(
    "tradebot_records_write_seconds",
    "Latency of record writes to the database, failed attempts included.",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)


# Labelled by bot: bounded by the number of LiveBots, which the operator's users declare.
BOT_EQUITY = Gauge(
    "tradebot_bot_equity",
    "A bot's total balance in its stake currency (float for display "
    "only; status and records keep the exact figure).",
    ["namespace", "bot"],
    registry=REGISTRY,
)
BOT_OPEN_TRADES = Gauge(
    "tradebot_bot_open_trades", "A bot's open trades.", ["namespace", "bot"], registry=REGISTRY
)
BOT_PROFIT = Gauge(
    "tradebot_bot_profit",
    "A bot's closed profit in its stake currency (display only).",
    ["namespace", "bot"],
    registry=REGISTRY,
)
BOT_DRAWDOWN = Gauge(
    "tradebot_bot_drawdown",
    "A bot's drawdown from its peak equity (0.1 = 10 %).",
    ["namespace", "bot"],
    registry=REGISTRY,
)
BOT_HEARTBEAT = Gauge(
    "tradebot_bot_last_heartbeat_timestamp_seconds",
    "When a bot's API last answered (Unix time); alert when it lags.",
    ["namespace", "bot"],
    registry=REGISTRY,
)
INCIDENTS = Counter(
    "tradebot_incidents_total",
    "Incidents recorded, by source kind and reason.",
    ["kind", "reason"],
    registry=REGISTRY,
)
BREAKER_TRIPS = Counter(
    "tradebot_breaker_trips_total",
    "Circuit breaker trips.",
    ["namespace", "breaker"],
    registry=REGISTRY,
)
BREAKER_OPEN = Gauge(
    "tradebot_breaker_open",
    "1 while a circuit breaker is open.",
    ["namespace", "breaker"],
    registry=REGISTRY,
)
BREAKER_STOP_SECONDS = Histogram(
    "tradebot_breaker_stop_seconds",
    "From a trip to every selected bot stopped.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
    registry=REGISTRY,
)

# Labelled by schedule: bounded by the DcaSchedules the operator's users declare.
DCA_SLOTS = Counter(
    "tradebot_dca_slots_total",
    "DCA schedule slots handled, by outcome (Bought, Skipped, Missed, Failed, Unconfirmed).",
    ["namespace", "schedule", "outcome"],
    registry=REGISTRY,
)
DCA_BOUGHT_STAKE = Counter(
    "tradebot_dca_bought_stake_total",
    "Stake spent by a DCA schedule's buys, in the bot's "
    "stake currency (display only; status keeps the exact figure).",
    ["namespace", "schedule"],
    registry=REGISTRY,
)


def forget_bot(namespace: str, bot: str) -> None:
    """Drops a deleted bot's series, so that cardinality follows the bots that exist."""
    for gauge in (BOT_EQUITY, BOT_OPEN_TRADES, BOT_PROFIT, BOT_DRAWDOWN, BOT_HEARTBEAT):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, bot)


def counted(kind: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Counts a reconciler's runs by outcome (exceptions propagate: kopf retries them)."""

    def wrap(handler: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(handler)
        def run(*args: Any, **kwargs: Any) -> None:
            try:
                handler(*args, **kwargs)
            except Exception:
                RECONCILIATIONS.labels(kind, "error").inc()
                raise
            RECONCILIATIONS.labels(kind, "ok").inc()

        return run

    return wrap


_serving: set[int] = set()


def serve(port: int) -> None:
    """Serves /metrics on all interfaces (the chart's Service scrapes it). Once per port: a
    standby serves it already when, leading, the operator's start-up asks again."""
    if port in _serving:
        return
    start_http_server(port, registry=REGISTRY)
    _serving.add(port)


def forget_dca(namespace: str, schedule: str) -> None:
    """Drops a deleted DcaSchedule's series."""
    for outcome in ("Bought", "Skipped", "Missed", "Failed", "Unconfirmed"):
        with contextlib.suppress(KeyError):
            DCA_SLOTS.remove(namespace, schedule, outcome)
    with contextlib.suppress(KeyError):
        DCA_BOUGHT_STAKE.remove(namespace, schedule)
