"""A strategy's hyperopt parameters (IntParameter(...) and friends), found by parsing.

Like introspect.py this reads the source with `ast` and never runs it. Figures come back as
strings, exactly as written in the code.
"""

from __future__ import annotations

import ast
from typing import Any

# Freqtrade's parameter classes -> the type name shown.
PARAMETER_TYPES = {
    "IntParameter": "int",
    "DecimalParameter": "decimal",
    "RealParameter": "real",
    "CategoricalParameter": "categorical",
    "BooleanParameter": "boolean",
}
# Freqtrade takes the space from the name's prefix when the code gives none.
_SPACES = ("buy", "sell", "enter", "exit", "protection")


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _value(node: ast.expr | None) -> Any:
    """The literal as JSON without floats (numbers as their source text), or its source."""
    if node is None:
        return None
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return ast.unparse(node)
    return _plain(value)


def _plain(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def hyperopt_parameters(code: str, class_name: str) -> dict[str, dict[str, Any]]:
    """Each parameter the class body declares, by attribute name, in source order:
    {"type", "space", "default", and "low"/"high" or "choices"}. Parameters of base
    classes are not followed."""
    tree = ast.parse(code)
    cls = next(
        (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == class_name), None
    )
    if cls is None:
        return {}
    found: dict[str, dict[str, Any]] = {}
    for statement in cls.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            target, value = statement.target, statement.value
        else:
            continue
        if not isinstance(target, ast.Name) or not isinstance(value, ast.Call):
            continue
        kind = PARAMETER_TYPES.get(_name(value.func) or "")
        if kind is None:
            continue
        keywords = {k.arg: k.value for k in value.keywords if k.arg}
        space = _value(keywords.get("space"))
        if space is None:
            prefix = target.id.split("_", 1)[0]
            space = prefix if prefix in _SPACES else None
        entry: dict[str, Any] = {
            "type": kind,
            "space": space,
            "default": _value(keywords.get("default")),
        }
        args = list(value.args)
        if kind == "categorical":
            entry["choices"] = _value(args[0] if args else keywords.get("categories"))
        elif kind != "boolean":
            low = _value(args[0] if args else keywords.get("low"))
            high = _value(args[1] if len(args) > 1 else keywords.get("high"))
            if isinstance(low, list) and len(low) == 2 and high is None:
                low, high = low  # IntParameter([low, high], ...)
            entry["low"], entry["high"] = low, high
        found[target.id] = entry
    return found


def summary(parameters: dict[str, dict[str, Any]]) -> str:
    """One line: `buy_rsi int 10..40 =30 (buy), ...`."""
    parts = []
    for name, p in parameters.items():
        if p["type"] == "categorical":
            bounds = "{" + ",".join(str(c) for c in p.get("choices") or []) + "}"
        elif p["type"] == "boolean":
            bounds = ""
        else:
            bounds = f"{p.get('low')}..{p.get('high')}"
        text = " ".join(x for x in (name, p["type"], bounds, f"={p.get('default')}") if x)
        parts.append(f"{text} ({p['space']})" if p.get("space") else text)
    return ", ".join(parts)
