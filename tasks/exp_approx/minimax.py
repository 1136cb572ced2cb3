"""Minimax (best relative-error) polynomials for exp(x) on [-ln2/2, ln2/2], by Remez exchange.

These are the references an evolved exp_approx is measured against: the best any degree-d
polynomial can do in relative error on the range, and so the best a Horner chain of 2d
multiply/add operations can do (the accuracy each operation budget buys). The two-objective
task ``tasks/exp_approx_pareto`` and ``benchmarks/bench_exp_pareto.py`` print its front
next to these numbers.

numpy only, and no agentopt import: task and guest code stay standalone. Run it to print the
table (``python tasks/exp_approx/minimax.py --degrees 3 4 5 6``).

Why Remez and not a least-squares fit: the score is the *worst* relative error on a grid,
and the polynomial minimizing that is characterized by equioscillation (Chebyshev's
alternation theorem): the error reaches its maximum modulus at d+2 points with alternating
signs. Remez exchange finds it by solving for a levelled error on d+2 reference points and
moving the reference to the extrema of the resulting error curve until they are level.
Everything is measured on the evaluator's own grid (20001 points, float64 Horner), so a
reference score is exactly what the evaluator would give the printed program.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np

HALF_LN2 = math.log(2.0) / 2.0
GRID_POINTS = 20001  # the evaluator's grid (tasks/exp_approx/evaluator.py)
MAX_ITERATIONS = 50
# Beyond degree 8 the best error (~1e-14) drowns in float64 rounding of the Horner chain itself.
MAX_DEGREE = 8
# The error is levelled when its extrema on the reference differ by this share of the largest,
# or by float64 rounding noise in the relative error (a few ulp of 1), whichever is larger.
LEVEL_RTOL = 1e-9
LEVEL_ATOL = 1e-15


@dataclass(frozen=True)
class Minimax:
    """One reference: coefficients (constant term first), the error on the grid, and how level
    the extrema ended (``spread``: (max - min) / max of |error| over the d+2 extrema)."""

    degree: int
    coefficients: tuple[float, ...]
    max_rel_error: float
    extrema: tuple[float, ...]  # x of the d+2 alternating extrema
    spread: float
    iterations: int

    @property
    def score(self) -> float:
        """The evaluator's score: -log10(max relative error)."""
        return -math.log10(max(self.max_rel_error, 1e-17))

    @property
    def ops(self) -> int:
        """Multiply/add count of the Horner form: one multiply and one add per degree."""
        return 2 * self.degree


def grid(points: int = GRID_POINTS) -> np.ndarray:
    """The evaluator's grid on [-ln2/2, ln2/2]."""
    return np.linspace(-HALF_LN2, HALF_LN2, points)


def horner(coefficients: tuple[float, ...] | list[float] | np.ndarray, xs: np.ndarray) -> np.ndarray:
    """p(x) in Horner order (highest coefficient first), as the evaluator computes a chain."""
    coeffs = [float(c) for c in coefficients]
    p = np.full_like(xs, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        p = p * xs + c
    return p


def relative_error(coefficients: tuple[float, ...] | list[float] | np.ndarray, xs: np.ndarray) -> np.ndarray:
    """(p(x) - exp(x)) / exp(x), the evaluator's error."""
    truth = np.exp(xs)
    return (horner(coefficients, xs) - truth) / truth


def _alternating_extrema(err: np.ndarray, count: int) -> np.ndarray | None:
    """Indices of ``count`` extrema of ``err`` with alternating signs: the largest |err| of each
    run of one sign; when there are more runs than ``count``, the window of ``count`` consecutive
    runs holding the global maximum with the largest smallest extremum. None with too few runs."""
    sign = np.sign(err)
    sign[sign == 0] = 1
    starts = np.concatenate(([0], np.flatnonzero(sign[1:] != sign[:-1]) + 1, [len(err)]))
    peaks = np.array([a + int(np.argmax(np.abs(err[a:b]))) for a, b in zip(starts[:-1], starts[1:], strict=True)])
    if len(peaks) < count:
        return None
    if len(peaks) == count:
        return peaks
    size = np.abs(err[peaks])
    top = int(np.argmax(size))
    windows = [w for w in range(len(peaks) - count + 1) if w <= top < w + count]
    best = max(windows, key=lambda w: float(np.min(size[w : w + count])))
    return peaks[best : best + count]


def remez(degree: int, points: int = GRID_POINTS) -> Minimax:
    """The degree-``degree`` polynomial with the smallest max relative error to exp on the grid.

    Each step solves ``p(x_i) - exp(x_i) = (-1)^i E exp(x_i)`` on the d+2 reference points
    (d+2 unknowns: the d+1 coefficients and the levelled error E), then moves the reference to
    the alternating extrema of the new error curve. Starts from the Chebyshev extrema, which
    are already close for a function as smooth as exp."""
    if not 0 <= degree <= MAX_DEGREE:
        raise ValueError(f"degree must be in 0..{MAX_DEGREE}, got {degree}")
    xs = grid(points)
    truth = np.exp(xs)
    n = degree + 2
    nodes = HALF_LN2 * -np.cos(np.pi * np.arange(n) / (n - 1))
    ref = np.unique(np.searchsorted(xs, nodes).clip(0, len(xs) - 1))
    if len(ref) != n:
        raise ValueError(f"grid of {points} points is too coarse for degree {degree}")
    signs = (-1.0) ** np.arange(n)
    coeffs = np.zeros(degree + 1)
    spread = math.inf
    iterations = 0
    while iterations < MAX_ITERATIONS:
        iterations += 1
        x = xs[ref]
        system = np.column_stack([x**j for j in range(degree + 1)] + [-signs * truth[ref]])
        solution = np.linalg.solve(system, truth[ref])
        coeffs = solution[:-1]
        err = relative_error(coeffs, xs)
        found = _alternating_extrema(err, n)
        if found is None:  # cannot happen for exp; keep the last solve rather than loop forever
            break
        ref = found
        size = np.abs(err[ref])
        spread = float((size.max() - size.min()) / size.max())
        if size.max() - size.min() < max(LEVEL_RTOL * size.max(), LEVEL_ATOL):
            break
    err = relative_error(coeffs, xs)
    return Minimax(
        degree=degree,
        coefficients=tuple(float(c) for c in coeffs),
        max_rel_error=float(np.max(np.abs(err))),
        extrema=tuple(float(v) for v in xs[ref]),
        spread=spread,
        iterations=iterations,
    )


def horner_source(coefficients: tuple[float, ...] | list[float], name: str = "exp_approx") -> str:
    """The exp_approx function computing this polynomial as a Horner chain (2·degree ops)."""
    coeffs = [float(c) for c in coefficients]
    lines = [f"def {name}(x):", f"    p = {coeffs[-1]!r}"]
    lines += [f"    p = p * x + {c!r}" for c in reversed(coeffs[:-1])]
    lines.append("    return p")
    return "\n".join(lines) + "\n"


def references(degrees: list[int] | tuple[int, ...] = (3, 4, 5, 6)) -> list[Minimax]:
    """One minimax reference per degree."""
    return [remez(d) for d in degrees]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--degrees", nargs="+", type=int, default=[3, 4, 5, 6])
    parser.add_argument("--source", action="store_true", help="also print each polynomial as an exp_approx program")
    args = parser.parse_args(argv)
    print(f"{'degree':>6} {'ops':>4} {'max rel error':>14} {'score':>7} {'spread':>8} {'iter':>4}  coefficients (x^0 first)")
    for ref in references(args.degrees):
        coeffs = ", ".join(f"{c:.17g}" for c in ref.coefficients)
        print(f"{ref.degree:>6} {ref.ops:>4} {ref.max_rel_error:>14.4e} {ref.score:>7.3f} {ref.spread:>8.1e} {ref.iterations:>4}  {coeffs}")
        if args.source:
            print(horner_source(ref.coefficients))


if __name__ == "__main__":
    main()
