"""Cost of keeping Pareto fronts (several objectives) in the selection state.

    python benchmarks/bench_pareto_front.py [N ...]

Inserts N programs into one island of a two-objective ``Population`` (the per-island front is
updated on every insert) and draws parents from the front (``parent_top_share: 1``), then
prints microseconds per insert, per parent draw, and per insert-then-draw step (a run's
rhythm: the front changes, so its crowding weights are recomputed) next to the single-objective
baseline, for
two shapes: a *trade-off line* (every program is on the front: the worst case for the front's
size) and a *random cloud* (a front of a few dozen); then the time the run summary spends on
the final front and its hypervolume history. Also the load, since the machine is shared.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentopt.evolve.front import ObjectivePoint, front_summary  # noqa: E402
from agentopt.evolve.selection import Population, Record, SelectionParams, rank_key  # noqa: E402
from agentopt.task import Objective  # noqa: E402


def points(shape: str, n: int, seed: int = 0) -> list[tuple[float, float]]:
    """(gain to maximize, cost to minimize) per program."""
    rng = random.Random(seed)
    if shape == "line":  # cost rises with gain: nothing dominates anything
        return [(g, g * g) for g in (rng.uniform(0, 10) for _ in range(n))]
    return [(rng.uniform(0, 10), rng.uniform(0, 100)) for _ in range(n)]


def measure(shape: str, n: int, multi: bool, draws: int = 500) -> tuple[float, float, float, int]:
    params = SelectionParams(bins=(10,), population_size=n + draws + 1, top_share=1.0)
    pop = Population(params, "maximize", ("maximize", "minimize") if multi else None)
    data = points(shape, n)
    start = time.perf_counter()
    for seq, (gain, cost) in enumerate(data, start=1):
        pop.insert(Record(seq, f"p{seq}", seq, 0, rank_key(gain, seq, seq, "maximize"), (gain,), (gain, cost)))
    insert_us = (time.perf_counter() - start) / n * 1e6
    rng = random.Random(1)
    island = pop.islands[0]
    start = time.perf_counter()
    for _ in range(draws):
        pop.choose_parent(rng, island)
    draw_us = (time.perf_counter() - start) / draws * 1e6
    # A run's rhythm: one child stored, one parent drawn, so a changed front is re-weighted each time.
    start = time.perf_counter()
    for seq, (gain, cost) in enumerate(points(shape, draws, seed=2), start=n + 1):
        pop.insert(Record(seq, f"p{seq}", seq, 0, rank_key(gain, seq, seq, "maximize"), (gain,), (gain, cost)))
        pop.choose_parent(rng, island)
    step_us = (time.perf_counter() - start) / draws * 1e6
    return insert_us, draw_us, step_us, len(island.front)


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [1_000, 10_000]
    print(f"load {os.getloadavg()[0]:.1f}")
    print("| shape | programs | front size | us/insert 1 obj / 2 obj | us/draw 1 obj / 2 obj "
          "| us/(insert + draw) 1 obj / 2 obj |")
    print("| --- | --- | --- | --- | --- | --- |")
    for shape in ("line", "cloud"):
        for n in sizes:
            one = measure(shape, n, False)
            two = measure(shape, n, True)
            print(f"| {shape} | {n} | {two[3]} | {one[0]:.1f} / {two[0]:.1f} | {one[1]:.1f} / {two[1]:.1f} "
                  f"| {one[2]:.1f} / {two[2]:.1f} |")
    print()
    print("| shape | programs | front size | summary front + hypervolume history, ms |")
    print("| --- | --- | --- | --- |")
    objective = Objective.model_validate([{"metric": "gain"}, {"metric": "cost", "direction": "minimize"}])
    for shape in ("line", "cloud"):
        for n in sizes:
            rows = [ObjectivePoint(f"p{i}", i, i, g, (g, c)) for i, (g, c) in enumerate(points(shape, n))]
            start = time.perf_counter()
            summary = front_summary(rows, objective)
            print(f"| {shape} | {n} | {len(summary.members)} | {(time.perf_counter() - start) * 1e3:.0f} |")


if __name__ == "__main__":
    main()
