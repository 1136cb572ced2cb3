"""Optimizers over trace Params: OptoPrime-style, OPRO-style, reflective Pareto (GEPA-like),
numeric (optuna), plus the ``optimize`` loop runner behind ``agentopt optimize``.

Imports are light: the LLM client and optuna load only when an optimizer is constructed.
"""

from agentopt.optim.base import Optimizer, OptimizerError, StepResult
from agentopt.optim.numeric import NumericOptimizer
from agentopt.optim.opro import OPRO
from agentopt.optim.optoprime import OptoPrime
from agentopt.optim.pareto import Candidate, Evaluation, ReflectivePareto
from agentopt.optim.parse import MalformedReply, parse_suggestion
from agentopt.optim.validate import validate_suggestions

__all__ = [
    "OPRO",
    "Candidate",
    "Evaluation",
    "MalformedReply",
    "NumericOptimizer",
    "Optimizer",
    "OptimizerError",
    "OptoPrime",
    "ReflectivePareto",
    "StepResult",
    "parse_suggestion",
    "validate_suggestions",
]
