"""Which MarketData wait in the admission queue: those with a download due and no Job yet
(the queue itself leaves out those whose Job it has seen)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import yaml

from tradebot.api.marketdata import MarketDataSpec
from tradebot.controllers import queue
from tradebot.controllers.marketdata import LABEL_MARKETDATA, download_job, job_name
from tradebot.controllers.marketdata_queue import MARKETDATA, waiting
from tradebot.domain.naming import named
from tradebot.settings import Settings

UID = "0b1e7c1e-1111-2222-3333-444455556666"
SPEC = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "examples" / "marketdata.yaml").read_text()
)["spec"]


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
    # The queue and the controller name the same Job for a run: a value fixed here, so a name
    # that varied per process or per call (a hash() seed, a timestamp) fails.
    assert job_name("majors", "0b1e7c1e-3", UID) == "md-majors-3-a5ec37d0"
    assert job_name("majors", "0b1e7c1e-4", UID) == "md-majors-4-a5ec37d0"


def test_a_long_name_still_makes_a_job_the_api_server_takes() -> None:
    """A name of 200 characters used to be the Job's label value as it was (limit 63): the
    API server refused the Job with 422 and the download waited for good."""
    name = "x" * 200
    job = download_job(MarketDataSpec.model_validate(SPEC), "ns", name, UID, "md-j", Settings())
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert all(len(v) <= 63 for v in labels.values())
        assert labels[LABEL_MARKETDATA] == "x" * 54 + "-aa20c23e"
    # The whole name is kept where the queue reads it back (a hash cannot be read back).
    assert named(job["metadata"], LABEL_MARKETDATA) == name
    assert named(job["spec"]["template"]["metadata"], LABEL_MARKETDATA) == name
    assert len(job_name(name, "0b1e7c1e-3", UID)) <= 63
    # Positive control: a short name is its own label value.
    short = download_job(
        MarketDataSpec.model_validate(SPEC), "ns", "majors", UID, "md-j", Settings()
    )
    assert short["metadata"]["labels"][LABEL_MARKETDATA] == "majors"
