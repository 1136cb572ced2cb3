"""Cost-aware UCB1 over the model ensemble: learn which model yields improvements per dollar.

A pull is one LLM proposal; its reward is 1 when the child beat its parent, else 0. The
index of a model is ``(mean reward + c * sqrt(ln N / n)) / (1 + w * relative cost)``, so a
cheap model that improves as often as an expensive one wins. Unpulled models go first (in a
deterministic order), ties are broken by the iteration's seeded RNG, and the statistics are
plain JSON so the controller persists them in the run's store and a resumed run continues
learning exactly where it stopped.
"""

from __future__ import annotations

import math
import random
from typing import Any


class ModelBandit:
    def __init__(self, models: list[str], *, cost_weight: float = 0.5, exploration: float = 1.0) -> None:
        self.models = list(models)
        self.cost_weight = cost_weight
        self.exploration = exploration
        self.pulls: dict[str, int] = {m: 0 for m in models}
        self.rewards: dict[str, float] = {m: 0.0 for m in models}
        self.costs: dict[str, float] = {m: 0.0 for m in models}

    def choose(self, rng: random.Random) -> str:
        for model in self.models:
            if self.pulls[model] == 0:
                return model
        total = sum(self.pulls.values())
        mean_costs = {m: self.costs[m] / self.pulls[m] for m in self.models}
        top_cost = max(mean_costs.values()) or 1.0
        indexes = {}
        for m in self.models:
            mean = self.rewards[m] / self.pulls[m]
            bonus = self.exploration * math.sqrt(math.log(total) / self.pulls[m])
            indexes[m] = (mean + bonus) / (1.0 + self.cost_weight * mean_costs[m] / top_cost)
        best = max(indexes.values())
        tied = [m for m in self.models if indexes[m] >= best - 1e-12]
        return tied[0] if len(tied) == 1 else rng.choice(tied)

    def add(self, model: str) -> None:
        """A new arm (e.g. a meta-prompt variant proposed mid-run); it is tried next."""
        if model not in self.pulls:
            self.models.append(model)
            self.pulls[model], self.rewards[model], self.costs[model] = 0, 0.0, 0.0

    def remove(self, model: str) -> None:
        """Retire an arm and forget its statistics."""
        if model in self.pulls:
            self.models.remove(model)
            for table in (self.pulls, self.rewards, self.costs):
                del table[model]

    def observe(self, model: str, *, improved: bool, cost_usd: float) -> None:
        if model not in self.pulls:
            return
        self.pulls[model] += 1
        self.rewards[model] += 1.0 if improved else 0.0
        self.costs[model] += max(0.0, cost_usd)

    def to_state(self) -> dict[str, Any]:
        return {"pulls": self.pulls, "rewards": self.rewards, "costs": self.costs}

    def load_state(self, state: dict[str, Any]) -> None:
        for key in ("pulls", "rewards", "costs"):
            stored = state.get(key, {})
            target = getattr(self, key)
            for model in self.models:
                if model in stored:
                    target[model] = type(target[model])(stored[model])
