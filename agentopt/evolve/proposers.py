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
from agentopt.evolve.materialize import materialize_targets
from agentopt.evolve.meta_prompts import META_STATE, MetaPromptArchive
from agentopt.evolve.multifile import apply_bundle_reply
from agentopt.evolve.operators import crossover_blocks, crossover_literals, extend_horner, truncate_horner
from agentopt.evolve.prompts import PromptProgram, build_messages, goal_text, language_from_path
from agentopt.evolve.proposal import Child
from agentopt.evolve.restarts import RESTART_TIME_SHARE, best_of_k, restart_hook
from agentopt.evolve.symbolic import (
    SymbolicMutationError,
    SymbolicMutator,
    block_spans,
    float_literal_sites,
    shift_ints,
)
from agentopt.llm.cache import ReplayMiss
from agentopt.llm.local_server import wants_compact_prompt
from agentopt.task import ModelSpec, TaskSpec


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
# Offline operator mix: form-changing and recombining moves are tried first with these
# probabilities (when they apply); everything else is a symbolic edit (see symbolic.py).
EXTEND_PROB = 0.08
CROSSOVER_PROB = 0.12
BLOCK_CROSSOVER_PROB = 0.05  # only with several islands and several EVOLVE-BLOCKs
SHIFT_INTS_PROB = 0.08  # zero-sum +1/-1 between two count-like ints
# Several objectives only (a cost such as an operation count is usually one of them): drop a
# Horner term, the move toward cheaper programs that extend_horner mirrors. Single-objective
# runs never take it, so their seeded trajectories are unchanged.
TRUNCATE_PROB = 0.08
# One-time form changes of a lineage (each applies once: a wrapped or materialized program no
# longer qualifies), so a small share is enough for them to be tried early and often. Their band
# starts where truncate_horner's ends in multi-objective runs and where it would start in
# single-objective ones, so neither kind of run changes its seeded moves when nothing qualifies.
BEST_OF_K_PROB = 0.04  # seeded construction -> best-of-k restarts (evaluator's restart_score)
MATERIALIZE_PROB = 0.1  # zero-argument construction -> the literal list of its output (then CMA-ES)
# Adaptive literal steps (a per-literal 1/5th success rule, as in (1+1)-ES): share of offline
# children made by them, the first step, its bounds, and the factors on success and failure
# (balanced when one move in five succeeds).
ADAPTIVE_PROB = 0.35
SIGMA_START, SIGMA_MIN, SIGMA_MAX = 0.1, 1e-12, 1.0
SIGMA_UP, SIGMA_DOWN = 2.0, 2.0 ** -0.25
SIGMA_STATE = "literal_steps"
SIGMA_KEEP = 1024  # programs whose step vectors are remembered (the most recently updated)
# Symbolic edit kinds under their short operator names (mutation["operator"]).
_OPERATOR_NAMES = {"perturb_literals": "perturb"}


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


def _trade_offs(spec: TaskSpec) -> list[tuple[str, str]]:
    """A multi-objective run's ``(metric, direction)`` pairs for the prompt's goal; [] otherwise."""
    return [(m.metric, m.direction) for m in spec.objective.metrics]


class _PlanExecute:
    """``propose`` for callers outside the pipelined controller: :meth:`plan` then :meth:`execute`.

    The split exists for the controller: ``plan`` runs synchronously when an iteration starts
    (everything that reads the store or learned state), ``execute`` does the slow part and reads
    no learned state, so iterations overlap without changing what each one decides."""

    def plan(self, **kwargs: Any) -> dict[str, Any]:
        raise NotImplementedError

    async def execute(self, plan: dict[str, Any], *, iteration: int, parent: Program) -> Child:
        raise NotImplementedError

    async def propose(
        self,
        *,
        iteration: int,
        parent: Program,
        inspirations: list[Program],
        rng: random.Random,
        previous_error: str | None,
    ) -> Child:
        plan = self.plan(
            iteration=iteration, parent=parent, inspirations=inspirations, rng=rng, previous_error=previous_error
        )
        return await self.execute(plan, iteration=iteration, parent=parent)


class SymbolicProposer(_PlanExecute):
    """Offline mutator: numeric literal perturbation and small AST edits inside EVOLVE-BLOCKs."""

    # Children are constants-tuned before they are judged unless search.tune.enabled is false.
    tune_by_default = True

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        self.mutator = SymbolicMutator()
        # Program id -> relative step per float literal (adapted in observe, in commit order).
        self._sigma: dict[str, list[float]] = {}
        self._db: ProgramDB | None = None
        # best_of_k's judge (the evaluator's restart_score, as candidate source) and the
        # functions the evaluator calls; read from the evaluator's AST once.
        self._restart_hook, self._entries = restart_hook(spec.evaluator)
        self._restart_seconds = max(1, int(spec.sandbox.timeout_s * RESTART_TIME_SHARE))

    def attach(self, db: ProgramDB) -> None:
        self._db = db
        saved = db.get_state(SIGMA_STATE, {}) or {}
        self._sigma = {str(k): [float(x) for x in v] for k, v in saved.items() if isinstance(v, list)}

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
        """Adapt the step vector of an adaptive perturbation's parent (and pass it on to an
        improving child): moved literals' steps grow on success and shrink on failure."""
        steps = child.mutation.get("steps")
        parent = child.parent
        if not isinstance(steps, dict) or parent is None:
            return
        moved = [int(i) for i in steps.get("moved", [])]
        sigma = list(self._sigma.get(parent.id) or steps.get("sigma") or [])
        if not sigma or any(not 0 <= i < len(sigma) for i in moved):
            return
        improved = _improved(self.spec, child, program)
        for i in moved:
            factor = SIGMA_UP if improved else SIGMA_DOWN
            sigma[i] = min(SIGMA_MAX, max(SIGMA_MIN, sigma[i] * factor))
        self._remember(parent.id, sigma)
        if improved and program is not None:
            self._remember(program.id, list(sigma))

    def _cross_islands(self, parent: Program, rng: random.Random) -> tuple[str, str] | None:
        """Block crossover with the best program of another island (store as of the batch start)."""
        islands = self.spec.search.num_islands
        if self._db is None or islands < 2:
            return None
        other = (parent.island + rng.randrange(1, islands)) % islands
        donor = self._db.best(island=other)
        if donor is None or not donor.ok:
            return None
        return crossover_blocks(parent.code, donor.code, rng)

    def _remember(self, pid: str, sigma: list[float]) -> None:
        self._sigma.pop(pid, None)
        self._sigma[pid] = sigma
        while len(self._sigma) > SIGMA_KEEP:
            del self._sigma[next(iter(self._sigma))]

    def state_items(self) -> dict[str, Any]:
        return {SIGMA_STATE: self._sigma}

    def meta_prompt_stats(self) -> list[dict[str, Any]]:
        return []

    async def aclose(self) -> None:
        pass

    def plan(
        self,
        *,
        iteration: int,
        parent: Program,
        inspirations: list[Program],
        rng: random.Random,
        previous_error: str | None,
    ) -> dict[str, Any]:
        """The whole mutation happens here (it is cheap and synchronous); see :meth:`LLMProposer.plan`."""
        try:
            if is_bundle(parent.code):
                code, description = self._mutate_bundle(parent.code, rng)
                operator, extra = "bundle_edit", {}
            else:
                code, description, operator, extra = self._operate(parent, inspirations, rng)
        except (SymbolicMutationError, BundleError) as err:
            return {"error": f"symbolic mutation failed: {err}"}
        return {"code": code, "mutation": {"kind": "symbolic", "operator": operator, "description": description, **extra}}

    async def execute(self, plan: dict[str, Any], *, iteration: int, parent: Program) -> Child:
        if "error" in plan:
            return Child(iteration, parent, None, {"kind": "symbolic"}, error=plan["error"])
        return Child(iteration, parent, plan["code"], dict(plan["mutation"]))

    def _operate(
        self, parent: Program, inspirations: list[Program], rng: random.Random
    ) -> tuple[str, str, str, dict[str, Any]]:
        """One offline move: ``(child code, description, operator name, extra mutation keys)``."""
        code = parent.code
        u = rng.random()
        if u < ADAPTIVE_PROB:
            n = len(float_literal_sites(code))
            sigma = self._sigma.get(parent.id) or [SIGMA_START] * n
            moved = self.mutator.perturb_adaptive(code, rng, sigma) if n and len(sigma) == n else None
            if moved is not None:
                steps = {"moved": moved[2], "sigma": [sigma[i] for i in range(n)]}
                return moved[0], moved[1], "perturb_adaptive", {"steps": steps}
        u = rng.random()
        # Where the one-time form changes' band starts (see BEST_OF_K_PROB).
        once_band = EXTEND_PROB + CROSSOVER_PROB + BLOCK_CROSSOVER_PROB + SHIFT_INTS_PROB
        once_band += TRUNCATE_PROB if self.spec.objective.is_multi else 0.0
        if u < EXTEND_PROB:
            extended = extend_horner(code, rng, block_spans(code))
            if extended is not None:
                return extended[0], extended[1], "extend_horner", {}
        elif u < EXTEND_PROB + CROSSOVER_PROB:
            for other in inspirations:
                crossed = crossover_literals(code, other.code, rng) if other.ok else None
                if crossed is not None:
                    return crossed[0], crossed[1], "crossover_literals", {}
        elif u < EXTEND_PROB + CROSSOVER_PROB + BLOCK_CROSSOVER_PROB:
            crossed = self._cross_islands(parent, rng)
            if crossed is not None:
                return crossed[0], crossed[1], "crossover_blocks", {}
        elif u < EXTEND_PROB + CROSSOVER_PROB + BLOCK_CROSSOVER_PROB + SHIFT_INTS_PROB:
            shifted = shift_ints(code, rng)
            if shifted is not None:
                return shifted[0], shifted[1], "shift_ints", {}
        elif self.spec.objective.is_multi and u < EXTEND_PROB + CROSSOVER_PROB + BLOCK_CROSSOVER_PROB + SHIFT_INTS_PROB + TRUNCATE_PROB:
            truncated = truncate_horner(code, rng, block_spans(code))
            if truncated is not None:
                return truncated[0], truncated[1], "truncate_horner", {}
        elif u < once_band + BEST_OF_K_PROB:
            wrapped = best_of_k(code, self._restart_hook, self._entries, self._restart_seconds) if self._restart_hook else None
            if wrapped is not None:
                return wrapped[0], wrapped[1], "best_of_k", {}
        elif u < once_band + BEST_OF_K_PROB + MATERIALIZE_PROB:
            targets = materialize_targets(code)
            if targets:
                name = rng.choice(targets)
                # The code changes in the sandbox (controller: materialize job) before tuning.
                return code, f"materialized {name}(): its output as free literals", "materialize", {"materialize": name}
        child, description, kind = self.mutator.mutate_with_kind(code, rng)
        return child, description, _OPERATOR_NAMES.get(kind, kind), {}

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


class LLMProposer(_PlanExecute):
    """Asks an LLM (weighted ensemble) for SEARCH/REPLACE diffs or a rewrite of the parent."""

    tune_by_default = False  # search.tune: true tunes LLM children too

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
        """Learned state the controller stores atomically with each commit (never between
        commits: a crash there reruns the iteration, which must not count rewards twice)."""
        items: dict[str, Any] = {}
        if self.bandit is not None:
            items[BANDIT_STATE] = self.bandit.to_state()
        if self.meta is not None:
            items[META_STATE] = self.meta.to_state()
        return items

    def meta_prompt_stats(self) -> list[dict[str, Any]]:
        """The prompt archive, best first (empty without ``llm.meta_prompts``)."""
        return self.meta.ranking() if self.meta is not None else []

    async def _propose_variant(
        self, iteration: int, model: Any, mutation: dict[str, Any], request: dict[str, Any]
    ) -> None:
        """Ask for a new system-prompt variant; the archive takes it in ``observe`` (in order)."""
        assert self.meta is not None
        try:
            completion = await self.client.complete(request["messages"], model=model, seed=iteration)
        except ReplayMiss:
            raise
        except (LLMError, BudgetExceeded) as err:
            mutation["meta_error"] = f"meta-prompt call failed: {err}"
            return
        text, problem = self.meta.parse_proposal(completion.text)
        if text is None:
            mutation["meta_error"] = problem
            return
        mutation.update(meta_proposal=text, meta_parents=request["parents"])

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

    def plan(
        self,
        *,
        iteration: int,
        parent: Program,
        inspirations: list[Program],
        rng: random.Random,
        previous_error: str | None,
    ) -> dict[str, Any]:
        """Every choice that reads learned state (model bandit, prompt archive) or the store,
        made synchronously when the iteration starts, as JSON: the pipelined controller persists
        it, so a resumed run sends exactly the requests the interrupted one would have sent."""
        spec = self.spec
        model = self._choose(rng)
        mutation: dict[str, Any] = {"kind": spec.search.mode, "model": model.name}
        system_message = spec.llm.system_message
        if self.meta is not None:
            variant = self.meta.choose(rng)
            goal = goal_text(spec.objective.metric, spec.objective.direction, _trade_offs(spec))
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
            trade_offs=_trade_offs(spec),
        )
        # "request": extra keyword arguments for the client (e.g. a grammar), JSON like the rest.
        plan: dict[str, Any] = {"model": model.name, "messages": messages, "mutation": mutation}
        if self.meta is not None and iteration % spec.llm.meta_prompt_interval == 0:
            goal = goal_text(spec.objective.metric, spec.objective.direction, _trade_offs(spec))
            meta_messages, parents = self.meta.proposal_messages(
                language=self.language, goal=goal, task_description=spec.description
            )
            plan["meta"] = {"messages": meta_messages, "parents": parents}
        return plan

    async def execute(self, plan: dict[str, Any], *, iteration: int, parent: Program) -> Child:
        """The LLM calls of a :meth:`plan` and the child they yield (reads no learned state)."""
        spec = self.spec
        model = self._models.get(plan["model"]) or ModelSpec(name=plan["model"])
        mutation = dict(plan["mutation"])
        if "meta" in plan:
            await self._propose_variant(iteration, model, mutation, plan["meta"])
        try:
            completion = await self.client.complete(
                plan["messages"], model=model, seed=iteration, **plan.get("request", {})
            )
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
