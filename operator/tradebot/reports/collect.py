"""Reading what a report needs from the records store."""

from __future__ import annotations

import datetime as dt

from tradebot.records.reporting import (
    artifacts_of_runs,
    epochs_of_runs,
    list_strategies,
    metrics_of_runs,
)
from tradebot.records.store import RecordStore
from tradebot.reports.model import Filters, Report, assemble


def collect(
    store: RecordStore, dsn: str, filters: Filters, now: dt.datetime | None = None
) -> Report:
    runs = store.list_runs(namespace=filters.namespace, since=filters.since)
    return assemble(
        generated_at=now or dt.datetime.now(dt.UTC),
        filters=filters,
        strategies=list_strategies(dsn),
        runs=runs,
        # One query each rather than two per run: a year of runs is thousands of them.
        metrics=metrics_of_runs(dsn, namespace=filters.namespace, since=filters.since),
        artifacts=artifacts_of_runs(dsn, namespace=filters.namespace, since=filters.since),
        epochs=epochs_of_runs(dsn, namespace=filters.namespace, since=filters.since),
        incidents=store.list_incidents(namespace=filters.namespace, since=filters.since),
    )
