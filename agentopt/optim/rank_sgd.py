"""ZO-RankSGD: zeroth-order descent from rankings only, after Tang et al., "Zeroth-Order
Optimization with Ranking Oracles" (ICLR 2024).

When a person or a judge can only *order* k outputs, not score them, a gradient can still be
estimated. Perturb the current point x along k random Gaussian directions xi_i, have the k
perturbed points ranked, and sum xi_a - xi_b over every pair where a was ranked above b. For a
small smoothing radius this points, in expectation, along the gradient of the (unknown) score,
and it is invariant to any monotone transform of that score, which is exactly the information
a ranking carries. Summing over all pairs gives each direction the weight (k-1-2*position):
the best point pulls hardest, the worst pushes hardest.

Numbers are optimized in a normalised space ([0, 1] per Param from its bounds, log scale where
the Param says so), so one step size fits Params of any scale; integers are rounded when applied.

The loop::

    opt = RankSGD(module, k=4, seed=0)
    for _ in range(30):
        outs = [run(module, x) for _ in opt.each_candidate()]   # Params hold candidate i in turn
        backward(outs, ranker.rank(outs))                         # a Ranking, best first
        opt.step()                                                # move along the estimate
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from agentopt.optim.base import Optimizer, OptimizerError, ParamsLike, StepResult
from agentopt.optim.validate import apply_values
from agentopt.trace.feedback import Ranking
from agentopt.trace.nodes import Param


def rank_weights(ranking: Ranking) -> np.ndarray:
    """Per-candidate weight of the all-pairs estimator, normalised by the number of pairs."""
    k = ranking.k
    w = np.empty(k)
    for i in range(k):
        w[i] = k - 1 - 2 * ranking.position(i)
    return w / (k * (k - 1) / 2)


class RankSGD(Optimizer):
    """Ranking-oracle gradient descent over bounded ``number`` Params."""

    kind = "rank_sgd"

    def __init__(
        self,
        params: ParamsLike,
        *,
        k: int = 4,
        lr: float = 0.1,
        mu: float = 0.05,
        decay: float = 0.98,
        seed: int = 0,
    ) -> None:
        super().__init__(params)
        self.named = {n: p for n, p in self.named.items() if p.param_kind == "number"}
        if not self.named:
            raise OptimizerError("RankSGD needs at least one trainable number Param (text: use RankText)")
        for name, p in self.named.items():
            if p.bounds is None or p.bounds[0] == p.bounds[1]:
                raise OptimizerError(f"number Param '{name}' needs bounds=(low, high) with low < high for RankSGD")
        if k < 2:
            raise OptimizerError(f"RankSGD needs k >= 2 candidates per ranking, got {k}")
        if not (lr > 0 and mu > 0 and 0 < decay <= 1):
            raise OptimizerError("RankSGD needs lr > 0, mu > 0 and 0 < decay <= 1")
        self.names = {p: n for n, p in self.named.items()}
        self.k, self.lr, self.mu, self.decay = k, lr, mu, decay
        self.rng = np.random.default_rng(seed)
        self.center = np.array([self._encode(p, p._value) for p in self.named.values()])
        self.queries = 0
        self._new_directions()

    # -- normalised space ------------------------------------------------------------------
    @staticmethod
    def _encode(p: Param, value: float) -> float:
        lo, hi = p.bounds  # type: ignore[misc]
        if p.log:
            return (math.log(value) - math.log(lo)) / (math.log(hi) - math.log(lo))
        return (float(value) - lo) / (hi - lo)

    @staticmethod
    def _decode(p: Param, z: float) -> float | int:
        lo, hi = p.bounds  # type: ignore[misc]
        z = min(max(float(z), 0.0), 1.0)
        value = math.exp(math.log(lo) + z * (math.log(hi) - math.log(lo))) if p.log else lo + z * (hi - lo)
        value = min(max(value, lo), hi)
        return int(round(value)) if p.integer else value

    def _values(self, z: np.ndarray) -> dict[str, Any]:
        return {n: self._decode(p, zi) for (n, p), zi in zip(self.named.items(), z, strict=True)}

    # -- ask / tell --------------------------------------------------------------------------
    def _new_directions(self) -> None:
        self.directions = self.rng.standard_normal((self.k, len(self.named)))

    def candidates(self) -> list[dict[str, Any]]:
        """The k value assignments to rank this step (perturbations of the current point)."""
        return [self._values(self.center + self.mu * xi) for xi in self.directions]

    def use(self, i: int) -> dict[str, Any]:
        """Set the Params to candidate ``i`` (0-based) and return its values."""
        if not 0 <= i < self.k:
            raise OptimizerError(f"candidate index {i} is outside 0..{self.k - 1}")
        values = self._values(self.center + self.mu * self.directions[i])
        apply_values(self.named, values)
        return values

    def each_candidate(self) -> Iterator[int]:
        """Apply candidate 0..k-1 in turn (yielding its index); restore the current point after."""
        try:
            for i in range(self.k):
                self.use(i)
                yield i
        finally:
            apply_values(self.named, self._values(self.center))

    def tell(self, rankings: Ranking | Sequence[int] | Sequence[Ranking]) -> dict[str, Any]:
        """Update from one or more rankings of the current candidates; apply and return the new point."""
        if isinstance(rankings, Ranking) or (rankings and all(isinstance(r, int) for r in rankings)):
            rankings = [Ranking.of(rankings)]
        ranks = [Ranking.of(r) for r in rankings]
        for r in ranks:
            if r.k != self.k:
                raise OptimizerError(f"the ranking orders {r.k} candidates but RankSGD proposed {self.k}")
        grad = np.mean([rank_weights(r) @ self.directions for r in ranks], axis=0)
        self.center = np.clip(self.center + self.lr * grad, 0.0, 1.0)
        self.queries += len(ranks)
        self.lr *= self.decay
        self.mu *= self.decay
        self._new_directions()
        values = self._values(self.center)
        apply_values(self.named, values)
        return values

    def value(self) -> dict[str, Any]:
        """The current point (what the optimizer believes is best)."""
        return self._values(self.center)

    async def propose(self) -> StepResult:
        """Consume the rankings given with ``backward([outputs], ranking)`` since the last step."""
        groups: dict[int, dict[int, int]] = {}
        for fb in self.pending():
            info = fb.feedback.rank
            if info is not None:
                groups.setdefault(info.group, {})[info.candidate] = info.position
        self.zero_feedback()
        if not groups:
            return StepResult(step=self.steps, skipped="no ranking: call backward([o_0, ..., o_k-1], ranking) "
                                                       "with one output per candidate")
        rankings = []
        for positions in groups.values():
            if len(positions) != self.k:
                raise OptimizerError(f"a ranking reached {len(positions)} of the {self.k} candidates: pass one "
                                     "output per candidate, in the order of each_candidate()")
            rankings.append(Ranking(order=tuple(sorted(positions, key=positions.__getitem__))))
        return StepResult(step=self.steps, applied=self.tell(rankings))
