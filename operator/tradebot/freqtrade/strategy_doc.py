"""What a strategy's source says about it, for the registry and its Markdown docs: hyperopt
parameter declarations, the indicators it computes, its entry and exit signals. Parsed, never
imported or run (like introspect.py); JSON without floats (the registry refuses them)."""

from __future__ import annotations

import ast
from typing import Any

from tradebot.freqtrade.parameters import _plain, hyperopt_parameters

_SIGNAL_COLUMNS = {
    "enter_long": "entry",
    "enter_short": "entry",
    "buy": "entry",
    "exit_long": "exit",
    "exit_short": "exit",
    "sell": "exit",
}
_MAX_SIGNAL = 400  # characters of one condition kept


def _class(tree: ast.Module, class_name: str) -> ast.ClassDef | None:
    return next(
        (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == class_name), None
    )


def _method(cls: ast.ClassDef, name: str) -> ast.FunctionDef | None:
    return next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == name), None)


def _column(node: ast.expr) -> str | None:
    """`dataframe["rsi"]` -> rsi."""
    if (
        isinstance(node, ast.Subscript)
        and isinstance(node.slice, ast.Constant)
        and isinstance(node.slice.value, str)
    ):
        return node.slice.value
    return None


def indicators(code: str, class_name: str) -> list[str]:
    """Columns populate_indicators assigns (`dataframe["x"] = ...`), in source order."""
    cls = _class(ast.parse(code), class_name)
    method = _method(cls, "populate_indicators") if cls else None
    found: list[str] = []
    for node in ast.walk(method) if method else []:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                name = _column(target)
                if name and name not in found:
                    found.append(name)
    return found


def signals(code: str, class_name: str) -> dict[str, list[str]]:
    """The conditions of `dataframe.loc[CONDITION, "enter_long"] = 1` and friends, as source
    text, by kind (entry, exit)."""
    cls = _class(ast.parse(code), class_name)
    out: dict[str, list[str]] = {"entry": [], "exit": []}
    if cls is None:
        return out
    for node in ast.walk(cls):
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            if not (
                isinstance(target, ast.Subscript)
                and isinstance(target.slice, ast.Tuple)
                and len(target.slice.elts) == 2
            ):
                continue
            condition, column = target.slice.elts
            columns = [column] if not isinstance(column, (ast.List, ast.Tuple)) else column.elts
            names = [
                c.value for c in columns if isinstance(c, ast.Constant) and isinstance(c.value, str)
            ]
            kind = next((_SIGNAL_COLUMNS[n] for n in names if n in _SIGNAL_COLUMNS), None)
            text = ast.get_source_segment(code, condition)
            if kind is not None and text:
                cleaned = " ".join(text.split())
                out[kind].append(cleaned[:_MAX_SIGNAL])
    return out


def describe(code: str, class_name: str) -> dict[str, Any]:
    """The registry's additions to the interface (camelCase, as the wire form): parameters,
    indicators, entrySignals, exitSignals."""
    parameters = {
        name: {k: _plain(v) for k, v in p.items()}
        for name, p in hyperopt_parameters(code, class_name).items()
    }
    found = signals(code, class_name)
    return {
        "parameters": parameters,
        "indicators": indicators(code, class_name),
        "entrySignals": found["entry"],
        "exitSignals": found["exit"],
    }
