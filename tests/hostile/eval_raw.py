"""Evaluator that returns whatever the candidate's run() returned (for bad-result cases)."""

import importlib.util


def evaluate(program_path):
    spec = importlib.util.spec_from_file_location("hostile_candidate", program_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.run()
