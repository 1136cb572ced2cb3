"""Helpers the bundled-task tests share: load a task's evaluator as the runner would, and
write a candidate that is the task's initial program with its EVOLVE-BLOCK body replaced."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
TASKS = REPO / "tasks"
_START, _END = "# EVOLVE-BLOCK-START\n", "# EVOLVE-BLOCK-END"


def load_evaluator(task: str) -> Iterator[ModuleType]:
    """Yield ``tasks/<task>/evaluator.py`` imported with ``evaluators/`` on sys.path (for fixtures)."""
    sys.path.insert(0, str(REPO / "evaluators"))  # agentopt_guest, as the runner provides it
    try:
        spec = importlib.util.spec_from_file_location(f"{task}_evaluator", TASKS / task / "evaluator.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(REPO / "evaluators"))


def with_block(task: str, tmp_path: Path, block: str, tail: str = "", name: str = "cand.py") -> str:
    """The task's initial program with its EVOLVE-BLOCK body replaced (and ``tail`` appended)."""
    source = (TASKS / task / "initial_program.py").read_text(encoding="utf-8")
    start = source.index(_START) + len(_START)
    end = source.index(_END)
    path = tmp_path / name
    path.write_text(source[:start] + block + source[end:] + tail, encoding="utf-8")
    return str(path)
