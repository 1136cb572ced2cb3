"""Build a large cap set in F_3^n: vectors with no three on a line (no x, y, z distinct with
x + y + z = 0 mod 3 in every coordinate).

FunSearch-style: a greedy (``build_cap_set``) takes the vectors in order of ``priority`` plus
a seeded random tie-break and keeps each one that completes no line with two vectors already
kept. Everything between the EVOLVE-BLOCK markers may change: the priority, the seed, how
much randomness the order gets, and the construction itself (restarts, repairs, a local
search...). The evaluator checks the returned set exactly, so only real caps score.
"""

import itertools
import random

# EVOLVE-BLOCK-START
SEED = 0  # seed of the random tie-break: another seed, another greedy order
NOISE = 0.5  # weight of the random part of each vector's priority


def priority(v):
    """Higher is tried earlier. ``v`` is a tuple of n values, each 0, 1 or 2."""
    ones = v.count(1)
    twos = v.count(2)
    residue = sum(v) % 3
    return 1.0 * ones + 0.5 * twos + 0.1 * residue + 0.1 * ones * twos


def build_cap_set(n):
    """Greedy cap: vectors in decreasing priority; keep one unless it completes a line."""
    rng = random.Random(SEED)
    vectors = list(itertools.product(range(3), repeat=n))
    order = sorted(vectors, key=lambda v: priority(v) + NOISE * rng.random(), reverse=True)
    cap = []
    blocked = set()  # every vector that would complete a line with two kept vectors
    for v in order:
        if v in blocked:
            continue
        for w in cap:
            blocked.add(tuple((-a - b) % 3 for a, b in zip(v, w, strict=True)))
        cap.append(v)
    return [list(v) for v in cap]
# EVOLVE-BLOCK-END
