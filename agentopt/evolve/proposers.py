"""Proposers turn a sampled parent into a child program: by LLM reply or by symbolic mutation.

The controller only talks to the small interface shared by both classes, so the offline
default (symbolic) and the LLM path go through the same loop, store and budgets.
"""

from __future__ import annotations

import random
from typing import Any

from agentopt.errors import BudgetExceeded, LLMError
from agentopt.evolve.bandit import ModelBandit
from agentopt.evolve.controller import Child
from agentopt.evolve.db import Program, ProgramDB
from agentopt.evolve.diff import apply_reply
from agentopt.evolve.prompts import PromptProgram, build_messages, language_from_path
from agentopt.evolve.symbolic import SymbolicMutationError, SymbolicMutator
from agentopt.task import TaskSpec


def _prompt_program(program: Program, label: str = "") -> PromptProgram:
    return PromptProgram(
        code=program.code,
        score=program.score,
        metrics=program.metrics,
        feedback=program.feedback,
        error=program.error,
        label=label,
        artifacts=program.artifacts,
    )


BANDIT_STATE = "model_bandit"


class SymbolicProposer:
    """Offline mutator: numeric literal perturbation and small AST edits inside EVOLVE-BLOCKs."""

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        self.mutator = SymbolicMutator()

    def attach(self, db: ProgramDB) -> None:
        pass

    def describe(self) -> str:
        return "symbolic"

    def concurrency(self) -> int:
        return 1

    def budget_error(self) -> str | None:
        return None

    def ledger_snapshot(self) -> dict[str, Any] | None:
        return None

    def restore_ledger(self, snapshot: dict[str, Any]) -> None:
        pass

    def totals(self) -> dict[str, Any]:
        return {}

    def observe(self, child: Child, program: Program | None) -> None:
        pass

    async def propose(
        self,
        *,
        iteration: int,
        parent: Program,
        inspirations: list[Program],
        rng: random.Random,
        previous_error: str | None,
    ) -> Child:
        try:
            code, description = self.mutator.mutate(parent.code, rng)
        except SymbolicMutationError as err:
            return Child(iteration, parent, None, {"kind": "symbolic"}, error=f"symbolic mutation failed: {err}")
        return Child(iteration, parent, code, {"kind": "symbolic", "description": description})


class LLMProposer:
    """Asks an LLM (weighted ensemble) for SEARCH/REPLACE diffs or a rewrite of the parent."""

    def __init__(self, spec: TaskSpec, client: Any, ledger: Any) -> None:
        self.spec = spec
        self.client = client
        self.ledger = ledger
        self._db: ProgramDB | None = None
        self._models = {m.name: m for m in spec.llm.models}
        self.bandit: ModelBandit | None = None
        if spec.llm.selection == "bandit" and len(self._models) > 1:
            self.bandit = ModelBandit(list(self._models), cost_weight=spec.llm.bandit_cost_weight)

    def attach(self, db: ProgramDB) -> None:
        self._db = db
        self.client.on_call = lambda record: db.record_llm_call(record.model_dump(mode="json"))
        if self.bandit is not None:
            self.bandit.load_state(db.get_state(BANDIT_STATE, {}) or {})

    def _choose(self, rng: random.Random) -> Any:
        if self.bandit is not None:
            return self._models[self.bandit.choose(rng)]
        return self.client.choose_model(rng)

    def observe(self, child: Child, program: Program | None) -> None:
        """Feed the bandit (in iteration order, so resumed runs learn identically)."""
        if self.bandit is None or "model" not in child.mutation:
            return
        parent = child.parent
        improved = bool(
            program is not None
            and program.ok
            and (parent is None or not parent.ok or self.spec.objective.better(program.score, parent.score))
        )
        self.bandit.observe(child.mutation["model"], improved=improved, cost_usd=child.mutation.get("cost_usd", 0.0))
        if self._db is not None:
            self._db.set_state(BANDIT_STATE, self.bandit.to_state())

    def describe(self) -> str:
        return "llm: " + ", ".join(m.name for m in self.spec.llm.models)

    def concurrency(self) -> int:
        return self.spec.llm.concurrency

    def budget_error(self) -> str | None:
        try:
            self.ledger.check_before_call()
        except BudgetExceeded as err:
            return str(err)
        return None

    def ledger_snapshot(self) -> dict[str, Any] | None:
        return self.ledger.snapshot()

    def restore_ledger(self, snapshot: dict[str, Any]) -> None:
        self.ledger.restore(snapshot)

    def totals(self) -> dict[str, Any]:
        return {"calls": self.ledger.calls, "tokens": self.ledger.tokens, "usd": self.ledger.usd}

    async def propose(
        self,
        *,
        iteration: int,
        parent: Program,
        inspirations: list[Program],
        rng: random.Random,
        previous_error: str | None,
    ) -> Child:
        spec = self.spec
        model = self._choose(rng)
        messages = build_messages(
            parent=_prompt_program(parent, "parent"),
            task_description=spec.description,
            objective_metric=spec.objective.metric,
            direction=spec.objective.direction,
            mode=spec.search.mode,
            inspirations=[_prompt_program(p, f"inspiration {i + 1}") for i, p in enumerate(inspirations)],
            previous_error=previous_error,
            system_message=spec.llm.system_message,
            max_code_length=spec.search.max_code_length,
            language=language_from_path(str(spec.program)),
        )
        mutation: dict[str, Any] = {"kind": spec.search.mode, "model": model.name}
        try:
            completion = await self.client.complete(messages, model=model, seed=iteration)
        except LLMError as err:
            return Child(iteration, parent, None, mutation, error=f"LLM call failed: {err}")
        outcome = apply_reply(parent.code, completion.text, spec.search.mode)
        mutation.update(kind=outcome.kind, reply=completion.text[:20_000], cost_usd=completion.cost_usd)
        if outcome.code is None:
            return Child(iteration, parent, None, mutation, error=outcome.error or "reply did not apply")
        return Child(iteration, parent, outcome.code, mutation)
