"""The report's pure parts: grouping runs per strategy, --since, Markdown and JSON output."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest

from tradebot.records import ArtifactRecord, IncidentRecord, RunRecord, StrategyRecord
from tradebot.reports.model import Filters, Report, UnknownStrategy, assemble
from tradebot.reports.render import cell, render, render_json, render_markdown
from tradebot.reports.since import parse_since

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
A1, A2, B, X = "a1" * 32, "a2" * 32, "b0" * 32, "ff" * 32


def strategy(ns: str, name: str, code: str, day: int = 0) -> StrategyRecord:
    return StrategyRecord(
        namespace=ns,
        name=name,
        uid=f"uid-{name}",
        class_name=name.title(),
        code_hash=code,
        interface={},
        first_seen=T0 + dt.timedelta(days=day),
        last_seen=T0 + dt.timedelta(days=day + 1),
    )


def run(run_id: str, ns: str, code: str | None, day: int, **more: Any) -> RunRecord:
    return RunRecord(
        id=run_id,
        resource_uid=f"u-{run_id}",
        namespace=ns,
        name=run_id,
        kind="backtest",
        status="succeeded",
        strategy_code_hash=code,
        created_at=T0 + dt.timedelta(days=day),
        **more,
    )


def incident(incident_id: str, run_id: str | None, **more: Any) -> IncidentRecord:
    fields: dict[str, Any] = {
        "id": incident_id,
        "namespace": "a",
        "source_kind": "CircuitBreaker",
        "source_name": "guard",
        "source_uid": "g",
        "bots": ("bot-1",),
        "run_id": run_id,
        "severity": "critical",
        "reason": "drawdown",
        "description": "drawdown | over limit",
        "figures": {"drawdown": Decimal("0.125")},
        "created_at": T0,
    }
    return IncidentRecord(**(fields | more))


STRATEGIES = [strategy("a", "ema", A1), strategy("a", "ema", A2, 3), strategy("b", "brk", B)]
RUNS = [
    run("r2", "a", A2, 4),
    run("r1", "a", A1, 1),
    run("r3", "b", B, 2),
    run("rx", "a", X, 5),
    run("r-none", "a", None, 6),
    # Code hash of a's strategy, but in namespace b: not a's run.
    run("r-b-a1", "b", A1, 7),
]
METRICS = {
    "r1": {"profitTotal": Decimal("0.01234567"), "trades": Decimal("42.00000000")},
    "r3": {"finalBalance": Decimal("123456789012345678901234567890.12345678")},
}
ARTIFACTS = {
    "r1": [
        ArtifactRecord(name="z.zip", path="p/z.zip", sha256="e" * 64, size=12),
        ArtifactRecord(name="a.json", path="p/a.json", sha256="0" * 64, size=0),
    ]
}
INCIDENTS = [
    incident("i-run", "r1"),
    incident("i-loose", None, created_at=T0 + dt.timedelta(1)),
    incident("i-elsewhere", "not-shown"),
]


def build(**filters: Any) -> Report:
    return assemble(
        generated_at=T0,
        filters=Filters(**filters),
        strategies=STRATEGIES,
        runs=RUNS,
        metrics=METRICS,
        artifacts=ARTIFACTS,
        incidents=INCIDENTS,
    )


def test_runs_are_grouped_by_the_strategy_that_had_their_code():
    report = build()
    groups = {(s.namespace, s.name): [r.run.id for r in s.runs] for s in report.strategies}
    assert groups == {
        ("a", "ema"): ["r1", "r2"],
        ("b", "brk"): ["r3"],
        (None, None): ["rx", "r-none", "r-b-a1"],
    }
    ema = report.strategies[0]
    assert [v.code_hash for v in ema.versions] == [A1, A2]
    r1 = ema.runs[0]
    assert [a.name for a in r1.artifacts] == ["a.json", "z.zip"]
    assert [i.id for i in r1.incidents] == ["i-run"]
    # Incidents of no run in the report are listed apart, oldest first.
    assert [i.id for i in report.incidents] == ["i-elsewhere", "i-loose"]


def test_a_strategy_filter_keeps_only_its_runs_and_their_incidents():
    report = build(strategy="ema")
    assert [(s.name, [r.run.id for r in s.runs]) for s in report.strategies] == [
        ("ema", ["r1", "r2"])
    ]
    assert report.incidents == []


def test_a_namespace_filter_drops_other_namespaces_strategies():
    report = build(namespace="b")
    assert [s.name for s in report.strategies] == ["brk", None]


def test_an_unknown_strategy_is_named_with_the_known_ones():
    with pytest.raises(
        UnknownStrategy,
        match=r"no strategy named 'nope' is registered "
        r"\(registered: brk, ema\)",
    ):
        build(strategy="nope")
    with pytest.raises(UnknownStrategy, match="in namespace b"):
        build(strategy="ema", namespace="b")


def test_json_has_every_number_as_an_exact_string():
    document = json.loads(render_json(build()))
    r1 = document["strategies"][0]["runs"][0]
    assert r1["metrics"] == {"profitTotal": "0.01234567", "trades": "42.00000000"}
    assert r1["artifacts"][1] == {
        "name": "z.zip",
        "path": "p/z.zip",
        "sha256": "e" * 64,
        "size": "12",
    }
    assert r1["incidents"][0]["figures"] == {"drawdown": "0.12500000"}
    assert r1["createdAt"] == "2026-03-02T00:00:00Z"
    brk = document["strategies"][1]["runs"][0]
    assert brk["metrics"]["finalBalance"] == "123456789012345678901234567890.12345678"

    def numbers(value: object) -> list[object]:
        if isinstance(value, dict):
            return [n for v in value.values() for n in numbers(v)]
        if isinstance(value, list):
            return [n for v in value for n in numbers(v)]
        return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []

    assert numbers(document) == []


def test_markdown_shows_figures_as_stored_and_escapes_cells():
    text = render_markdown(build())
    assert "## Strategy a/ema" in text
    assert "## Unregistered code" in text
    assert "| profitTotal | 0.01234567 |" in text
    assert "| finalBalance | 123456789012345678901234567890.12345678 |" in text
    assert "| a.json | `" + "0" * 64 + "` | 0 |" in text
    assert "drawdown \\| over limit" in text
    assert "## Incidents not tied to a run" in text
    assert "- data window: - to -" in text
    # Every table row has as many cells as its header.
    for block in text.split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        if rows:
            widths = {line.replace("\\|", "").count("|") for line in rows}
            assert len(widths) == 1, block


def test_render_refuses_an_unknown_format():
    with pytest.raises(ValueError, match="unknown report format 'xml'"):
        render(build(), "xml")


def test_an_empty_report_says_so():
    empty = assemble(
        generated_at=T0,
        filters=Filters(),
        strategies=[],
        runs=[],
        metrics={},
        artifacts={},
        incidents=[],
    )
    assert "No strategies or runs match." in render_markdown(empty)
    assert json.loads(render_json(empty))["strategies"] == []


def test_cells_are_one_line():
    assert cell("a\nb |c") == "a b \\|c"
    assert cell(None) == "-"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", T0 - dt.timedelta(days=30)),
        ("12h", T0 - dt.timedelta(hours=12)),
        ("2w", T0 - dt.timedelta(weeks=2)),
        ("90m", T0 - dt.timedelta(minutes=90)),
        ("2026-01-31", dt.datetime(2026, 1, 31, tzinfo=dt.UTC)),
        ("2026-01-31T12:00:00Z", dt.datetime(2026, 1, 31, 12, tzinfo=dt.UTC)),
        ("2026-01-31T12:00:00+02:00", dt.datetime(2026, 1, 31, 10, tzinfo=dt.UTC)),
        ("2026-01-31T12:00:00", dt.datetime(2026, 1, 31, 12, tzinfo=dt.UTC)),
    ],
)
def test_since_accepts_dates_times_and_durations(text: str, expected: dt.datetime):
    assert parse_since(text, T0) == expected


@pytest.mark.parametrize("text", ["yesterday", "30", "3y", "-5d", "2026-13-01"])
def test_since_names_the_forms_it_accepts(text: str):
    with pytest.raises(ValueError, match=r"--since: expected a date \(2026-01-31\)"):
        parse_since(text, T0)


def test_a_hyperopt_run_without_epochs_yet_reports_a_count_of_zero() -> None:
    search = run("ho", "a", A1, 2).model_copy(update={"kind": "hyperopt"})
    report = assemble(
        generated_at=T0,
        filters=Filters(),
        strategies=STRATEGIES,
        runs=[search, run("r1", "a", A1, 1)],
        metrics={},
        artifacts={},
        incidents=[],
        epochs={},
    )
    by_id = {r.run.id: r for r in report.strategies[0].runs}
    assert by_id["r1"].epochs is None
    summary = by_id["ho"].epochs
    assert summary is not None
    assert (summary.count, summary.best) == (0, None)
    assert "- epochs: 0\n" in render_markdown(report)
    assert json.loads(render_json(report))["strategies"][0]["runs"][1]["epochs"] == {
        "count": "0",
        "best": None,
    }
