"""``load_any(path)``: one entry point that turns any supported file into a :class:`TaskSpec`.

The CLI (``agentopt evolve/validate/ci``) and the Python API call this instead of
:func:`agentopt.task.load_task`, so the schema module never has to know its translators. A
native task.yaml (it has a ``program`` key) always goes to the schema; otherwise each
translator in :data:`TRANSLATORS` is asked, in order, whether the file is its format. Adding
a format = one module in this package + one row in the table.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from agentopt.targets import openevolve, trace_workflow
from agentopt.task import TaskSpec, read_task_file, task_from_dict

__all__ = ["TRANSLATORS", "Translator", "load_any"]


class Translator(NamedTuple):
    """A foreign task format: how to recognise its parsed YAML, and how to translate it."""

    name: str
    looks_like: Callable[[Path, dict[str, Any]], bool]
    translate: Callable[[Path, dict[str, Any]], TaskSpec]


#: Asked in order for files without a ``program`` key; the first match translates.
TRANSLATORS: tuple[Translator, ...] = (
    Translator("agentopt optimize config", trace_workflow.looks_like_optimize_config,
               trace_workflow.task_from_optimize_config),
    Translator("OpenEvolve config", openevolve.looks_like_openevolve, openevolve.task_from_openevolve),
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
