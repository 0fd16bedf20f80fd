"""The Hyperopt controller's pure parts: the epoch split, the searchable-spaces check, the
phase from the workers, the merge of their results, the workers' Jobs, the queue's units and
the validation Backtest's parameter file."""

from __future__ import annotations

import copy
import datetime as dt
import json
import threading
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from tests.support.manifests import example

from tradebot.api.backtest import BacktestSpec
from tradebot.api.hyperopt import HyperoptSpec
from tradebot.api.strategy import StrategySpec
from tradebot.api.types import Timerange
from tradebot.controllers.hyperopt_results import merge, merge_epochs, parse_epoch_lines
from tradebot.controllers.queue import QueueKind, QueueState
from tradebot.domain import hyperopt_jobs
from tradebot.domain.freqtrade_config import (
    PARAMETER_FILE_KEY,
    TRADEBOT_KEY,
    backtest_config,
    parameters_hash,
)
from tradebot.domain.hyperopt_round import (
    WorkerSeen,
    backtest_spec,
    epoch_shares,
    nothing_to_search,
    ratio,
    search_step,
)
from tradebot.freqtrade.hyperopt_summary import (
    EPOCH_PREFIX,
    BestEpoch,
    EpochRecord,
    HyperoptSummary,
)
from tradebot.settings import Settings

PARAMS = (
    '{"strategy_name": "EmaRsiStrategy", "params": {"buy": {"buy_rsi_max": 61}}, '
    '"ft_stratparam_v": 1, "export_time": "2026-01-01 00:00:00"}'
)


def _spec(**changes: Any) -> HyperoptSpec:
    doc = copy.deepcopy(example("Hyperopt")["spec"])
    doc.update(changes)
    return HyperoptSpec.model_validate(doc)


@given(st.integers(1, 100_000), st.integers(1, 64))
def test_epoch_shares_add_up_and_are_even(epochs: int, workers: int) -> None:
    shares = epoch_shares(epochs, workers)
    assert sum(shares) == epochs
    assert len(shares) == min(epochs, workers)
    assert max(shares) - min(shares) <= 1
    assert min(shares) >= 1


def test_epoch_shares_examples() -> None:
    assert epoch_shares(8, 2) == [4, 4]
    assert epoch_shares(7, 3) == [3, 2, 2]
    assert epoch_shares(2, 5) == [1, 1]


@pytest.mark.parametrize(
    ("spaces", "declared", "refused"),
    [
        (["buy"], {"buy_rsi_max": {"space": "buy"}}, False),
        (["enter"], {"buy_rsi_max": {"space": "buy"}}, False),  # enter is buy's new name
        (["sell"], {"buy_rsi_max": {"space": "buy"}}, True),
        (["sell", "protection"], {}, True),
        (["sell", "roi"], {}, False),  # Freqtrade generates roi
        (["stoploss"], {}, False),
        (["exit"], {"sell_rsi": {"space": "sell"}}, False),
    ],
)
def test_nothing_to_search(spaces: list[str], declared: dict[str, Any], refused: bool) -> None:
    why = nothing_to_search(spaces, declared)
    assert (why is not None) == refused
    if why is not None:
        assert ", ".join(spaces) in why


def test_the_example_strategy_has_its_buy_parameter() -> None:
    from tradebot.freqtrade.parameters import hyperopt_parameters

    strategy = StrategySpec.model_validate(example("Strategy", "ema-rsi")["spec"])
    assert strategy.code is not None
    found = hyperopt_parameters(strategy.code, strategy.class_name)
    assert nothing_to_search(["buy"], found) is None
    assert nothing_to_search(["sell"], found) is not None


@pytest.mark.parametrize(
    ("phases", "step"),
    [
        (["Queued", "Queued"], "wait"),
        (["Running", "Queued"], "run"),
        (["Succeeded", "Running"], "run"),
        (["Succeeded", "Failed"], "merge"),
        (["Succeeded", "Succeeded"], "merge"),
        (["Failed", "Failed"], "fail"),
    ],
)
def test_search_step(phases: list[str], step: str) -> None:
    workers = [WorkerSeen(i, None, p) for i, p in enumerate(phases)]  # type: ignore[arg-type]
    assert search_step(workers) == step


def test_ratio() -> None:
    assert ratio("0.05", "0.1") == "0.50000000"
    assert ratio("0.05", "0") is None
    assert ratio(None, "0.1") is None


def _epoch(worker: int, epoch: int, loss: str, profit: str = "0.01") -> EpochRecord:
    return EpochRecord(
        epoch=epoch,
        worker=worker,
        loss=Decimal(loss),
        profit_total=Decimal(profit),
        parameters_hash="h",
    )


def _summary(worker: int, loss: str | None, epochs: int = 4, ok: bool = True) -> HyperoptSummary:
    best = (
        None
        if loss is None
        else BestEpoch(epoch=2, loss=Decimal(loss), parameters=PARAMS, parameters_hash="ph")
    )
    return HyperoptSummary(
        ok=ok,
        strategy="EmaRsiStrategy",
        worker=worker,
        storage="independent",
        epochs_done=epochs,
        best=best,
        code_hash="c",
        config_hash="k",
        data_hash="d",
    )


def test_merge_takes_the_lowest_loss_and_counts_each_epoch_once() -> None:
    epochs = [
        _epoch(0, 1, "1"),
        _epoch(0, 2, "-0.5"),
        _epoch(1, 1, "-2", "0.2"),
        _epoch(1, 1, "-2", "0.2"),
    ]  # a restarted worker repeats its epoch
    merged = merge([_summary(0, "-0.5"), _summary(1, "-2.12345678")], epochs, shared=False)
    assert [(e.worker, e.epoch) for e in merged.epochs] == [(0, 1), (1, 1), (0, 2)]
    assert merged.status["bestLoss"] == "-2.12345678"
    assert merged.best is not None
    assert merged.best.worker == 1
    assert merged.status["best"]["parameters"] == PARAMS
    assert merged.status["epochsDone"] == 8


def test_merge_without_any_result() -> None:
    merged = merge([_summary(0, None, ok=False)], [], shared=True)
    assert "best" not in merged.status


def test_merge_epochs_keeps_a_shared_study_s_numbers() -> None:
    epochs = [_epoch(1, 3, "1"), _epoch(0, 1, "2"), _epoch(0, 2, "0")]
    assert [e.epoch for e in merge_epochs(epochs)] == [1, 2, 3]


def test_epoch_lines_from_a_log() -> None:
    line = _epoch(0, 3, "-1").model_dump_json(by_alias=True)
    log = ["2026-01-01 INFO starting", f"{EPOCH_PREFIX}{line}", "tradebot-epoch {broken", line]
    assert [e.epoch for e in parse_epoch_lines(log, EPOCH_PREFIX)] == [3]
    assert [e.epoch for e in parse_epoch_lines([line, "", "not json"])] == [3]


def test_validation_backtest_has_the_same_money_and_the_best_parameters() -> None:
    spec = _spec()
    assert spec.validation is not None
    bt = backtest_spec(spec, spec.validation.timerange, PARAMS)
    assert bt.pairs == spec.pairs
    assert bt.dry_run_wallet == spec.dry_run_wallet
    assert bt.timerange == spec.validation.timerange
    assert bt.parameters == PARAMS
    strategy = StrategySpec.model_validate(example("Strategy", "ema-rsi")["spec"])
    config = backtest_config(bt, strategy, datadir="/d", user_data_dir="/u")
    # The found parameters replace the Strategy's own (buy_rsi_max 70 there).
    assert config[TRADEBOT_KEY][PARAMETER_FILE_KEY]["params"] == {"buy": {"buy_rsi_max": 61}}
    plain = backtest_config(
        backtest_spec(spec, spec.timerange), strategy, datadir="/d", user_data_dir="/u"
    )
    assert plain[TRADEBOT_KEY][PARAMETER_FILE_KEY]["params"] == {"buy": {"buy_rsi_max": 70}}


def test_parameters_hash_ignores_the_export_time() -> None:
    other = PARAMS.replace("2026-01-01", "2027-05-05")
    assert parameters_hash(PARAMS) == parameters_hash(other)
    assert parameters_hash(PARAMS) != parameters_hash(PARAMS.replace("61", "62"))


@pytest.mark.parametrize("bad", ["not json", "[1]", '{"strategy_name": "X"}'])
def test_backtest_parameters_must_be_a_parameter_file(bad: str) -> None:
    doc = {**example("Backtest")["spec"], "parameters": bad}
    with pytest.raises(ValidationError, match="parameters"):
        BacktestSpec.model_validate(doc)


def _run(shared: bool) -> hyperopt_jobs.HyperoptRun:
    spec = _spec(sampler="TPESampler", minTrades=3)
    return hyperopt_jobs.HyperoptRun(
        "ns",
        "search",
        "0123-abcd",
        spec,
        "EmaRsiStrategy",
        "code",
        {"a": 1},
        tuple(epoch_shares(spec.epochs, spec.workers)),
        hyperopt_jobs.storage_secret_name("search", "0123-abcd") if shared else None,
    )


def test_worker_job() -> None:
    run = _run(shared=True)
    job = hyperopt_jobs.job(run, 1, Settings())
    meta, pod = job["metadata"], job["spec"]["template"]["spec"]
    assert meta["ownerReferences"][0]["kind"] == "Hyperopt"
    assert meta["labels"][hyperopt_jobs.LABEL_WORKER] == "1"
    assert meta["name"] != hyperopt_jobs.job_name("search", "0123-abcd", 0)
    assert len(meta["name"]) <= 63
    assert job["spec"]["backoffLimit"] >= 1
    assert pod["restartPolicy"] == "OnFailure"
    assert "ttlSecondsAfterFinished" not in job["spec"]
    container = pod["containers"][0]
    args = container["args"]
    assert args[0] == "hyperopt"
    assert args[args.index("--epochs") + 1] == "4"
    assert args[args.index("--random-state") + 1] == "42"  # the runner adds the index
    assert args[args.index("--worker") + 1] == "1"
    assert args[args.index("--study") + 1] == "ho-0123-abcd"
    assert args[args.index("--timerange") + 1] == "20240102-20240122"
    assert args[args.index("--sampler") + 1] == "TPESampler"
    assert args[args.index("--spaces") + 1] == "buy"
    storage = next(e for e in container["env"] if e["name"] == hyperopt_jobs.STORAGE_ENV)
    assert storage["valueFrom"]["secretKeyRef"]["name"] == run.storage_secret
    assert "value" not in storage  # never the URL itself in the Job


def test_independent_workers_get_no_storage() -> None:
    job = hyperopt_jobs.job(_run(shared=False), 0, Settings())
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert hyperopt_jobs.STORAGE_ENV not in [e["name"] for e in env]


def _ho(phase: str | None, workers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": "search",
            "resourceVersion": "1",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"epochs": 8, "workers": 3, "priority": 2, "strategyRef": {"name": "ema-rsi"}},
        "status": {"phase": phase, **({"workers": workers} if workers else {})},
    }


def test_queue_units_one_slot_per_worker() -> None:
    from tradebot.controllers.hyperopt_queue import HYPEROPT

    state = QueueState(threading.Event())
    state.on_object(HYPEROPT, "ADDED", _ho("Pending"))
    assert len(state.waiting) == 0
    state.on_object(HYPEROPT, "MODIFIED", _ho("Queued"))
    assert sorted(q.name for q in state.waiting) == [
        "hyperopt:search#0",
        "hyperopt:search#1",
        "hyperopt:search#2",
    ]
    # Worker 1's Job exists: it holds a slot and waits no more.
    state.on_job(
        "ADDED",
        {
            "metadata": {
                "namespace": "ns",
                "name": "j1",
                "labels": {
                    "tradebot.dev/kind": "hyperopt",
                    hyperopt_jobs.LABEL_HYPEROPT: "search",
                    hyperopt_jobs.LABEL_WORKER: "1",
                    "tradebot.dev/strategy": "ema-rsi",
                },
            },
            "status": {},
        },
    )
    assert sorted(q.name for q in state.waiting) == ["hyperopt:search#0", "hyperopt:search#2"]
    assert [r.name for r in state.running()] == ["hyperopt:search#1"]
    # A worker whose end is recorded wants no slot again.
    state.on_object(HYPEROPT, "MODIFIED", _ho("Running", [{"index": 0, "phase": "Succeeded"}]))
    assert sorted(q.name for q in state.waiting) == ["hyperopt:search#2"]
    state.on_object(HYPEROPT, "DELETED", _ho("Running"))
    assert len(state.waiting) == 0
    assert not any(k[1].startswith("hyperopt:") and "#" in k[1] for k in state.items)


def test_a_kind_without_units_is_one_item() -> None:
    kind = QueueKind(
        "thing",
        "things",
        "tradebot.dev/thing",
        lambda o: (0, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "", None),
        lambda *a: "",
    )
    state = QueueState(threading.Event())
    state.on_object(kind, "ADDED", _ho("Queued"))
    assert [q.name for q in state.waiting] == ["thing:search"]


def test_config_map_holds_config_and_code() -> None:
    cm = hyperopt_jobs.config_map(_run(shared=False))
    assert json.loads(cm["data"]["config.json"]) == {"a": 1}
    assert cm["data"]["EmaRsiStrategy.py"] == "code"


def test_hyperopt_windows_refused_in_python() -> None:
    with pytest.raises(ValidationError, match="overlap"):
        _spec(validation={"timerange": {"start": "2024-01-10", "end": "2024-01-30"}})
    assert Timerange(start="2024-01-22").start == "2024-01-22"
