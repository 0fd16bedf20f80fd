"""Dry-run evidence from snapshots, and the record keys derived from cluster state."""

from __future__ import annotations

import datetime as dt

from tradebot.domain import evidence, gates
from tradebot.domain.evidence import SnapshotMark

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)


def marks(
    start: dt.datetime, count: int, code: str = "h1", mode: str = "dryRun", step: dt.timedelta = MIN
) -> list[SnapshotMark]:
    return [SnapshotMark(start + i * step, code, mode) for i in range(count)]


def test_consecutive_snapshots_form_one_period():
    periods = evidence.dry_run_periods(marks(T0, 61), max_gap=3 * MIN)
    assert periods == (gates.DryRunPeriod("h1", T0, T0 + 60 * MIN),)


def test_a_gap_longer_than_allowed_splits_periods_and_is_not_counted():
    snaps = marks(T0, 11) + marks(T0 + 30 * MIN, 11)
    periods = evidence.dry_run_periods(snaps, max_gap=3 * MIN)
    assert [(p.started, p.ended) for p in periods] == [
        (T0, T0 + 10 * MIN),
        (T0 + 30 * MIN, T0 + 40 * MIN),
    ]
    ev = gates.DryRunEvidence(periods=periods)
    assert gates.dry_run_time(ev, "h1", T0 + 2 * dt.timedelta(hours=1)) == 20 * MIN


def test_other_code_and_other_modes_are_not_dry_run_evidence_of_this_code():
    snaps = (
        marks(T0, 5, code="old")
        + marks(T0 + 5 * MIN, 5, code="new")
        + marks(T0 + 10 * MIN, 5, code="new", mode="testnet")
    )
    periods = evidence.dry_run_periods(snaps, max_gap=3 * MIN)
    assert [(p.code_hash, p.started, p.ended) for p in periods] == [
        ("old", T0, T0 + 4 * MIN),
        ("new", T0 + 5 * MIN, T0 + 9 * MIN),
    ]


def test_a_trip_discards_the_history_before_it():
    ev = evidence.dry_run_evidence(marks(T0, 121), [T0 + 90 * MIN], interval_seconds=60)
    assert gates.dry_run_time(ev, "h1", T0 + 3 * dt.timedelta(hours=1)) == 30 * MIN


def test_unordered_snapshots_give_the_same_periods():
    snaps = marks(T0, 20)
    assert evidence.dry_run_periods(reversed(snaps), 3 * MIN) == evidence.dry_run_periods(
        snaps, 3 * MIN
    )


def test_floor_names_one_snapshot_per_interval():
    a = evidence.floor_to(T0 + dt.timedelta(seconds=61), 60)
    b = evidence.floor_to(T0 + dt.timedelta(seconds=119), 60)
    assert a == b == T0 + MIN
    assert evidence.floor_to(T0 + dt.timedelta(seconds=120), 60) == T0 + 2 * MIN


def test_ids_follow_the_cluster_state_they_come_from():
    assert evidence.breaker_incident_id("u1", T0) == "trip-u1-20260101T000000Z"
    assert evidence.breaker_incident_id("u1", T0) != evidence.breaker_incident_id(
        "u1", T0 + dt.timedelta(seconds=1)
    )
    assert evidence.stale_incident_id("b", T0) == "stale-b-20260101T000000Z"
    assert evidence.bot_run_id("b", T0) == "lb-b-20260101T000000Z"
