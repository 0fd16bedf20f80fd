"""What the Backtest controller and the admission loop write to the records: one run per
Backtest (keyed by its uid, so a replay writes the same key again), its metrics and artifacts.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tradebot.api.backtest import BacktestSpec
from tradebot.controllers import runtime
from tradebot.domain.naming import backtest_run_id
from tradebot.domain.time import parse_time
from tradebot.observability import metrics
from tradebot.records import ArtifactRecord, RecordsError, RecordStore, RunRecord
from tradebot.records.models import RunStatus, exact_metric


def store_run(
    store: RecordStore,
    namespace: str,
    name: str,
    uid: str,
    run_status: RunStatus,
    status: dict[str, Any],
    spec: BacktestSpec,
    error: str | None = None,
) -> None:
    """Writes the run, its metrics and artifacts from the Backtest's status to `store`."""
    run_id = backtest_run_id(uid)
    window = spec.timerange
    results = status.get("results") or {}
    store.record_run(
        RunRecord(
            id=run_id,
            resource_uid=uid,
            namespace=namespace,
            name=name,
            kind="backtest",
            status=run_status,
            strategy_code_hash=status.get("codeHash"),
            parameters_hash=status.get("parametersHash"),
            config_hash=status.get("configHash"),
            data_hash=status.get("dataHash"),
            data_window_start=parse_time(
                results.get("backtestStart") or (window.start if window else None)
            ),
            data_window_end=parse_time(
                results.get("backtestEnd") or (window.end if window else None)
            ),
            correlation_id=run_id,
            error=error,
            started_at=parse_time(status.get("startedAt")),
            finished_at=parse_time(status.get("finishedAt")),
        )
    )
    figures = {**result_metrics(results), **bias_metrics(status.get("bias") or {})}
    store_figures(store, run_id, figures, status.get("artifacts") or [])


def store_figures(
    store: RecordStore,
    run_id: str,
    figures: dict[str, Decimal],
    artifacts: list[dict[str, Any]],
) -> None:
    """A run's metrics and its status's artifacts, each written when there is any."""
    if figures:
        store.record_metrics(run_id, figures)
    if artifacts:
        store.record_artifacts(run_id, artifact_records(artifacts))


def artifact_records(artifacts: list[dict[str, Any]]) -> list[ArtifactRecord]:
    """A status's artifacts as the records keep them (a bare name is its own path)."""
    return [
        ArtifactRecord(
            name=a["name"], path=a.get("path") or a["name"], sha256=a["sha256"], size=int(a["size"])
        )
        for a in artifacts
    ]


def result_metrics(results: Mapping[str, Any]) -> dict[str, Decimal]:
    """The figures of a results object as exact metrics (dates and the like left out)."""
    figures = {}
    for key, value in results.items():
        if value is None:
            continue
        try:
            figures[key] = exact_metric(key, Decimal(str(value)))
        except (ValueError, ArithmeticError):
            continue  # dates and other non-figures are not metrics
    return figures


def bias_metrics(bias: Mapping[str, Any]) -> dict[str, Decimal]:
    """The bias findings as metrics of the run: `bias.lookahead.*` (clean 1/0, counts, 1 per
    biased indicator) and `bias.recursive.*` (the differences, as ratios)."""
    figures: dict[str, Decimal] = {}
    lookahead = bias.get("lookahead") or {}
    if lookahead:
        figures["bias.lookahead.clean"] = Decimal(1 if lookahead.get("clean") else 0)
        for key in ("signals", "biasedEntrySignals", "biasedExitSignals"):
            if isinstance(lookahead.get(key), int):
                figures[f"bias.lookahead.{key}"] = Decimal(lookahead[key])
        for name in lookahead.get("biasedIndicators") or ():
            figures[f"bias.lookahead.indicator.{name}"] = Decimal(1)
    recursive = bias.get("recursive") or {}
    if recursive:
        figures["bias.recursive.maxDifference"] = Decimal(str(recursive.get("maxDifference", 0)))
        for item in recursive.get("indicators") or ():
            figures[f"bias.recursive.indicator.{item['name']}"] = Decimal(str(item["difference"]))
    return {k: exact_metric(k, v) for k, v in figures.items()}


def record(
    namespace: str,
    name: str,
    uid: str,
    run_status: RunStatus,
    status: dict[str, Any],
    spec: BacktestSpec,
    error: str | None = None,
) -> str | None:
    """Writes the run record (to the database, or to the outbox while it is down: either way
    it is kept); returns None on success, else why it could not."""
    try:
        store_run(runtime.get().store(), namespace, name, uid, run_status, status, spec, error)
    except RecordsError as e:  # the outbox itself failed, or a bug such as a run id reused
        metrics.RECORD_FAILURES.inc()
        return str(e)
    return None


def recorded_message() -> str:
    """The Recorded condition's message: where the record is now."""
    store = runtime.get().store()
    if store.pending:
        return (
            f"run, metrics and artifacts kept in the records outbox "
            f"({store.pending} writes wait for the database)"
        )
    return "run, metrics and artifacts recorded"
