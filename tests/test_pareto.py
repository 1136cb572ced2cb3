"""Pareto fronts on hand-made points: dominance with mixed directions, ties and duplicates,
NaN/inf never on a front, NSGA-II crowding distances and the exact 2-D hypervolume."""

from __future__ import annotations

import math

import pytest

from agentopt.evolve.pareto import (
    crowding_distances,
    crowding_weights,
    dominates,
    front,
    hypervolume_2d,
    nondominated_sort,
    orient,
)

MINMIN = ("minimize", "minimize")


def test_two_objectives_front_and_layers() -> None:
    points = [(1, 5), (2, 3), (3, 4), (4, 1), (5, 5), (2, 3)]  # (3,4) dominated by (2,3); (5,5) by all
    assert front(points, MINMIN) == [0, 1, 3, 5]  # the duplicate (2,3) shares the front
    assert nondominated_sort(points, MINMIN) == [[0, 1, 3, 5], [2], [4]]


def test_mixed_directions_flip_dominance() -> None:
    # error (minimize) against accuracy (maximize): (0.1, 0.9) beats (0.2, 0.8) on both.
    points = [(0.2, 0.8), (0.1, 0.9), (0.05, 0.5)]
    assert front(points, ("minimize", "maximize")) == [1, 2]
    assert front(points, ("maximize", "minimize")) == [0, 2]  # the other way round
    assert dominates(orient((0.1, 0.9), ("minimize", "maximize")), orient((0.2, 0.8), ("minimize", "maximize")))


def test_ties_on_one_metric() -> None:
    # Equal on the first metric: the better second metric dominates, equal points do not.
    points = [(1, 2), (1, 3), (1, 2)]
    assert front(points, MINMIN) == [0, 2]
    assert not dominates((1.0, 2.0), (1.0, 2.0))


def test_three_objectives() -> None:
    d3 = ("minimize", "minimize", "maximize")
    points = [(1, 1, 1), (0, 2, 1), (1, 1, 0), (2, 2, 2), (2, 2, 0.5), (1, 1, 1)]
    # (1,1,0) and (2,2,0.5) are dominated by (1,1,1); the rest trade off.
    assert front(points, d3) == [0, 1, 3, 5]
    assert nondominated_sort(points, d3) == [[0, 1, 3, 5], [2, 4]]


def test_nan_inf_and_missing_points_are_on_no_front() -> None:
    points = [(math.nan, 0.0), (1.0, 1.0), (-math.inf, -5.0), None, (2.0, 0.5), (0.0, math.inf)]
    assert front(points, MINMIN) == [1, 4]
    assert nondominated_sort(points, MINMIN) == [[1, 4]]
    assert front([(1.0, 2.0, 3.0)], MINMIN) == []  # wrong length: unusable


def test_crowding_distance_known_example() -> None:
    # x: 0,1,3,6 (range 6); y: 6,3,1,0 (range 6). Interior: (3-0)/6 + (6-1)/6 = 4/3 and (6-1)/6 + (3-0)/6 = 4/3.
    points = [(0, 6), (1, 3), (3, 1), (6, 0)]
    d = crowding_distances(points, MINMIN)
    assert d[0] == d[3] == math.inf
    assert d[1] == pytest.approx(4 / 3) and d[2] == pytest.approx(4 / 3)
    uneven = [(0, 4), (1, 3), (3, 1), (4, 0)]  # (1,3): (3-0)/4 + (4-1)/4 = 1.5
    assert crowding_distances(uneven, MINMIN)[1:3] == [pytest.approx(1.5), pytest.approx(1.5)]
    assert crowding_distances([(1, 1), (2, 0)], MINMIN) == [math.inf, math.inf]
    assert crowding_weights([math.inf, 0.5, 0.0], 2).tolist() == [4.1, 0.6, 0.1]


def test_crowding_with_duplicates_is_deterministic() -> None:
    points = [(0, 2), (1, 1), (1, 1), (2, 0)]
    d = crowding_distances(points, MINMIN)
    assert d == crowding_distances(points, MINMIN)
    assert d[0] == d[3] == math.inf and all(math.isfinite(v) for v in d[1:3])


def test_hypervolume_2d_by_hand() -> None:
    # Minimize both, reference (4, 4): staircase of (1,3), (2,2), (3,1):
    # strips: (4-1)*(4-3)=3, (4-2)*(3-2)=2, (4-3)*(2-1)=1 -> 6.
    points = [(1, 3), (2, 2), (3, 1), (3, 3), (5, 0)]  # (3,3) dominated, (5,0) outside the reference box
    assert hypervolume_2d(points, MINMIN, (4, 4)) == pytest.approx(6.0)
    # Maximize accuracy instead: the same geometry mirrored.
    mixed = [(1, -3), (2, -2), (3, -1)]
    assert hypervolume_2d(mixed, ("minimize", "maximize"), (4, -4)) == pytest.approx(6.0)
    assert hypervolume_2d([(1, 1), (1, 1), (math.nan, 0)], MINMIN, (2, 2)) == pytest.approx(1.0)
    assert hypervolume_2d([], MINMIN, (2, 2)) == 0.0
    with pytest.raises(ValueError):
        hypervolume_2d(points, ("minimize",) * 3, (1, 1, 1))


@pytest.mark.parametrize("metrics", [2, 3])
def test_incremental_front_index_equals_the_batch_front(metrics: int) -> None:
    import random

    from agentopt.evolve.pareto import FrontIndex

    rng = random.Random(metrics)
    directions = ("minimize",) * metrics
    points = [tuple(float(rng.randint(0, 6)) for _ in range(metrics)) for _ in range(300)]  # many ties and duplicates
    index = FrontIndex(metrics)
    members: set[int] = set()
    for i, p in enumerate(points):
        evicted = index.add(i, p)
        if evicted is not None:
            members = (members - set(evicted)) | {i}
    assert members == set(front(points, directions)) and len(index) == len(members)
