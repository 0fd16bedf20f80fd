"""DCA slot outcomes (migration 4) on both backends, a SQLite file and a real PostgreSQL
server: exact figures, one row per (schedule uid, slot) however often a slot is written, and
the outbox carries them through an outage."""

from __future__ import annotations

import datetime as dt
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.support.postgres import LocalPostgres

from tradebot.records import DcaBuyRecord, RecordStore, open_store
from tradebot.records.buffered import BufferedStore
from tradebot.records.migrations import MIGRATIONS
from tradebot.records.sqlstore import SqlRecordStore

T0 = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)


def a_slot(minute: int, outcome: str = "Bought", **changes: Any) -> DcaBuyRecord:
    bought = outcome == "Bought"
    fields: dict[str, Any] = {
        "schedule_uid": "uid-weekly",
        "namespace": "ns",
        "schedule": "weekly",
        "bot": "bot-a",
        "pair": "BTC/USDT",
        "slot": T0 + dt.timedelta(minutes=minute),
        "outcome": outcome,
        "reason": outcome if bought else "BotNotRunning",
        "message": f"slot {minute}",
        "entry_tag": f"dca-{minute}" if bought else None,
        "stake": Decimal("25.5"),
        "cost": Decimal("25.49999999") if bought else None,
        "amount": Decimal("0.00012345") if bought else None,
        "trade_id": minute if bought else None,
        "recorded_at": T0 + dt.timedelta(minutes=minute, seconds=3),
    }
    return DcaBuyRecord(**(fields | changes))


def row_count(dsn: str) -> int:
    sql = "SELECT count(*) FROM dca_buys"
    if dsn.startswith("sqlite"):
        with sqlite3.connect(dsn.removeprefix("sqlite://")) as conn:
            return int(conn.execute(sql).fetchone()[0])
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return int(row[0])


def test_migration_four_adds_the_table_to_a_schema_at_three(dsn: str) -> None:
    with open_store(dsn) as s:
        assert isinstance(s, SqlRecordStore)
        assert s.migrate([m for m in MIGRATIONS if m.version < 4]) == [1, 2, 3]
        # Positive control: before migration 4 there is nowhere to write a slot.
        with pytest.raises(Exception, match=r"(?i)dca_buys"):
            s.record_dca_buy(a_slot(0))
        assert s.migrate([m for m in MIGRATIONS if m.version <= 4]) == [4]
        assert s.migrate([m for m in MIGRATIONS if m.version <= 4]) == []
        s.record_dca_buy(a_slot(0))
        assert [b.slot for b in s.dca_buys()] == [T0]


def test_slots_round_trip_exactly_oldest_first(store: RecordStore) -> None:
    given = [a_slot(2), a_slot(0), a_slot(1, "Skipped")]
    for record in given:
        store.record_dca_buy(record)
    got = store.dca_buys()
    assert got == sorted(given, key=lambda b: b.slot)
    assert got[0].stake == Decimal("25.50000000")
    assert got[0].cost == Decimal("25.49999999")
    assert got[0].amount == Decimal("0.00012345")
    assert (got[1].outcome, got[1].cost, got[1].trade_id) == ("Skipped", None, None)


def test_filters_by_namespace_and_schedule(store: RecordStore) -> None:
    store.record_dca_buy(a_slot(0))
    store.record_dca_buy(a_slot(0, schedule_uid="uid-daily", schedule="daily"))
    store.record_dca_buy(a_slot(0, schedule_uid="uid-other", namespace="other"))
    assert len(store.dca_buys()) == 3
    assert {b.schedule for b in store.dca_buys(namespace="ns")} == {"weekly", "daily"}
    assert [b.schedule_uid for b in store.dca_buys("ns", "daily")] == ["uid-daily"]
    assert store.dca_buys(namespace="ns", schedule="nobody") == []


def test_a_replayed_slot_is_one_row(dsn: str, store: RecordStore) -> None:
    store.record_dca_buy(a_slot(0, "Unconfirmed", reason="Unconfirmed"))
    store.record_dca_buy(a_slot(0))
    store.record_dca_buy(a_slot(0))
    store.record_dca_buy(a_slot(1))
    assert row_count(dsn) == 2
    got = store.dca_buys()
    assert [(b.slot, b.outcome) for b in got] == [
        (T0, "Bought"),
        (T0 + dt.timedelta(minutes=1), "Bought"),
    ]


def test_inexact_figures_are_refused() -> None:
    with pytest.raises(ValueError, match="float"):
        a_slot(0, stake=25.5)
    with pytest.raises(ValueError, match="decimal places"):
        a_slot(0, amount=Decimal("0.123456789"))


def test_slots_written_while_sqlite_is_away_arrive_and_replay_harmlessly(tmp_path: Path) -> None:
    directory = tmp_path / "volume"
    dsn = f"sqlite:///{directory}/records.db"
    outbox = tmp_path / "outbox.jsonl"
    with BufferedStore.open(dsn, outbox) as store:
        store.record_dca_buy(a_slot(0))
        store.record_dca_buy(a_slot(1, "Missed"))
        assert store.pending == 2
    saved = outbox.read_bytes()
    directory.mkdir()
    with BufferedStore.open(dsn, outbox) as store:
        assert store.flush() == 2
        first = store.dca_buys()
    outbox.write_bytes(saved)  # a crash before the outbox was cut: everything replays
    with BufferedStore.open(dsn, outbox) as store:
        assert store.flush() == 2
        assert store.dca_buys() == first
    assert first == [a_slot(0), a_slot(1, "Missed")]
    assert row_count(dsn) == 2
    assert not outbox.with_name(outbox.name + ".rejected").exists()


def test_slots_written_while_postgres_is_down_arrive_once(
    private_postgres: LocalPostgres,
    tmp_path: Path,
) -> None:
    with psycopg.connect(private_postgres.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE records")
    dsn = private_postgres.dsn("records")
    with BufferedStore.open(dsn, tmp_path / "outbox.jsonl", timeout=2) as store:
        assert store.connected
        store.record_dca_buy(a_slot(0))  # straight to the database
        assert store.pending == 0
        private_postgres.stop()
        store.record_dca_buy(a_slot(0))
        store.record_dca_buy(a_slot(1))
        assert store.pending == 2
        private_postgres.resume()
        assert store.flush() == 2
        got = store.dca_buys("ns", "weekly")
    assert got == [a_slot(0), a_slot(1)]
    assert row_count(dsn) == 2
