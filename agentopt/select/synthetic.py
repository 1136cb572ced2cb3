"""A synthetic selection benchmark with known ground truth (solutions, tests, pass matrix).

It mimics how generated code and generated tests go wrong together. A problem has ``n_inputs``
inputs. Buggy solutions come from a few *bug families* (shared misconceptions, with skewed
popularity, so a wrong family can outnumber the correct solutions); a family is wrong on its
own subset of inputs and, there, all its members return the same wrong value. Each buggy
solution may also be wrong on a few inputs of its own. Tests are (input, expected) pairs: a
correct test expects the true output; a wrong test is either *plausible* (it expects a bug
family's wrong value, so that family passes it and correct solutions fail it) or garbage
(nobody passes). A solution passes a test when its output on the test's input equals the
expected value. Proportions of correct solutions and correct tests are controlled exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class SyntheticSpec(BaseModel):
    """Knobs of one benchmark regime."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_solutions: int = Field(20, ge=1)
    n_tests: int = Field(20, ge=1)
    correct_solutions: float = Field(0.25, gt=0, le=1, description="fraction of solutions that are correct")
    correct_tests: float = Field(0.6, ge=0, le=1, description="fraction of tests that are correct")
    n_inputs: int = Field(30, ge=2)
    bug_families: int = Field(3, ge=1)
    bug_footprint: float = Field(0.3, gt=0, le=1, description="fraction of inputs a bug family gets wrong")
    plausible_wrong_tests: float = Field(0.8, ge=0, le=1,
                                         description="fraction of wrong tests that encode a family's bug")
    own_errors: float = Field(0.05, ge=0, le=1, description="per-input chance of a solution's own extra bug")


@dataclass(frozen=True)
class Problem:
    """One generated problem: the pass matrix plus the ground truth behind it."""

    passes: np.ndarray          # (n_solutions, n_tests) bool
    correct: np.ndarray         # (n_solutions,) bool
    correct_tests: np.ndarray   # (n_tests,) bool


def generate(spec: SyntheticSpec, rng: np.random.Generator) -> Problem:
    """Draw one problem; at least one solution is correct (otherwise selection is moot)."""
    n, m, u = spec.n_solutions, spec.n_tests, spec.n_inputs
    n_correct = max(1, round(spec.correct_solutions * n))
    m_correct = round(spec.correct_tests * m)
    popularity = rng.dirichlet(np.full(spec.bug_families, 0.7))
    footprint = rng.random((spec.bug_families, u)) < spec.bug_footprint
    empty = ~footprint.any(axis=1)
    footprint[empty, rng.integers(0, u, size=int(empty.sum()))] = True  # every family has a bug

    # Outputs: 0 = true value, f + 1 = family f's wrong value, < 0 = a value nobody else returns.
    outputs = np.zeros((n, u), dtype=np.int64)
    family = np.full(n, -1)
    family[n_correct:] = rng.choice(spec.bug_families, size=n - n_correct, p=popularity)
    fresh = -1
    for i in range(n_correct, n):
        f = family[i]
        outputs[i, footprint[f]] = f + 1
        own = np.flatnonzero(rng.random(u) < spec.own_errors)
        outputs[i, own] = np.arange(fresh, fresh - len(own), -1)
        fresh -= len(own)
        if not outputs[i].any():  # a "buggy" solution must be wrong somewhere
            outputs[i, rng.integers(0, u)] = fresh
            fresh -= 1

    test_input = np.empty(m, dtype=np.int64)
    expected = np.zeros(m, dtype=np.int64)
    test_input[:m_correct] = rng.integers(0, u, size=m_correct)
    for j in range(m_correct, m):
        if rng.random() < spec.plausible_wrong_tests:
            f = rng.choice(spec.bug_families, p=popularity)
            test_input[j] = rng.choice(np.flatnonzero(footprint[f]))
            expected[j] = f + 1
        else:
            test_input[j] = rng.integers(0, u)
            expected[j] = fresh
            fresh -= 1

    passes = outputs[:, test_input] == expected[None, :]
    order_s = rng.permutation(n)
    order_t = rng.permutation(m)
    correct = np.arange(n) < n_correct
    correct_tests = np.arange(m) < m_correct
    return Problem(passes[order_s][:, order_t], correct[order_s], correct_tests[order_t])
