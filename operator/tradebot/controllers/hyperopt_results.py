"""The workers' results, read and merged into the Hyperopt's one result: each worker's summary
(its pod's termination message, or the local executor's summary.json), its epochs (the local
executor's epochs.jsonl, or the runner's EPOCH_PREFIX lines in its pod's log through the
pods/log API) and the best epoch of all of them (the lowest loss).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from tradebot import kube
from tradebot.controllers.objects import Pod
from tradebot.domain.hyperopt_round import figure
from tradebot.domain.jobs import CONTAINER
from tradebot.executors import local_hyperopt
from tradebot.freqtrade.hyperopt_summary import (
    EPOCH_PREFIX,
    EPOCHS_NAME,
    EpochRecord,
    HyperoptSummary,
)
from tradebot.observability.logging import logger


def best_of(summaries: Sequence[HyperoptSummary]) -> HyperoptSummary | None:
    """The summary whose best epoch has the lowest loss (ties: the lowest worker index)."""
    with_best = [s for s in summaries if s.ok and s.best is not None]
    if not with_best:
        return None
    return min(
        with_best, key=lambda s: (Decimal(str(s.best.loss)) if s.best else Decimal(0), s.worker)
    )


_log = logger(component="hyperopt-results")


def merge_epochs(epochs: Iterable[EpochRecord]) -> list[EpochRecord]:
    """One list of the search's epochs, each once, in (epoch, worker) order. An epoch is named
    by (worker, epoch), as the records key it: a shared study numbers its trials (trial + 1,
    each run by one worker), independent workers each count from 1; a restarted worker
    repeats the epochs it had done, which count once."""
    unique = {(e.worker, e.epoch): e for e in epochs}
    return sorted(unique.values(), key=lambda e: (e.epoch, e.worker))


def parse_epoch_lines(lines: Iterable[str], prefix: str = "") -> list[EpochRecord]:
    """The EpochRecords among `lines` (epochs.jsonl, or a pod's log with the runner's
    prefix); other lines are skipped."""
    found: list[EpochRecord] = []
    for line in lines:
        text = line.strip()
        if prefix:
            at = text.find(prefix)
            if at < 0:
                continue
            text = text[at + len(prefix) :]
        if not text.startswith("{"):
            continue
        try:
            found.append(EpochRecord.model_validate(json.loads(text)))
        except ValueError:
            continue
    return found


def summary_from_message(message: str) -> HyperoptSummary | None:
    if not message.startswith("{"):
        return None
    try:
        return HyperoptSummary.model_validate_json(message)
    except ValidationError:
        return None


def local_summary(state_dir: Path, run_id: str) -> HyperoptSummary | None:
    path = local_hyperopt.output_dir(state_dir, run_id) / local_hyperopt.SUMMARY
    try:
        return HyperoptSummary.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None


def local_epochs(state_dir: Path, run_id: str) -> list[EpochRecord]:
    path = local_hyperopt.output_dir(state_dir, run_id) / EPOCHS_NAME
    try:
        return parse_epoch_lines(path.read_text().splitlines())
    except OSError:
        return []


def pod_epochs(namespace: str, pod: Pod | None) -> list[EpochRecord]:
    """The epochs a worker printed, from its pod's log (what the API server still has)."""
    if pod is None:
        return []
    try:
        text = kube.core().read_namespaced_pod_log(
            pod["metadata"]["name"], namespace, container=CONTAINER
        )
    except ApiException as e:
        # Gone, never started, or a node whose kubelet cannot serve logs: the summaries still
        # carry the best epoch and the counts; only the per-epoch rows are missing.
        _log.warning(
            "worker log unreadable: its epochs are not recorded",
            pod=pod["metadata"]["name"],
            status=e.status,
            reason=e.reason,
        )
        return []
    return parse_epoch_lines(str(text).splitlines(), EPOCH_PREFIX)


@dataclass(frozen=True)
class Merged:
    """The whole search's result, for the status and the records."""

    epochs: list[EpochRecord]
    best: HyperoptSummary | None
    status: dict[str, Any]


def merge(
    summaries: Sequence[HyperoptSummary], epochs: Iterable[EpochRecord], shared: bool
) -> Merged:
    """The status fields of the finished search: best epoch (min loss) with its exact
    parameters and in-sample figures, epochs done, artifacts (each worker's, named w<i>/...)
    and the hashes the workers agree on."""
    merged = merge_epochs(epochs)
    top = best_of(summaries)
    status: dict[str, Any] = {
        "epochsDone": max(len(merged), sum(s.epochs_done for s in summaries)),
        "artifacts": [
            {**a.to_wire(), "name": f"w{s.worker}/{a.name}"}
            for s in sorted(summaries, key=lambda s: s.worker)
            for a in s.artifacts
        ]
        or None,
    }
    for field, attr in (
        ("codeHash", "code_hash"),
        ("configHash", "config_hash"),
        ("dataHash", "data_hash"),
    ):
        status[field] = next((getattr(s, attr) for s in summaries if getattr(s, attr)), None)
    if shared:
        status["epochsDone"] = max(
            [status["epochsDone"], *[s.study_epochs_done or 0 for s in summaries]]
        )
    if top is not None and top.best is not None:
        b = top.best
        results = b.results.to_wire() if b.results else None
        status["best"] = {
            "epoch": b.epoch,
            "loss": figure(b.loss),
            "parameters": b.parameters,
            "parametersHash": b.parameters_hash,
            "results": results,
        }
        status["bestLoss"] = figure(b.loss)
        status["bestProfit"] = figure(b.results.profit_total if b.results else None)
    return Merged(merged, top, status)


def best_running(epochs: Iterable[EpochRecord]) -> tuple[str | None, str | None]:
    """(best loss, its profit) among the epochs read so far."""
    best = min(epochs, key=lambda e: Decimal(str(e.loss)), default=None)
    if best is None:
        return None, None
    return figure(best.loss), figure(best.profit_total)
