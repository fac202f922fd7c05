"""The house rules import-linter cannot check (it checks the layers and circles in .ci/run):
no private name imported from another module, modules small enough to read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for package in ("kni_core", "workbench") for p in (ROOT / package).rglob("*.py"))
#: The longest module a reader should have to hold in mind (issue 15).
MAX_LINES = 700


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_from(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names."""
    if not node.level:
        return node.module or ""
    package = _module_of(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[:len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def test_no_private_name_is_imported_from_another_module():
    offenders = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = _imported_from(path, node)
            if source.split(".")[0] not in ("kni_core", "workbench"):
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {alias.name} from {source}")
    assert not offenders, "private names imported across modules:\n" + "\n".join(offenders)


@pytest.mark.parametrize("package", ["workbench"])
def test_modules_stay_short(package):
    long = [f"{p.relative_to(ROOT)}: {n} lines" for p in SOURCES if p.is_relative_to(ROOT / package)
            and (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not long, f"modules over {MAX_LINES} lines:\n" + "\n".join(long)


def test_the_scan_sees_relative_imports(tmp_path):
    """The private-name check resolves ``from ..x import _y`` to its module (so it can fail)."""
    path = ROOT / "workbench" / "cli" / "run.py"
    node = ast.parse("from ..store.records import _private").body[0]
    assert _imported_from(path, node) == "workbench.store.records"


def test_no_lazily_exported_name_is_also_a_submodule():
    """``workbench.analysis`` exports its names lazily; a name that is also one of its modules
    (``matrix`` in ``matrix.py``) became the module once any import loaded it first, and
    ``analysis.matrix(...)`` then raised "'module' object is not callable", depending only on
    which command had imported what before."""
    import pkgutil
    import subprocess
    import sys

    import workbench.analysis as analysis
    modules = {m.name for m in pkgutil.iter_modules(analysis.__path__)}
    assert not set(analysis._HOME) & modules
    probe = ("import workbench.analysis.sweep_ranking, workbench.analysis as a; "
             "assert callable(a.matrix), a.matrix")
    subprocess.run([sys.executable, "-c", probe], check=True)
