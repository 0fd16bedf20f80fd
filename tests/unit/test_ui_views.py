"""The fleet page's views (pure) and their HTML: built from a real Freqtrade result parsed the
way the operator parses it, figures exact, and every template renders every view (undefined
fields fail: the templates use StrictUndefined)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

from tradebot.freqtrade.result_detail import load_detail
from tradebot.records import IncidentRecord, RunRecord, StrategyRecord
from tradebot.reports.model import RunEntry, StrategyEntry
from tradebot.ui import views
from tradebot.ui.render import Links, render

FIXTURE = Path(__file__).parent / "fixtures" / "backtest-result-ema-rsi-2d.zip"
T0 = dt.datetime(2026, 11, 25, 16, tzinfo=dt.UTC)


def a_run(run_id: str = "bt-1", code: str = "c" * 64, **changes: object) -> RunRecord:
    fields: dict[str, object] = {
        "id": run_id,
        "resource_uid": f"uid-{run_id}",
        "namespace": "ns",
        "name": run_id,
        "kind": "backtest",
        "status": "succeeded",
        "strategy_code_hash": code,
        "created_at": T0,
    }
    return RunRecord.model_validate(fields | changes)


METRICS = {
    "profitTotal": Decimal("0.00124795"),
    "maxDrawdown": Decimal("0.00352568"),
    "trades": Decimal("12.00000000"),
}


def test_a_backtest_view_carries_the_exact_figures_and_three_charts() -> None:
    detail = load_detail(FIXTURE)
    view = views.backtest_view(a_run(), METRICS, detail, None)
    assert [name for name, _ in view["charts"]] == ["equity", "drawdown", "daily"]
    equity = dict(view["charts"])["equity"]["data"][0]
    # Chart data is the exact text, no float on the way (Plotly reads numeric strings).
    assert equity["y"][0] == "1000.00000000"
    assert equity["y"][-1] == "1001.24795317"
    assert equity["x"][1] == "2024-01-02 03:25:00"  # UTC, as a Plotly date axis reads it
    assert view["trades"][0]["profit_abs"] == "1.71927978"
    assert view["trades"][0]["profit_ratio"] == "1.72 %"
    assert view["run"]["trades"] == "12"
    assert view["run"]["profit"] == "0.12 %"
    assert [r["key"] for r in view["exit_reasons"]] == ["roi", "exit_signal"]
    html = render("backtest", view, Links())
    assert html.count('class="chart"') == 3
    assert "1.71927978" in html


def test_a_backtest_without_detail_has_no_chart() -> None:
    view = views.backtest_view(a_run(), METRICS, None, None)
    assert view["charts"] == []
    html = render("backtest", view, Links())
    assert 'class="chart"' not in html
    assert "No trades recorded for this run" in html


def test_launched_prefers_the_status_record_then_the_hashes() -> None:
    run = a_run(config_hash="f" * 64)
    launched = {"codeHash": "a" * 64, "image": "runner@sha256:" + "b" * 64}
    rows = views.launched_rows(run, {"status": {"launched": launched}})
    assert rows == [("codeHash", "a" * 64), ("image", "runner@sha256:" + "b" * 64)]
    rows = dict(views.launched_rows(run, {"status": {"codeHash": "e" * 64}}))
    assert rows["codeHash"] == "e" * 64
    assert rows["configHash"] == "f" * 64


def test_the_queue_lists_waiting_and_running_work_in_order() -> None:
    def obj(name: str, phase: str, position: int | None = None) -> dict[str, object]:
        return {
            "kind": "Backtest",
            "metadata": {"namespace": "ns", "name": name},
            "status": {"phase": phase, "queuePosition": position},
        }

    rows = views.queue_rows(
        [
            obj("b", "Queued", 2),
            obj("done", "Succeeded"),
            obj("a", "Queued", 1),
            obj("r", "Running"),
        ]
    )
    assert [r["name"] for r in rows] == ["a", "b", "r"]


def test_a_breaker_shows_its_last_incident() -> None:
    def incident(i: int, breaker: str) -> IncidentRecord:
        return IncidentRecord(
            id=f"i-{i}",
            namespace="ns",
            source_kind="CircuitBreaker",
            source_name=breaker,
            source_uid="u",
            breaker=breaker,
            severity="critical",
            reason=f"reason-{i}",
            description="d",
            created_at=T0 + dt.timedelta(hours=i),
        )

    row = views.breaker_row(
        {"metadata": {"namespace": "ns", "name": "cb"}, "status": {"state": "Open"}},
        [incident(1, "cb"), incident(3, "other"), incident(2, "cb")],
    )
    assert row["last_incident"]["reason"] == "reason-2"
    quiet = views.breaker_row({"metadata": {"namespace": "ns", "name": "x"}}, [incident(1, "cb")])
    assert quiet["last_incident"] is None
    assert quiet["state"] == "Closed"


def test_a_strategy_view_puts_each_versions_runs_side_by_side() -> None:
    old, new = "d" * 64, "c" * 64

    def version(code: str, seen: dt.datetime) -> StrategyRecord:
        return StrategyRecord(
            namespace="ns",
            name="ema",
            uid="u",
            class_name="Ema",
            code_hash=code,
            interface={},
            first_seen=seen,
            last_seen=seen,
        )

    entry = StrategyEntry(
        namespace="ns",
        name="ema",
        versions=[version(old, T0), version(new, T0 + dt.timedelta(days=1))],
        runs=[
            RunEntry(a_run("r-old", old), METRICS, [], []),
            RunEntry(a_run("r-new", new), METRICS, [], []),
            RunEntry(a_run("r-new-2", new, status="running"), {}, [], []),
        ],
    )
    view = views.strategy_view(entry)
    assert [v["code_hash"] for v in view["versions"]] == [new, old]  # newest first
    assert [r["id"] for r in view["versions"][0]["runs"]] == ["r-new", "r-new-2"]
    chart = dict(view["charts"])["runs"]
    assert len(chart["data"][0]["x"]) == 2  # only runs with figures are charted
    assert chart["data"][0]["y"] == ["0.12479500", "0.12479500"]
    assert "r-old" in render("strategy", view, Links(static=True))


def test_links_for_the_server_and_for_files() -> None:
    assert Links().backtest("bt/1") == "/backtests/bt%2F1"
    assert Links(static=True).backtest("bt-1") == "backtest-bt-1.html"
    assert Links(static=True).strategy("ns", "ema") == "strategy-ns-ema.html"
    assert Links().asset("plotly.min.js") == "/static/plotly.min.js"
    assert Links().strategy("ns", "ema") == "/strategies/ns/ema"
    assert Links().bot("ns", "b") == "/bots/ns/b"
    assert Links().hyperopt("ho-1") == "/hyperopts/ho-1"


def test_the_home_page_lists_the_clusters_work_and_the_records() -> None:
    backtest = {
        "kind": "Backtest",
        "metadata": {"namespace": "ns", "name": "ema-rsi-sample"},
        "status": {
            "phase": "Succeeded",
            "runId": "bt-1",
            "results": {"profitTotal": "0.00124795", "trades": 12},
            "finishedAt": "2026-11-25T16:02:00Z",
        },
    }
    bot = {
        "metadata": {"namespace": "ns", "name": "ema-rsi-dry"},
        "spec": {"mode": "dryRun"},
        "status": {"phase": "Running", "lastHeartbeat": "2026-11-25T16:55:00Z"},
    }
    view = views.home_view(
        bots=[bot],
        breakers=[],
        work=[backtest],
        runs=[a_run()],
        metrics={"bt-1": METRICS},
        incidents=[],
        strategies=[("ns", "ema")],
    )
    assert view["queue"] == []  # finished: not in the queue
    assert view["backtests"][0]["run_id"] == "bt-1"
    assert view["bots"][0]["heartbeat"] == "2026-11-25 16:55:00 UTC"
    html = render("home", view, Links())
    assert '<a href="/backtests/bt-1">ns/ema-rsi-sample</a>' in html
    assert '<a href="/bots/ns/ema-rsi-dry">' in html
    assert "Cluster not read" not in html
    failed = render("home", {**view, "cluster_error": "no kubeconfig"}, Links())
    assert "Cluster not read: no kubeconfig" in failed


def test_a_hyperopt_view_charts_the_best_so_far_and_compares_the_samples() -> None:
    from tradebot.freqtrade.hyperopt_summary import EpochRecord

    def epoch(n: int, loss: str) -> EpochRecord:
        return EpochRecord.model_validate(
            {"epoch": n, "worker": 0, "loss": loss, "parameters_hash": "e" * 64}
        )

    resource = {
        "status": {
            "best": {"epoch": 2, "loss": "-1.00000000", "parameters": '{"buy": {}}'},
            "validation": {
                "backtestName": "search-oos",
                "inSample": {"profitTotal": "0.05000000", "trades": 30},
                "outOfSample": {"profitTotal": "0.01000000", "trades": 9},
            },
        }
    }
    run = a_run("ho-1", kind="hyperopt")
    view = views.hyperopt_view(
        run, {}, [epoch(3, "0.5"), epoch(1, "0.2"), epoch(2, "-1")], resource
    )
    best_so_far = dict(view["charts"])["loss"]["data"][1]["y"]
    assert best_so_far == ["0.20000000", "-1.00000000", "-1.00000000"]
    assert ("profitTotal", "0.05000000", "0.01000000") in view["samples"]
    html = render("hyperopt", view, Links())
    assert "In sample against out of sample (Backtest search-oos)" in html
