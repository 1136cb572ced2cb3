"""Run tasks written for other optimizers without editing them.

:mod:`agentopt.compat.openevolve` translates an OpenEvolve task folder (``config.yaml``,
``initial_program.py``, ``evaluator.py``) into a :class:`agentopt.task.TaskSpec`. The guest
side (``from openevolve.evaluation_result import EvaluationResult`` inside the sandbox) is
answered by the stdlib-only shim in ``evaluators/openevolve``.
"""

from agentopt.compat.openevolve import (
    looks_like_openevolve,
    run_import_cli,
    task_from_openevolve,
    write_task_yaml,
)

__all__ = ["looks_like_openevolve", "run_import_cli", "task_from_openevolve", "write_task_yaml"]
