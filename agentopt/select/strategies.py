"""Selection strategies over a pass matrix: MaxPass, majority, CodeT dual agreement, B4.

Every strategy gives each consensus set a score and picks the best; solutions in one set
always tie. The winner is the lowest-index solution of the best set, and ``tied`` lists every
solution with the best score, so callers (and the benchmark) can account for ties honestly
instead of rewarding a lucky tie-break.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from agentopt.select.b4 import B4Prior, log_evidence, posterior
from agentopt.select.matrix import Consensus, SelectionError, as_pass_matrix, consensus_sets

Strategy = Literal["max_pass", "majority", "codet", "b4"]
STRATEGIES: tuple[str, ...] = ("max_pass", "majority", "codet", "b4")


class Selection(BaseModel):
    """The outcome of one selection. ``scores`` and ``consensus`` are per solution;
    ``probability`` (B4 only) is the posterior that the chosen set is the correct one, given
    that one of the consensus sets is."""

    strategy: str
    index: int
    tied: list[int]
    scores: list[float]
    consensus: list[int]
    probability: float | None = None


def set_scores(passes: np.ndarray, sets: Consensus, strategy: str, prior: B4Prior | None = None) -> np.ndarray:
    """Score of each consensus set (higher is better)."""
    passed = sets.rows.sum(axis=1).astype(float)
    if strategy == "max_pass":  # highest pass rate; every solution ran every test
        return passed
    if strategy == "majority":  # the largest group of solutions that behave identically
        return sets.sizes.astype(float)
    if strategy == "codet":  # CodeT dual agreement: |solutions in the set| * |tests they pass|
        return sets.sizes * passed
    if strategy == "b4":
        return log_evidence(passes, sets, prior or B4Prior())
    raise SelectionError(f"unknown selection strategy '{strategy}' (known: {', '.join(STRATEGIES)})")


def select(passes: Any, strategy: str = "b4", *, prior: B4Prior | None = None) -> Selection:
    """Pick the solution most likely to be correct from a solutions x tests pass matrix."""
    matrix = as_pass_matrix(passes)
    sets = consensus_sets(matrix)
    per_set = set_scores(matrix, sets, strategy, prior)
    per_solution = per_set[sets.labels]
    best = per_solution.max()
    tied = [int(i) for i in np.flatnonzero(np.isclose(per_solution, best, rtol=1e-12, atol=1e-9))]
    probability = None
    if strategy == "b4":
        probability = float(posterior(per_set)[sets.labels[tied[0]]])
    return Selection(strategy=strategy, index=tied[0], tied=tied, scores=[float(s) for s in per_solution],
                     consensus=[int(k) for k in sets.labels], probability=probability)


def expected_accuracy(selection: Selection, correct: Sequence[bool]) -> float:
    """Chance that a uniform tie-break among ``selection.tied`` picks a correct solution."""
    if len(correct) != len(selection.scores):
        raise SelectionError(f"got {len(correct)} correctness labels for {len(selection.scores)} solutions")
    return sum(bool(correct[i]) for i in selection.tied) / len(selection.tied)
