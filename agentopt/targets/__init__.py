"""Anything -> evolve task: the translations from other formats into a :class:`~agentopt.task.TaskSpec`.

* :mod:`~agentopt.targets.trace_workflow` — a traced workflow (an ``agentopt optimize``
  config) as an evolve target; its sandbox side is :mod:`~agentopt.targets.trace_guest`
  and the candidate file format is :mod:`~agentopt.targets.param_blocks`.
* :mod:`~agentopt.targets.openevolve` — an OpenEvolve task folder.

:func:`load_any` is what the CLI and the Python API call. This package sits above trace,
optim and task; nothing below it imports it.
"""

from agentopt.targets.loader import TRANSLATORS, Translator, load_any

__all__ = ["TRANSLATORS", "Translator", "load_any"]
