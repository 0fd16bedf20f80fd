"""A Hyperopt's workers in the admission queue: each worker is one unit (one slot), with the
Hyperopt's priority, strategy (the per-strategy limit) and GPU request, exactly as a Backtest
waits. Starting a unit creates the search's ConfigMap (once) and that worker's Job."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tradebot import kube
from tradebot.api.base import GROUP, VERSION
from tradebot.api.hyperopt import HyperoptSpec
from tradebot.api.strategy import StrategySpec
from tradebot.controllers.informer import RawObject
from tradebot.controllers.marketdata import market_data_claim
from tradebot.controllers.queue import (
    NotWaiting,
    QueueKind,
    Refused,
    Unstartable,
    _created,
    fail_refused,
    register,
)
from tradebot.controllers.status import now
from tradebot.controllers.strategy import read_code
from tradebot.domain import hyperopt_jobs, images
from tradebot.domain.freqtrade_config import backtest_config
from tradebot.domain.hyperopt_round import backtest_spec, epoch_shares
from tradebot.domain.jobs import DATA_DIR, USER_DATA_DIR, config_map_too_large
from tradebot.domain.queue import GpuNeed
from tradebot.settings import Settings

PLURAL = "hyperopts"
ACTIVE = ("Queued", "Running")


def _waits(obj: RawObject) -> tuple[int, dt.datetime, str, GpuNeed | None] | None:
    if (obj.get("status") or {}).get("phase") not in ACTIVE:
        return None
    spec = obj.get("spec") or {}
    gpu = spec.get("gpu")
    return (
        int(spec.get("priority") or 0),
        _created(obj),
        (spec.get("strategyRef") or {}).get("name", ""),
        GpuNeed(gpu.get("vendor", "amd"), int(gpu["count"])) if gpu else None,
    )


def _units(obj: RawObject) -> list[int]:
    """The workers that still want a slot: all but those whose end the status records."""
    spec = obj.get("spec") or {}
    n = len(epoch_shares(int(spec.get("epochs") or 1), int(spec.get("workers") or 1)))
    ended = {
        int(w.get("index", -1))
        for w in (obj.get("status") or {}).get("workers") or []
        if w.get("phase") in ("Succeeded", "Failed")
    }
    return [i for i in range(n) if i not in ended]


def build_run(ho: dict[str, Any], strategy: dict[str, Any]) -> hyperopt_jobs.HyperoptRun:
    """The workers' objects' inputs: the config as a Backtest of the training window would
    have it, the strategy code, and each worker's share of the epochs."""
    meta = ho["metadata"]
    spec = HyperoptSpec.model_validate(ho["spec"])
    strategy_spec = StrategySpec.model_validate(strategy["spec"])
    as_backtest = backtest_spec(spec, spec.timerange)
    config = backtest_config(
        as_backtest, strategy_spec, datadir=DATA_DIR, user_data_dir=USER_DATA_DIR
    )
    shared = (ho.get("status") or {}).get("storage") == "shared"
    return hyperopt_jobs.HyperoptRun(
        meta["namespace"],
        meta["name"],
        meta["uid"],
        spec,
        strategy_spec.class_name,
        read_code(strategy_spec, meta["namespace"]),
        config,
        tuple(epoch_shares(spec.epochs, spec.workers)),
        hyperopt_jobs.storage_secret_name(meta["name"], meta["uid"]) if shared else None,
        market_data_claim(as_backtest, meta["namespace"]),
    )


def _start(namespace: str, unit: str, strategy_name: str, settings: Settings) -> str:
    name, _, index_text = unit.partition("#")
    ho = kube.read_or_none(
        kube.custom().get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
    )
    if (
        ho is None
        or (ho.get("status") or {}).get("phase") not in ACTIVE
        or ho["metadata"].get("deletionTimestamp")
    ):
        raise NotWaiting(unit)
    ref = ho["spec"]["strategyRef"]["name"]
    strategy = kube.read_or_none(
        kube.custom().get_namespaced_custom_object, GROUP, VERSION, namespace, "strategies", ref
    )
    if strategy is None or (strategy.get("status") or {}).get("phase") != "Ready":
        # The controller sends it back to Pending; until then the unit is retried.
        raise RuntimeError(f"Strategy {ref} is not Ready")
    run = build_run(ho, strategy)
    image = images.runner_image(
        run.spec.image, run.spec.gpu is not None and run.spec.gpu.vendor == "amd", settings
    )
    refused = images.image_allowed(image, images.allowed(settings))
    if refused is not None:
        # The Hyperopt's round fails it and says why; the queue only never creates the Job.
        raise Refused(f"Hyperopt {name}: {refused}")
    index = int(index_text)
    config_map = hyperopt_jobs.config_map(run)
    too_large = config_map_too_large(config_map)
    if too_large:
        raise Unstartable("RunTooLarge", too_large)
    kube.create_if_absent(kube.core().create_namespaced_config_map, namespace, config_map)
    job = hyperopt_jobs.job(run, index, settings)
    kube.create_if_absent(kube.batch().create_namespaced_job, namespace, job)
    return str(job["metadata"]["name"])


def _refuse(namespace: str, name: str, reason: str, message: str) -> None:
    # finishedAt and no workers left waiting: the Hyperopt's own round cleans up after it.
    fail_refused(PLURAL, "Hyperopt", namespace, name, reason, message, extra={"finishedAt": now()})


HYPEROPT = QueueKind(
    label="hyperopt",
    plural=PLURAL,
    item_label=hyperopt_jobs.LABEL_HYPEROPT,
    waiting=_waits,
    start=_start,
    units=_units,
    unit_label=hyperopt_jobs.LABEL_WORKER,
    refuse=_refuse,
)
register(HYPEROPT)
