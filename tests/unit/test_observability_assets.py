"""The Grafana dashboard's queries use only metrics the operator exports, and parse as PromQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.support.promql import exported_series, metric_names

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts" / "tradebot-operator" / "dashboards" / "tradebot.json"


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def test_metric_names_are_found_and_bad_promql_fails():
    assert metric_names('sum by (le) (rate(a_bucket{x="1"}[5m])) / b') == {"a_bucket", "b"}
    with pytest.raises(ValueError, match="parenthesis"):
        metric_names("sum(rate(x[5m])")


def test_exported_series_include_counters_and_histograms():
    names = exported_series()
    assert "tradebot_breaker_trips_total" in names
    assert "tradebot_backtest_queue_wait_seconds_bucket" in names
    assert "tradebot_breaker_trips" not in names


@pytest.mark.parametrize("expr", dashboard_exprs())
def test_dashboard_queries_parse_and_use_exported_metrics(expr: str):
    # Grafana's variables are substituted before Prometheus sees the query.
    used = metric_names(expr.replace("$namespace", ".*"))
    assert used, expr
    assert used <= exported_series(), used - exported_series()


def test_dashboard_covers_the_fleet_queue_and_records():
    used = set().union(*(metric_names(e.replace("$namespace", ".*")) for e in dashboard_exprs()))
    for needed in (
        "tradebot_bot_equity",
        "tradebot_bot_open_trades",
        "tradebot_breaker_open",
        "tradebot_breaker_trips_total",
        "tradebot_backtest_queue_length",
        "tradebot_backtest_queue_wait_seconds_bucket",
        "tradebot_backtests_running",
        "tradebot_gpus_free",
        "tradebot_reconciliations_total",
        "tradebot_records_outbox_depth",
        "tradebot_records_write_seconds_bucket",
    ):
        assert needed in used, needed
