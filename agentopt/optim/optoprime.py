"""OptoPrime-style optimizer: show the LLM each run's subgraph and feedback, get JSON updates.

The prompt carries, per observed run, the compact rendering of the Params' minimal
subgraph (code, definitions, values, outputs, feedback) within a token budget, plus a short
memory of past steps and what followed them, plus one-line notes about any rejected value
or malformed reply from the previous step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentopt.optim.base import Optimizer, ParamsLike, StepResult, describe_params, make_client
from agentopt.optim.parse import MalformedReply, parse_suggestion
from agentopt.optim.validate import validate_suggestions
from agentopt.trace.backward import Propagation
from agentopt.trace.render import truncate

if TYPE_CHECKING:
    from agentopt.llm.budget import BudgetLedger
    from agentopt.llm.client import LLMClient
    from agentopt.optim.base import OptimizeRun
    from agentopt.task import LLMSpec

SYSTEM = """You optimize the trainable parameters of a program.
You are shown how the program ran: #Code lists each traced call, #Definitions the operations, #Params the
current values of trainable parameters, #Inputs the inputs, #Others intermediate values, #Outputs the
result, and #Feedback what the user said about that result. Change the parameters so future outputs get
better feedback.
Reply with exactly one JSON object and nothing else:
{"reasoning": "<brief reasoning>", "suggestion": {"<parameter name>": <new value>}}
Only include parameters you want to change. Respect each parameter's kind and constraint. For a code
parameter give the complete new function source, keeping its name and parameters."""


@dataclass
class MemoryEntry:
    step: int
    applied: dict[str, Any]
    outcome: str = "(not yet evaluated)"


def summarize(props: list[Propagation]) -> str:
    """One line about a batch of feedback, used to say how a past step turned out."""
    scores = [p.feedback.score for p in props if p.feedback.score is not None]
    errors = sum(1 for p in props if p.feedback.error)
    parts = [f"{len(props)} run(s)"]
    if scores:
        parts.append(f"mean score {sum(scores) / len(scores):.4g}")
    if errors:
        parts.append(f"{errors} error(s)")
    texts = [p.feedback.text for p in props if p.feedback.text]
    if texts:
        parts.append("e.g. " + truncate(texts[0].replace("\n", " "), 160))
    return ", ".join(parts)


class OptoPrime(Optimizer):
    """LLM optimizer over any Param kinds using graph-shaped feedback (Trace's OptoPrime idea)."""

    kind = "optoprime"

    def __init__(
        self,
        params: ParamsLike,
        *,
        llm: LLMClient | LLMSpec | None = None,
        ledger: BudgetLedger | None = None,
        memory: int = 5,
        max_runs: int = 6,
        budget_tokens: int = 6000,
        objective: str = "",
    ) -> None:
        super().__init__(params)
        self.client = make_client(llm, ledger, self.kind)
        self.memory_size = memory
        self.max_runs = max_runs
        self.budget_tokens = budget_tokens
        self.objective = objective
        self.memory: list[MemoryEntry] = []
        self.last_prompt: list[dict[str, str]] = []

    def _select(self, props: list[Propagation]) -> list[Propagation]:
        """Failures first (errors, then lowest scores), then the rest, up to ``max_runs``."""
        def badness(p: Propagation) -> tuple[int, float]:
            if p.feedback.error:
                return (0, 0.0)
            return (1, p.feedback.score if p.feedback.score is not None else float("inf"))

        return sorted(props, key=badness)[: self.max_runs]

    def build_messages(self, props: list[Propagation], notes: list[str]) -> list[dict[str, str]]:
        chosen = self._select(props)
        per_run = max(self.budget_tokens // max(len(chosen), 1), 250)
        params = list(self.named.values())
        parts = []
        if self.objective:
            parts.append(f"#Objective\n{self.objective}")
        parts.append("#Parameters you may change\n" + describe_params(self.named))
        for i, prop in enumerate(chosen, 1):
            parts.append(f"## Run {i} of {len(chosen)} (of {len(props)} observed)\n"
                         + prop.render(params, budget_tokens=per_run, names=self.names))
        if self.memory:
            lines = [f"step {m.step}: changed {truncate(json.dumps(m.applied, default=str), 300)} -> {m.outcome}"
                     for m in self.memory[-self.memory_size:]]
            parts.append("#Memory (previous steps, oldest first)\n" + "\n".join(lines))
        if notes:
            parts.append("#Problems with your previous reply\n" + "\n".join(f"- {n}" for n in notes))
        parts.append('Reply now with the JSON object {"reasoning": ..., "suggestion": {...}}.')
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]

    @classmethod
    def for_run(cls, run: OptimizeRun) -> OptoPrime:
        spec = run.cfg.optimizer
        return cls(run.target, llm=run.client, memory=spec.memory, budget_tokens=spec.budget_tokens,
                   objective=run.objective())

    async def propose(self) -> StepResult:
        props = self.propagations()
        if not props:
            return StepResult(step=self.steps, skipped="no feedback: call backward(output, feedback) first")
        if self.memory and self.memory[-1].outcome.startswith("(not"):
            self.memory[-1].outcome = summarize(props)
        messages = self.build_messages(props, self._take_notes())
        self.last_prompt = messages
        completion = await self.client.complete(messages)
        self.zero_feedback()
        try:
            suggestion, reasoning = parse_suggestion(completion.text)
        except MalformedReply as err:
            self.notes.append(str(err))
            return StepResult(step=self.steps, error=str(err))
        accepted, rejected = validate_suggestions(self.named, suggestion)
        self._note_rejections(rejected)
        changed = {k: v for k, v in accepted.items() if v != self.named[k]._value}
        if changed:
            self.memory.append(MemoryEntry(self.steps, changed))
        return StepResult(step=self.steps, applied=changed, rejected=rejected, reasoning=reasoning)
