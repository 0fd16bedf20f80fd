"""What a strategy's source says about it, found by parsing it with `ast`.

The operator never imports or runs user code: a strategy can do anything at import time, and
the operator holds credentials to the cluster.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from tradebot.api.strategy import StrategyInterface
from tradebot.api.types import MONEY_QUANTUM

# Freqtrade accepts the v2 names (buy/sell) as well as the v3 names (entry/exit).
REQUIRED_METHODS: tuple[tuple[str, ...], ...] = (
    ("populate_indicators",),
    ("populate_entry_trend", "populate_buy_trend"),
    ("populate_exit_trend", "populate_sell_trend"),
)
FREQAI_METHODS = (
    "set_freqai_targets",
    "feature_engineering_expand_all",
    "feature_engineering_expand_basic",
    "feature_engineering_standard",
)
BASE = "IStrategy"


class IntrospectionError(ValueError):
    """The code is not a usable Freqtrade strategy; the message says why, with a line."""


@dataclass(frozen=True)
class Introspection:
    code_hash: str
    interface: StrategyInterface
    warnings: tuple[str, ...] = field(default_factory=tuple)


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def _literal(node: ast.AST | None) -> object:
    if node is None:
        return None
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _decimal(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return format(Decimal(str(value)).quantize(MONEY_QUANTUM), "f")
    except InvalidOperation:
        return None


def _base_names(cls: ast.ClassDef) -> list[str]:
    names = []
    for base in cls.bases:
        if isinstance(base, ast.Name):
            names.append(base.id)
        elif isinstance(base, ast.Attribute):
            names.append(base.attr)
    return names


def _subclasses_istrategy(
    cls: ast.ClassDef, classes: dict[str, ast.ClassDef], seen: frozenset[str] = frozenset()
) -> bool:
    for base in _base_names(cls):
        if base == BASE:
            return True
        parent = classes.get(base)
        if (
            parent is not None
            and base not in seen
            and _subclasses_istrategy(parent, classes, seen | {cls.name})
        ):
            return True
    return False


def _class_attributes(cls: ast.ClassDef) -> dict[str, ast.AST]:
    attrs: dict[str, ast.AST] = {}
    for stmt in cls.body:
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    attrs[target.id] = stmt.value
        elif (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and stmt.value is not None
        ):
            attrs[stmt.target.id] = stmt.value
    return attrs


def _methods(cls: ast.ClassDef) -> list[str]:
    return [s.name for s in cls.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _uses_self_freqai(cls: ast.ClassDef) -> bool:
    return any(
        isinstance(n, ast.Attribute)
        and n.attr == "freqai"
        and isinstance(n.value, ast.Name)
        and n.value.id == "self"
        for n in ast.walk(cls)
    )


def introspect(code: str, class_name: str) -> Introspection:
    """Parses `code` and describes class `class_name`; raises IntrospectionError if unusable."""
    try:
        return _introspect(code, class_name)
    except (MemoryError, RecursionError) as e:
        # CPython's parser gives up on deeply nested expressions with one of these (which
        # depends on the nesting); they are a property of the code, so the Strategy is Invalid
        # instead of its handler failing and being retried for ever.
        kind = "too deeply nested" if isinstance(e, RecursionError) else "too large or nested"
        raise IntrospectionError(
            f"code cannot be analysed: {kind} for the parser ({type(e).__name__})"
        ) from None


def _introspect(code: str, class_name: str) -> Introspection:
    try:
        tree = ast.parse(code, filename="strategy.py")
    except SyntaxError as e:
        if e.lineno is None:  # about the whole text, e.g. "cannot contain null bytes"
            raise IntrospectionError(f"code cannot be parsed: {e.msg}") from None
        where = f"line {e.lineno}" + (f", column {e.offset}" if e.offset else "")
        raise IntrospectionError(f"syntax error at {where}: {e.msg}") from None
    classes = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    cls = classes.get(class_name)
    if cls is None:
        found = ", ".join(sorted(classes)) or "none"
        raise IntrospectionError(f"class {class_name} not found (classes in the code: {found})")
    if not _subclasses_istrategy(cls, classes):
        raise IntrospectionError(f"class {class_name} (line {cls.lineno}) does not subclass {BASE}")
    methods = _methods(cls)
    missing = [
        " or ".join(alts) for alts in REQUIRED_METHODS if not any(a in methods for a in alts)
    ]
    if missing:
        raise IntrospectionError(
            f"class {class_name} (line {cls.lineno}) lacks required method(s): "
            + ", ".join(missing)
        )

    attrs = _class_attributes(cls)
    warnings = []
    timeframe = _literal(attrs.get("timeframe"))
    if not isinstance(timeframe, str):
        timeframe = None
        warnings.append("timeframe is not a literal string; set spec.timeframe")
    roi = _literal(attrs.get("minimal_roi"))
    minimal_roi = None
    if isinstance(roi, dict):
        minimal_roi = {
            str(k): v for k, v in ((k, _decimal(v)) for k, v in roi.items()) if v is not None
        }
    stoploss = _decimal(_literal(attrs.get("stoploss")))
    if "stoploss" not in attrs:
        warnings.append("no stoploss attribute")
    can_short = _literal(attrs.get("can_short"))
    startup = _literal(attrs.get("startup_candle_count"))
    version = _literal(attrs.get("INTERFACE_VERSION"))
    interface = StrategyInterface(
        class_name=class_name,
        methods=sorted(methods),
        timeframe=timeframe,
        stoploss=stoploss,
        minimal_roi=minimal_roi,
        can_short=can_short if isinstance(can_short, bool) else False,
        startup_candle_count=startup if isinstance(startup, int) else 0,
        interface_version=version if isinstance(version, int) else None,
        uses_freqai=any(m in methods for m in FREQAI_METHODS) or _uses_self_freqai(cls),
    )
    return Introspection(code_hash=code_hash(code), interface=interface, warnings=tuple(warnings))
