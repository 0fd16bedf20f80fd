"""The fleet page's pages from the records alone, on both backends (a SQLite file and a real
PostgreSQL server), without HTTP or a cluster: what `tradebot ui --no-cluster` and
`tradebot report --html` read."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tradebot.controllers.backtest_records import result_metrics
from tradebot.freqtrade.result_detail import load_detail
from tradebot.freqtrade.results import parse_result
from tradebot.records import RecordStore, RunRecord
from tradebot.ui.pages import NotFound, Pages
from tradebot.ui.render import Links
from tradebot.ui.static import write_site

FIXTURE = Path(__file__).parents[1] / "unit" / "fixtures" / "backtest-result-ema-rsi-2d.zip"
T0 = dt.datetime(2026, 11, 25, 16, tzinfo=dt.UTC)


def _fill(store: RecordStore) -> None:
    store.register_strategy("ns", "ema-rsi", "uid-s", "EmaRsiStrategy", "c" * 64, {}, seen_at=T0)
    store.record_run(
        RunRecord(
            id="bt-1",
            resource_uid="uid-bt",
            namespace="ns",
            name="ema-rsi-sample",
            kind="backtest",
            status="succeeded",
            strategy_code_hash="c" * 64,
            created_at=T0,
        )
    )
    store.record_metrics("bt-1", result_metrics(parse_result(FIXTURE, "EmaRsiStrategy").to_wire()))
    store.record_backtest_detail("bt-1", load_detail(FIXTURE))


def test_every_page_renders_from_the_records(dsn: str, store: RecordStore) -> None:
    _fill(store)
    pages = Pages(store, dsn, None, Links())
    home = pages.home()
    assert 'href="/backtests/bt-1"' in home
    assert 'href="/strategies/ns/ema-rsi"' in home
    assert "Cluster not read: no cluster configured" in home
    backtest = pages.backtest("bt-1")
    assert backtest.count('class="chart"') == 3
    assert "1.71927978" in backtest  # the first trade's profit, exact
    assert "1001.24795317" in backtest  # the equity curve's last point
    strategy = pages.strategy("ns", "ema-rsi")
    assert 'href="/backtests/bt-1"' in strategy
    with pytest.raises(NotFound):
        pages.backtest("nobody")
    with pytest.raises(NotFound):
        pages.strategy("ns", "nobody")


def test_the_static_site_links_its_own_files(dsn: str, store: RecordStore, tmp_path: Path) -> None:
    _fill(store)
    written = write_site(store, dsn, tmp_path / "site")
    names = sorted(p.name for p in written)
    assert names == [
        "backtest-bt-1.html",
        "index.html",
        "plotly.min.js",
        "strategy-ns-ema-rsi.html",
    ]
    index = (tmp_path / "site" / "index.html").read_text()
    assert 'href="backtest-bt-1.html"' in index
    assert 'src="plotly.min.js"' in index
