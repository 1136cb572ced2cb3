"""Optimizers over trace Params: OptoPrime-style, OPRO-style, reflective Pareto (GEPA-like),
numeric (optuna), ranking-only (ZO-RankSGD, with terminal and LLM-judge rankers), verifier-guided
iterative decoding and best-of-N, plus the ``optimize`` loop runner behind ``agentopt optimize``.

Every optimizer is one class in the table :data:`OPTIMIZERS` (``optimizer.kind`` -> class).
Imports are light: litellm and optuna load only when an optimizer first needs them.
"""

from agentopt.optim.base import Optimizer, OptimizerError, OptimizeRun, StepResult
from agentopt.optim.iterative_decoding import BestOfN, IterativeDecoding
from agentopt.optim.kinds import OPTIMIZERS
from agentopt.optim.numeric import NumericOptimizer
from agentopt.optim.opro import OPRO
from agentopt.optim.optoprime import OptoPrime
from agentopt.optim.pareto import Candidate, Evaluation, ReflectivePareto
from agentopt.optim.parse import MalformedReply, parse_suggestion
from agentopt.optim.rank_sgd import RankSGD
from agentopt.optim.rank_text import RankText
from agentopt.optim.rankers import LLMJudgeRanker, RankingError, TerminalRanker, rank_by_score
from agentopt.optim.validate import validate_suggestions

__all__ = [
    "OPRO",
    "OPTIMIZERS",
    "BestOfN",
    "Candidate",
    "Evaluation",
    "IterativeDecoding",
    "LLMJudgeRanker",
    "MalformedReply",
    "NumericOptimizer",
    "OptimizeRun",
    "Optimizer",
    "OptimizerError",
    "OptoPrime",
    "RankSGD",
    "RankText",
    "RankingError",
    "ReflectivePareto",
    "StepResult",
    "TerminalRanker",
    "parse_suggestion",
    "rank_by_score",
    "validate_suggestions",
]
