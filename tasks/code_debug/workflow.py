"""Code-debugging task: repair a buggy function against unit tests.

``merge_intervals`` is a trainable traced function: its source is a code Param. Each example
is one unit test; the feedback of a failing test shows the call, the result and the expected
value (or the traceback), which OptoPrime turns into a rewrite of the function body.
"""

from __future__ import annotations

from agentopt.trace import Module, trace


@trace(trainable=True)
def merge_intervals(intervals):
    """Merge overlapping or touching [start, end] intervals; return them sorted by start."""
    intervals = sorted(intervals)
    merged = []
    for start, end in intervals:
        if merged and start < merged[-1][1]:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    return merged


class Repair(Module):
    def __init__(self) -> None:
        self.merge_intervals = merge_intervals


def build() -> Repair:
    return Repair()


def run(module: Repair, example: dict):
    return module.merge_intervals([list(iv) for iv in example["input"]])


def metric(result, example: dict) -> dict:
    expected = example["expected"]
    if result == expected:
        return {"score": 1.0, "text": "test passed"}
    return {"score": 0.0,
            "text": f"test failed: merge_intervals({example['input']!r}) returned {result!r}, expected {expected!r}"}
