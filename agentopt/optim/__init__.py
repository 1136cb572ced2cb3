"""Optimizers over trace Params: OptoPrime-style, OPRO-style, reflective Pareto (GEPA-like),
numeric (optuna), plus the ``optimize`` loop runner behind ``agentopt optimize``.

Every optimizer is one class in the table :data:`OPTIMIZERS` (``optimizer.kind`` -> class).
Imports are light: litellm and optuna load only when an optimizer first needs them.
"""

from agentopt.optim.base import Optimizer, OptimizerError, OptimizeRun, StepResult
from agentopt.optim.kinds import OPTIMIZERS
from agentopt.optim.numeric import NumericOptimizer
from agentopt.optim.opro import OPRO
from agentopt.optim.optoprime import OptoPrime
from agentopt.optim.pareto import Candidate, Evaluation, ReflectivePareto
from agentopt.optim.parse import MalformedReply, parse_suggestion
from agentopt.optim.validate import validate_suggestions

__all__ = [
    "OPRO",
    "OPTIMIZERS",
    "Candidate",
    "Evaluation",
    "MalformedReply",
    "NumericOptimizer",
    "OptimizeRun",
    "Optimizer",
    "OptimizerError",
    "OptoPrime",
    "ReflectivePareto",
    "StepResult",
    "parse_suggestion",
    "validate_suggestions",
]
