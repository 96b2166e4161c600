"""compute/ has no import cycles (function-level imports count too) and every module imports on its own."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "compute"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# `__main__` modules run a program when imported (`python -m compute.cli`): they are entry points, not modules.
MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if p.stem != "__main__"}


def _imports(name: str, path: Path) -> set[str]:
    """compute modules `name` imports anywhere in its body (`from compute.a import b` names compute.a.b when
    that is a module, else compute.a)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module if node.level == 0 else ".".join(name.split(".")[:-node.level] + [node.module])
            subs = {f"{base}.{alias.name}" for alias in node.names}
            found |= (subs & MODULES.keys()) or {base}
    return {m for m in found if m in MODULES and m != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def _package_edge(module: str, target: str) -> bool:
    """A module importing its own package's __init__ (or an ancestor) is how Python loads it anyway."""
    return module.startswith(target + ".")


def test_no_import_cycles_in_compute() -> None:
    graph = {m: {t for t in _imports(m, p) if not _package_edge(m, t)} for m, p in MODULES.items()}
    # a package's __init__ re-exports its modules: an edge from a module back into its own package's __init__
    # is a cycle only through that re-export, which the rule above already ignores
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    """Each module imported first in its package's order by name, in a new interpreter (nothing preloaded by
    the test session); one interpreter for all: a fresh one per module costs ~3 s of torch import each."""
    code = "import importlib\nfor m in " + repr(sorted(MODULES)) + ":\n    importlib.import_module(m)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
