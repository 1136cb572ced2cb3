"""Naive evaluator: imports the candidate IN-PROCESS and calls run().

This is the worst case for the sandbox: the candidate shares the runner's process, so every
attack below hits the sandbox layers directly (limits, namespaces, uid, result channel).
"""

import importlib.util


def _load(path):
    spec = importlib.util.spec_from_file_location("hostile_candidate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def evaluate(program_path):
    out = _load(program_path).run()
    if isinstance(out, dict):
        return out
    if isinstance(out, int | float):
        return {"score": float(out)}
    return {"score": 0.0, "found": out}
