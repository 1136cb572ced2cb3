"""Some evaluators import ``EvaluationResult`` from ``openevolve.evaluator`` (OpenEvolve's
evaluator module re-exports it); answer that import too. Nothing else lives here: the real
module is OpenEvolve's host-side evaluation engine, which agentopt replaces."""

from openevolve.evaluation_result import EvaluationResult

__all__ = ["EvaluationResult"]
