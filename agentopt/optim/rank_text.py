"""Ranking-only optimization of text (and code/choice) Params: the LLM drafts k variants, a
person or a judge orders them, the winner becomes the current value.

It is the text counterpart of :mod:`agentopt.optim.rank_sgd`: there is no gradient to estimate
over text, so what is learnt from each ordering is kept as *preferences* ("A was preferred over
B, because ...") and shown to the LLM when it drafts the next variants, the way a score history
is shown to OPRO. The current value is candidate 0 by default, so a round in which no variant is
better keeps it (the ranking says so) instead of drifting.

The loop::

    opt = RankText(module, llm=llm, k=4)
    for _ in range(5):
        outs = [run(module, x) for _ in opt.each_candidate()]   # 1 LLM call drafts the variants
        backward(outs, judge.rank(outs))                          # or a TerminalRanker
        opt.step()                                                # the winner becomes current
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from agentopt.optim._sync import run_sync
from agentopt.optim.base import (
    Optimizer,
    OptimizerError,
    ParamsLike,
    StepResult,
    describe_params,
    make_client,
)
from agentopt.optim.parse import MalformedReply, _objects
from agentopt.optim.validate import apply_values, validate_suggestions
from agentopt.textsafe import fence
from agentopt.trace.feedback import Ranking
from agentopt.trace.render import truncate

if TYPE_CHECKING:
    from agentopt.llm.budget import BudgetLedger
    from agentopt.llm.client import LLMClient
    from agentopt.task import LLMSpec

SYSTEM = """You draft alternative values for some parameters of a program. A person or a judge will rank
your variants against each other; you never see scores, only which variants were preferred.
Make the variants genuinely different from each other and from the current values.
Reply with exactly one JSON object and nothing else:
{"variants": [{"<parameter name>": <value>, ...}, ...]}"""


def borda(rankings: Sequence[Ranking]) -> list[int]:
    """Aggregate several rankings of the same k candidates (Borda count; ties: lower index)."""
    k = rankings[0].k
    points = [0] * k
    for r in rankings:
        for i in range(k):
            points[i] += k - 1 - r.position(i)
    return sorted(range(k), key=lambda i: (-points[i], i))


class RankText(Optimizer):
    """Propose k variants with one LLM call, learn from how they were ranked."""

    kind = "rank_text"

    def __init__(
        self,
        params: ParamsLike,
        *,
        llm: LLMClient | LLMSpec | None = None,
        ledger: BudgetLedger | None = None,
        k: int = 4,
        include_current: bool = True,
        memory: int = 6,
        objective: str = "",
        value_chars: int = 1500,
    ) -> None:
        super().__init__(params)
        self.named = {n: p for n, p in self.named.items() if p.param_kind in ("text", "code", "choice")}
        if not self.named:
            raise OptimizerError("RankText needs at least one trainable text, code or choice Param "
                                 "(numbers: use RankSGD)")
        if k < 2:
            raise OptimizerError(f"RankText needs k >= 2 candidates, got {k}")
        self.client = make_client(llm, ledger, self.kind)
        self.k = k
        self.include_current = include_current
        self.memory = memory
        self.objective = objective
        self.value_chars = value_chars
        self.current: dict[str, Any] = self.values()
        self.pending_candidates: list[dict[str, Any]] = []
        #: (preferred values, rejected values, reason) pairs, oldest first.
        self.preferences: list[tuple[dict[str, Any], dict[str, Any], str]] = []
        self.last_prompt: list[dict[str, str]] = []

    def _show(self, values: dict[str, Any]) -> str:
        return "\n".join(f"{name}:\n{fence(truncate(str(v), self.value_chars))}" for name, v in values.items())

    def build_messages(self, wanted: int) -> list[dict[str, str]]:
        parts = []
        if self.objective:
            parts.append(f"#Objective\n{self.objective}")
        parts.append("#Parameters\n" + describe_params(self.named))
        parts.append("#Current values\n" + self._show(self.current))
        if self.preferences:
            lines = []
            for better, worse, reason in self.preferences[-self.memory:]:
                lines.append(f"- preferred\n{self._show(better)}\n  over\n{self._show(worse)}"
                             + (f"\n  reason: {truncate(reason, 300)}" if reason else ""))
            parts.append("#What the ranker preferred (oldest first)\n" + "\n".join(lines))
        notes = self._take_notes()
        if notes:
            parts.append("#Problems with your previous reply\n" + "\n".join(f"- {n}" for n in notes))
        parts.append(f"Give {wanted} variants as the JSON object.")
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]

    async def adraft(self) -> list[dict[str, Any]]:
        """Ask for the variants of this round (one LLM call); candidate 0 is the current value."""
        wanted = self.k - 1 if self.include_current else self.k
        messages = self.build_messages(wanted)
        self.last_prompt = messages
        completion = await self.client.complete(messages)
        variants: list[dict[str, Any]] = []
        try:
            found = [o["variants"] for o in _objects(completion.text) if isinstance(o, dict) and "variants" in o]
            if not found or not isinstance(found[0], list):
                raise MalformedReply("the reply had no JSON object with a 'variants' list")
            for raw in found[0][:wanted]:
                if not isinstance(raw, dict):
                    self.notes.append("each variant must be an object mapping parameter names to values")
                    continue
                accepted, rejected = validate_suggestions(self.named, raw)
                self._note_rejections(rejected)
                cand = {**self.current, **accepted}
                if accepted and cand != self.current and cand not in variants:
                    variants.append(cand)
        except MalformedReply as err:
            self.notes.append(str(err))
        cands = ([dict(self.current)] if self.include_current else []) + variants
        if len(cands) < 2:
            raise OptimizerError(f"RankText got no usable variant from the LLM ({'; '.join(self.notes[-3:])})")
        self.pending_candidates = cands
        return cands

    def draft(self) -> list[dict[str, Any]]:
        """Synchronous :meth:`adraft`."""
        return run_sync(self.adraft())

    def use(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self.pending_candidates):
            raise OptimizerError(f"candidate index {i} is outside 0..{len(self.pending_candidates) - 1}")
        apply_values(self.named, self.pending_candidates[i])
        return self.pending_candidates[i]

    def each_candidate(self) -> Iterator[int]:
        """Draft the variants if none are pending, then apply each in turn; restore current after."""
        if not self.pending_candidates:
            self.draft()
        try:
            for i in range(len(self.pending_candidates)):
                self.use(i)
                yield i
        finally:
            apply_values(self.named, self.current)

    def tell(self, rankings: Ranking | Sequence[int] | Sequence[Ranking]) -> dict[str, Any]:
        """Learn from rankings of the pending candidates: the (Borda) winner becomes current."""
        if not self.pending_candidates:
            raise OptimizerError("no candidates to rank: call draft() or each_candidate() first")
        if isinstance(rankings, Ranking) or (rankings and all(isinstance(r, int) for r in rankings)):
            rankings = [Ranking.of(rankings)]
        ranks = [Ranking.of(r) for r in rankings]
        k = len(self.pending_candidates)
        if any(r.k != k for r in ranks):
            raise OptimizerError(f"the ranking must order the {k} candidates that were proposed")
        order = borda(ranks)
        reason = next((r.text for r in ranks if r.text), "")
        best = self.pending_candidates[order[0]]
        for loser in order[1:]:
            self.preferences.append((best, self.pending_candidates[loser], reason))
        self.preferences = self.preferences[-max(self.memory * 4, 1):]
        self.current = dict(best)
        self.pending_candidates = []
        apply_values(self.named, self.current)
        return self.current

    async def propose(self) -> StepResult:
        groups: dict[int, dict[int, int]] = {}
        texts: dict[int, str] = {}
        for fb in self.pending():
            info = fb.feedback.rank
            if info is not None:
                groups.setdefault(info.group, {})[info.candidate] = info.position
                texts[info.group] = fb.feedback.text
        self.zero_feedback()
        if not groups:
            return StepResult(step=self.steps, skipped="no ranking: call backward([o_0, ..., o_k-1], ranking)")
        rankings = [Ranking(order=tuple(sorted(pos, key=pos.__getitem__)), text=texts.get(g, ""))
                    for g, pos in groups.items()]
        before = dict(self.current)
        after = self.tell(rankings)
        changed = {n: v for n, v in after.items() if before.get(n) != v}
        return StepResult(step=self.steps, applied=changed, reasoning=rankings[0].text)
