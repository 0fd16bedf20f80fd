"""Which operator replica may act: the holder of one coordination.k8s.io Lease. Pure: the
elector (controllers/leadership.py) reads the Lease, asks `decide`, writes what it says under
the Lease's resourceVersion (a 409 means another replica wrote first: nobody acts twice), and
asks `must_stop` after each renewal attempt.

The rules are client-go's. A replica judges another's Lease expired on its own monotonic
clock, from when it last saw the Lease change, never from renewTime (clocks of two machines
disagree). The leader counts its renew deadline from the start of its last successful write,
which is no later than the moment any follower saw that write; since the deadline is shorter
than the Lease's duration, the leader has stopped before a follower may take over.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from tradebot.domain.time import format_micro_time, parse_time


@dataclass(frozen=True)
class LeaderRecord:
    """What a leader Lease says (its spec)."""

    holder: str | None
    lease_duration_seconds: int | None = None
    acquire_time: dt.datetime | None = None
    renew_time: dt.datetime | None = None
    transitions: int = 0

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> LeaderRecord:
        spec = manifest.get("spec") or {}

        def when(key: str) -> dt.datetime | None:
            value = spec.get(key)
            return parse_time(value) if isinstance(value, str) else value

        return cls(
            holder=spec.get("holderIdentity") or None,
            lease_duration_seconds=spec.get("leaseDurationSeconds"),
            acquire_time=when("acquireTime"),
            renew_time=when("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
        )

    def spec(self) -> dict[str, Any]:
        return {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.lease_duration_seconds,
            "acquireTime": _micro(self.acquire_time),
            "renewTime": _micro(self.renew_time),
            "leaseTransitions": self.transitions,
        }


def _micro(value: dt.datetime | None) -> str | None:
    return format_micro_time(value) if value is not None else None


@dataclass(frozen=True)
class Observed:
    """The Lease as this replica last saw it, and when (monotonic seconds) it first saw it
    that way: expiry is counted from there."""

    record: LeaderRecord
    since: float


def observe(previous: Observed | None, record: LeaderRecord, now: float) -> Observed:
    """The observation after reading `record` at `now`: the same record keeps the time it was
    first seen, so a holder that stopped renewing expires; any change restarts the clock."""
    if previous is not None and previous.record == record:
        return previous
    return Observed(record, now)


Action = Literal["create", "acquire", "renew", "wait"]


@dataclass(frozen=True)
class Decision:
    action: Action
    # The spec to write (create, acquire, renew); None when waiting.
    record: LeaderRecord | None
    # Who holds the Lease after the decision (for the log).
    holder: str | None
    # Waiting: seconds until the holder's Lease expires as seen here, if it does not renew.
    expires_in: float = 0.0


def decide(
    me: str, observed: Observed | None, now: float, wall: dt.datetime, duration_seconds: int
) -> Decision:
    """What replica `me` does with the Lease it just read (`observed`, None when there is
    none) at monotonic `now` and wall time `wall` (written into acquireTime/renewTime for
    people and tools; no decision reads them)."""
    if observed is None:
        return Decision("create", LeaderRecord(me, duration_seconds, wall, wall, 0), me)
    record = observed.record
    if record.holder == me:
        return Decision(
            "renew",
            LeaderRecord(
                me, duration_seconds, record.acquire_time or wall, wall, record.transitions
            ),
            me,
        )
    if record.holder is not None:
        duration = record.lease_duration_seconds or duration_seconds
        left = observed.since + duration - now
        if left > 0:
            return Decision("wait", None, record.holder, expires_in=left)
    # Released (no holder) or expired: taken over, one more transition.
    return Decision(
        "acquire", LeaderRecord(me, duration_seconds, wall, wall, record.transitions + 1), me
    )


def must_stop(last_renewed: float, now: float, renew_deadline_seconds: float) -> bool:
    """A leader whose last successful renewal started at `last_renewed` (monotonic) stops
    acting once the renew deadline has passed: a follower may take over at the Lease's
    duration, which is longer."""
    return now - last_renewed >= renew_deadline_seconds


def work_stalled(last_beat: float | None, now: float, stall_seconds: float) -> bool:
    """A leader whose guarded work loop last completed a turn at `last_beat` (monotonic; None
    when no loop runs yet) must stop renewing once that is `stall_seconds` old: its Lease
    would otherwise keep a standby out while nothing is admitted (a renewal on a client of
    its own succeeds whatever hangs the work)."""
    return last_beat is not None and now - last_beat > stall_seconds


def released(record: LeaderRecord, wall: dt.datetime) -> LeaderRecord:
    """The spec a leader writes when it stops cleanly: no holder, so a follower acquires at
    its next look instead of waiting out the duration."""
    return LeaderRecord(None, 1, record.acquire_time, wall, record.transitions)


def check_timing(duration: float, renew_deadline: float, retry: float) -> str | None:
    """Why these timings would be unsafe or unworkable, or None. client-go's rules: the
    duration beyond the deadline is the margin for a leader to stop before a follower takes
    over; the deadline must allow retries (with their jitter) before giving up."""
    if not duration > renew_deadline:
        return (
            f"the lease duration ({duration} s) must exceed the renew deadline ({renew_deadline} s)"
        )
    if not renew_deadline > 1.2 * retry:
        return (
            f"the renew deadline ({renew_deadline} s) must exceed 1.2 x the retry period "
            f"({retry} s)"
        )
    return None
