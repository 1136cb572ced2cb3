"""``load_any(path)``: one entry point that turns any supported file into a :class:`TaskSpec`.

The CLI (``agentopt evolve/validate/ci``) and the Python API call this instead of
:func:`agentopt.task.load_task`, so the schema module never has to know its translators. A
native task.yaml (it has a ``program`` key) always goes to the schema; otherwise each
translator in :data:`TRANSLATORS` is asked, in order, whether the file is its format. Adding
a format = one module in this package + one row in the table.

Translator modules are imported only when a file without ``program`` needs them: the traced
workflow one pulls in the optimizers and networkx (~0.3 s), which a plain task.yaml never uses
and ``agentopt evolve`` would otherwise pay at every start.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, cast

from agentopt.task import TaskSpec, read_task_file, task_from_dict

__all__ = ["TRANSLATORS", "Translator", "load_any"]


class Translator(NamedTuple):
    """A foreign task format: the module of this package that handles it, and the names of its
    two functions (how to recognise its parsed YAML, and how to translate it)."""

    name: str
    module: str
    looks_like_name: str
    translate_name: str

    def _function(self, attr: str) -> Callable[..., Any]:
        return cast(Callable[..., Any], getattr(importlib.import_module(f"agentopt.targets.{self.module}"), attr))

    def looks_like(self, path: Path, data: dict[str, Any]) -> bool:
        return bool(self._function(self.looks_like_name)(path, data))

    def translate(self, path: Path, data: dict[str, Any]) -> TaskSpec:
        return cast(TaskSpec, self._function(self.translate_name)(path, data))


#: Asked in order for files without a ``program`` key; the first match translates.
TRANSLATORS: tuple[Translator, ...] = (
    Translator("agentopt optimize config", "trace_workflow", "looks_like_optimize_config", "task_from_optimize_config"),
    Translator("OpenEvolve config", "openevolve", "looks_like_openevolve", "task_from_openevolve"),
)


def load_any(path: str | Path) -> TaskSpec:
    """Load a task.yaml, an OpenEvolve ``config.yaml`` or an ``agentopt optimize`` config.

    Raises :class:`~agentopt.errors.TaskError` with one line on any problem; a file no
    translator claims gets the schema's own error (e.g. an unknown key in a task.yaml).
    """
    task_file, data = read_task_file(path)
    if isinstance(data, dict) and "program" not in data:
        for translator in TRANSLATORS:
            if translator.looks_like(task_file, data):
                return translator.translate(task_file, data)
    return task_from_dict(data, task_file)
