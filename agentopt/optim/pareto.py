"""Reflective Pareto optimizer (GEPA-like).

It keeps a pool of candidates (full assignments of the Params), each scored on every
validation example. The Pareto front holds candidates that are best on at least one example
and not dominated, so a candidate that alone solves a hard example survives even with a
poor average. Each step samples a front member (weighted by how many examples it wins),
picks one component (round-robin), runs it on a minibatch, shows the LLM the traces and
feedback, and asks for a better value of that one component. A child that beats its parent
on the minibatch is scored on the validation set and joins the pool. Optionally, every
``merge_every`` steps two front members are merged component-wise against their common
ancestor (take whichever side changed a component).
"""

from __future__ import annotations

import asyncio
import inspect
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from agentopt.optim.base import Optimizer, OptimizerError, ParamsLike, StepResult, make_client
from agentopt.optim.parse import MalformedReply, parse_suggestion
from agentopt.optim.validate import apply_values, validate_suggestions
from agentopt.trace.backward import backward
from agentopt.trace.errors import TraceError
from agentopt.trace.feedback import Feedback
from agentopt.trace.nodes import Node
from agentopt.trace.render import truncate

if TYPE_CHECKING:
    from agentopt.llm.budget import BudgetLedger
    from agentopt.llm.client import LLMClient
    from agentopt.optim.base import OptimizeRun
    from agentopt.task import LLMSpec

SYSTEM = """You improve one component of a program. You see the component's current value, then
examples of the program running with it: the trace of the computation, the output, and feedback.
Diagnose what went wrong and write an improved value for that component only.
Reply with exactly one JSON object and nothing else:
{"reasoning": "<brief diagnosis>", "suggestion": {"<component name>": <new value>}}"""


@dataclass
class Evaluation:
    """Result of running the program on one example: score, feedback text, optional output node."""

    score: float
    feedback: str = ""
    output: Node | None = None


@dataclass
class Candidate:
    id: int
    values: dict[str, Any]
    parents: tuple[int, ...]
    scores: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores) if self.scores else -math.inf


EvaluateFn = Callable[[Any], Any]


def as_evaluation(value: Any) -> Evaluation:
    """Accept an Evaluation, a number, a (score, feedback) tuple or a dict with score/text."""
    if isinstance(value, Evaluation):
        return value
    if isinstance(value, tuple) and len(value) in (2, 3):
        return Evaluation(float(value[0]), str(value[1]), value[2] if len(value) == 3 else None)
    fb = Feedback.of(value)
    if fb.score is None:
        raise OptimizerError("evaluate() must return a score (number, (score, text), or dict with 'score')")
    return Evaluation(fb.score, fb.text)


class ReflectivePareto(Optimizer):
    """GEPA-style reflective evolution with a per-example Pareto front."""

    kind = "pareto"

    def __init__(
        self,
        params: ParamsLike,
        *,
        evaluate: EvaluateFn,
        trainset: Sequence[Any],
        valset: Sequence[Any] | None = None,
        llm: LLMClient | LLMSpec | None = None,
        ledger: BudgetLedger | None = None,
        seed: int = 0,
        minibatch_size: int = 3,
        merge_every: int = 0,
        direction: Literal["maximize", "minimize"] = "maximize",
        budget_tokens: int = 6000,
        failure_score: float = 0.0,
    ) -> None:
        super().__init__(params)
        if not trainset:
            raise OptimizerError("the pareto optimizer needs a non-empty trainset")
        self.client = make_client(llm, ledger, self.kind)
        self.evaluate = evaluate
        self.trainset = list(trainset)
        self.valset = list(valset) if valset else list(trainset)
        self.rng = random.Random(seed)
        self.minibatch_size = minibatch_size
        self.merge_every = merge_every
        self.sign = 1.0 if direction == "maximize" else -1.0
        self.budget_tokens = budget_tokens
        self.failure_score = failure_score
        self.pool: list[Candidate] = []
        self._component = 0
        self.last_prompt: list[dict[str, str]] = []

    # -- evaluation -------------------------------------------------------------------------
    async def _run(self, values: dict[str, Any], examples: Sequence[Any]) -> list[Evaluation]:
        apply_values(self.named, values)
        results = []
        for ex in examples:
            try:
                if inspect.iscoroutinefunction(self.evaluate):
                    raw = await self.evaluate(ex)
                else:  # a thread: a sync workflow may itself block on LLM calls via run_sync
                    raw = await asyncio.to_thread(self.evaluate, ex)
                results.append(as_evaluation(raw))
            except TraceError as err:
                results.append(Evaluation(self.failure_score, str(err), err.node))
        return results

    def _add(self, values: dict[str, Any], parents: tuple[int, ...], evals: list[Evaluation]) -> Candidate:
        cand = Candidate(len(self.pool), dict(values), parents, [self.sign * e.score for e in evals])
        self.pool.append(cand)
        return cand

    # -- Pareto front ------------------------------------------------------------------------
    def front(self) -> list[tuple[Candidate, int]]:
        """Non-dominated candidates that are best on >= 1 example, with their win counts."""
        n = len(self.valset)
        best = [max(c.scores[i] for c in self.pool) for i in range(n)]
        wins = {c.id: sum(1 for i in range(n) if c.scores[i] >= best[i]) for c in self.pool}
        members = [c for c in self.pool if wins[c.id] > 0]

        def dominated(a: Candidate) -> bool:
            return any(all(b.scores[i] >= a.scores[i] for i in range(n)) and b.scores != a.scores
                       for b in members if b is not a)

        kept = [c for c in members if not dominated(c)]
        unique: dict[tuple[float, ...], Candidate] = {}
        for c in kept:  # identical score vectors: keep the oldest
            unique.setdefault(tuple(c.scores), c)
        return [(c, wins[c.id]) for c in unique.values()]

    def best(self) -> Candidate:
        if not self.pool:
            raise OptimizerError("no candidates yet: call step() first")
        return max(self.pool, key=lambda c: (c.mean, -c.id))

    def apply_best(self) -> Candidate:
        cand = self.best()
        apply_values(self.named, cand.values)
        return cand

    # -- steps -------------------------------------------------------------------------------
    @classmethod
    def for_run(cls, run: OptimizeRun) -> ReflectivePareto:
        spec = run.cfg.optimizer
        return cls(run.target, evaluate=run.evaluate_one, trainset=run.train, valset=run.val,
                   llm=run.client, seed=run.cfg.seed, minibatch_size=spec.batch_size,
                   merge_every=spec.merge_every, direction=run.cfg.direction,
                   budget_tokens=spec.budget_tokens, failure_score=run.cfg.failure_score)

    def iterate(self, run: OptimizeRun) -> tuple[StepResult, float]:
        """A step evaluates its own minibatch and validation set; the score is the best candidate's."""
        result = self.step()
        return result, self.sign * self.best().mean

    def apply(self, result: StepResult) -> None:
        """Leave the Params at the best candidate (``result.applied`` names the child's change)."""
        self.apply_best()

    async def propose(self) -> StepResult:
        if not self.pool:
            evals = await self._run(self.values(), self.valset)
            cand = self._add(self.values(), (), evals)
            result = await self.propose()  # seeding is not a step of its own
            result.score = result.score if result.score is not None else self.sign * cand.mean
            return result
        front = self.front()
        if self.merge_every and self.steps % self.merge_every == 0 and len(front) >= 2:
            result = await self._merge(front)
        else:
            result = await self._mutate(front)
        return result

    def _sample(self, front: list[tuple[Candidate, int]]) -> Candidate:
        cands, weights = zip(*front, strict=True)
        return self.rng.choices(cands, weights=weights, k=1)[0]

    async def _mutate(self, front: list[tuple[Candidate, int]]) -> StepResult:
        parent = self._sample(front)
        names = list(self.named)
        name = names[self._component % len(names)]
        self._component += 1
        batch = self.rng.sample(self.trainset, min(self.minibatch_size, len(self.trainset)))
        evals = await self._run(parent.values, batch)
        messages = self._reflection_prompt(name, parent, evals)
        self.last_prompt = messages
        completion = await self.client.complete(messages)
        try:
            suggestion, reasoning = parse_suggestion(completion.text)
        except MalformedReply as err:
            self.notes.append(str(err))
            return StepResult(step=self.steps, error=str(err))
        suggestion = {k: v for k, v in suggestion.items() if k == name} or suggestion
        accepted, rejected = validate_suggestions(self.named, suggestion)
        self._note_rejections(rejected)
        if name not in accepted:
            if not rejected:
                self.notes.append(f"reply did not contain a value for '{name}'")
            return StepResult(step=self.steps, rejected=rejected, reasoning=reasoning)
        child_values = {**parent.values, name: accepted[name]}
        if child_values == parent.values:
            return StepResult(step=self.steps, reasoning=reasoning, skipped="suggestion equals the parent")
        child_evals = await self._run(child_values, batch)
        before = sum(e.score for e in evals) * self.sign
        after = sum(e.score for e in child_evals) * self.sign
        if after <= before:
            return StepResult(step=self.steps, reasoning=reasoning, rejected=rejected,
                              skipped=f"child did not beat its parent on the minibatch ({after:g} <= {before:g})")
        val = await self._run(child_values, self.valset)
        child = self._add(child_values, (parent.id,), val)
        return StepResult(step=self.steps, applied={name: accepted[name]}, rejected=rejected,
                          reasoning=reasoning, score=self.sign * child.mean)

    def _reflection_prompt(self, name: str, parent: Candidate, evals: list[Evaluation]) -> list[dict[str, str]]:
        param = self.named[name]
        per = max(self.budget_tokens // max(len(evals), 1), 250)
        parts = [f"#Component '{name}' ({param.param_kind}; {param.constraint()})"
                 + (f"\n{param.description}" if param.description else ""),
                 f"#Current value\n{truncate(str(parent.values[name]), 4000)}"]
        for i, ev in enumerate(evals, 1):
            if ev.output is not None:
                body = backward(ev.output, {"score": ev.score, "text": ev.feedback}, params=[param],
                                accumulate=False).render(budget_tokens=per, names=self.names)
                if "#Code" in body and len(body.strip().splitlines()) > 3:
                    parts.append(f"## Example {i}\n{body}")
                    continue
            parts.append(f"## Example {i}\noutput: {truncate(repr(ev.output._value) if ev.output else '', 800)}"
                         f"\nscore: {ev.score:g}\nfeedback: {truncate(ev.feedback, 1200)}")
        notes = self._take_notes()
        if notes:
            parts.append("#Problems with your previous reply\n" + "\n".join(f"- {n}" for n in notes))
        parts.append(f"Write an improved value for '{name}' as the JSON object.")
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]

    def _ancestors(self, cand: Candidate) -> set[int]:
        seen: set[int] = set()
        stack = [cand.id]
        while stack:
            cid = stack.pop()
            if cid not in seen:
                seen.add(cid)
                stack.extend(self.pool[cid].parents)
        return seen

    async def _merge(self, front: list[tuple[Candidate, int]]) -> StepResult:
        a = self._sample(front)
        others = [(c, w) for c, w in front if c.id != a.id]
        b = self._sample(others)
        common = self._ancestors(a) & self._ancestors(b)
        if not common:
            return StepResult(step=self.steps, skipped="merge: no common ancestor")
        base = self.pool[max(common)]
        merged = {}
        for name in self.named:
            take_b = a.values[name] == base.values[name] and b.values[name] != base.values[name]
            merged[name] = b.values[name] if take_b else a.values[name]
        if merged in (a.values, b.values) or any(merged == c.values for c in self.pool):
            return StepResult(step=self.steps, skipped="merge: nothing new to combine")
        val = await self._run(merged, self.valset)
        child = self._add(merged, (a.id, b.id), val)
        changed = {k: v for k, v in merged.items() if v != a.values[k]}
        return StepResult(step=self.steps, applied=changed, reasoning=f"merged candidates {a.id} and {b.id}",
                          score=self.sign * child.mean)
