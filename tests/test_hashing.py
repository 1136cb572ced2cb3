"""agentopt.evolve.hashing: exact/normalized hashes, complexity, distance (and its speed)."""

from __future__ import annotations

import random

from agentopt.evolve import hashing
from agentopt.evolve.hashing import code_complexity, code_distance, exact_hash, normalized_code_hash

BASE = '''\
"""Module docstring."""
import math


def solve(values):
    """Return the norm."""
    total = 0
    for x in values:
        total += x * x  # accumulate
    return math.sqrt(total)
'''

COSMETIC = """\
import math
def solve(values):
    '''A different docstring.'''
    # EVOLVE-BLOCK-START
    total = (
        0
    )
    for x in values:
        total += x*x
    \"\"\"commented-out code
    total = -1
    \"\"\"
    return math.sqrt(total)
    # EVOLVE-BLOCK-END
"""


def test_exact_hash_normalizes_newlines_only() -> None:
    assert exact_hash(BASE) == exact_hash(BASE.replace("\n", "\r\n"))
    assert exact_hash(BASE) != exact_hash(BASE + " ")
    assert len(exact_hash("")) == 64


def test_normalized_hash_ignores_comments_docstrings_and_formatting() -> None:
    assert normalized_code_hash(BASE) == normalized_code_hash(COSMETIC)
    assert exact_hash(BASE) != exact_hash(COSMETIC)


def test_normalized_hash_changes_on_semantic_change() -> None:
    h = normalized_code_hash(BASE)
    assert normalized_code_hash(BASE.replace("x * x", "x * x * x")) != h
    assert normalized_code_hash(BASE.replace("total = 0", "total = 1")) != h
    assert normalized_code_hash(BASE.replace('"""Return the norm."""', 'print("Return the norm.")')) != h


def test_normalized_hash_falls_back_to_text_for_unparseable_code() -> None:
    cuda = "__global__ void k(float* a) {\n  a[0] = 1;\n}\n"
    assert normalized_code_hash(cuda) == normalized_code_hash("__global__  void k(float* a) { a[0] = 1; }")
    assert normalized_code_hash(cuda) != normalized_code_hash(cuda.replace("1;", "2;"))
    # A text-fallback hash never equals an AST hash, even for the same whitespace-collapsed text.
    assert normalized_code_hash("x = 1") != hashing._sha("text:x = 1")


def test_code_complexity_counts_structure_not_formatting() -> None:
    assert code_complexity(BASE) == code_complexity(
        BASE.replace("# accumulate", "# a much longer comment here")
    )
    bigger = BASE + "\n\ndef extra(a, b):\n    return [i * a + b for i in range(10)]\n"
    assert code_complexity(bigger) > code_complexity(BASE) > 0
    assert code_complexity("int main() { return 0; }") == 9.0  # token count fallback


def test_code_distance_bounds_and_ordering() -> None:
    assert code_distance(BASE, BASE) == 0.0
    assert code_distance(BASE, BASE.replace("    ", "  ")) == 0.0  # formatting only
    small = code_distance(BASE, BASE.replace("x * x", "x ** 2"))
    large = code_distance(BASE, "print('hello world')\n")
    assert 0.0 < small < large <= 1.0
    assert code_distance(BASE, "@@@ ### $$$") == 1.0
    assert code_distance("", "") == 0.0
    assert code_distance("a - b", "b - a") > 0.0  # order matters locally
    assert code_distance(BASE, COSMETIC) == code_distance(COSMETIC, BASE)


def _program(size: int, seed: int) -> str:
    rng = random.Random(seed)
    parts = []
    i = 0
    while sum(map(len, parts)) < size:
        parts.append(f"def f{i}(x, y):\n    z = x * {rng.randint(0, 99)} + y\n    return z - {i}\n\n")
        i += 1
    return "".join(parts)[:size]


def test_code_distance_on_large_programs_is_cached_and_stable() -> None:
    """Large programs get a distance strictly between 0 and 1, and the cached second call
    (shingles are memoized) gives the same value. Its speed is measured, not asserted, in
    benchmarks/bench_code_distance.py (wall-clock bounds fail on a loaded CI machine)."""
    for size in (2_000, 20_000):
        a, b = _program(size, 1), _program(size, 2)
        hashing._shingles.cache_clear()
        cold = code_distance(a, b)
        assert 0.0 < cold < 1.0
        assert hashing._shingles.cache_info().misses >= 2
        assert code_distance(a, b) == cold
        assert hashing._shingles.cache_info().hits >= 2
