"""Evaluator written the recommended way: the candidate runs in a child via agentopt_guest.

Correctness is judged and time is measured HERE, so a candidate that monkeypatches
time.perf_counter, builtins or this module's compare() only changes its own child process.
"""

import os
import time

from agentopt_guest import CandidateProcess

INPUT = [5, 3, 1, 4, 2]
EXPECTED = [1, 2, 3, 4, 5]


def compare(got, expected):
    return got == expected


def evaluate(program_path):
    import_timeout = float(os.environ.get("HOSTILE_IMPORT_TIMEOUT", "5"))
    with CandidateProcess(program_path, import_timeout=import_timeout) as proc:
        t0 = time.perf_counter()
        got = proc.call("solve", list(INPUT), timeout=5.0)
        elapsed = time.perf_counter() - t0
    correct = compare(got, EXPECTED)
    return {"score": 1.0 if correct else 0.0, "correct": float(correct), "elapsed_s": elapsed}
