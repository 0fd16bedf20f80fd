"""The fleet page in a real browser: `tradebot ui` serves a real records store (a real Freqtrade
result parsed into it) and a real API server's objects (written here as the operator would: no
operator runs), and headless Chromium loads each page, checks the charts drew and the console
stayed quiet, and takes a screenshot. With TRADEBOT_UI_SCREENSHOTS=DIR the screenshots are kept
there too (docs/images/ is made that way).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.support.browser import load
from tests.support.cluster import stop_process
from tests.support.manifests import example

from tradebot.controllers.backtest_records import result_metrics
from tradebot.freqtrade.hyperopt_summary import EpochRecord
from tradebot.freqtrade.result_detail import load_detail
from tradebot.freqtrade.results import parse_result
from tradebot.records import BotSnapshot, IncidentRecord, RunRecord, open_store

G, V = "tradebot.dev", "v1alpha1"
FIXTURE = Path(__file__).parents[1] / "unit" / "fixtures" / "backtest-result-ema-rsi-2d.zip"
CODE = "c" * 64
OLD_CODE = "d" * 64
T0 = dt.datetime(2026, 11, 25, 16, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Fleet:
    url: str
    namespace: str
    backtest: str
    bare_backtest: str
    hyperopt: str


def _object(api: Any, namespace: str, kind: str, plural: str, status: dict[str, Any]) -> str:
    body = example(kind)
    body["metadata"]["namespace"] = namespace
    objects = client.CustomObjectsApi(api)
    created = objects.create_namespaced_custom_object(G, V, namespace, plural, body)
    name = body["metadata"]["name"]
    objects.patch_namespaced_custom_object_status(G, V, namespace, plural, name, {"status": status})
    return str(created["metadata"]["uid"])


def _records(dsn: str, namespace: str, bot_uid: str) -> tuple[str, str, str]:
    detail = load_detail(FIXTURE)
    figures = result_metrics(parse_result(FIXTURE, "EmaRsiStrategy").to_wire())
    with open_store(dsn) as store:
        store.migrate()
        for code, seen in ((OLD_CODE, T0 - dt.timedelta(days=3)), (CODE, T0)):
            store.register_strategy(
                namespace, "ema-rsi", "uid-s", "EmaRsiStrategy", code, {}, seen_at=seen
            )

        def run(run_id: str, kind: str, name: str, code: str, at: dt.datetime) -> None:
            store.record_run(
                RunRecord(
                    id=run_id,
                    resource_uid=f"uid-{run_id}",
                    namespace=namespace,
                    name=name,
                    kind=kind,  # type: ignore[arg-type]
                    status="succeeded",
                    strategy_code_hash=code,
                    created_at=at,
                    finished_at=at + dt.timedelta(minutes=2),
                )
            )

        run("bt-with-trades", "backtest", "ema-rsi-sample", CODE, T0)
        store.record_metrics("bt-with-trades", figures)
        store.record_backtest_detail("bt-with-trades", detail)
        # An older version's run whose result file was never kept: figures, no trades.
        run("bt-figures-only", "backtest", "ema-rsi-old", OLD_CODE, T0 - dt.timedelta(days=2))
        worse = {**figures, "profitTotal": Decimal("-0.01234567"), "maxDrawdown": Decimal("0.02")}
        store.record_metrics("bt-figures-only", worse)
        run("ho-1", "hyperopt", "ema-rsi-search", CODE, T0 + dt.timedelta(hours=1))
        store.record_epochs(
            "ho-1",
            [
                EpochRecord.model_validate(
                    {
                        "epoch": n,
                        "worker": 0,
                        "loss": f"{(n * 7) % 5 - 2}.5",
                        "profit_total": f"0.0{n}",
                        "trades": 10 + n,
                        "max_drawdown": "0.01",
                        "parameters_hash": "e" * 64,
                    }
                )
                for n in range(1, 9)
            ],
        )
        for i in range(12):
            store.record_snapshot(
                BotSnapshot(
                    bot_uid=bot_uid,
                    namespace=namespace,
                    name="ema-rsi-dry",
                    code_hash=CODE,
                    mode="dryRun",
                    taken_at=T0 + dt.timedelta(minutes=5 * i),
                    profit=Decimal(i % 4) - Decimal("1.5"),
                    drawdown=Decimal("0.01"),
                    open_trades=i % 3,
                    equity=Decimal(1000) + Decimal(i % 4) - Decimal("1.5"),
                )
            )
        store.record_incident(
            IncidentRecord(
                id="inc-1",
                namespace=namespace,
                source_kind="CircuitBreaker",
                source_name="main-fleet",
                source_uid="uid-cb",
                breaker="main-fleet",
                bots=("ema-rsi-dry",),
                severity="critical",
                reason="drawdown",
                description="drawdown 0.16 over the limit 0.15",
                created_at=T0,
            )
        )
    return "bt-with-trades", "bt-figures-only", "ho-1"


@pytest.fixture
def fleet(
    cluster: Any, crds_installed: None, api_client: Any, namespace: str, tmp_path: Path
) -> Iterator[Fleet]:
    bot_uid = _object(
        api_client,
        namespace,
        "LiveBot",
        "livebots",
        {
            "phase": "Running",
            "mode": "dryRun",
            "profit": "1.25000000",
            "drawdown": "0.00350000",
            "equity": "1001.25000000",
            "openTrades": 1,
            "lastHeartbeat": "2026-11-25T16:55:00Z",
            "gates": [
                {"name": "minProfit", "passed": True, "message": "0.12 % >= 0 %"},
                {"name": "minDryRunHours", "passed": False, "message": "1 h of 24 h"},
            ],
        },
    )
    _object(
        api_client,
        namespace,
        "CircuitBreaker",
        "circuitbreakers",
        {"state": "Open", "reason": "drawdown", "affectedBots": ["ema-rsi-dry"]},
    )
    _object(api_client, namespace, "Backtest", "backtests", {"phase": "Queued", "queuePosition": 1})
    dsn = f"sqlite:///{tmp_path}/records.db"
    backtest, bare, hyperopt = _records(dsn, namespace, bot_uid)
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    tradebot = [sys.executable, "-m", "tradebot.cli"]
    process = subprocess.Popen(
        [*tradebot, "ui", "--port", "0", "--dsn", dsn],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the first line it prints, once it listens
        found = re.match(r"fleet page: (http://127\.0\.0\.1:\d+/)$", line.strip())
        assert found, f"tradebot ui printed {line!r}"
        yield Fleet(found.group(1), namespace, backtest, bare, hyperopt)
    finally:
        stop_process(process)  # type: ignore[arg-type]


def _shot(tmp_path: Path, name: str) -> Path:
    return tmp_path / f"{name}.png"


def _keep(shot: Path) -> None:
    target = os.environ.get("TRADEBOT_UI_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(target) / f"ui-{shot.name}")


def test_every_page_draws_its_charts_in_chromium(fleet: Fleet, tmp_path: Path) -> None:
    pages = {
        "home": ("", set()),
        "backtest": (
            f"backtests/{fleet.backtest}",
            {"chart-equity", "chart-drawdown", "chart-daily"},
        ),
        "strategy": (f"strategies/{fleet.namespace}/ema-rsi", {"chart-runs"}),
        "hyperopt": (f"hyperopts/{fleet.hyperopt}", {"chart-loss"}),
        "bot": (f"bots/{fleet.namespace}/ema-rsi-dry", {"chart-equity"}),
    }
    for name, (path, charts) in pages.items():
        shot = _shot(tmp_path, name)
        page = load(fleet.url + path, screenshot=shot)
        assert page.console == [], f"{name}: console said {page.console}"
        assert page.charts() == dict.fromkeys(charts, True), f"{name}: {page.charts()}"
        assert shot.stat().st_size > 10_000, f"{name}: a blank screenshot?"
        _keep(shot)
        if name == "home":
            # The cluster's bot and breaker, the queue, and the recorded runs, all listed.
            for text in ("ema-rsi-dry", "main-fleet", "Open", "drawdown 0.16", "Queued"):
                assert text in page.dom, f"home lacks {text!r}"
            # Its links lead to the pages loaded below.
            for link in (
                f"/backtests/{fleet.backtest}",
                f"/hyperopts/{fleet.hyperopt}",
                f"/strategies/{fleet.namespace}/ema-rsi",
                f"/bots/{fleet.namespace}/ema-rsi-dry",
            ):
                assert f'href="{link}"' in page.dom, f"home lacks a link to {link}"
            assert "Cluster not read" not in page.dom
        if name == "backtest":
            assert page.dom.count("exit_signal") >= 8  # trades and the exit-reason table
            assert "1.71927978" in page.dom  # the first trade's profit, exact


def test_a_run_without_trades_draws_no_chart_and_says_why(fleet: Fleet) -> None:
    page = load(f"{fleet.url}backtests/{fleet.bare_backtest}")
    assert page.console == []
    assert page.charts() == {}
    assert "No trades recorded for this run" in page.dom
    assert "-0.01234567" in page.dom


def test_the_console_check_catches_a_script_error(tmp_path: Path) -> None:
    # The positive control of "no console errors": a page whose script fails is caught.
    broken = tmp_path / "broken.html"
    broken.write_text(
        '<div class="chart" id="chart-x"></div><script>Plotly.newPlot("chart-x", [])</script>'
    )
    page = load(broken.as_uri())
    assert any("Plotly is not defined" in line for line in page.console), page.console
    assert page.charts() == {"chart-x": False}


def test_only_reading_is_allowed(fleet: Fleet) -> None:
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        request = urllib.request.Request(fleet.url, method=method, data=b"{}")  # noqa: S310
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)  # noqa: S310 - our own local server
        assert refused.value.code == 405
        assert refused.value.headers["Allow"] == "GET, HEAD"
    with urllib.request.urlopen(fleet.url, timeout=10) as answer:  # noqa: S310
        assert answer.status == 200  # the positive control: GET answers
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{fleet.url}backtests/no-such-run", timeout=10)  # noqa: S310
    assert missing.value.code == 404


def test_the_static_report_draws_the_same_charts(fleet: Fleet, tmp_path: Path) -> None:
    from tradebot.cli import main

    site = tmp_path / "site"
    dsn = f"sqlite:///{tmp_path}/records.db"
    assert main(["report", "--html", str(site), "--dsn", dsn]) == 0
    assert (site / "plotly.min.js").is_file()
    page = load((site / f"backtest-{fleet.backtest}.html").as_uri())
    assert page.console == []
    assert page.charts() == {"chart-equity": True, "chart-drawdown": True, "chart-daily": True}
    strategy = load((site / f"strategy-{fleet.namespace}-ema-rsi.html").as_uri())
    assert strategy.charts() == {"chart-runs": True}
    assert f'href="backtest-{fleet.backtest}.html"' in strategy.dom
