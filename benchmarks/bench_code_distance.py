"""Cost of ``code_distance`` (novelty checks, diverse inspirations) on large programs.

    python benchmarks/bench_code_distance.py

Prints cold (shingles computed) and cached (shingles memoized) microseconds per call for
programs of 2 kB and 20 kB, and the machine's load. Moved here from a unit test: speed is a
benchmark's claim, never a test's, on machines whose load reaches 20.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentopt.evolve import hashing  # noqa: E402
from agentopt.evolve.hashing import code_distance  # noqa: E402


def program(size: int, seed: int) -> str:
    """Many small functions with random constants, cut to ``size`` characters."""
    rng = random.Random(seed)
    parts: list[str] = []
    i = 0
    while sum(map(len, parts)) < size:
        parts.append(f"def f{i}(x, y):\n    z = x * {rng.randint(0, 99)} + y\n    return z - {i}\n\n")
        i += 1
    return "".join(parts)[:size]


def main() -> None:
    print(f"load {os.getloadavg()[0]:.1f}")
    print("| program size | cold us/call | cached us/call | distance |")
    print("| --- | --- | --- | --- |")
    for size in (2_000, 20_000):
        a, b = program(size, 1), program(size, 2)
        hashing._shingles.cache_clear()
        t0 = time.perf_counter()
        d = code_distance(a, b)
        cold = time.perf_counter() - t0
        reps = 200
        t0 = time.perf_counter()
        for _ in range(reps):
            code_distance(a, b)
        cached = (time.perf_counter() - t0) / reps
        print(f"| {size} B | {cold * 1e6:.0f} | {cached * 1e6:.0f} | {d:.3f} |")


if __name__ == "__main__":
    main()
