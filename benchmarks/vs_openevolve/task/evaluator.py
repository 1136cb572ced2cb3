"""Evaluator for the trivial benchmark task (stdlib only).

evaluate(program_path) imports the candidate file and returns
{"combined_score": -abs(run() - 0.123)}  (0.0 is optimal).
"""
import importlib.util
import sys
import uuid

TARGET = 0.123


def evaluate(program_path):
    name = f"candidate_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, program_path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        value = float(module.run())
    finally:
        sys.modules.pop(name, None)
    return {"combined_score": -abs(value - TARGET)}


if __name__ == "__main__":
    print(evaluate(sys.argv[1] if len(sys.argv) > 1 else "initial_program.py"))
