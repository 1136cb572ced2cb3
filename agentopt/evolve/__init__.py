"""The evolution engine: program database, selection, prompts, diffs, proposers, controller, report.

A :class:`Proposer` (LLM or symbolic) is what the :class:`EvolutionController` asks for
children. The Python API behind ``agentopt evolve``/``resume`` is :mod:`agentopt.evolve.api`
(``evolve``, ``resume``, ``run_async``); it is not re-exported here because it sits above the
engine (it loads any task format through :mod:`agentopt.targets`).
"""

from agentopt.evolve.controller import EvolutionController
from agentopt.evolve.db import Program, ProgramDB
from agentopt.evolve.proposal import Child, Proposer
from agentopt.evolve.summary import RunSummary

__all__ = ["Child", "EvolutionController", "Program", "ProgramDB", "Proposer", "RunSummary"]
