"""The cost-aware model bandit: learns the model that improves, prefers cheap ones, persists."""

from __future__ import annotations

import random

from agentopt.evolve.bandit import ModelBandit


def simulate(bandit: ModelBandit, success: dict[str, float], cost: dict[str, float], pulls: int) -> dict[str, int]:
    rng = random.Random(0)
    env = random.Random(1)
    for _ in range(pulls):
        model = bandit.choose(rng)
        bandit.observe(model, improved=env.random() < success[model], cost_usd=cost[model])
    return bandit.pulls


def test_learns_which_model_improves() -> None:
    pulls = simulate(ModelBandit(["a", "b"], cost_weight=0.0), {"a": 0.1, "b": 0.6}, {"a": 0, "b": 0}, 400)
    assert pulls["b"] > 3 * pulls["a"]


def test_prefers_cheap_model_at_equal_success() -> None:
    bandit = ModelBandit(["cheap", "pricey"], cost_weight=2.0)
    pulls = simulate(bandit, {"cheap": 0.4, "pricey": 0.4}, {"cheap": 0.001, "pricey": 0.05}, 400)
    assert pulls["cheap"] > 2 * pulls["pricey"]


def test_state_round_trip_continues_identically() -> None:
    a = ModelBandit(["x", "y", "z"])
    simulate(a, {"x": 0.2, "y": 0.5, "z": 0.1}, {"x": 0, "y": 0, "z": 0}, 50)
    b = ModelBandit(["x", "y", "z"])
    b.load_state(a.to_state())
    assert [a.choose(random.Random(i)) for i in range(20)] == [b.choose(random.Random(i)) for i in range(20)]
    assert b.pulls == a.pulls


def test_every_model_tried_first() -> None:
    bandit = ModelBandit(["m1", "m2", "m3"])
    seen = []
    for _ in range(3):
        model = bandit.choose(random.Random(0))
        seen.append(model)
        bandit.observe(model, improved=False, cost_usd=0.0)
    assert sorted(seen) == ["m1", "m2", "m3"]
