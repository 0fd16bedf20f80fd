"""What the Hyperopt controller writes to the records: one run of kind `hyperopt` per Hyperopt
(keyed by its uid, so a replay writes the same key again), the best epoch's figures as its
metrics, the workers' artifacts, and the epochs (the store keys them by run and epoch)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from tradebot.api.hyperopt import HyperoptSpec
from tradebot.controllers import runtime
from tradebot.controllers.backtest_records import result_metrics, store_figures
from tradebot.domain import hyperopt_jobs
from tradebot.domain.time import parse_time
from tradebot.freqtrade.hyperopt_summary import EpochRecord
from tradebot.observability import metrics
from tradebot.records import RecordsError, RecordStore, RunRecord
from tradebot.records.models import RunStatus


def _figures(status: dict[str, Any]) -> dict[str, Decimal]:
    best = status.get("best") or {}
    values: dict[str, Any] = {**(best.get("results") or {})}
    values["loss"] = best.get("loss")
    values["epochsDone"] = status.get("epochsDone")
    oos = (status.get("validation") or {}).get("outOfSample") or {}
    for key, value in oos.items():
        values[f"oos{key[:1].upper()}{key[1:]}"] = value  # oosProfitTotal, ...
    return result_metrics(values)


def store_run(
    store: RecordStore,
    namespace: str,
    name: str,
    uid: str,
    run_status: RunStatus,
    status: dict[str, Any],
    spec: HyperoptSpec,
    error: str | None = None,
) -> None:
    run_id = hyperopt_jobs.run_id(uid)
    store.record_run(
        RunRecord(
            id=run_id,
            resource_uid=uid,
            namespace=namespace,
            name=name,
            kind="hyperopt",
            status=run_status,
            strategy_code_hash=status.get("codeHash"),
            parameters_hash=(status.get("best") or {}).get("parametersHash"),
            config_hash=status.get("configHash"),
            data_hash=status.get("dataHash"),
            data_window_start=parse_time(spec.timerange.start),
            data_window_end=parse_time(spec.timerange.end),
            correlation_id=run_id,
            error=error,
            started_at=parse_time(status.get("startedAt")),
            finished_at=parse_time(status.get("finishedAt")),
        )
    )
    store_figures(store, run_id, _figures(status), status.get("artifacts") or [])


def store_epochs(store: RecordStore, uid: str, epochs: Sequence[EpochRecord]) -> None:
    """The search's epochs (idempotent on run and epoch)."""
    store.record_epochs(hyperopt_jobs.run_id(uid), epochs)


def record(
    namespace: str,
    name: str,
    uid: str,
    run_status: str,
    status: dict[str, Any],
    spec: HyperoptSpec,
    error: str | None = None,
    epochs: Sequence[EpochRecord] | None = None,
) -> str | None:
    """Writes the run record (to the database, or to the outbox while it is down); returns
    None on success, else why it could not."""
    try:
        store = runtime.get().store()
        store_run(
            store,
            namespace,
            name,
            uid,
            run_status,  # type: ignore[arg-type]
            status,
            spec,
            error,
        )
        if epochs:
            store_epochs(store, uid, epochs)
    except RecordsError as e:
        metrics.RECORD_FAILURES.inc()
        return str(e)
    return None
