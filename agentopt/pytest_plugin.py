"""pytest plugin (auto-registered through the ``pytest11`` entry point).

Provides the ``agentopt_score`` fixture: ``agentopt_score(task, program=None, repeats=1)``
returns the mean score of the program evaluated in the task's sandbox, so a test reads
``assert agentopt_score("tasks/x/task.yaml") >= 0.9``.
"""

from __future__ import annotations

from collections.abc import Callable
from statistics import mean
from typing import Any

import pytest


@pytest.fixture
def agentopt_score() -> Callable[..., float]:
    from agentopt.testing import score_program  # deferred: pytest loads this plugin in every session

    def score(task: Any, *, program: Any = None, repeats: int = 1) -> float:
        return mean(score_program(task, program=program, repeats=repeats))

    return score
