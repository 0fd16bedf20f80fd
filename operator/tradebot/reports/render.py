"""Reports as Markdown (for people) or JSON (for programs). Pure: a Report in, text out.

Figures are printed exactly as stored (8 decimal places, never through float); in JSON every
number is a string, so no reader can round it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from tradebot.domain.time import format_time
from tradebot.records.models import ArtifactRecord, IncidentRecord, StrategyRecord
from tradebot.reports.model import EpochsSummary, Report, RunEntry, StrategyEntry

FORMATS = ("markdown", "json")


def render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return render_json(report)
    if fmt == "markdown":
        return render_markdown(report)
    raise ValueError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")


def figure(value: Decimal) -> str:
    return format(value, "f")


def when(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return format_time(value)


# ---- JSON -----------------------------------------------------------------------------------
def render_json(report: Report) -> str:
    return json.dumps(report_document(report), indent=2, ensure_ascii=False) + "\n"


def report_document(report: Report) -> dict[str, Any]:
    f = report.filters
    return {
        "generatedAt": when(report.generated_at),
        "filters": {"since": when(f.since), "namespace": f.namespace, "strategy": f.strategy},
        "strategies": [_strategy_json(s) for s in report.strategies],
        "incidents": [_incident_json(i) for i in report.incidents],
    }


def _strategy_json(entry: StrategyEntry) -> dict[str, Any]:
    return {
        "namespace": entry.namespace,
        "name": entry.name,
        "registered": entry.name is not None,
        "versions": [_version_json(v) for v in entry.versions],
        "runs": [_run_json(r) for r in entry.runs],
    }


def _version_json(version: StrategyRecord) -> dict[str, Any]:
    return {
        "codeHash": version.code_hash,
        "className": version.class_name,
        "uid": version.uid,
        "firstSeen": when(version.first_seen),
        "lastSeen": when(version.last_seen),
    }


def _run_json(entry: RunEntry) -> dict[str, Any]:
    run = entry.run
    return {
        "id": run.id,
        "namespace": run.namespace,
        "name": run.name,
        "kind": run.kind,
        "status": run.status,
        "error": run.error,
        "createdAt": when(run.created_at),
        "startedAt": when(run.started_at),
        "finishedAt": when(run.finished_at),
        "dataWindow": {"start": when(run.data_window_start), "end": when(run.data_window_end)},
        "codeHash": run.strategy_code_hash,
        "configHash": run.config_hash,
        "dataHash": run.data_hash,
        "correlationId": run.correlation_id,
        "metrics": {key: figure(value) for key, value in entry.metrics.items()},
        "artifacts": [_artifact_json(a) for a in entry.artifacts],
        "incidents": [_incident_json(i) for i in entry.incidents],
        **({} if entry.epochs is None else {"epochs": _epochs_json(entry.epochs)}),
    }


def _epochs_json(summary: EpochsSummary) -> dict[str, Any]:
    best = summary.best
    return {
        "count": str(summary.count),
        "best": None
        if best is None
        else {
            "epoch": str(best.epoch),
            "worker": str(best.worker),
            "loss": figure(best.loss),
            "profitTotal": None if best.profit_total is None else figure(best.profit_total),
            "trades": None if best.trades is None else str(best.trades),
            "parametersHash": best.parameters_hash,
        },
    }


def _artifact_json(artifact: ArtifactRecord) -> dict[str, Any]:
    return {
        "name": artifact.name,
        "path": artifact.path,
        "sha256": artifact.sha256,
        "size": str(artifact.size),
    }


def _incident_json(incident: IncidentRecord) -> dict[str, Any]:
    return {
        "id": incident.id,
        "namespace": incident.namespace,
        "createdAt": when(incident.created_at),
        "severity": incident.severity,
        "reason": incident.reason,
        "description": incident.description,
        "source": {"kind": incident.source_kind, "name": incident.source_name},
        "breaker": incident.breaker,
        "bots": list(incident.bots),
        "runId": incident.run_id,
        "figures": {key: figure(value) for key, value in sorted(incident.figures.items())},
    }


# ---- Markdown -------------------------------------------------------------------------------
def cell(value: object) -> str:
    """`value` safe inside a Markdown table cell: one line, pipes escaped."""
    text = "-" if value is None or value == "" else str(value)
    return " ".join(text.split()).replace("|", "\\|")


def table(
    header: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = ()
) -> list[str]:
    align = ["---:" if i in right else "---" for i in range(len(header))]
    lines = [f"| {' | '.join(header)} |", f"| {' | '.join(align)} |"]
    lines += [f"| {' | '.join(cell(v) for v in row)} |" for row in rows]
    return lines


def render_markdown(report: Report) -> str:
    lines = [
        "# Tradebot report",
        "",
        f"Generated {when(report.generated_at)}. " + _scope(report),
        "",
    ]
    if not report.strategies:
        lines += ["No strategies or runs match.", ""]
    for entry in report.strategies:
        lines += _strategy_md(entry)
    if report.incidents:
        lines += ["## Incidents not tied to a run", ""]
        lines += [*_incidents_table(report.incidents), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _scope(report: Report) -> str:
    f = report.filters
    parts = [f"runs created since {when(f.since)}" if f.since else "all runs"]
    if f.namespace:
        parts.append(f"namespace `{f.namespace}`")
    if f.strategy:
        parts.append(f"strategy `{f.strategy}`")
    return "Scope: " + ", ".join(parts) + "."


def _strategy_md(entry: StrategyEntry) -> list[str]:
    if entry.name is None:
        lines = [
            "## Unregistered code",
            "",
            "Runs of code no registered Strategy had (or that recorded no code hash).",
            "",
        ]
    else:
        lines = [f"## Strategy {entry.namespace}/{entry.name}", ""]
        lines += [
            *table(
                ["code hash", "class", "first seen", "last seen"],
                [
                    (f"`{v.code_hash}`", v.class_name, when(v.first_seen), when(v.last_seen))
                    for v in entry.versions
                ],
            ),
            "",
        ]
    if not entry.runs:
        lines += ["No runs in this report's scope.", ""]
    for run in entry.runs:
        lines += _run_md(run)
    return lines


def _run_md(entry: RunEntry) -> list[str]:
    run = entry.run
    lines = [
        f"### {run.kind} {run.namespace}/{run.name}: {run.status}",
        "",
        f"- run id: `{run.id}`",
        f"- created {when(run.created_at)}, started {when(run.started_at) or '-'}, "
        f"finished {when(run.finished_at) or '-'}",
        f"- data window: {when(run.data_window_start) or '-'} to "
        f"{when(run.data_window_end) or '-'}",
        f"- config hash: `{run.config_hash or '-'}`",
        f"- data hash: `{run.data_hash or '-'}`",
        f"- code hash: `{run.strategy_code_hash or '-'}`",
    ]
    if run.error:
        lines.append(f"- error: {cell(run.error)}")
    if entry.epochs is not None:
        lines.append(_epochs_md(entry.epochs))
    lines.append("")
    lines += _metrics_md(entry.metrics)
    if entry.artifacts:
        lines += ["Artifacts:", ""]
        lines += [
            *table(
                ["name", "sha256", "bytes"],
                [(a.name, f"`{a.sha256}`", a.size) for a in entry.artifacts],
                right=(2,),
            ),
            "",
        ]
    if entry.incidents:
        lines += ["Incidents:", ""]
        lines += [*_incidents_table(entry.incidents), ""]
    return lines


def _epochs_md(summary: EpochsSummary) -> str:
    best = summary.best
    if best is None:
        return f"- epochs: {summary.count}"
    profit = "-" if best.profit_total is None else figure(best.profit_total)
    return (
        f"- epochs: {summary.count}; best: epoch {best.epoch} (worker {best.worker}), "
        f"loss {figure(best.loss)}, profit {profit}, trades "
        f"{'-' if best.trades is None else best.trades}, "
        f"parameters `{best.parameters_hash}`"
    )


def _metrics_md(metrics: Mapping[str, Decimal]) -> list[str]:
    if not metrics:
        return ["No metrics recorded.", ""]
    return [
        *table(["metric", "value"], [(k, figure(v)) for k, v in metrics.items()], right=(1,)),
        "",
    ]


def _incidents_table(incidents: Sequence[IncidentRecord]) -> list[str]:
    rows = []
    for i in incidents:
        figures = ", ".join(f"{k} {figure(v)}" for k, v in sorted(i.figures.items()))
        rows.append(
            (
                when(i.created_at),
                i.severity,
                i.reason,
                i.description,
                figures,
                ", ".join(i.bots),
                f"{i.source_kind} {i.namespace}/{i.source_name}",
            )
        )
    return table(["when", "severity", "reason", "description", "figures", "bots", "source"], rows)
