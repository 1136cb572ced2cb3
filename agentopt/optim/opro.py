"""OPRO-style optimizer: show past (values, score) pairs sorted by score, ask for a better one.

It needs only scores, not graphs, so it also works for black-box workflows. The score of the
current values is the mean score of the feedback received since the last step; a run that
raised counts as ``failure_score``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from agentopt.optim.base import Optimizer, ParamsLike, StepResult, describe_params, make_client
from agentopt.optim.parse import MalformedReply, parse_suggestion
from agentopt.optim.validate import apply_values, validate_suggestions
from agentopt.trace.render import truncate

if TYPE_CHECKING:
    from agentopt.llm.budget import BudgetLedger
    from agentopt.llm.client import LLMClient
    from agentopt.optim.base import OptimizeRun
    from agentopt.task import LLMSpec

SYSTEM = """You are an optimizer. You see earlier values of some parameters with the score each one
achieved, sorted from worst to best. Propose new values that are different from all earlier ones
and score as well as possible.
Reply with exactly one JSON object and nothing else:
{"reasoning": "<brief reasoning>", "suggestion": {"<parameter name>": <new value>}}"""


@dataclass
class Trial:
    values: dict[str, Any]
    score: float
    step: int


class OPRO(Optimizer):
    """Optimization by PROmpting: the LLM sees the scored history and proposes the next candidate."""

    kind = "opro"

    def __init__(
        self,
        params: ParamsLike,
        *,
        llm: LLMClient | LLMSpec | None = None,
        ledger: BudgetLedger | None = None,
        direction: Literal["maximize", "minimize"] = "maximize",
        history_size: int = 20,
        failure_score: float = 0.0,
        value_chars: int = 1500,
        objective: str = "",
    ) -> None:
        super().__init__(params)
        self.client = make_client(llm, ledger, self.kind)
        self.direction = direction
        self.history_size = history_size
        self.failure_score = failure_score
        self.value_chars = value_chars
        self.objective = objective
        self.history: list[Trial] = []
        self.last_prompt: list[dict[str, str]] = []

    def _ranked(self) -> list[Trial]:
        """History worst→best (the best last, closest to the question: OPRO's layout)."""
        sign = 1 if self.direction == "maximize" else -1
        ranked = sorted(self.history, key=lambda t: (sign * t.score, t.step))
        return ranked[-self.history_size:]

    def best(self) -> Trial | None:
        ranked = self._ranked()
        return ranked[-1] if ranked else None

    def _show(self, values: dict[str, Any]) -> str:
        if len(values) == 1:
            (value,) = values.values()
            return truncate(value if isinstance(value, str) else json.dumps(value, default=str), self.value_chars)
        return truncate(json.dumps(values, default=str, ensure_ascii=False), self.value_chars)

    def build_messages(self, texts: list[str], notes: list[str]) -> list[dict[str, str]]:
        better = "higher" if self.direction == "maximize" else "lower"
        parts = []
        if self.objective:
            parts.append(f"#Objective\n{self.objective}")
        parts.append("#Parameters\n" + describe_params(self.named))
        lines = [f"value:\n{self._show(t.values)}\nscore: {t.score:.4g}" for t in self._ranked()]
        parts.append(f"#Earlier values and scores ({better} is better), worst first\n" + "\n\n".join(lines))
        if texts:
            parts.append("#Feedback on the latest value\n" + "\n".join(f"- {truncate(t, 300)}" for t in texts[:5]))
        if notes:
            parts.append("#Problems with your previous reply\n" + "\n".join(f"- {n}" for n in notes))
        parts.append("Give new values different from all of the above that achieve a "
                     f"{better} score, as the JSON object.")
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]

    @classmethod
    def for_run(cls, run: OptimizeRun) -> OPRO:
        return cls(run.target, llm=run.client, direction=run.cfg.direction,
                   failure_score=run.cfg.failure_score, objective=run.objective())

    async def propose(self) -> StepResult:
        props = self.propagations()
        if not props:
            return StepResult(step=self.steps, skipped="no feedback: call backward(output, feedback) first")
        scores = [p.feedback.score if p.feedback.score is not None else self.failure_score
                  for p in props if p.feedback.score is not None or p.feedback.error]
        texts = [p.feedback.text for p in props if p.feedback.text]
        self.zero_feedback()
        if not scores:
            return StepResult(step=self.steps, skipped="OPRO needs numeric scores in the feedback")
        score = sum(scores) / len(scores)
        self.history.append(Trial(self.values(), score, self.steps))
        messages = self.build_messages(texts, self._take_notes())
        self.last_prompt = messages
        completion = await self.client.complete(messages)
        try:
            suggestion, reasoning = parse_suggestion(completion.text)
        except MalformedReply as err:
            self.notes.append(str(err))
            return StepResult(step=self.steps, error=str(err), score=score)
        accepted, rejected = validate_suggestions(self.named, suggestion)
        self._note_rejections(rejected)
        seen = [t.values for t in self.history]
        candidate = {**self.values(), **accepted}
        if accepted and candidate in seen:
            self.notes.append("your suggestion repeated an earlier value; propose something new")
        changed = {k: v for k, v in accepted.items() if v != self.named[k]._value}
        return StepResult(step=self.steps, applied=changed, rejected=rejected, reasoning=reasoning, score=score)

    def apply_best(self) -> Trial | None:
        """Set the Params to the best values seen so far (OPRO explores; keep the winner)."""
        best = self.best()
        if best is not None:
            apply_values(self.named, best.values)
        return best
