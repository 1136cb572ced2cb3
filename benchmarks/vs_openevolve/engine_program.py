"""The program both halves of bench_engine.py evolve (agentopt's and, in its own venv,
OpenEvolve's: ``engine_openevolve.py``) and the scripted LLM's answer to it. Stdlib only, so
OpenEvolve's venv can import it."""

import random
import re

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


def reply(messages: list[dict]) -> str:
    """The scripted LLM: raise the constant ``solve()`` returns by a random step (one
    SEARCH/REPLACE), or "ok" when the prompt shows no such line."""
    text = messages[-1]["content"] if messages else ""
    match = re.search(r"    return (-?\d+(?:\.\d+)?)\n", text)
    if not match:
        return "ok"
    old = match.group(1)
    new = round(float(old) + random.random(), 6)
    return f"Raise it.\n<<<<<<< SEARCH\n    return {old}\n=======\n    return {new}\n>>>>>>> REPLACE\n"
