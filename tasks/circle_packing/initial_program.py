"""Pack 26 circles in the unit square so that the sum of their radii is as large as possible.

The evolvable part is ``layout()``: where the circle centres go. The starting layout is
five staggered rows; every number in it (row heights, circles per row, row extents) is a
knob. ``compute_radii`` then gives each centre the largest radius that keeps the packing
valid, and ``construct_packing`` is what the evaluator calls. The evaluator re-checks
every constraint itself and never trusts a claimed sum.
"""

import math


# EVOLVE-BLOCK-START
def layout():
    """Return 26 circle centres [x, y] inside the unit square."""
    rows = [  # (y, number of circles, x of the first circle, x of the last circle)
        (0.09, 6, 0.09, 0.91),
        (0.26, 5, 0.18, 0.82),
        (0.43, 6, 0.09, 0.91),
        (0.6, 5, 0.18, 0.82),
        (0.8, 4, 0.15, 0.85),
    ]
    centers = []
    for y, count, x_first, x_last in rows:
        for k in range(count):
            centers.append([x_first + (x_last - x_first) * k / (count - 1), y])
    return centers
# EVOLVE-BLOCK-END


def compute_radii(centers):
    """Largest radii for fixed centres: shrink overlapping pairs, then grow into any slack.

    Circles outside the square get radius 0 (the evaluator rejects those packings).
    """
    n = len(centers)
    wall = [min(x, y, 1.0 - x, 1.0 - y) for x, y in centers]
    radii = [max(w, 0.0) for w in wall]
    dist = [[math.dist(centers[i], centers[j]) for j in range(n)] for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if radii[i] + radii[j] > dist[i][j]:
                scale = dist[i][j] / (radii[i] + radii[j])
                radii[i] *= scale
                radii[j] *= scale
    for i in range(n):
        room = min([wall[i]] + [dist[i][j] - radii[j] for j in range(n) if j != i])
        radii[i] = max(room, 0.0)
    return radii


def construct_packing():
    """Return (centers, radii): 26 [x, y] pairs and 26 radii."""
    centers = [[float(x), float(y)] for x, y in layout()]
    return centers, compute_radii(centers)
