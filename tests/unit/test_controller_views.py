"""The controllers' bookkeeping around the API server: no-op status writes dropped, the cached
view read safely from threads, and the priority a trip takes over its namespace's rounds."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from tradebot.controllers import cache
from tradebot.controllers.livebot import fleet_stop_in_progress, stopping_fleet
from tradebot.controllers.status import drop_unchanged


def _patch(**status: Any) -> kopf.Patch:
    patch = kopf.Patch()
    patch.status.update(status)
    return patch


def test_unchanged_status_fields_are_not_written_again() -> None:
    patch = _patch(phase="Tripped", message="new words", podName=None, runId=None)
    patch.metadata.labels["a"] = "b"
    drop_unchanged(patch, {"phase": "Tripped", "message": "old words", "runId": "lb-1"})
    # phase is already so, podName is already absent; message and runId change.
    assert patch["status"] == {"message": "new words", "runId": None}
    assert patch["metadata"] == {"labels": {"a": "b"}}


def test_a_patch_that_changes_nothing_is_empty_so_kopf_sends_nothing() -> None:
    conditions = [{"type": "Ready", "status": "False", "reason": "BreakerOpen"}]
    patch = _patch(phase="Tripped", conditions=[dict(c) for c in conditions], podName=None)
    drop_unchanged(patch, {"phase": "Tripped", "conditions": conditions})
    assert not patch
    assert "status" not in patch


def test_a_patch_without_status_is_left_alone() -> None:
    patch = kopf.Patch()
    patch.metadata.annotations["x"] = "y"
    drop_unchanged(patch, {"phase": "Running"})
    assert dict(patch) == {"metadata": {"annotations": {"x": "y"}}}


class _Flaky:
    """A store whose first reads fail as a dict changed by another thread would."""

    def __init__(self, items: list[dict[str, Any]], failures: int) -> None:
        self.items, self.failures = items, failures

    def __iter__(self) -> Any:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("dictionary changed size during iteration")
        return iter(self.items)


def test_the_cached_view_is_copied_again_when_a_read_races_a_change() -> None:
    store = _Flaky([{"metadata": {"name": "a"}}], failures=2)
    got = cache.entries({"ns": store}, "ns")
    assert got == [{"metadata": {"name": "a"}}]
    assert got is not store.items  # a snapshot, not the live store
    assert cache.entries({"ns": store}, "other") == []


def test_a_view_that_never_settles_is_an_error_not_an_empty_answer() -> None:
    # An empty list would read as "no bots", and a breaker would stop nothing.
    with pytest.raises(RuntimeError, match="kept changing"):
        cache.entries({"ns": _Flaky([], failures=100)}, "ns")


def test_a_trip_holds_its_namespace_rounds_until_every_trip_there_is_handled() -> None:
    assert not fleet_stop_in_progress("ns")
    with stopping_fleet("ns"):
        with stopping_fleet("ns"):
            assert fleet_stop_in_progress("ns")
        assert fleet_stop_in_progress("ns")  # the other breaker is still stopping
        assert not fleet_stop_in_progress("elsewhere")
    assert not fleet_stop_in_progress("ns")


def test_a_failed_trip_does_not_leave_its_namespace_held() -> None:
    with pytest.raises(ValueError, match="went away"), stopping_fleet("ns"):
        raise ValueError("the API server went away")
    assert not fleet_stop_in_progress("ns")
