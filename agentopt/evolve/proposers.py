"""Proposers turn a sampled parent into a child program: by LLM reply or by symbolic mutation.

The controller only talks to the small interface shared by both classes, so the offline
default (symbolic) and the LLM path go through the same loop, store and budgets.
"""

from __future__ import annotations

import random
from typing import Any

from agentopt.errors import BudgetExceeded, LLMError
from agentopt.evolve.bandit import ModelBandit
from agentopt.evolve.bundle import BundleError, is_bundle, pack, unpack
from agentopt.evolve.db import Program, ProgramDB
from agentopt.evolve.diff import apply_reply
from agentopt.evolve.meta_prompts import META_STATE, MetaPromptArchive
from agentopt.evolve.multifile import apply_bundle_reply
from agentopt.evolve.prompts import PromptProgram, build_messages, goal_text, language_from_path
from agentopt.evolve.proposal import Child
from agentopt.evolve.symbolic import SymbolicMutationError, SymbolicMutator
from agentopt.llm.cache import ReplayMiss
from agentopt.llm.local_server import wants_compact_prompt
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


def task_language(spec: TaskSpec) -> str:
    """The prompt language: the program's, or for a multi-file task its first file's."""
    if spec.multi_file:
        return language_from_path(str(spec.program_files[0]))
    return language_from_path(str(spec.program))


def _improved(spec: TaskSpec, child: Child, program: Program | None) -> bool:
    """The reward shared by the model and meta-prompt bandits: the child beat its parent."""
    parent = child.parent
    return bool(
        program is not None
        and program.ok
        and (parent is None or not parent.ok or spec.objective.better(program.score, parent.score))  # type: ignore[arg-type]
    )


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

    def state_items(self) -> dict[str, Any]:
        return {}

    def meta_prompt_stats(self) -> list[dict[str, Any]]:
        return []

    async def aclose(self) -> None:
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
            if is_bundle(parent.code):
                code, description = self._mutate_bundle(parent.code, rng)
            else:
                code, description = self.mutator.mutate(parent.code, rng)
        except (SymbolicMutationError, BundleError) as err:
            return Child(iteration, parent, None, {"kind": "symbolic"}, error=f"symbolic mutation failed: {err}")
        return Child(iteration, parent, code, {"kind": "symbolic", "description": description})

    def _mutate_bundle(self, code: str, rng: random.Random) -> tuple[str, str]:
        """Mutate one Python file of a multi-file program, tried in a seeded random order."""
        files = unpack(code)
        order = [path for path in files if path.endswith(".py")]
        rng.shuffle(order)
        last: SymbolicMutationError | None = None
        for path in order:
            try:
                new, description = self.mutator.mutate(files[path], rng)
            except SymbolicMutationError as err:
                last = err
                continue
            return pack({**files, path: new}), f"{path}: {description}"
        raise last or SymbolicMutationError("no Python file to mutate in the multi-file program")


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
        self.meta: MetaPromptArchive | None = None
        if spec.llm.meta_prompts:
            self.meta = MetaPromptArchive(
                base_role=spec.llm.system_message, max_variants=spec.llm.meta_prompt_max_variants
            )
        self.language = task_language(spec)

    def attach(self, db: ProgramDB) -> None:
        self._db = db
        self.client.on_call = lambda record: db.record_llm_call(record.model_dump(mode="json"))
        if self.bandit is not None:
            self.bandit.load_state(db.get_state(BANDIT_STATE, {}) or {})
        if self.meta is not None:
            self.meta.load_state(db.get_state(META_STATE, {}) or {})

    def _choose(self, rng: random.Random) -> Any:
        if self.bandit is not None:
            return self._models[self.bandit.choose(rng)]
        return self.client.choose_model(rng)

    def observe(self, child: Child, program: Program | None) -> None:
        """Feed the bandits and the prompt archive (in iteration order, so resumed runs learn
        identically)."""
        improved = _improved(self.spec, child, program)
        if self.bandit is not None and "model" in child.mutation:
            self.bandit.observe(
                child.mutation["model"], improved=improved, cost_usd=child.mutation.get("cost_usd", 0.0)
            )
        if self.meta is not None:
            variant = child.mutation.get("prompt_variant")
            if variant and "model" in child.mutation:
                self.meta.observe(variant, improved=improved)
            proposal = child.mutation.get("meta_proposal")
            if proposal:
                self.meta.add(proposal, parents=list(child.mutation.get("meta_parents", [])), iteration=child.iteration)

    def state_items(self) -> dict[str, Any]:
        """Learned state the controller stores atomically with the batch's advance (never
        mid-batch: a crash there replays the batch, which must not count rewards twice)."""
        items: dict[str, Any] = {}
        if self.bandit is not None:
            items[BANDIT_STATE] = self.bandit.to_state()
        if self.meta is not None:
            items[META_STATE] = self.meta.to_state()
        return items

    def meta_prompt_stats(self) -> list[dict[str, Any]]:
        """The prompt archive, best first (empty without ``llm.meta_prompts``)."""
        return self.meta.ranking() if self.meta is not None else []

    async def _propose_variant(self, iteration: int, model: Any, mutation: dict[str, Any]) -> None:
        """Ask for a new system-prompt variant; the archive takes it in ``observe`` (in order)."""
        assert self.meta is not None
        goal = goal_text(self.spec.objective.metric, self.spec.objective.direction)
        messages, parents = self.meta.proposal_messages(
            language=self.language, goal=goal, task_description=self.spec.description
        )
        try:
            completion = await self.client.complete(messages, model=model, seed=iteration)
        except ReplayMiss:
            raise
        except (LLMError, BudgetExceeded) as err:
            mutation["meta_error"] = f"meta-prompt call failed: {err}"
            return
        text, problem = self.meta.parse_proposal(completion.text)
        if text is None:
            mutation["meta_error"] = problem
            return
        mutation.update(meta_proposal=text, meta_parents=parents)

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

    async def aclose(self) -> None:
        await self.client.aclose()

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
        mutation: dict[str, Any] = {"kind": spec.search.mode, "model": model.name}
        system_message = spec.llm.system_message
        if self.meta is not None:
            variant = self.meta.choose(rng)
            goal = goal_text(spec.objective.metric, spec.objective.direction)
            system_message = self.meta.render(variant, language=self.language, goal=goal)
            mutation["prompt_variant"] = variant.id
        messages = build_messages(
            compact=wants_compact_prompt(model),
            parent=_prompt_program(parent, "parent"),
            task_description=spec.description,
            objective_metric=spec.objective.metric,
            direction=spec.objective.direction,
            mode=spec.search.mode,
            inspirations=[_prompt_program(p, f"inspiration {i + 1}") for i, p in enumerate(inspirations)],
            previous_error=previous_error,
            system_message=system_message,
            max_code_length=spec.search.max_code_length,
            language=self.language,
        )
        if self.meta is not None and iteration % spec.llm.meta_prompt_interval == 0:
            await self._propose_variant(iteration, model, mutation)
        try:
            completion = await self.client.complete(messages, model=model, seed=iteration)
        except ReplayMiss:
            raise  # a diverged replay stops the run (exit non-zero), never a rejected reply
        except LLMError as err:
            return Child(iteration, parent, None, mutation, error=f"LLM call failed: {err}")
        if is_bundle(parent.code):
            outcome, changed = apply_bundle_reply(parent.code, completion.text, spec.search.mode)
            if changed:
                mutation["files"] = changed
        else:
            outcome = apply_reply(parent.code, completion.text, spec.search.mode)
        mutation.update(kind=outcome.kind, reply=completion.text[:20_000], cost_usd=completion.cost_usd)
        if outcome.code is None:
            return Child(iteration, parent, None, mutation, error=outcome.error or "reply did not apply")
        return Child(iteration, parent, outcome.code, mutation)
