"""``objective.selection: b4``: choose the final program among the top ones with B4.

When a task's tests are generated (plausible, not trusted), the highest score may belong to a
program that shares the bug a wrong test encodes. With ``selection: b4`` the evaluator reports,
per program, which tests it passed (``passes``: a string such as ``"1101"`` or a list of
booleans/0-1, as a top-level key or an artifact); at the end of the run the top
``selection_top`` programs by score form a pass matrix and :func:`agentopt.select.select` picks
one with B4. The run's best score is still reported; ``best_program`` holds the B4 choice.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

from pydantic import BaseModel

if TYPE_CHECKING:
    from agentopt.evolve.db import ProgramDB
    from agentopt.task import TaskSpec

PASSES_KEY = "passes"


class FinalSelection(BaseModel):
    """What the final selection did; ``program_id`` is None when it could not run (``note`` says why)."""

    strategy: str
    program_id: str | None = None
    probability: float | None = None
    candidates: int = 0
    tests: int = 0
    note: str = ""


def parse_passes(text: str) -> list[bool] | None:
    """``"1011"`` or ``"[1, 0, True]"`` -> booleans; None when it is neither."""
    s = text.strip()
    if s and set(s) <= {"0", "1"}:
        return [c == "1" for c in s]
    try:
        value = ast.literal_eval(s)
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, list | tuple) and all(v in (0, 1) for v in value):
        return [bool(v) for v in value]
    return None


def select_final(db: ProgramDB, spec: TaskSpec) -> FinalSelection | None:
    """Run the task's final selection; None when the task keeps the best-scored program."""
    strategy = spec.objective.selection
    if strategy == "best":
        return None
    rows: list[list[bool]] = []
    ids: list[str] = []
    for program in db.programs(order="score"):
        if program.score is None or program.error is not None:
            break  # order="score" lists failed programs last
        passes = parse_passes(program.artifacts.get(PASSES_KEY, ""))
        if passes is None or (rows and len(passes) != len(rows[0])):
            continue
        rows.append(passes)
        ids.append(program.id)
        if len(rows) >= spec.objective.selection_top:
            break
    if len(rows) < 2:
        return FinalSelection(strategy=strategy, candidates=len(rows),
                              note=f"kept the best score: fewer than 2 top programs reported '{PASSES_KEY}'")
    from agentopt.select import select  # deferred: it imports numpy (~0.15 s), used once at the end of a run

    chosen = select(rows, strategy)
    return FinalSelection(strategy=strategy, program_id=ids[chosen.index], probability=chosen.probability,
                          candidates=len(rows), tests=len(rows[0]))
