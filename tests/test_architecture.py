"""The import graph matches the design (docs/architecture.md): no forbidden arrow, no hidden import.

Every ``import`` in agentopt/, evaluators/ and sandboxes/ is read with :mod:`ast` — top-level,
inside ``if TYPE_CHECKING:`` and inside functions alike — and classified by the part it lives
in. A new arrow that the layering does not allow fails here with the file, the line and the
arrow; so does a function-level import without a ``# deferred: <reason>`` comment (function-level
imports are for deferring something heavy, never for hiding a cycle).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

GROUND = "ground"
APP = "app"

#: Top-level module or subpackage of agentopt -> the part it belongs to.
PARTS: dict[str, str] = {
    "": GROUND,  # ``from agentopt import __version__``
    "errors": GROUND,
    "paths": GROUND,
    "textsafe": GROUND,
    "blocks": GROUND,
    "_deprecated": GROUND,
    "task": "task",
    "trace": "trace",
    "llm": "llm",
    "sandbox": "sandbox",
    "evaluate": "evaluate",
    "evolve": "evolve",
    "optim": "optim",
    "select": "select",
    "targets": "targets",
    "compat": "targets",  # deprecated shims (SHIMS)
    "watch": "watch",
    "cli": APP,
    "cli_progress": APP,
    "cli_signals": APP,
    "cli_probe": APP,
    "cli_gc": APP,
    "cli_inspect": APP,
    "ci": APP,
    "testing": APP,
    "pytest_plugin": APP,
    "scaffold": APP,
}

#: Modules that are the Python API: like the CLI, they may import any part.
API_MODULES = {"agentopt.evolve.api"}

#: Part -> parts it may import (itself and the ground floor always).
ALLOWED: dict[str, set[str]] = {
    GROUND: set(),
    "task": set(),
    "trace": set(),
    "select": set(),  # pure selection over a pass matrix: numpy and the ground floor only
    "llm": {"task"},
    "sandbox": {"task"},
    "evaluate": {"sandbox", "task"},
    "evolve": {"llm", "sandbox", "evaluate", "task", "select"},
    "optim": {"trace", "llm", "task", "select"},
    # sandbox: the OpenEvolve translation reads requirements files; llm: the traced-workflow
    # guest builds the workflow's own client.
    "targets": {"trace", "optim", "evolve", "llm", "sandbox", "task"},
    # the dashboard reads runs through evolve's read-only RunView, charts and report tables
    "watch": {"evolve", "task"},
    APP: set(PARTS.values()),
}

#: The arrows issue #13 names as forbidden; ALLOWED must imply every one of them.
FORBIDDEN = {
    "trace": {"evolve", "optim", "llm", "sandbox", "targets"},
    "llm": {"evolve", "optim", "trace", "targets"},
    "task": {p for p in set(PARTS.values()) if p not in {GROUND, "task"}},
    "sandbox": {"evolve", "optim", "trace", "targets"},
}

#: Old import paths kept for one release (see agentopt/_deprecated.py); each may import only
#: the module it forwards to and the shim helper. Delete the file and its row in 0.2.
SHIMS = {
    "agentopt/compat/__init__.py": "agentopt.targets.openevolve",
    "agentopt/compat/openevolve.py": "agentopt.targets.openevolve",
    "agentopt/evolve/blocks.py": "agentopt.blocks",
    "agentopt/trace/evolve_guest.py": "agentopt.targets.trace_guest",
    "agentopt/trace/evolve_target.py": "agentopt.targets.trace_workflow",
    "agentopt/trace/param_blocks.py": "agentopt.targets.param_blocks",
}

#: Files whose function-level imports all defer for the same reason (instead of a comment each).
DEFERRED_FILES = {
    "agentopt/cli.py": "each command imports its engine when it runs, so `agentopt --help` stays instant",
}

#: Guest code never imports agentopt, except the traced-workflow guest, which runs the
#: workflow's own agentopt.trace code and may import exactly this module.
GUEST_DIRS = ("evaluators", "sandboxes")
GUEST_EXCEPTION = ("evaluators/trace_workflow_evaluator.py", "agentopt.targets.trace_guest")


@dataclass(frozen=True)
class Imp:
    """One imported agentopt module, where it is imported, and whether inside a function."""

    file: str  # relative to the root, posix
    line: int
    module: str
    in_function: bool
    source_line: str


def _module_name(rel: str) -> str:
    parts = rel.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def collect(root: Path, rel_files: list[str]) -> list[Imp]:
    """Every import of an agentopt module in ``rel_files`` (relative imports resolved)."""
    found: list[Imp] = []
    modules = {_module_name(p.relative_to(root).as_posix()) for p in (root / "agentopt").rglob("*.py")}
    for rel in rel_files:
        text = (root / rel).read_text(encoding="utf-8")
        lines = text.splitlines()
        tree = ast.parse(text, filename=rel)
        package = _module_name(rel) if rel.endswith("__init__.py") else _module_name(rel).rpartition(".")[0]

        def visit(node: ast.AST, in_function: bool, rel: str = rel, package: str = package,
                  lines: list[str] = lines) -> None:
            for child in ast.iter_child_nodes(node):
                inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
                names: list[str] = []
                if isinstance(child, ast.Import):
                    names = [a.name for a in child.names]
                elif isinstance(child, ast.ImportFrom):
                    base = child.module or ""
                    if child.level:
                        anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                        base = ".".join([*anchor, base] if base else anchor)
                    # ``from agentopt.sandbox import isolation`` imports the submodule.
                    names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in child.names]
                for name in dict.fromkeys(names):
                    if name == "agentopt" or name.startswith("agentopt."):
                        found.append(Imp(rel, child.lineno, name, in_function, lines[child.lineno - 1]))
                visit(child, inner)

        visit(tree, False)
    return found


def part_of(module: str) -> str | None:
    """The part of ``agentopt.x.y`` (None for a name outside the table: a new top-level module)."""
    if module in API_MODULES:
        return APP
    head = module.split(".")[1] if "." in module else ""
    return PARTS.get(head)


def violations(root: Path) -> list[str]:
    """Every broken rule under ``root``, one line each (empty when the layering holds)."""
    host = sorted(p.relative_to(root).as_posix() for p in (root / "agentopt").rglob("*.py"))
    guest = sorted(p.relative_to(root).as_posix() for d in GUEST_DIRS for p in (root / d).rglob("*.py"))
    bad: list[str] = []
    for imp in collect(root, host):
        where = f"{imp.file}:{imp.line}"
        importer = _module_name(imp.file)
        src, dst = part_of(importer), part_of(imp.module)
        if src is None or dst is None:
            bad.append(f"{where}: {importer} -> {imp.module}: module not in PARTS (add it to the layering)")
            continue
        if imp.file in SHIMS:
            if imp.module not in {SHIMS[imp.file], "agentopt._deprecated"}:
                bad.append(f"{where}: deprecated shim imports {imp.module}; it may only forward to {SHIMS[imp.file]}")
            continue
        if dst != src and dst != GROUND and dst not in ALLOWED[src]:
            bad.append(f"{where}: forbidden arrow {src} -> {dst} ({importer} imports {imp.module})")
        if imp.in_function and imp.file not in DEFERRED_FILES:
            reason = imp.source_line.partition("# deferred:")[2].strip()
            if not reason:
                bad.append(f"{where}: function-level import of {imp.module} without a '# deferred: <reason>' comment")
    for imp in collect(root, guest):
        if (imp.file, imp.module) != GUEST_EXCEPTION:
            bad.append(f"{imp.file}:{imp.line}: guest code imports {imp.module} (guest code never imports agentopt)")
    return bad


def test_the_repository_has_no_forbidden_arrow() -> None:
    assert violations(ROOT) == []


def test_allowed_arrows_imply_the_forbidden_list() -> None:
    leaks = {(src, dst) for src, dsts in FORBIDDEN.items() for dst in dsts if dst in ALLOWED[src]}
    assert leaks == set()


def test_every_shim_and_exception_still_exists() -> None:
    """Rows for deleted files would silently allow nothing; keep the tables honest."""
    for rel in [*SHIMS, *DEFERRED_FILES, GUEST_EXCEPTION[0]]:
        assert (ROOT / rel).is_file(), rel


def _fake_tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in {"agentopt/__init__.py": "", "agentopt/trace/__init__.py": "",
                      "agentopt/evolve/__init__.py": "", "evaluators/x.py": "", **files}.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"agentopt/trace/a.py": "def f():\n    from agentopt.evolve import db  # deferred: heavy\n"},
         "forbidden arrow trace -> evolve"),
        ({"agentopt/trace/a.py": "from ..evolve.db import x\n"}, "forbidden arrow trace -> evolve"),
        ({"agentopt/task.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import agentopt.llm.client\n"},
         "forbidden arrow task -> llm"),
        ({"agentopt/evolve/a.py": "def f():\n    from agentopt.task import TaskSpec\n"},
         "without a '# deferred: <reason>' comment"),
        ({"evaluators/x.py": "import agentopt.trace\n"}, "guest code imports agentopt.trace"),
        ({"agentopt/newpart.py": "import agentopt.errors\n"}, "module not in PARTS"),
    ],
)
def test_the_checker_catches_each_kind_of_violation(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    found = violations(_fake_tree(tmp_path, files))
    assert len(found) == 1 and expected in found[0], found


def test_the_checker_accepts_allowed_and_deferred_imports(tmp_path: Path) -> None:
    root = _fake_tree(tmp_path, {
        "agentopt/evolve/a.py": "from agentopt.task import TaskSpec\nfrom agentopt.blocks import find_blocks\n"
                                "def f():\n    from agentopt.llm.client import LLMClient  # deferred: litellm\n",
    })
    assert violations(root) == []
