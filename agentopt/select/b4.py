"""B4: the posterior over passing states, after Chen et al., "B4: Towards Optimal Assessment of
Plausible Code Solutions with Plausible Tests" (ASE 2024).

The model. Each solution is correct with probability ``theta_x`` and each test with probability
``theta_y``. A correct solution passes exactly the correct tests (that is what "correct test"
means). A wrong solution passes a correct test with probability ``theta_0`` and a wrong test
with probability ``theta_1``. All four rates have Beta priors and are integrated out, so the
evidence of a hypothesis is a product of four Beta-function ratios.

Why this is cheap. Consistency forces every correct solution to share one pass vector, which
is then the indicator of the correct tests. So the hypotheses worth scoring are "consensus set
k is the correct one, and the tests it passes are the correct tests": one per distinct row of
the matrix, instead of 2^(N+M) assignments. For each of them the four pass/fail counts follow
from column sums in O(M), so scoring all K sets costs O(N*M + K*M).

Why it beats pass counts. A hypothesis also says how the *other* solutions behaved: under
"set k is correct", a big cluster of wrong solutions agreeing with each other on tests that set
k fails must have passed wrong tests, which is unlikely when ``theta_1`` is small. CodeT's
|S|*|T| sees only the chosen set; B4 charges every hypothesis for all the evidence.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from agentopt.select.matrix import Consensus


class BetaPrior(BaseModel):
    """Beta(alpha, beta) prior on a rate; the mean is alpha / (alpha + beta)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alpha: float = Field(1.0, gt=0)
    beta: float = Field(1.0, gt=0)


class B4Prior(BaseModel):
    """Priors of the four rates.

    The defaults encode the one strong belief of the B4 paper: a wrong solution almost never
    passes a *wrong* test by chance (``theta_1`` ~ Beta(1, 1000), mean 0.001), because a wrong
    test is wrong in a specific way and only a solution sharing that very bug passes it. The
    other three rates are uniform. The paper's released runs use Beta(1e3, 1) for solutions and
    tests and Beta(1, 1e4..1e6) for ``theta_1``; on a development seed of
    :mod:`agentopt.select.synthetic` (not the benchmark's seeds) these defaults scored within
    0.01 of the best point of a 16-point grid over both, and the paper's setting about 0.02 below.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    solution: BetaPrior = Field(default_factory=BetaPrior, description="P(a solution is correct)")
    test: BetaPrior = Field(default_factory=BetaPrior, description="P(a test is correct)")
    wrong_passes_correct: BetaPrior = Field(default_factory=BetaPrior,
                                            description="theta_0: P(wrong solution passes a correct test)")
    wrong_passes_wrong: BetaPrior = Field(default_factory=lambda: BetaPrior(alpha=1.0, beta=1000.0),
                                          description="theta_1: P(wrong solution passes a wrong test)")


def _log_beta_ratio(prior: BetaPrior, ones: float, zeros: float) -> float:
    """log B(a + ones, b + zeros) - log B(a, b): the Beta-Bernoulli evidence of the counts."""
    a, b = prior.alpha, prior.beta
    return (math.lgamma(a + ones) + math.lgamma(b + zeros) - math.lgamma(a + b + ones + zeros)
            - math.lgamma(a) - math.lgamma(b) + math.lgamma(a + b))


def log_evidence(passes: np.ndarray, sets: Consensus, prior: B4Prior) -> np.ndarray:
    """log P(E, H_k) for each consensus set k (H_k: set k is exactly the correct solutions)."""
    n, m = passes.shape
    col = passes.sum(axis=0, dtype=np.int64)          # passes per test
    total = int(col.sum())
    t = sets.rows.sum(axis=1, dtype=np.int64)         # tests each set passes (its correct tests)
    a = sets.rows.astype(np.int64) @ col              # all passes on those tests
    out = np.empty(sets.count)
    for k in range(sets.count):
        s, tk, ak = int(sets.sizes[k]), int(t[k]), int(a[k])
        n01 = ak - s * tk                              # wrong solutions passing correct tests
        n00 = (n - s) * tk - n01
        n11 = total - ak                               # wrong solutions passing wrong tests
        n10 = (n - s) * (m - tk) - n11
        out[k] = (_log_beta_ratio(prior.solution, s, n - s) + _log_beta_ratio(prior.test, tk, m - tk)
                  + _log_beta_ratio(prior.wrong_passes_correct, n01, n00)
                  + _log_beta_ratio(prior.wrong_passes_wrong, n11, n10))
    return out


def posterior(log_ev: np.ndarray) -> np.ndarray:
    """Normalise log evidences into probabilities over the K hypotheses (stable softmax)."""
    z = log_ev - log_ev.max()
    p = np.exp(z)
    return p / p.sum()
