"""What the evolution loop asks of a proposer: the :class:`Proposer` protocol and the :class:`Child` it returns.

A proposer turns a parent program (plus inspirations and the last error) into a child
program for one iteration. Two ship with agentopt (:mod:`agentopt.evolve.proposers`): the
LLM proposer and the offline symbolic one. The controller talks to either through this
protocol only, so a new kind of proposer is one class that satisfies it; nothing probes
for optional methods. It lives in its own module so the controller and the proposers can
both import it without importing each other.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Protocol

from agentopt.evolve.db import Program, ProgramDB

__all__ = ["Child", "Proposer"]


@dataclass
class Child:
    """A proposed program for one iteration, before evaluation."""

    iteration: int
    parent: Program | None
    code: str | None
    mutation: dict[str, Any]
    island: int = 0
    error: str | None = None  # set when no child could be produced (bad reply, LLM failure)


class Proposer(Protocol):
    """Proposes children; owns whatever it learns (bandits, prompt archive) and its LLM ledger.

    Learned state leaves through :meth:`state_items` and comes back through :meth:`attach`
    (from the run's database), which is what makes resume exact.
    """

    # Whether the children are constants-tuned by default (search.tune.enabled: auto); the
    # offline proposer says yes, an LLM proposer no (see agentopt/evolve/tuning.py).
    tune_by_default: bool

    def attach(self, db: ProgramDB) -> None:
        """Bind to the run's database: load learned state, record LLM calls there."""

    def describe(self) -> str:
        """One line for progress and the summary's ``mutator`` field, e.g. ``symbolic``."""

    def concurrency(self) -> int:
        """How many proposals may be in flight at once (the default window adds it to parallel_evaluations)."""

    def budget_error(self) -> str | None:
        """Why the next proposal would exceed the LLM budget, or None."""

    def ledger_snapshot(self) -> dict[str, Any] | None:
        """The spend so far, stored with each commit (None: nothing to store)."""

    def restore_ledger(self, snapshot: dict[str, Any]) -> None:
        """Continue counting from a stored :meth:`ledger_snapshot` (resume)."""

    def totals(self) -> dict[str, Any]:
        """``calls``, ``tokens`` and ``usd`` spent (empty for a proposer without an LLM)."""

    def observe(self, child: Child, program: Program | None) -> None:
        """Learn from an evaluated child; called in iteration order, so resumed runs learn alike."""

    def state_items(self) -> dict[str, Any]:
        """Learned state to store atomically with each commit (the run's advance)."""

    def meta_prompt_stats(self) -> list[dict[str, Any]]:
        """The system-prompt archive, best first (empty unless meta prompts are on)."""

    def plan(
        self,
        *,
        iteration: int,
        parent: Program,
        inspirations: list[Program],
        rng: random.Random,
        previous_error: str | None,
    ) -> dict[str, Any]:
        """Synchronously, when the iteration starts: every choice that reads learned state or the
        store (model, prompt variant, the request itself), as JSON. The pipelined controller
        persists it, so a resumed run sends exactly the requests the interrupted one would have."""

    async def execute(self, plan: dict[str, Any], *, iteration: int, parent: Program) -> Child:
        """The slow part of a :meth:`plan` (LLM calls, applying the reply); reads no learned state,
        so iterations can overlap without changing what each one decides."""

    async def propose(
        self,
        *,
        iteration: int,
        parent: Program,
        inspirations: list[Program],
        rng: random.Random,
        previous_error: str | None,
    ) -> Child:
        """A child of ``parent`` (with ``error`` set when none could be produced): plan, then execute."""

    async def aclose(self) -> None:
        """Release what the proposer holds (its LLM client's connections)."""
