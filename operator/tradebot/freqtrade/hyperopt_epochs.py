"""A hyperopt epoch as the records keep it, from what Freqtrade computed or a study stored.

Pure: no Freqtrade, no Optuna. The worker keeps, on each shared-study trial, the user
attributes named here, so any worker (or a restarted one) can describe any trial of the study,
the best one included, without the other workers' files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from tradebot.api.backtest import BacktestResults
from tradebot.domain.parameters_hash import parameters_hash
from tradebot.freqtrade import results
from tradebot.freqtrade.hyperopt_summary import EPOCH_PREFIX, BestEpoch, EpochRecord

# Trial user attributes.
ATTR_WORKER = "tradebot_worker"
ATTR_PARAMS = "tradebot_params"
ATTR_STATS = "tradebot_stats"
# Why a trial was failed by a worker rather than evaluated: "duplicate" (Freqtrade would have
# dropped it, leaving it RUNNING for ever) or "stale" (its worker was killed mid-epoch).
ATTR_DROPPED = "tradebot_dropped"

# The statistics kept per epoch: what BacktestResults is made of.
STAT_KEYS = tuple(
    sorted(
        {
            *results.FIGURES.values(),
            *results.COUNTS.values(),
            "backtest_start",
            "backtest_start_ts",
            "backtest_end",
            "backtest_end_ts",
        }
    )
)


def stats_subset(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar statistics of Freqtrade's per-epoch `results_metrics` that the figures need
    (the whole of it holds every trade, far too much for a trial attribute)."""
    return {
        k: metrics[k]
        for k in STAT_KEYS
        if k in metrics and isinstance(metrics[k], (int, float, str, type(None)))
    }


def epoch_record(
    *, epoch: int, worker: int, loss: float, params: Mapping[str, Any], stats: Mapping[str, Any]
) -> EpochRecord | None:
    """The record of one epoch; None when its loss is no number (Optuna fails such a trial)."""
    exact_loss = results.figure(loss)
    if exact_loss is None:
        return None
    figures = results.results_from_stats(dict(stats))
    return EpochRecord(
        epoch=epoch,
        worker=worker,
        loss=exact_loss,
        profit_total=figures.profit_total,
        profit_total_abs=figures.profit_total_abs,
        trades=figures.trades,
        max_drawdown=figures.max_drawdown,
        parameters_hash=parameters_hash(params),
    )


def epoch_from_attrs(
    number: int, value: float | None, attrs: Mapping[str, Any]
) -> EpochRecord | None:
    """The record of a COMPLETE shared-study trial from its value and user attributes; None
    for a trial no tradebot worker evaluated."""
    worker, params, stats = attrs.get(ATTR_WORKER), attrs.get(ATTR_PARAMS), attrs.get(ATTR_STATS)
    if (
        value is None
        or not isinstance(worker, int)
        or not isinstance(params, dict)
        or not isinstance(stats, dict)
    ):
        return None
    return epoch_record(epoch=number + 1, worker=worker, loss=value, params=params, stats=stats)


def figures(stats: Mapping[str, Any]) -> BacktestResults:
    return results.results_from_stats(dict(stats))


def best_epoch(record: EpochRecord, parameters_text: str, stats: Mapping[str, Any]) -> BestEpoch:
    """The best epoch with its parameter file's exact text and its figures."""
    return BestEpoch(
        epoch=record.epoch,
        loss=record.loss,
        parameters=parameters_text,
        parameters_hash=record.parameters_hash,
        results=figures(stats),
    )


def epoch_line(record: EpochRecord) -> str:
    """The stdout line of one epoch."""
    return EPOCH_PREFIX + record.model_dump_json(by_alias=True, exclude_none=True)


def parse_epoch_line(line: str) -> EpochRecord | None:
    """The record on one log line, or None for any other line (Freqtrade's and the runner's
    own output share the stream)."""
    text = line.rstrip("\r\n")
    if not text.startswith(EPOCH_PREFIX):
        return None
    try:
        return EpochRecord.model_validate(json.loads(text[len(EPOCH_PREFIX) :]))
    except (ValueError, ValidationError):
        return None


def parse_epoch_lines(text: str) -> list[EpochRecord]:
    """Every epoch record of a log, the last one of each epoch number kept (a restarted worker
    repeats its earlier epochs)."""
    found: dict[int, EpochRecord] = {}
    for line in text.splitlines():
        record = parse_epoch_line(line)
        if record is not None:
            found[record.epoch] = record
    return [found[k] for k in sorted(found)]
