"""Every module, name and file a docstring, comment or the README points to exists (issue 21, item 5: docstrings
sent readers to a best-budget module under compute/stages/ that never existed). Read from the files, nothing
imported."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("compute", "app", "bench", "tests")
# bench/ is a folder of scripts, not a package: `bench.x` in code is a script loaded as a variable named bench
DOTTED = re.compile(r"(?<![\w./-])((?:compute|app|tests)(?:\.[A-Za-z_]\w*)+)")
FILE = re.compile(r"(?<![\w./-])((?:compute|app|bench|tests)/[\w/.-]+\.py)\b")
EXAMPLES = {"compute.a", "compute.a.b"}  # tests/test_imports.py explains `from compute.a import b` with them


def _texts() -> list[tuple[Path, str]]:
    files = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")) + [ROOT / "README.md"]
    return [(p, p.read_text()) for p in files if p.exists()]


def _module_file(parts: list[str]) -> Path | None:
    base = ROOT.joinpath(*parts)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@cache
def _top_level_names(path: Path) -> frozenset[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return frozenset(names)


def _resolves(ref: str) -> bool:
    """`ref` names a module, or a module and a top-level name in it (deeper attributes are not followed)."""
    parts = ref.split(".")
    for k in range(len(parts), 0, -1):
        path = _module_file(parts[:k])
        if path is not None:
            return k == len(parts) or parts[k] in _top_level_names(path) or (
                path.suffix == ".py" and parts[k] in {"py", "md"})  # a file name written with dots
    return False


def test_dotted_references_name_modules_that_exist() -> None:
    missing = sorted({f"{path.relative_to(ROOT)}: {ref}" for path, text in _texts() for line in text.splitlines()
                      if not line.lstrip().startswith(("import ", "from "))
                      for ref in DOTTED.findall(line) if ref not in EXAMPLES and not _resolves(ref)})
    assert not missing, "references to modules or names that do not exist:\n" + "\n".join(missing)


def test_file_references_name_files_that_exist() -> None:
    missing = sorted({f"{path.relative_to(ROOT)}: {ref}" for path, text in _texts()
                      for ref in FILE.findall(text) if not (ROOT / ref).is_file()})
    assert not missing, "references to files that do not exist:\n" + "\n".join(missing)
