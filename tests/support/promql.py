"""PromQL helpers for the dashboard and alert tests: metric names in a query, and the series
the operator exports."""

from __future__ import annotations

from typing import Any

import promql_parser

from tradebot.observability.metrics import REGISTRY

# Being added by the records/observability work; the dashboard and alerts use them already.
ANNOUNCED = {
    "tradebot_records_outbox_depth": "gauge",
    "tradebot_records_write_seconds": "histogram",
    "tradebot_bot_last_heartbeat_timestamp_seconds": "gauge",
}
SUFFIXES = {"gauge": ("",), "counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def exported_series() -> set[str]:
    names = {s.name for metric in REGISTRY.collect() for s in metric.samples}
    # A labelled metric with no child yet exports no samples: add its names by type.
    for metric in REGISTRY.collect():
        kind = "counter" if metric.type == "counter" else metric.type
        names |= {metric.name + suffix for suffix in SUFFIXES.get(kind, ("",))}
    for name, kind in ANNOUNCED.items():
        names |= {name + suffix for suffix in SUFFIXES[kind]}
    return names


def metric_names(expr: str) -> set[str]:
    """Every metric a PromQL expression selects (raises ValueError if it does not parse)."""
    found: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            found.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), pre_visit=visit)
    return found
