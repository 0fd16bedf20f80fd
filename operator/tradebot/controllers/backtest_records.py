"""What the Backtest controller and the admission loop write to the records: one run per
Backtest (keyed by its uid, so a replay writes the same key again), its metrics and artifacts.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from tradebot.api.backtest import BacktestSpec
from tradebot.artifacts import fetch
from tradebot.artifacts.store import StoreError
from tradebot.controllers import runtime
from tradebot.domain.naming import backtest_run_id
from tradebot.domain.time import parse_time
from tradebot.executors import local
from tradebot.executors.local import LocalExecutor
from tradebot.freqtrade.result_detail import load_detail
from tradebot.freqtrade.results import ResultError
from tradebot.observability import metrics
from tradebot.observability.logging import logger
from tradebot.records import ArtifactRecord, RecordsError, RecordStore, RunRecord
from tradebot.records.models import BacktestDetail, RunStatus, exact_metric
from tradebot.settings import Settings

_log = logger(component="backtest-records")


def store_run(
    store: RecordStore,
    namespace: str,
    name: str,
    uid: str,
    run_status: RunStatus,
    status: dict[str, Any],
    spec: BacktestSpec,
    error: str | None = None,
    detail: BacktestDetail | None = None,
) -> None:
    """Writes the run, its metrics and artifacts from the Backtest's status to `store`, and
    the result's detail (trades, tables, equity curve) when it was read."""
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
    if detail is not None:
        store.record_backtest_detail(run_id, detail)


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


def result_zip(
    namespace: str, run_id: str, status: Mapping[str, Any], settings: Settings, workdir: Path
) -> Path | None:
    """Where the run's result zip can be read: fetched from the artifact store into `workdir`
    (checked against its sha256), or the local executor's own copy when no store kept it.
    None when the run has none; raises StoreError when it cannot be had."""
    found = next(
        (
            a
            for a in status.get("artifacts") or []
            if str(a.get("name", "")).startswith("backtest-result")
            and str(a.get("name", "")).endswith(".zip")
        ),
        None,
    )
    if found is None:
        return None
    artifact = artifact_records([found])[0]
    if "://" in artifact.path:
        return fetch.get(artifact, namespace, workdir / artifact.name, settings, local.claim_root)
    if settings.executor == "local":
        path = LocalExecutor(settings.local_state_dir).artifacts_dir(run_id) / artifact.name
        if path.is_file():
            return path
    raise StoreError(
        f"{artifact.name} lived only in its Job's emptyDir (no artifact store is configured)"
    )


def result_detail(
    namespace: str, run_id: str, status: Mapping[str, Any], settings: Settings
) -> BacktestDetail | None:
    """The result's detail, parsed once from its zip as the run is recorded; None (and a log
    line saying why) when the zip cannot be had or read: the run and its figures are recorded
    all the same."""
    with tempfile.TemporaryDirectory(prefix="tradebot-result-") as workdir:
        try:
            path = result_zip(namespace, run_id, status, settings, Path(workdir))
            return None if path is None else load_detail(path)
        except (StoreError, ResultError) as e:
            _log.warning("backtest result detail not recorded", run_id=run_id, error=str(e))
            return None


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
    detail = (
        result_detail(namespace, backtest_run_id(uid), status, runtime.get().settings)
        if run_status == "succeeded"
        else None
    )
    try:
        store_run(
            runtime.get().store(), namespace, name, uid, run_status, status, spec, error, detail
        )
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
