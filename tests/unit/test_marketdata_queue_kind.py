"""Which MarketData wait in the admission queue: those with a download due and no Job yet
(the queue itself leaves out those whose Job it has seen)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tradebot.controllers import queue
from tradebot.controllers.marketdata import LABEL_MARKETDATA, job_name
from tradebot.controllers.marketdata_queue import MARKETDATA, waiting

UID = "0b1e7c1e-1111-2222-3333-444455556666"


def _md(status: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "majors", "uid": UID, "creationTimestamp": "2026-11-29T10:00:00Z"},
        "spec": {},
        "status": status,
    }


def test_only_a_due_download_waits_each_marketdata_a_group_of_its_own() -> None:
    assert waiting(_md({})) is None
    assert waiting(_md({"phase": "Ready", "currentRun": None})) is None
    assert waiting(_md({"phase": "Downloading", "currentRun": "0b1e7c1e-3"})) == (
        0,
        dt.datetime(2026, 11, 29, 10, tzinfo=dt.UTC),
        "marketdata:majors",
        None,
    )


def test_the_kind_is_registered_with_the_labels_its_jobs_carry() -> None:
    assert queue._KINDS["marketdata"] is MARKETDATA
    assert MARKETDATA.item_label == LABEL_MARKETDATA
    # The queue and the controller name the same Job for a run.
    assert job_name("majors", "0b1e7c1e-3", UID) == job_name("majors", "0b1e7c1e-3", UID)
    assert job_name("majors", "0b1e7c1e-3", UID) != job_name("majors", "0b1e7c1e-4", UID)
