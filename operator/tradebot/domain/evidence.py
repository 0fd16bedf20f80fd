"""Dry-run evidence from recorded bot snapshots, and the keys that make bot records
idempotent. Pure: the controller reads the records and passes them in."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tradebot.domain.gates import DryRunEvidence, DryRunPeriod
from tradebot.domain.time import utc


@dataclass(frozen=True)
class SnapshotMark:
    """What the evidence needs of one snapshot."""

    taken_at: dt.datetime
    code_hash: str
    mode: str


def stamp(moment: dt.datetime) -> str:
    """A compact UTC stamp for ids: 20261125T190512Z."""
    return utc(moment).astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def floor_to(moment: dt.datetime, interval_seconds: int) -> dt.datetime:
    """`moment` rounded down to a multiple of the interval since the epoch, so every round
    within one interval names the same snapshot (a replay overwrites, never adds)."""
    seconds = int(utc(moment).timestamp())
    return dt.datetime.fromtimestamp(seconds - seconds % interval_seconds, dt.UTC)


def bot_run_id(bot_uid: str, running_since: dt.datetime) -> str:
    """One run per pod life of a bot."""
    return f"lb-{bot_uid}-{stamp(running_since)}"


def breaker_incident_id(breaker_uid: str, tripped_at: dt.datetime) -> str:
    return f"trip-{breaker_uid}-{stamp(tripped_at)}"


def stale_incident_id(bot_uid: str, silent_since: dt.datetime) -> str:
    """One incident per silence: the same silence seen again (a retry, a restarted operator)
    names the same incident."""
    return f"stale-{bot_uid}-{stamp(silent_since)}"


def dry_run_periods(
    snapshots: Iterable[SnapshotMark], max_gap: dt.timedelta
) -> tuple[DryRunPeriod, ...]:
    """Stretches of dry-run trading: consecutive dry-run snapshots of one code hash no further
    apart than `max_gap`. A gap longer than that (the bot was stopped, the operator was down)
    is not counted as evidence: only observed time is."""
    marks = sorted((m for m in snapshots if m.mode == "dryRun"), key=lambda m: utc(m.taken_at))
    periods: list[DryRunPeriod] = []
    start: SnapshotMark | None = None
    last: SnapshotMark | None = None
    for mark in marks:
        if (
            last is not None
            and start is not None
            and (
                mark.code_hash != last.code_hash
                or utc(mark.taken_at) - utc(last.taken_at) > max_gap
            )
        ):
            periods.append(DryRunPeriod(start.code_hash, utc(start.taken_at), utc(last.taken_at)))
            start = None
        if start is None:
            start = mark
        last = mark
    if start is not None and last is not None:
        periods.append(DryRunPeriod(start.code_hash, utc(start.taken_at), utc(last.taken_at)))
    return tuple(periods)


def dry_run_evidence(
    snapshots: Iterable[SnapshotMark], trips: Sequence[dt.datetime], interval_seconds: int
) -> DryRunEvidence:
    # Three missed snapshots in a row end a period: one late round is not a stop.
    gap = dt.timedelta(seconds=3 * interval_seconds)
    return DryRunEvidence(periods=dry_run_periods(snapshots, gap), trips=tuple(trips))
