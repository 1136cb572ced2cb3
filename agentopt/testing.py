"""Assertions for a project's own tests: "the optimized artifact still meets its bar".

    from agentopt.testing import assert_meets

    def test_prompt_quality():
        assert_meets("tasks/my_prompt/task.yaml", at_least=0.85, repeats=3)

The program is evaluated in the task's sandbox exactly as `agentopt evolve` would, so the
bar checked in tests is the same number the optimizer optimized. The pytest plugin
(registered automatically) exposes the same thing as the ``agentopt_score`` fixture.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from statistics import mean

from agentopt.ci import sample_scores
from agentopt.targets import load_any
from agentopt.task import TaskSpec


def score_program(task: TaskSpec | str | Path, *, program: str | Path | None = None, repeats: int = 1) -> list[float]:
    """Evaluate the task's program (or ``program``) ``repeats`` times; raise AssertionError on failure."""
    spec = task if isinstance(task, TaskSpec) else load_any(task)
    path = Path(program) if program is not None else spec.program
    scores, error = asyncio.run(sample_scores(spec, path, repeats))
    if error is not None:
        raise AssertionError(f"{path} failed evaluation: {error}")
    return scores


def assert_meets(
    task: TaskSpec | str | Path,
    *,
    at_least: float | None = None,
    at_most: float | None = None,
    program: str | Path | None = None,
    repeats: int = 1,
) -> float:
    """Assert the mean score over ``repeats`` evaluations is within the bar; return that mean."""
    if at_least is None and at_most is None:
        raise ValueError("give at_least and/or at_most")
    value = mean(score_program(task, program=program, repeats=repeats))
    if at_least is not None and value < at_least:
        raise AssertionError(f"score {value:.6g} is below the bar {at_least:g}")
    if at_most is not None and value > at_most:
        raise AssertionError(f"score {value:.6g} is above the bar {at_most:g}")
    return value
