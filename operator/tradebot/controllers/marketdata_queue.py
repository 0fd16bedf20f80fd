"""MarketData downloads in the admission queue: a download waits for a slot under the same
limits as Backtests (at most TRADEBOT_MAX_CONCURRENT_BACKTESTS runs at once, per namespace
likewise), for both executors: the queue creates its Job, and with the local executor the
operator runs the download once that Job's pod is Running, as it runs a Backtest.

A MarketData waits while its status names a download in progress (`currentRun`) that has no
Job yet; the controller (controllers/marketdata.py) sets `currentRun` when a download is due,
and deletes the Job only after the result is in status, so a finished download never looks
like one that waits.
"""

from __future__ import annotations

import datetime as dt

from pydantic import ValidationError

from tradebot import kube
from tradebot.api.marketdata import MarketDataSpec
from tradebot.controllers import marketdata
from tradebot.controllers.informer import RawObject
from tradebot.controllers.queue import NotWaiting, QueueKind, Refused, fail_refused, register
from tradebot.domain.queue import GpuNeed
from tradebot.domain.time import parse_time
from tradebot.settings import Settings


def waiting(obj: RawObject) -> tuple[int, dt.datetime, str, GpuNeed | None] | None:
    """(priority, created, group, gpu) while a download is due. Each MarketData is a group
    of its own: the per-strategy limit is about Backtests of one strategy."""
    status = obj.get("status") or {}
    if not status.get("currentRun"):
        return None
    created = parse_time(obj["metadata"]["creationTimestamp"])
    assert created is not None  # the API server sets it on every object
    return 0, created, f"marketdata:{obj['metadata']['name']}", None


def start(namespace: str, name: str, group: str, settings: Settings) -> str:
    """Creates the download's Job (idempotent: its name is derived from the run)."""
    md = marketdata.read(namespace, name)
    if md is None or md["metadata"].get("deletionTimestamp"):
        raise NotWaiting(name)
    run = (md.get("status") or {}).get("currentRun")
    if not run:
        raise NotWaiting(name)
    try:
        spec = MarketDataSpec.model_validate(md["spec"])
    except ValidationError as e:
        raise Refused(f"MarketData {name}: {e.errors()[0]['msg']}") from None
    refused = marketdata.image_refused(spec, settings)
    if refused is not None:
        # The controller says it in status; the queue only never creates the Job.
        raise Refused(f"MarketData {name}: {refused}")
    uid = md["metadata"]["uid"]
    job = marketdata.job_name(name, str(run), uid)
    kube.create_if_absent(
        kube.batch().create_namespaced_job,
        namespace,
        marketdata.download_job(spec, namespace, name, uid, job, settings),
    )
    return job


def refuse(namespace: str, name: str, reason: str, message: str) -> None:
    # currentRun cleared: the download no longer waits; Failed without retryAt stays so
    # until the spec changes (retrying the same Job would be refused the same way).
    fail_refused(
        marketdata.PLURAL,
        "MarketData",
        namespace,
        name,
        reason,
        message,
        condition="Failed",
        extra={"currentRun": None},
    )


MARKETDATA = QueueKind(
    label="marketdata",
    plural=marketdata.PLURAL,
    item_label=marketdata.LABEL_MARKETDATA,
    waiting=waiting,
    start=start,
    refuse=refuse,
)
register(MARKETDATA)
