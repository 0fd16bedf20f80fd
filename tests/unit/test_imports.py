"""Imports run one way: no cycle anywhere in `tradebot` (function-level imports included, since
a cycle hidden in a function is still a cycle, only one that fails later), and `domain` stays
pure: nothing from the I/O packages and no clock."""

from __future__ import annotations

import ast
from pathlib import Path

import tradebot

PACKAGE = Path(tradebot.__file__).resolve().parent
# What domain/ must not import: I/O of every kind. The API models and settings are data.
DOMAIN_FORBIDDEN = (
    "tradebot.controllers",
    "tradebot.freqtrade",
    "tradebot.records",
    "tradebot.kube",
    "tradebot.executors",
    "tradebot.localcluster",
    "tradebot.commands",
    "tradebot.observability",
)
CLOCKS = {
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("time", "time"),
    ("time", "monotonic"),
    ("time", "time_ns"),
    ("time", "perf_counter"),
}


def _modules(root: Path = PACKAGE) -> dict[str, Path]:
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = ["tradebot", *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(module: str, path: Path, known: set[str]) -> set[str]:
    """The tradebot modules `module` imports, at any depth of its code."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "tradebot")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            if source.split(".")[0] != "tradebot":
                continue
            for alias in node.names:
                # `from tradebot.controllers import runtime` imports the submodule.
                sub = f"{source}.{alias.name}"
                out.add(sub if sub in known else source)
    return {m for m in out if m in known and m != module}


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    modules = _modules(root)
    known = set(modules)
    return {m: _imported(m, p, known) for m, p in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    """Positive control: the same walk over a package made to have one."""
    pkg = tmp_path / "tradebot"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from tradebot.sub.b import x\n")
    (pkg / "sub" / "b.py").write_text("def x():\n    from tradebot.sub import a\n")
    (pkg / "c.py").write_text("from . import sub\n")
    graph = import_graph(pkg)
    assert graph["tradebot.sub.a"] == {"tradebot.sub.b"}
    assert graph["tradebot.c"] == {"tradebot.sub"}
    assert cycles(graph) == [["tradebot.sub.a", "tradebot.sub.b"]]


def test_no_import_cycle_in_tradebot() -> None:
    graph = import_graph()
    assert len(graph) > 50  # the walk saw the package
    assert "tradebot.controllers.runtime" in graph["tradebot.controllers.queue"]
    assert cycles(graph) == []


def _clock_reads(path: Path) -> list[str]:
    reads = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, (ast.Attribute, ast.Name)):
            owner = node.value.attr if isinstance(node.value, ast.Attribute) else node.value.id
            if (owner, node.attr) in CLOCKS:
                reads.append(f"{path.name}:{node.lineno} {owner}.{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module in ("time", "datetime"):
            reads += [
                f"{path.name}:{node.lineno} from {node.module} import {a.name}"
                for a in node.names
                if (node.module, a.name) in CLOCKS or a.name in ("time", "monotonic")
            ]
    return reads


def test_domain_imports_no_io_and_reads_no_clock() -> None:
    graph = import_graph()
    domain = {m: deps for m, deps in graph.items() if m.startswith("tradebot.domain")}
    assert len(domain) > 10
    bad = sorted(
        f"{m} -> {d}" for m, deps in domain.items() for d in deps if d.startswith(DOMAIN_FORBIDDEN)
    )
    assert bad == []
    clocks = [
        r for m, p in _modules().items() if m.startswith("tradebot.domain") for r in _clock_reads(p)
    ]
    assert clocks == []


def test_the_clock_finder_sees_clocks(tmp_path: Path) -> None:
    """Positive control for the test above."""
    source = tmp_path / "m.py"
    source.write_text(
        "import datetime as dt\nimport time\nfrom time import monotonic\n"
        "a = dt.datetime.now(dt.UTC)\nb = time.time()\n"
    )
    assert len(_clock_reads(source)) == 3
