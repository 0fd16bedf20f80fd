"""The strategy registry as a table or JSON, and one strategy file's interface. Pure."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from tradebot.freqtrade.parameters import summary as parameters_summary
from tradebot.records.models import StrategyRecord
from tradebot.reports.render import when

COLUMNS = (
    "NAMESPACE",
    "NAME",
    "CLASS",
    "CODE HASH",
    "FIRST SEEN",
    "LAST SEEN",
    "TIMEFRAME",
    "SHORT",
    "STOPLOSS",
    "MINIMAL ROI",
    "FREQAI",
    "PARAMETERS",
)
HASH_SHOWN = 12


def roi_text(roi: object) -> str:
    if not isinstance(roi, Mapping) or not roi:
        return "-"
    return " ".join(
        f"{minutes}:{value}"
        for minutes, value in sorted(roi.items(), key=lambda kv: _minutes(str(kv[0])))
    )


def _minutes(key: str) -> float:
    try:
        return float(key)  # only to order the ROI table; the text is shown as written
    except ValueError:
        return float("inf")


def _flag(value: object) -> str:
    return "-" if value is None else ("yes" if value else "no")


def interface_summary(interface: Mapping[str, Any]) -> dict[str, str]:
    """The interface fields a person scans for, as short text (camelCase wire keys, as the
    Strategy controller records them)."""
    parameters = interface.get("parameters")
    return {
        "timeframe": str(interface.get("timeframe") or "-"),
        "canShort": _flag(interface.get("canShort")),
        "stoploss": str(interface.get("stoploss") or "-"),
        "minimalRoi": roi_text(interface.get("minimalRoi")),
        "freqai": _flag(interface.get("usesFreqai")),
        "parameters": parameters_summary(parameters)
        if isinstance(parameters, dict) and parameters
        else ("none" if isinstance(parameters, dict) else "not recorded"),
    }


def registry_rows(records: Sequence[StrategyRecord]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for r in records:
        s = interface_summary(r.interface)
        rows.append(
            (
                r.namespace,
                r.name,
                r.class_name,
                r.code_hash[:HASH_SHOWN],
                when(r.first_seen) or "-",
                when(r.last_seen) or "-",
                s["timeframe"],
                s["canShort"],
                s["stoploss"],
                s["minimalRoi"],
                s["freqai"],
                s["parameters"],
            )
        )
    return rows


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [
        max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
        for i, h in enumerate(header)
    ]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip()
        for line in (tuple(header), *rows)
    ]
    return "\n".join(lines) + "\n"


def render_registry(records: Sequence[StrategyRecord], fmt: str) -> str:
    if fmt == "json":
        return (
            json.dumps([registry_document(r) for r in records], indent=2, ensure_ascii=False) + "\n"
        )
    if not records:
        return "no strategies are registered\n"
    return render_table(COLUMNS, registry_rows(records))


def registry_document(record: StrategyRecord) -> dict[str, Any]:
    return {
        "namespace": record.namespace,
        "name": record.name,
        "uid": record.uid,
        "className": record.class_name,
        "codeHash": record.code_hash,
        "firstSeen": when(record.first_seen),
        "lastSeen": when(record.last_seen),
        "summary": interface_summary(record.interface),
        "interface": record.interface,
    }


def render_interface(document: Mapping[str, Any], fmt: str) -> str:
    """A file's introspection: {"file", "className", "codeHash", "interface", "parameters",
    "warnings"} as JSON or as `key: value` lines."""
    if fmt == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    interface = {**document["interface"], "parameters": document["parameters"]}
    s = interface_summary(interface)
    lines = [
        f"file:          {document['file']}",
        f"class:         {document['className']}",
        f"code hash:     {document['codeHash']}",
        f"timeframe:     {s['timeframe']}",
        f"can short:     {s['canShort']}",
        f"stoploss:      {s['stoploss']}",
        f"minimal ROI:   {s['minimalRoi']}",
        f"freqai:        {s['freqai']}",
        f"startup:       {interface.get('startupCandleCount', '-')} candles",
        f"interface:     v{interface.get('interfaceVersion', '-')}",
        f"methods:       {', '.join(interface.get('methods') or []) or '-'}",
        "parameters:" + ("" if document["parameters"] else "    none"),
    ]
    for name, p in document["parameters"].items():
        lines.append(f"  {parameters_summary({name: p})}")
    for warning in document.get("warnings") or []:
        lines.append(f"warning:       {warning}")
    return "\n".join(lines) + "\n"
