"""Incidents and bot snapshots (migration 2) on both backends: a SQLite file and a real
PostgreSQL server. Incidents are facts (first write wins); snapshots replace themselves."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from tradebot.records import BotSnapshot, IncidentRecord, RecordStore, open_store
from tradebot.records.migrations import MIGRATIONS

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
HASH_A = "a" * 64
HASH_B = "b" * 64
PLUS_TWO = dt.timezone(dt.timedelta(hours=2))


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def an_incident(incident_id: str = "inc-1", **changes: Any) -> IncidentRecord:
    fields: dict[str, Any] = {
        "id": incident_id,
        "namespace": "team-a",
        "source_kind": "CircuitBreaker",
        "source_name": "guard",
        "source_uid": "uid-guard",
        "breaker": "guard",
        "bots": ("bot-a", "bot-b"),
        "severity": "critical",
        "reason": "drawdown",
        "description": "drawdown 12.5% over the 10% limit",
        "figures": {"drawdown": Decimal("0.12500000"), "limit": Decimal("0.1")},
        "created_at": T0,
    }
    return IncidentRecord(**(fields | changes))


def a_snapshot(minutes: int = 0, **changes: Any) -> BotSnapshot:
    fields: dict[str, Any] = {
        "bot_uid": "uid-bot-a",
        "namespace": "team-a",
        "name": "bot-a",
        "code_hash": HASH_A,
        "mode": "dryRun",
        "taken_at": at(minutes),
        "profit": Decimal("1.5"),
        "drawdown": Decimal("0.02"),
        "open_trades": 1,
        "equity": Decimal("1001.5"),
    }
    return BotSnapshot(**(fields | changes))


# ---- schema ------------------------------------------------------------------------------
def test_migration_two_is_applied_on_top_of_one(dsn: str):
    with open_store(dsn) as s:
        assert s.migrate()[:2] == [1, 2]
        assert s.applied_migrations() == [m.version for m in MIGRATIONS]
        assert s.list_incidents() == []
        assert s.list_snapshots("nobody") == []


# ---- incidents ---------------------------------------------------------------------------
def test_the_same_incident_twice_is_one_row_and_the_first_write_wins(store: RecordStore):
    first = an_incident(run_id="run-7", correlation_id="corr-1")
    assert store.record_incident(first) is True
    assert store.record_incident(first) is False
    # Same id, other content (a replica that noticed the trip later): nothing changes.
    later = an_incident(
        description="rewritten",
        severity="info",
        bots=(),
        figures={"drawdown": Decimal("0.2")},
        created_at=at(5),
    )
    assert store.record_incident(later) is False
    assert store.list_incidents() == [first]
    assert store.get_incident("inc-1") == first
    assert store.get_incident("no-such-incident") is None


def test_incident_fields_round_trip(store: RecordStore):
    stale = an_incident(
        "inc-stale",
        source_kind="LiveBot",
        source_name="bot-c",
        source_uid="uid-c",
        breaker=None,
        bots=(),
        severity="warning",
        reason="staleHeartbeat",
        description="no heartbeat for 5m",
        figures={},
        created_at=at(1).astimezone(PLUS_TWO),
    )
    assert store.record_incident(stale)
    got = store.get_incident("inc-stale")
    assert got == stale
    assert got is not None
    assert (got.breaker, got.bots, got.figures, got.run_id) == (None, (), {}, None)
    assert got.created_at == at(1)
    assert got.created_at.utcoffset() == dt.timedelta(0)


def test_incident_figures_round_trip_exactly_to_eight_places(store: RecordStore):
    figures = {
        "drawdown": Decimal("-0.12345678"),
        "largest": Decimal("999999999999999999999999999999.99999999"),
        "smallest": Decimal("0.00000001"),
        "losses": Decimal(5),
    }
    store.record_incident(an_incident(figures=figures))
    got = store.get_incident("inc-1")
    assert got is not None
    assert got.figures == figures
    assert {k: format(v, "f") for k, v in got.figures.items()} == {
        "drawdown": "-0.12345678",
        "largest": "999999999999999999999999999999.99999999",
        "smallest": "0.00000001",
        "losses": "5.00000000",
    }


@pytest.mark.parametrize("bad", [0.1, 1.0, Decimal("0.123456789"), Decimal("1e30"), Decimal("NaN")])
def test_inexact_incident_figures_are_refused(bad: object):
    with pytest.raises(ValueError, match="loss"):
        an_incident(figures={"ok": Decimal(1), "loss": bad})


def test_incidents_refuse_naive_times_and_unknown_kinds():
    with pytest.raises(ValidationError, match="timezone"):
        an_incident(created_at=dt.datetime(2026, 3, 1))
    with pytest.raises(ValidationError):
        an_incident(source_kind="Backtest")
    with pytest.raises(ValidationError):
        an_incident(severity="fatal")


def test_list_incidents_filters_combine_and_come_oldest_first(store: RecordStore):
    incidents = [
        an_incident("i0-guard", created_at=at(0)),
        an_incident(
            "i1-stale",
            source_kind="LiveBot",
            source_name="bot-c",
            source_uid="u-c",
            breaker=None,
            bots=(),
            reason="staleHeartbeat",
            created_at=at(10),
        ),
        an_incident("i2-other-ns", namespace="team-b", created_at=at(20)),
        an_incident(
            "i3-other-breaker",
            breaker="fence",
            source_name="fence",
            bots=("bot-c",),
            created_at=at(30),
        ),
        # Same instant as i3: the id decides, so the order is total and stable.
        an_incident(
            "i3-b-same-time", breaker="fence", source_name="fence", bots=(), created_at=at(30)
        ),
    ]
    for incident in reversed(incidents):
        assert store.record_incident(incident)

    def ids(**filters: Any) -> list[str]:
        return [i.id for i in store.list_incidents(**filters)]

    assert ids() == ["i0-guard", "i1-stale", "i2-other-ns", "i3-b-same-time", "i3-other-breaker"]
    assert ids(namespace="team-a") == ["i0-guard", "i1-stale", "i3-b-same-time", "i3-other-breaker"]
    assert ids(breaker="guard") == ["i0-guard", "i2-other-ns"]
    assert ids(breaker="fence") == ["i3-b-same-time", "i3-other-breaker"]
    # bot: among the incident's bots, or the LiveBot that raised it.
    assert ids(bot="bot-a") == ["i0-guard", "i2-other-ns"]
    assert ids(bot="bot-c") == ["i1-stale", "i3-other-breaker"]
    assert ids(bot="bot") == []  # whole names only, not substrings
    assert ids(bot="guard") == []  # a breaker's name is not a bot's
    assert ids(since=at(20)) == ["i2-other-ns", "i3-b-same-time", "i3-other-breaker"]
    assert ids(since=at(20).astimezone(PLUS_TWO)) == ids(since=at(20))
    assert ids(namespace="team-a", bot="bot-a", since=at(1)) == []
    assert ids(namespace="team-a", breaker="guard", bot="bot-b") == ["i0-guard"]
    with pytest.raises(ValueError, match="timezone"):
        store.list_incidents(since=dt.datetime(2026, 1, 1))


# ---- bot snapshots -----------------------------------------------------------------------
def test_a_replayed_snapshot_replaces_itself(store: RecordStore):
    first = a_snapshot(0)
    store.record_snapshot(first)
    store.record_snapshot(first)
    assert store.list_snapshots("uid-bot-a") == [first]
    corrected = a_snapshot(0, profit=Decimal("-2.25"), open_trades=0, equity=None)
    store.record_snapshot(corrected)
    assert store.list_snapshots("uid-bot-a") == [corrected]


def test_snapshot_figures_round_trip_exactly(store: RecordStore):
    snap = a_snapshot(
        0,
        profit=Decimal("-123456789012345678901234.12345678"),
        drawdown=Decimal("0.00000001"),
        equity=Decimal(1000),
    )
    store.record_snapshot(snap)
    [got] = store.list_snapshots("uid-bot-a")
    assert got == snap
    assert (format(got.profit, "f"), format(got.drawdown, "f")) == (
        "-123456789012345678901234.12345678",
        "0.00000001",
    )
    assert got.equity is not None
    assert format(got.equity, "f") == "1000.00000000"
    assert got.taken_at.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize("field", ["profit", "drawdown", "equity"])
def test_snapshots_refuse_floats_and_inexact_figures(field: str):
    with pytest.raises(ValueError, match=f"metric '{field}'"):
        a_snapshot(0, **{field: 0.5})
    with pytest.raises(ValueError, match=f"metric '{field}'"):
        a_snapshot(0, **{field: Decimal("0.000000001")})
    with pytest.raises(ValidationError):
        a_snapshot(0, open_trades=-1)
    with pytest.raises(ValidationError, match="timezone"):
        a_snapshot(0, taken_at=dt.datetime(2026, 3, 1))


def test_list_snapshots_filters_by_bot_code_hash_and_time(store: RecordStore):
    snaps = [
        a_snapshot(0),
        a_snapshot(10, taken_at=at(10).astimezone(PLUS_TWO)),
        a_snapshot(20, code_hash=HASH_B, mode="testnet"),
        a_snapshot(30, code_hash=HASH_B, mode="live", run_id="run-live-1"),
        a_snapshot(5, bot_uid="uid-bot-b", name="bot-b"),
    ]
    for snap in reversed(snaps):
        store.record_snapshot(snap)

    def times(bot_uid: str = "uid-bot-a", **filters: Any) -> list[dt.datetime]:
        return [s.taken_at for s in store.list_snapshots(bot_uid, **filters)]

    assert times() == [at(0), at(10), at(20), at(30)]  # oldest first
    assert store.list_snapshots("uid-bot-a") == snaps[:4]
    assert times(code_hash=HASH_A) == [at(0), at(10)]
    assert times(code_hash=HASH_B, since=at(25)) == [at(30)]
    assert times(since=at(10).astimezone(PLUS_TWO)) == [at(10), at(20), at(30)]
    assert times("uid-bot-b") == [at(5)]
    assert times("uid-nobody") == []
    with pytest.raises(ValueError, match="timezone"):
        store.list_snapshots("uid-bot-a", since=dt.datetime(2026, 1, 1))
