"""The pass matrix (solutions x tests) and its consensus sets, shared by every strategy.

A consensus set is a group of solutions with the identical pass vector. Every selection
strategy here, B4 included, scores consensus sets rather than single solutions: solutions
that pass and fail exactly the same tests are indistinguishable to anything that only sees
the matrix, so they must get the same score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from agentopt.errors import AgentoptError


class SelectionError(AgentoptError):
    """A pass matrix or selection request is malformed (wrong shape, non-boolean, unknown strategy)."""


def as_pass_matrix(passes: Any) -> np.ndarray:
    """Validate and convert ``passes`` (nested lists or an array of 0/1/bool) to a 2-D bool array.

    Rows are solutions, columns are tests. Zero tests is allowed (every strategy then ties);
    zero solutions is not (there is nothing to select).
    """
    try:
        arr = np.asarray(passes)
    except ValueError:
        raise SelectionError("pass matrix rows have different lengths") from None
    if arr.dtype == object:
        raise SelectionError("pass matrix rows have different lengths or non-numeric entries")
    if arr.ndim != 2:
        raise SelectionError(f"pass matrix must be 2-D (solutions x tests), got {arr.ndim}-D")
    if arr.shape[0] == 0:
        raise SelectionError("pass matrix has no solutions to select from")
    if arr.dtype != bool:
        if not np.issubdtype(arr.dtype, np.number) or not np.isin(arr, (0, 1)).all():
            raise SelectionError("pass matrix entries must be 0/1 or booleans")
        arr = arr.astype(bool)
    return arr


@dataclass(frozen=True)
class Consensus:
    """Solutions grouped by identical pass vectors.

    ``labels[i]`` is the consensus set of solution ``i``; ``rows[k]`` is set ``k``'s pass
    vector and ``sizes[k]`` its number of solutions. Sets are numbered by first appearance.
    """

    labels: np.ndarray
    rows: np.ndarray
    sizes: np.ndarray

    @property
    def count(self) -> int:
        return int(self.rows.shape[0])


def consensus_sets(passes: np.ndarray) -> Consensus:
    """Group the rows of a bool pass matrix (O(N*M) via hashing of packed rows)."""
    first: dict[bytes, int] = {}
    reps: list[int] = []
    labels = np.empty(passes.shape[0], dtype=np.int64)
    packed = np.packbits(passes, axis=1)
    for i, row in enumerate(packed):
        key = row.tobytes()
        if key not in first:
            first[key] = len(reps)
            reps.append(i)
        labels[i] = first[key]
    rows = passes[np.array(reps, dtype=np.int64)]
    sizes = np.bincount(labels, minlength=len(reps))
    return Consensus(labels, rows, sizes)

