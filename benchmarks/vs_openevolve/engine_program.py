"""The program both halves of bench_engine.py evolve (agentopt's and, in its own venv,
OpenEvolve's: ``engine_openevolve.py``). Stdlib only, so OpenEvolve's venv can import it."""

PROGRAM = '''"""Benchmark program: solve() should return a large number."""
import math

# EVOLVE-BLOCK-START
def helper(values):
    total = 0.0
    for i, v in enumerate(values):
        total += math.sin(v * {a}) * {b} - (v - {c}) ** 2
    return total


def solve():
    return {value}
# EVOLVE-BLOCK-END


def run():
    return solve() + helper([0.1 * k for k in range(16)]) * 0
'''
