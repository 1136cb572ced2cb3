"""Pareto fronts over several objectives: dominance, non-dominated sorting, NSGA-II crowding
distance and the exact 2-D hypervolume. Pure functions over plain floats, no store.

Why here and hand-written: no declared dependency offers it (pymoo would be a heavy one for a
page of code), the one-off sorts run over a run's programs (an O(M N^2) sort is instant at
those sizes), and the hot path, keeping an island's front as programs arrive, needs an
incremental structure (:class:`FrontIndex`: O(log F) per insert for two objectives).

Conventions: a point is a sequence of metric values in objective order; ``directions`` says
per metric whether larger (``maximize``) or smaller (``minimize``) is better. A point with a
NaN or infinite value (a failed or unusable candidate) belongs to no front. Equal points do not
dominate each other, so duplicates share a front. Every result is in a fixed order (input
index order, ties by index), so seeded runs that use these functions reproduce exactly.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np

Direction = Literal["maximize", "minimize"]
Point = Sequence[float]
Oriented = tuple[float, ...]  # every coordinate "lower is better"


def orient(point: Point | None, directions: Sequence[Direction]) -> Oriented | None:
    """``point`` with maximized metrics negated (so lower is better everywhere), or None when
    it is missing, has the wrong length, or holds a NaN/infinite value."""
    if point is None or len(point) != len(directions):
        return None
    out = tuple(-float(v) if d == "maximize" else float(v) for v, d in zip(point, directions, strict=True))
    return out if all(math.isfinite(v) for v in out) else None


def dominates(a: Oriented, b: Oriented) -> bool:
    """True when oriented point ``a`` is no worse than ``b`` everywhere and better somewhere."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


def nondominated_sort(points: Sequence[Point | None], directions: Sequence[Direction]) -> list[list[int]]:
    """Fronts of indices into ``points``, best first (NSGA-II's fast non-dominated sort,
    O(M N^2)); each front in index order. Unusable points (see :func:`orient`) are in none."""
    oriented = [orient(p, directions) for p in points]
    valid = [i for i, p in enumerate(oriented) if p is not None]
    dominated_by: dict[int, list[int]] = {i: [] for i in valid}
    count = dict.fromkeys(valid, 0)
    for pos, i in enumerate(valid):
        a = oriented[i]
        for j in valid[pos + 1 :]:
            b = oriented[j]
            if dominates(a, b):  # type: ignore[arg-type]
                dominated_by[i].append(j)
                count[j] += 1
            elif dominates(b, a):  # type: ignore[arg-type]
                dominated_by[j].append(i)
                count[i] += 1
    fronts: list[list[int]] = []
    current = [i for i in valid if count[i] == 0]
    while current:
        fronts.append(current)
        following: list[int] = []
        for i in current:
            for j in dominated_by[i]:
                count[j] -= 1
                if count[j] == 0:
                    following.append(j)
        current = sorted(following)
    return fronts


def front(points: Sequence[Point | None], directions: Sequence[Direction]) -> list[int]:
    """Indices of the non-dominated usable points, in index order (through :class:`FrontIndex`:
    O(N log F) for two metrics, O(M N F) for more; F the front size)."""
    index = FrontIndex(len(directions))
    for i, p in enumerate(points):
        o = orient(p, directions)
        if o is not None:
            index.add(i, o)
    return sorted(index.members())


def crowding_distances(points: Sequence[Point], directions: Sequence[Direction]) -> list[float]:
    """NSGA-II crowding distance of each point of one front: per metric, the gap between its two
    neighbours (sorted by that metric) over the metric's range, summed; the two extremes of a
    metric get infinity. A metric without spread adds nothing. Ties keep index order, so equal
    points get a fixed (not random) share of the boundary. (Directions do not change it.)"""
    import numpy as np  # deferred: numpy costs ~0.15 s to import; only runs with several objectives use it

    n = len(points)
    if n <= 2:
        return [math.inf] * n
    return crowding_array(np.asarray(points, dtype=float).reshape(n, len(directions))).tolist()


def crowding_array(values: np.ndarray) -> np.ndarray:
    """:func:`crowding_distances` of the rows of an ``(F, M)`` array, vectorized: selection
    recomputes it whenever an island's front changes, and a front can hold thousands."""
    import numpy as np  # deferred: numpy costs ~0.15 s to import; only runs with several objectives use it

    n = values.shape[0]
    if n <= 2:
        return np.full(n, math.inf)
    distances = np.zeros(n)
    index = np.arange(n)
    for m in range(values.shape[1]):
        column = values[:, m]
        order = np.lexsort((index, column))
        ranked = column[order]
        span = ranked[-1] - ranked[0]
        if span > 0:
            distances[order[1:-1]] += (ranked[2:] - ranked[:-2]) / span
        distances[order[0]] = distances[order[-1]] = math.inf
    return distances


CROWDING_FLOOR = 0.1  # every front member keeps at least this selection weight


def crowding_weights(distances: Sequence[float] | np.ndarray, num_metrics: int, floor: float = CROWDING_FLOOR) -> np.ndarray:
    """Selection weights from crowding distances: isolated points are drawn more often. An
    extreme (infinite distance) weighs as much as the largest possible interior one (``2 M``:
    each metric adds at most 2 range-normalized gaps); ``floor`` keeps crowded points drawable.
    Vectorized: selection re-weights a whole front each time it changes."""
    import numpy as np  # deferred: numpy costs ~0.15 s to import; only runs with several objectives use it

    return floor + np.minimum(np.asarray(distances, dtype=float), 2.0 * num_metrics)


def hypervolume_2d(points: Sequence[Point], directions: Sequence[Direction], reference: Point) -> float:
    """Exact area dominated by ``points`` and bounded by ``reference`` (two metrics): larger is a
    better front. Points no better than the reference in both metrics add nothing; unusable
    points are ignored. O(N log N), vectorized (the run summary measures it along the run)."""
    import numpy as np  # deferred: numpy costs ~0.15 s to import; only runs with several objectives use it

    if len(directions) != 2:
        raise ValueError(f"hypervolume_2d needs two metrics, got {len(directions)}")
    ref = orient(reference, directions)
    if ref is None:
        raise ValueError(f"hypervolume reference must be two finite numbers, got {list(reference)}")
    if not len(points):
        return 0.0
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    values = np.asarray(points, dtype=float).reshape(len(points), 2) * signs
    inside = np.isfinite(values).all(axis=1) & (values[:, 0] < ref[0]) & (values[:, 1] < ref[1])
    values = values[inside]
    if not len(values):
        return 0.0
    values = values[np.lexsort((values[:, 1], values[:, 0]))]  # by x, then y
    xs, ys = values[:, 0], values[:, 1]
    # The best y left of each point (the reference before the first): a point adds the strip
    # between it and that y, from its x to the reference x, when it lies below.
    best_before = np.concatenate(([ref[1]], np.minimum.accumulate(ys)[:-1]))
    strips = np.where(ys < best_before, (ref[0] - xs) * (best_before - ys), 0.0)
    return float(strips.sum())


class FrontIndex:
    """The non-dominated set of the oriented points added so far, kept incrementally.

    ``add`` answers whether a newcomer enters and which members it evicts. Two objectives use
    a list sorted by the first coordinate (along a 2-D front the second then strictly falls),
    so the dominance test is one bisect and evictions are a contiguous run: O(log F + evicted).
    More objectives compare against every member: O(M F).
    """

    def __init__(self, num_metrics: int) -> None:
        self._two = num_metrics == 2
        self._sorted: list[tuple[float, float, int]] = []  # two metrics: (x, y, id) by x
        self._points: dict[int, Oriented] = {}

    def __len__(self) -> int:
        return len(self._points)

    def members(self) -> list[int]:
        """The ids on the front now (in the order they entered)."""
        return list(self._points)

    def points(self) -> list[Oriented]:
        """The oriented points on the front now (lower is better everywhere)."""
        return list(self._points.values())

    def add(self, ident: int, point: Oriented) -> list[int] | None:
        """Insert ``point`` under ``ident``: None when a member dominates it (nothing changes),
        else the ids of the members it dominates, which leave."""
        evicted = self._add_two(ident, point) if self._two else self._add_many(ident, point)
        if evicted is not None:
            for gone in evicted:
                del self._points[gone]
            self._points[ident] = point
        return evicted

    def _add_two(self, ident: int, point: Oriented) -> list[int] | None:
        x, y = point
        members = self._sorted
        at = bisect_right(members, (x, math.inf, math.inf))
        if at and members[at - 1][1] <= y and members[at - 1][:2] != (x, y):
            return None  # the member with the largest x <= ours has a y <= ours
        evicted: list[int] = []
        j = bisect_left(members, (x, -math.inf, -math.inf))
        while j < len(members) and members[j][1] >= y:
            if members[j][:2] == (x, y):
                j += 1  # an equal point: both stay
            else:
                evicted.append(members.pop(j)[2])
        insort(members, (x, y, ident))
        return evicted

    def _add_many(self, ident: int, point: Oriented) -> list[int] | None:
        if any(dominates(member, point) for member in self._points.values()):
            return None
        return [i for i, member in self._points.items() if dominates(point, member)]
