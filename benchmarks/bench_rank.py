"""ZO-RankSGD against random search at equal ranking queries (synthetic ranking oracles).

Each query ranks k = 4 points and reveals only their order. RankSGD perturbs its current point
along 4 Gaussian directions and steps along the all-pairs rank estimate. The baselines use the
same oracle with the same k: *random search* ranks the incumbent with 3 fresh uniform points,
*local search* ranks the incumbent with 3 Gaussian perturbations of it (sigma 0.1) and keeps
the winner, a (1+3)-ES. Objectives live on [0, 1]^d (the space RankSGD normalises Params to):
a quadratic bowl, a rotated ill-conditioned ellipsoid (condition 100) and the quadratic with a
noisy oracle (Gaussian noise of std 0.005 or 0.05 on the values before they are ranked; 0.05 is
about the loss difference between two perturbed points at the start, so most orders are noise). The table shows
the mean true loss of the point each method would return, over seeds.

    python benchmarks/bench_rank.py                  # d = 10, 10 seeds
    python benchmarks/bench_rank.py --dim 30 --seeds 5
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
from rich.console import Console
from rich.table import Table

from agentopt.optim import RankSGD
from agentopt.trace import Param, Ranking

Loss = Callable[[np.ndarray], float]
CHECKPOINTS = (25, 50, 100, 200, 400)


def make_objective(name: str, d: int, seed: int) -> Loss:
    rng = np.random.default_rng(seed + 1000)
    target = rng.uniform(0.1, 0.9, d)
    if name == "ellipsoid":
        q, _ = np.linalg.qr(rng.standard_normal((d, d)))
        scales = np.logspace(0, 2, d)
        return lambda x: float(((q @ (x - target)) ** 2 * scales).sum() / scales.mean())
    return lambda x: float(((x - target) ** 2).sum())


def oracle(loss: Loss, noise: float, rng: np.random.Generator) -> Callable[[list[np.ndarray]], Ranking]:
    def rank(points: list[np.ndarray]) -> Ranking:
        values = np.array([loss(p) for p in points]) + noise * rng.standard_normal(len(points))
        return Ranking(order=tuple(int(i) for i in np.argsort(values)))  # lowest loss first
    return rank


def run_rank_sgd(loss: Loss, rank: Callable, d: int, seed: int, k: int) -> list[float]:
    params = [Param(0.5, bounds=(0.0, 1.0), name=f"x{i}") for i in range(d)]
    opt = RankSGD(params, k=k, seed=seed)
    curve = []
    for q in range(1, CHECKPOINTS[-1] + 1):
        pts = [np.array([c[f"x{i}"] for i in range(d)]) for c in opt.candidates()]
        opt.tell(rank(pts))
        if q in CHECKPOINTS:
            curve.append(loss(np.array([opt.value()[f"x{i}"] for i in range(d)])))
    return curve


def run_search(loss: Loss, rank: Callable, d: int, seed: int, k: int, local: bool) -> list[float]:
    rng = np.random.default_rng(seed)
    best = np.full(d, 0.5)
    curve = []
    for q in range(1, CHECKPOINTS[-1] + 1):
        fresh = [np.clip(best + 0.1 * rng.standard_normal(d), 0, 1) if local else rng.random(d)
                 for _ in range(k - 1)]
        pool = [best, *fresh]
        best = pool[rank(pool).order[0]]
        if q in CHECKPOINTS:
            curve.append(loss(best))
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("-k", type=int, default=4)
    args = parser.parse_args()
    console = Console(width=140)
    started = time.perf_counter()
    table = Table(title=f"Mean true loss after N ranking queries (k={args.k}, d={args.dim}, {args.seeds} seeds)")
    for col in ("objective", "method", *(f"N={n}" for n in CHECKPOINTS)):
        table.add_column(col, justify="right")
    for objective, noise in (("quadratic", 0.0), ("ellipsoid", 0.0), ("quadratic", 0.005), ("quadratic", 0.05)):
        label = objective + (f" (noise {noise})" if noise else "")
        curves: dict[str, list[list[float]]] = {"ZO-RankSGD": [], "local (1+3)-ES": [], "random search": []}
        for seed in range(args.seeds):
            loss = make_objective(objective, args.dim, seed)
            curves["ZO-RankSGD"].append(run_rank_sgd(loss, oracle(loss, noise, np.random.default_rng(seed)),
                                                     args.dim, seed, args.k))
            curves["local (1+3)-ES"].append(run_search(loss, oracle(loss, noise, np.random.default_rng(seed)),
                                                       args.dim, seed, args.k, local=True))
            curves["random search"].append(run_search(loss, oracle(loss, noise, np.random.default_rng(seed)),
                                                      args.dim, seed, args.k, local=False))
        for method, runs in curves.items():
            table.add_row(label, method, *(f"{v:.4f}" for v in np.mean(runs, axis=0)))
        table.add_section()
    console.print(table)
    console.print(f"{time.perf_counter() - started:.1f} s wall, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
