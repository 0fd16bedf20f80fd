"""Reading what a report needs from the records store."""

from __future__ import annotations

import datetime as dt

from tradebot.records.reporting import list_strategies
from tradebot.records.store import RecordStore
from tradebot.reports.model import Filters, Report, assemble


def collect(store: RecordStore, dsn: str, filters: Filters,
            now: dt.datetime | None = None) -> Report:
    runs = store.list_runs(namespace=filters.namespace, since=filters.since)
    return assemble(
        generated_at=now or dt.datetime.now(dt.UTC),
        filters=filters,
        strategies=list_strategies(dsn),
        runs=runs,
        metrics={run.id: store.get_metrics(run.id) for run in runs},
        artifacts={run.id: store.get_artifacts(run.id) for run in runs},
        incidents=store.list_incidents(namespace=filters.namespace, since=filters.since),
    )
