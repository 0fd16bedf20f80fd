"""A backtest's result in detail (migration 5) on both backends, a SQLite file and a real
PostgreSQL server: parsed from a real Freqtrade result zip, kept exactly (8 places), replaced
as a whole on replay, carried through the outbox, and read from where the operator finds the
zip when it records the run."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tradebot.controllers.backtest_records import result_detail
from tradebot.executors.local import LocalExecutor
from tradebot.freqtrade.result_detail import load_detail
from tradebot.records import RecordStore, RunRecord, UnknownRun
from tradebot.records.buffered import BufferedStore
from tradebot.records.models import BacktestDetail
from tradebot.settings import Settings

FIXTURE = Path(__file__).parents[1] / "unit" / "fixtures" / "backtest-result-ema-rsi-2d.zip"
EIGHT = Decimal("0.00000001")
T0 = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
TABLES = ("backtest_trades", "backtest_breakdowns", "backtest_daily", "backtest_equity")


def raw_stats() -> dict[str, Any]:
    """The strategy's statistics read with zipfile and json alone, apart from the parser."""
    with zipfile.ZipFile(FIXTURE) as archive:
        for name in archive.namelist():
            if name.endswith(".json") and not name.endswith("_config.json"):
                document = json.loads(archive.read(name))
                if isinstance(document, dict) and "strategy_comparison" in document:
                    stats: dict[str, Any] = document["strategy"]["EmaRsiStrategy"]
                    return stats
    raise AssertionError("the fixture holds no statistics")


def exact(value: object) -> Decimal:
    return Decimal(str(value)).quantize(EIGHT)


def a_run(run_id: str = "bt-1") -> RunRecord:
    return RunRecord(
        id=run_id,
        resource_uid=f"uid-{run_id}",
        namespace="ns",
        name=run_id,
        kind="backtest",
        status="succeeded",
        created_at=T0,
    )


def row_count(dsn: str, table: str) -> int:
    if dsn.startswith("sqlite"):
        with sqlite3.connect(dsn.removeprefix("sqlite://")) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
        assert row is not None
        return int(row[0])


def test_the_parsed_detail_says_what_the_result_file_says() -> None:
    stats = raw_stats()
    detail = load_detail(FIXTURE)
    assert len(detail.trades) == len(stats["trades"]) == 12
    for trade, raw in zip(detail.trades, stats["trades"], strict=True):
        assert trade.pair == raw["pair"]
        assert trade.profit_abs == exact(raw["profit_abs"])
        assert trade.profit_ratio == exact(raw["profit_ratio"])
        assert trade.exit_reason == raw["exit_reason"]
        assert trade.is_short is raw["is_short"]
        assert trade.open_date == dt.datetime.fromisoformat(raw["open_date"])
        assert trade.close_date == dt.datetime.fromisoformat(raw["close_date"])
    pairs = {r["key"]: r for r in stats["results_per_pair"] if r["key"] != "TOTAL"}
    assert {r.key: r.profit_total_abs for r in detail.per_pair} == {
        k: exact(r["profit_total_abs"]) for k, r in pairs.items()
    }
    reasons = {r["key"]: r["trades"] for r in stats["exit_reason_summary"] if r["key"] != "TOTAL"}
    assert {r.key: r.trades for r in detail.exit_reasons} == reasons
    assert [(d.day.isoformat(), d.profit_abs) for d in detail.daily] == [
        (day, exact(v)) for day, v in stats["daily_profit"]
    ]
    # The curve starts at the starting balance and ends at the final balance Freqtrade reports
    # (summing the 8-place trade profits can differ from its float total in the last place).
    assert detail.equity[0].equity == exact(stats["starting_balance"])
    assert abs(detail.equity[-1].equity - exact(stats["final_balance"])) <= EIGHT * len(
        detail.trades
    )
    assert len(detail.equity) == len(detail.trades) + 1
    deepest = max(p.drawdown for p in detail.equity)
    assert deepest > 0
    assert abs(deepest - exact(stats["max_relative_drawdown"])) < Decimal("0.0001")


def test_the_detail_round_trips_exactly(store: RecordStore) -> None:
    detail = load_detail(FIXTURE)
    store.record_run(a_run())
    assert store.backtest_detail("bt-1") is None  # nothing recorded yet
    store.record_backtest_detail("bt-1", detail)
    got = store.backtest_detail("bt-1")
    assert got == detail
    assert got.trades[0].profit_abs == Decimal("1.71927978")
    assert str(got.equity[-1].equity) == "1001.24795317"
    assert store.backtest_detail("nobody") is None


def test_a_replay_leaves_the_rows_of_the_last_write(dsn: str, store: RecordStore) -> None:
    detail = load_detail(FIXTURE)
    store.record_run(a_run())
    store.record_backtest_detail("bt-1", detail)
    store.record_backtest_detail("bt-1", detail)
    counts = {t: row_count(dsn, t) for t in TABLES}
    assert counts == {
        "backtest_trades": 12,
        "backtest_breakdowns": 4,
        "backtest_daily": 2,
        "backtest_equity": 13,
    }
    fewer = detail.model_copy(update={"trades": detail.trades[:3], "daily": ()})
    store.record_backtest_detail("bt-1", fewer)
    assert store.backtest_detail("bt-1") == fewer
    assert row_count(dsn, "backtest_trades") == 3
    assert row_count(dsn, "backtest_daily") == 0


def test_a_detail_needs_its_run(dsn: str, store: RecordStore) -> None:
    detail = load_detail(FIXTURE)
    with pytest.raises(UnknownRun):
        store.record_backtest_detail("bt-1", detail)
    assert row_count(dsn, "backtest_trades") == 0
    store.record_run(a_run())
    store.record_backtest_detail("bt-1", detail)  # the positive control
    assert row_count(dsn, "backtest_trades") == 12


def test_floats_are_refused_in_a_detail() -> None:
    detail = load_detail(FIXTURE)
    values = detail.trades[0].model_dump() | {"profit_abs": 0.1}
    with pytest.raises(ValueError, match="float"):
        type(detail.trades[0]).model_validate(values)


def test_a_detail_written_while_sqlite_is_away_arrives(tmp_path: Path) -> None:
    directory = tmp_path / "volume"
    dsn = f"sqlite:///{directory}/records.db"
    outbox = tmp_path / "outbox.jsonl"
    detail = load_detail(FIXTURE)
    with BufferedStore.open(dsn, outbox) as store:
        store.record_run(a_run())
        store.record_backtest_detail("bt-1", detail)
        assert store.pending == 2
    saved = outbox.read_bytes()
    assert b"1.71927978" in saved  # exact text in the line, no float
    directory.mkdir()
    with BufferedStore.open(dsn, outbox) as store:
        assert store.flush() == 2
        assert store.backtest_detail("bt-1") == detail
    outbox.write_bytes(saved)  # replayed again after a crash: the same rows
    with BufferedStore.open(dsn, outbox) as store:
        assert store.flush() == 2
        assert store.backtest_detail("bt-1") == detail
    assert row_count(dsn, "backtest_trades") == 12
    assert not outbox.with_name(outbox.name + ".rejected").exists()


def status_with(name: str, path: str | None = None) -> dict[str, Any]:
    return {
        "artifacts": [
            {"name": name, "path": path or name, "sha256": "0" * 64, "size": 1},
            {"name": "freqtrade.log", "sha256": "1" * 64, "size": 1},
        ]
    }


def test_the_operator_reads_the_local_executors_copy(tmp_path: Path) -> None:
    settings = Settings(executor="local", local_state_dir=tmp_path)
    status = status_with(FIXTURE.name)
    # Not there yet: no detail, and no exception either (the run is recorded all the same).
    assert result_detail("ns", "bt-1", status, settings) is None
    artifacts = LocalExecutor(tmp_path).artifacts_dir("bt-1")
    artifacts.mkdir(parents=True)
    shutil.copy(FIXTURE, artifacts / FIXTURE.name)
    found = result_detail("ns", "bt-1", status, settings)
    assert isinstance(found, BacktestDetail)
    assert len(found.trades) == 12
    # A Job's emptyDir copy (kubernetes executor, no store) cannot be read back.
    assert result_detail("ns", "bt-1", status, Settings(local_state_dir=tmp_path)) is None
    assert result_detail("ns", "bt-1", {"artifacts": []}, settings) is None
