"""The layers hold: import-linter's contracts (.importlinter) and imports of brainfly at module top.

import-linter sees every import statement, wherever it stands, so an import moved into a
function to hide a cycle still breaks the contract; the second test keeps such imports
out altogether (and ``try/except ImportError`` guards around brainfly's own modules).
"""

from __future__ import annotations

import ast
from pathlib import Path
import shutil
import subprocess
import sys

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "brainfly"
#: Modules allowed to import brainfly inside functions, and why (never to hide a cycle:
#: import-linter still sees these imports and checks them against the layers).
DEFERRED_BY_DESIGN = {
    "src/brainfly/cli.py": "the command line imports a command's modules when that command runs, so that "
                           "`brainfly run` does not pay for the comparison's scipy or the grid's pandas",
    "src/brainfly/engines/_event_aot.py": "the numba kernels are imported only by a process that uses the JIT "
                                          "kernel or builds the compiled one: one that runs the compiled kernel "
                                          "never imports numba (~0.9 s)",
}


def test_import_contracts_hold() -> None:
    """Layers (data -> experiment -> engines -> runner -> analysis -> command line), no cycles."""
    beside = Path(sys.executable).with_name("lint-imports")
    lint = str(beside) if beside.exists() else shutil.which("lint-imports")
    assert lint, "import-linter is not installed (it is in the test extra: pip install -e '.[test]')"
    proc = subprocess.run([lint, "--config", str(ROOT / ".importlinter"), "--no-cache", "--no-logo"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"an import contract of .importlinter is broken:\n{proc.stdout}{proc.stderr}"


def _imports_brainfly(node: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] == "brainfly"
    return any(alias.name.split(".")[0] == "brainfly" for alias in node.names)


class _Finder(ast.NodeVisitor):
    """Imports of brainfly inside functions, or under ``except ImportError``."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.in_function = 0
        self.guarded = 0
        self.found: list[str] = []

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.in_function += 1
        self.generic_visit(node)
        self.in_function -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Try(self, node: ast.Try) -> None:
        guard = any(h.type is not None and "ImportError" in ast.unparse(h.type) for h in node.handlers)
        self.guarded += guard
        for stmt in node.body:
            self.visit(stmt)
        self.guarded -= guard
        for part in (*node.handlers, *node.orelse, *node.finalbody):
            self.visit(part)

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        if _imports_brainfly(node):
            if self.in_function:
                self.found.append(f"{self.where}:{node.lineno}: inside a function: {ast.unparse(node)}")
            if self.guarded:
                self.found.append(f"{self.where}:{node.lineno}: under except ImportError: {ast.unparse(node)}")

    visit_ImportFrom = visit_Import


def test_brainfly_imported_at_module_top_without_guards() -> None:
    """brainfly's modules import each other at the top of the module, never to dodge a cycle."""
    found: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if str(path.relative_to(ROOT)) in DEFERRED_BY_DESIGN:
            continue
        finder = _Finder(str(path.relative_to(ROOT)))
        finder.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        found += finder.found
    assert not found, "imports of brainfly that belong at the top of their module:\n" + "\n".join(found)
