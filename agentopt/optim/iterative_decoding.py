"""Verifier-guided iterative refinement (Iterative Agent Decoding), and best-of-N at equal budget.

Per step: sample N candidate values from the LLM (N calls), score each with a *verifier* (any
function that runs the workflow with the candidate applied and returns a score, optionally
with feedback text), and keep the best so far. The next step's N samples refine *from the best*,
and the prompt carries feedback drawn from the reward differences of the previous step: what the
best-scoring candidate changed and how much it gained over its parent, what the worst changed and
how much it lost. That contrast is the signal best-of-N never gets.

With generated (plausible) tests as the verifier, the highest score can belong to a candidate that
shares the bug a wrong test encodes. ``selection="b4"``: the verifier also returns which tests
passed (``{"score": s, "passes": [1, 0, ...]}``) and the best is chosen by B4
(:mod:`agentopt.select`) over the pass matrix of the current best and the step's candidates.

``BestOfN`` is the same loop with ``refine=False``: every sample starts from the initial values
with no feedback, so after S steps it is best-of-(N*S) at exactly the same number of LLM calls
and verifier calls, which makes the two directly comparable (``benchmarks/bench_decoding.py``).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Self

from agentopt.optim.base import (
    Optimizer,
    OptimizerError,
    OptimizeRun,
    ParamsLike,
    StepResult,
    describe_params,
    make_client,
)
from agentopt.optim.pareto import Evaluation, as_evaluation
from agentopt.optim.parse import MalformedReply, parse_suggestion
from agentopt.optim.validate import apply_values, validate_suggestions
from agentopt.select import select
from agentopt.textsafe import fence
from agentopt.trace.errors import TraceError
from agentopt.trace.render import truncate

if TYPE_CHECKING:
    from agentopt.llm.budget import BudgetLedger
    from agentopt.llm.client import LLMClient
    from agentopt.task import LLMSpec

SYSTEM = """You improve the values of some parameters of a program. You see the current best values with
the verifier's score and feedback, and, when available, how the previous candidates scored relative
to it. Propose one improved candidate.
Reply with exactly one JSON object and nothing else:
{"reasoning": "<brief reasoning>", "suggestion": {"<parameter name>": <new value>}}"""

Verify = Callable[[], Any]


@dataclass
class Scored:
    """One verified candidate: its values, score (as given), feedback, and the step that made it."""

    values: dict[str, Any]
    score: float
    feedback: str
    step: int
    passes: tuple[bool, ...] | None = None


class IterativeDecoding(Optimizer):
    """Sample N candidates per step, verify them, refine from the best with contrastive feedback."""

    kind = "iterative_decoding"

    def __init__(
        self,
        params: ParamsLike,
        *,
        verify: Verify,
        llm: LLMClient | LLMSpec | None = None,
        ledger: BudgetLedger | None = None,
        n: int = 4,
        refine: bool = True,
        direction: Literal["maximize", "minimize"] = "maximize",
        failure_score: float = 0.0,
        objective: str = "",
        value_chars: int = 3000,
        seed: int = 0,
        selection: Literal["score", "b4"] = "score",
    ) -> None:
        super().__init__(params)
        if selection not in ("score", "b4"):
            raise OptimizerError(f"unknown selection '{selection}' (use 'score' or 'b4')")
        self.selection = selection
        if n < 1:
            raise OptimizerError(f"iterative decoding needs n >= 1 samples per step, got {n}")
        self.client = make_client(llm, ledger, self.kind)
        self.verify = verify
        self.n = n
        self.refine = refine
        self.sign = 1.0 if direction == "maximize" else -1.0
        self.failure_score = failure_score
        self.objective = objective
        self.value_chars = value_chars
        self.seed = seed
        self.initial: Scored | None = None
        self.best: Scored | None = None
        self.last_step: list[Scored] = []
        self.best_before_last: Scored | None = None
        #: Every step's verified candidates, in step order.
        self.history: list[list[Scored]] = []
        self.calls = 0              # LLM calls made to propose candidates
        self.verifications = 0      # verifier runs (initial values included)
        #: (proposal calls so far, best score so far) after every step: the scaling curve.
        self.curve: list[tuple[int, float]] = []
        self.last_prompts: list[list[dict[str, str]]] = []

    # -- verification ----------------------------------------------------------------------
    async def _verify(self, values: dict[str, Any], step: int) -> Scored:
        apply_values(self.named, values)
        self.verifications += 1
        passes = None
        try:
            if inspect.iscoroutinefunction(self.verify):
                raw = await self.verify()
            else:  # a thread: a sync workflow may block on LLM calls through run_sync
                raw = await asyncio.to_thread(self.verify)
            if isinstance(raw, dict) and "passes" in raw:
                raw = dict(raw)
                passes = tuple(bool(v) for v in raw.pop("passes"))
            ev = as_evaluation(raw)
        except TraceError as err:
            ev = Evaluation(self.failure_score, str(err), err.node)
        return Scored(values, ev.score, ev.feedback, step, passes)

    def _choose(self, pool: list[Scored]) -> Scored:
        """The new best among the current best and this step's candidates."""
        rows = [s.passes for s in pool]
        if self.selection == "b4" and all(r is not None and len(r) == len(rows[0]) for r in rows) and rows[0]:
            return pool[select(rows, "b4").index]
        best = pool[0]
        for cand in pool[1:]:
            if self._better(cand, best):
                best = cand
        return best

    def _better(self, a: Scored, b: Scored | None) -> bool:
        return b is None or self.sign * a.score > self.sign * b.score

    # -- prompt ------------------------------------------------------------------------------
    def _show(self, values: dict[str, Any]) -> str:
        return "\n".join(f"## {name}\n{fence(truncate(str(v), self.value_chars))}" for name, v in values.items())

    def _changes(self, values: dict[str, Any], parent: dict[str, Any]) -> str:
        changed = {k: v for k, v in values.items() if parent.get(k) != v}
        return self._show(changed) if changed else "(no change)"

    def build_messages(self, base: Scored, i: int, notes: list[str]) -> list[dict[str, str]]:
        better = "higher" if self.sign > 0 else "lower"
        parts = []
        if self.objective:
            parts.append(f"#Objective\n{self.objective}")
        parts.append("#Parameters\n" + describe_params(self.named))
        parts.append(f"#Current best values (verifier score {base.score:.4g}; {better} is better)\n"
                     + self._show(base.values))
        if base.feedback:
            parts.append(f"#Verifier feedback on the current best\n{truncate(base.feedback, 1500)}")
        if self.refine and len(self.last_step) >= 2:
            ranked = sorted(self.last_step, key=lambda s: self.sign * s.score, reverse=True)
            top, bottom = ranked[0], ranked[-1]
            parent = self.best_before_last or base
            parts.append(
                "#What made the difference in the previous step\n"
                f"Best candidate: score {top.score:.4g} ({top.score - parent.score:+.4g} against its parent). "
                f"It changed:\n{self._changes(top.values, parent.values)}\n"
                f"Worst candidate: score {bottom.score:.4g} ({bottom.score - parent.score:+.4g}). "
                f"It changed:\n{self._changes(bottom.values, parent.values)}"
                + (f"\nFeedback on the worst: {truncate(bottom.feedback, 600)}" if bottom.feedback else ""))
        if notes:
            parts.append("#Problems with earlier replies\n" + "\n".join(f"- {n}" for n in notes))
        parts.append(f"#Sample\nThis is candidate {i + 1} of {self.n} for this step: make a change the other "
                     "candidates are unlikely to make.")
        parts.append(f"Give improved values that achieve a {better} verifier score, as the JSON object.")
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]

    # -- the step ----------------------------------------------------------------------------
    async def _propose(self, base: Scored, i: int, notes: list[str]) -> tuple[dict[str, Any] | None, str]:
        messages = self.build_messages(base, i, notes)
        self.last_prompts.append(messages)
        call = self.calls + i + 1
        completion = await self.client.complete(messages, seed=self.seed * 1_000_003 + call)
        try:
            suggestion, _ = parse_suggestion(completion.text)
        except MalformedReply as err:
            return None, str(err)
        accepted, rejected = validate_suggestions(self.named, suggestion)
        problem = "; ".join(f"'{k}': {v}" for k, v in rejected.items())
        if not accepted:
            return None, problem or "the suggestion named no parameter"
        return {**base.values, **accepted}, problem

    async def propose(self) -> StepResult:
        if self.initial is None:
            self.initial = self.best = await self._verify(self.values(), 0)
        assert self.best is not None and self.initial is not None
        base = self.best if self.refine else self.initial
        notes = self._take_notes()
        self.last_prompts = []
        # The N samples are independent: ask for them concurrently (the client caps concurrency).
        proposals = await asyncio.gather(*(self._propose(base, i, notes) for i in range(self.n)))
        self.calls += self.n
        scored: list[Scored] = []
        for values, problem in proposals:
            if problem:
                self.notes.append(problem)
            if values is None:
                continue
            scored.append(await self._verify(values, self.steps))
        self.best_before_last = self.best
        self.last_step = scored
        self.history.append(scored)
        previous = self.best
        self.best = self._choose([self.best, *scored])
        apply_values(self.named, self.best.values)
        self.curve.append((self.calls, self.best.score))
        changed = {k: v for k, v in self.best.values.items() if previous.values.get(k) != v}
        step_best = max((s.score * self.sign for s in scored), default=None)
        return StepResult(step=self.steps, applied=changed, score=None if step_best is None else self.sign * step_best,
                          error=None if scored else "no valid candidate this step",
                          reasoning=f"{len(scored)} of {self.n} candidates verified; best so far {self.best.score:.4g}")

    @classmethod
    def for_run(cls, run: OptimizeRun) -> Self:
        """Build for ``agentopt optimize``: the verifier is the workflow's mean metric on one fixed
        training minibatch of ``optimizer.batch_size`` examples (fixed, so every candidate of the
        run is judged on the same examples); ``optimizer.samples`` is N."""
        spec = run.cfg.optimizer
        batch = run.rng.sample(run.train, min(spec.batch_size, len(run.train)))

        def verify() -> tuple[float, str]:
            runs = run.run_all(batch)
            worst = sorted(runs, key=lambda r: run.sign * r.score)[:3]
            return sum(r.score for r in runs) / len(runs), "\n".join(r.feedback.text for r in worst if r.feedback.text)

        return cls(run.target, verify=verify, llm=run.client, n=spec.samples, direction=run.cfg.direction,
                   failure_score=run.cfg.failure_score, objective=run.objective(), seed=run.cfg.seed)

    def iterate(self, run: OptimizeRun) -> tuple[StepResult, float]:
        """One ``agentopt optimize`` iteration: a step (N samples, verified), then the validation
        score of the best so far, which the step left in the Params."""
        result = self.step()
        score, _ = run.val_score()
        return result, score

    def apply_best(self) -> Scored | None:
        if self.best is not None:
            apply_values(self.named, self.best.values)
        return self.best


class BestOfN(IterativeDecoding):
    """N independent samples per step from the initial values, no feedback: best-of-(N*steps)."""

    kind = "best_of_n"

    def __init__(self, params: ParamsLike, **kw: Any) -> None:
        kw["refine"] = False
        super().__init__(params, **kw)
