"""`freqtrade hyperopt` as one worker of a search: offline markets, a shared study, epoch records.

    python -m tradebot.freqtrade.hyperopt_entry --worker N --share N --epochs-file FILE
        --result FILE --export-dir DIR [--study NAME] [--sampler NAME] [--markets FILE]
        [--record-data FILE] -- <freqtrade hyperopt arguments, without --epochs>

Run by `tradebot-runner hyperopt` (hyperopt_run.py) in a subprocess, like offline.py for a
backtest. Before handing over to Freqtrade it patches, in this process only:

* markets from a file (offline.py);
* with $TRADEBOT_STUDY_STORAGE set: `HyperOptimizer.get_optimizer` returns the shared study
  (Freqtrade's sampler, its distributions converted to Optuna's own); `Hyperopt.
  get_asked_points` tags each trial with the worker and tells FAIL to the points it will not
  evaluate (duplicates), where Freqtrade would leave them RUNNING; the trial's parameters and
  figures go into user attributes before Freqtrade tells its loss;
* `Hyperopt.evaluate_result` appends each epoch's EpochRecord to --epochs-file as it finishes.

Freqtrade runs only the epochs this worker still owes (--share minus its COMPLETE trials in the
study), and not at all when it owes none. Afterwards the best epoch (of the study, or of this
run) is exported with Freqtrade's own writer to DIR/<Strategy>.json, and --result gets a JSON
object the runner builds its summary from.
"""

from __future__ import annotations

import argparse
import collections
import copy
import importlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tradebot.freqtrade import hyperopt_epochs, offline
from tradebot.freqtrade.hyperopt_summary import EpochRecord
from tradebot.freqtrade.study_storage import STORAGE_ENV, redact

# Asks per point before a batch is given up as short: a small search space runs out of new
# points, and Freqtrade's own limit (2 per point) gives up long before that.
ASKS_PER_POINT = 20


def _freqtrade(module: str) -> Any:
    return importlib.import_module(f"freqtrade.{module}")


def _plain_json(value: Any) -> Any:
    """`value` as Freqtrade's parameter file writes it (numpy numbers as Python ones), read
    back: what a later reader of the file, or of a trial attribute, sees."""
    rapidjson = importlib.import_module("rapidjson")
    tools = _freqtrade("optimize.hyperopt_tools")
    text = rapidjson.dumps(
        value, default=tools.hyperopt_serializer, number_mode=tools.HYPER_PARAMS_FILE_FORMAT
    )
    return json.loads(text)


def params_object(val: dict[str, Any]) -> dict[str, Any]:
    """The `params` of Freqtrade's parameter file for one epoch (HyperoptTools.export_params:
    the searched values over the ones not searched), in the same key order."""
    merge = _freqtrade("misc").deep_merge_dicts
    merged = merge(val["params_details"], copy.deepcopy(val["params_not_optimized"]))
    result: dict[str, Any] = _plain_json(merged)
    return result


def epoch_stats(val: dict[str, Any]) -> dict[str, Any]:
    return hyperopt_epochs.stats_subset(
        _plain_json(hyperopt_epochs.stats_subset(val["results_metrics"]))
    )


@dataclass
class Best:
    record: EpochRecord
    params: dict[str, Any]
    stats: dict[str, Any]


@dataclass
class Worker:
    index: int
    epochs_file: Path
    shared: bool
    emitted: int = 0
    dropped: int = 0
    best: Best | None = None
    # Trials of the batch Freqtrade is evaluating, then (number, params, stats) of those
    # told, in Freqtrade's order: evaluate_result comes in the same order as the tells.
    batch: list[Any] = field(default_factory=list)
    told: collections.deque[tuple[int, dict[str, Any], dict[str, Any]]] = field(
        default_factory=collections.deque
    )

    def emit(
        self, record: EpochRecord | None, params: dict[str, Any], stats: dict[str, Any]
    ) -> None:
        if record is None:
            return
        with self.epochs_file.open("a") as out:
            out.write(record.model_dump_json(by_alias=True, exclude_none=True) + "\n")
        self.emitted += 1
        if self.best is None or (record.loss, record.epoch) < (
            self.best.record.loss,
            self.best.record.epoch,
        ):
            self.best = Best(record, params, stats)


def _install_sampler(name: str) -> None:
    """--sampler: the strategy's choice of sampler replaced; Freqtrade still builds it (with
    its seed and initial points)."""
    auto = _freqtrade("optimize.hyperopt.hyperopt_auto").HyperOptAuto

    def generate_estimator(self: Any, dimensions: Any, **kwargs: Any) -> Any:
        return name

    auto.generate_estimator = generate_estimator


def _install_shared(worker: Worker, url: str, study_name: str) -> None:
    from optuna.trial import Trial

    from tradebot.freqtrade import optuna_study

    optimizer = _freqtrade("optimize.hyperopt.hyperopt_optimizer").HyperOptimizer
    hyperopt = _freqtrade("optimize.hyperopt.hyperopt").Hyperopt
    log = importlib.import_module("logging").getLogger("tradebot.hyperopt")
    original_get_optimizer = optimizer.get_optimizer
    original_run = hyperopt.run_optimizer_parallel

    def get_optimizer(self: Any, random_state: int) -> Any:
        local = original_get_optimizer(self, random_state)
        # HyperOptimizer is pickled to Freqtrade's job processes: the study (and its storage
        # URL) stays out of it; the plain distributions are what the trials will hold.
        self.o_dimensions = optuna_study.plain_distributions(self.o_dimensions)
        return optuna_study.open_study(url, study_name, local.sampler)

    def get_asked_points(
        self: Any, n_points: int, dimensions: dict[str, Any]
    ) -> tuple[list[Any], list[bool]]:
        batch: list[Trial] = []
        asks = 0
        while len(batch) < n_points and asks < ASKS_PER_POINT * n_points:
            trial = self.opt.ask(dimensions)
            asks += 1
            trial.set_user_attr(hyperopt_epochs.ATTR_WORKER, worker.index)
            if optuna_study.is_duplicate(self.opt, trial, batch):
                optuna_study.drop(self.opt, trial, "duplicate")
                worker.dropped += 1
                continue
            batch.append(trial)
        if len(batch) < n_points:
            log.warning(
                "%d of %d points asked for were all tried before: the search space "
                "may be too small for the epochs",
                n_points - len(batch),
                n_points,
            )
            self.count_skipped_epochs += n_points - len(batch)
        worker.batch = list(batch)
        return batch, [False] * len(batch)

    def run_optimizer_parallel(self: Any, parallel: Any, asked: list[Any]) -> Any:
        values = original_run(self, parallel, asked)
        for trial, val in zip(worker.batch, values, strict=True):
            params, stats = params_object(val), epoch_stats(val)
            trial.set_user_attr(hyperopt_epochs.ATTR_PARAMS, params)
            trial.set_user_attr(hyperopt_epochs.ATTR_STATS, stats)
            worker.told.append((trial.number, params, stats))
        worker.batch = []
        return values

    optimizer.get_optimizer = get_optimizer
    hyperopt.get_asked_points = get_asked_points
    hyperopt.run_optimizer_parallel = run_optimizer_parallel


def _install_epochs(worker: Worker) -> None:
    hyperopt = _freqtrade("optimize.hyperopt.hyperopt").Hyperopt
    original_evaluate = hyperopt.evaluate_result

    def evaluate_result(self: Any, val: dict[str, Any], current: int, is_random: bool) -> None:
        original_evaluate(self, val, current, is_random)
        if worker.shared:
            number, params, stats = worker.told.popleft()
            epoch = number + 1
        else:
            params, stats, epoch = params_object(val), epoch_stats(val), current
        record = hyperopt_epochs.epoch_record(
            epoch=epoch, worker=worker.index, loss=float(val["loss"]), params=params, stats=stats
        )
        worker.emit(record, params, stats)

    hyperopt.evaluate_result = evaluate_result


def _export(best: Best | None, strategy: str, export_dir: Path) -> str | None:
    """The best parameters in Freqtrade's parameter file, written by Freqtrade's own writer
    (export_params merges the details over the rest, so the whole object as the details is
    the object itself)."""
    if best is None:
        return None
    tools = _freqtrade("optimize.hyperopt_tools").HyperoptTools
    target = export_dir / f"{strategy}.json"
    tools.export_params(
        {"params_details": best.params, "params_not_optimized": {}}, strategy, target
    )
    return target.name


def _run_freqtrade(freqtrade_args: list[str]) -> int:
    try:
        _freqtrade("main").main(freqtrade_args)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tradebot.freqtrade.hyperopt_entry")
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--share", type=int, required=True)
    parser.add_argument("--strategy", required=True)
    parser.add_argument("--epochs-file", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--export-dir", type=Path, required=True)
    parser.add_argument("--study", default=None)
    parser.add_argument("--sampler", default=None)
    parser.add_argument("--markets", type=Path, default=None)
    parser.add_argument("--record-data", type=Path, default=None)
    parser.add_argument("freqtrade_args", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    freqtrade_args = [a for a in args.freqtrade_args if a != "--"]
    url = os.environ.get(STORAGE_ENV) or None
    # The secret stays in this process: Freqtrade's job processes and anything it starts
    # get an environment without it.
    os.environ.pop(STORAGE_ENV, None)
    worker = Worker(index=args.worker, epochs_file=args.epochs_file, shared=url is not None)
    result: dict[str, Any] = {"storage": "shared" if url else "independent", "error": None}
    code = 0
    try:
        code = _work(args, freqtrade_args, url, worker, result)
    except Exception as e:
        # The study's errors are StudyError, whose messages hold no URL; anything else is a
        # bug, reported by type and message (redacted all the same).
        result["error"] = redact(f"{type(e).__name__}: {e}", url)
        code = code or 1
        print(f"tradebot hyperopt worker failed: {result['error']}", file=sys.stderr)
    result["exit_code"] = code
    args.result.write_text(json.dumps(result))
    return code


def _work(
    args: argparse.Namespace,
    freqtrade_args: list[str],
    url: str | None,
    worker: Worker,
    result: dict[str, Any],
) -> int:
    offline._install(args.markets, args.record_data)
    if args.sampler:
        _install_sampler(args.sampler)
    _install_epochs(worker)
    owed = args.share
    study = None
    if url is not None:
        from tradebot.freqtrade import optuna_study

        if not args.study:
            raise ValueError("a shared study needs --study")
        study = optuna_study.open_study(url, args.study, None)
        resumed = optuna_study.resume(study, args.worker, args.share)
        result["stale_trials_failed"] = resumed.failed_stale
        for trial in sorted(resumed.done, key=lambda t: t.number):
            worker.emit(
                hyperopt_epochs.epoch_from_attrs(trial.number, trial.value, trial.user_attrs),
                trial.user_attrs.get(hyperopt_epochs.ATTR_PARAMS, {}),
                trial.user_attrs.get(hyperopt_epochs.ATTR_STATS, {}),
            )
        owed = resumed.owed
        _install_shared(worker, url, args.study)
    result["owed"] = owed
    code = 0
    if owed > 0:
        code = _run_freqtrade([*freqtrade_args, "--epochs", str(owed)])
    result["duplicates_dropped"] = worker.dropped
    best = worker.best
    if study is not None:
        from tradebot.freqtrade import optuna_study

        result["study_epochs_done"] = optuna_study.complete_count(study)
        result["epochs_done"] = len(optuna_study.own_complete(study, args.worker))
        top = optuna_study.best_trial(study)
        record = (
            hyperopt_epochs.epoch_from_attrs(top.number, top.value, top.user_attrs)
            if top is not None
            else None
        )
        best = (
            Best(
                record,
                top.user_attrs[hyperopt_epochs.ATTR_PARAMS],
                top.user_attrs[hyperopt_epochs.ATTR_STATS],
            )
            if record is not None and top is not None
            else None
        )
    else:
        result["epochs_done"] = worker.emitted
    if best is not None:
        result["best"] = {
            "record": best.record.model_dump(mode="json", by_alias=True, exclude_none=True),
            "stats": best.stats,
            "parameters_file": _export(best, args.strategy, args.export_dir),
        }
    return code


if __name__ == "__main__":
    sys.exit(main())
