"""The house rules that keep controllers readable: no function in controllers/ reaches 60
lines (decisions belong in domain/, where they are tested as tables)."""

from __future__ import annotations

import ast
from pathlib import Path

CONTROLLERS = Path(__file__).resolve().parents[2] / "operator" / "tradebot" / "controllers"
LIMIT = 60


def _functions(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    return [
        (n.end_lineno - n.lineno + 1, f"{path.name}:{n.lineno} {n.name}")
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.end_lineno
    ]


def test_no_controller_function_reaches_sixty_lines():
    found = [f for p in sorted(CONTROLLERS.glob("*.py")) for f in _functions(p)]
    assert len(found) > 50  # positive control: the walk sees the controllers
    too_long = [f"{where} ({lines} lines)" for lines, where in found if lines >= LIMIT]
    assert too_long == []


def test_the_measure_counts_a_long_function(tmp_path: Path):
    source = tmp_path / "long.py"
    source.write_text("def f():\n" + "    x = 1\n" * 70)
    assert _functions(source)[0][0] == 71
