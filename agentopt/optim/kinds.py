"""The optimizer table: ``optimizer.kind`` in an optimize config -> the class that implements it.

Adding an optimizer = its own module (a :class:`~agentopt.optim.base.Optimizer` subclass with
``kind``, ``propose`` and ``for_run``) + one entry here; the config schema's ``kind`` choices
and the ``agentopt optimize`` runner both read this table.
"""

from __future__ import annotations

from agentopt.optim.base import Optimizer
from agentopt.optim.iterative_decoding import BestOfN, IterativeDecoding
from agentopt.optim.numeric import NumericOptimizer
from agentopt.optim.opro import OPRO
from agentopt.optim.optoprime import OptoPrime
from agentopt.optim.pareto import ReflectivePareto

__all__ = ["OPTIMIZERS"]

#: Kind -> class, in the order the schema lists them (the first is not the default: see config).
OPTIMIZERS: dict[str, type[Optimizer]] = {cls.kind: cls for cls in (OptoPrime, OPRO, ReflectivePareto, NumericOptimizer,
                                                                     IterativeDecoding, BestOfN)}
