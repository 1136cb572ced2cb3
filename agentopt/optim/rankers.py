"""Ranking interfaces: a person in the terminal, or an LLM judge, orders k candidates.

Both return a :class:`~agentopt.trace.Ranking` (best first) for ``backward([outputs], ranking)``
and the ranking optimizers. Candidate text is untrusted (it is model or program output): it is
stripped of terminal escapes before it is shown to a person and fenced before it is quoted to a
judge, so a candidate cannot rewrite the screen or pose as instructions.
"""

from __future__ import annotations

import random
import string
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from agentopt.errors import AgentoptError
from agentopt.optim._sync import run_sync
from agentopt.optim.base import make_client
from agentopt.optim.parse import _objects
from agentopt.textsafe import fence, strip_control, truncate_middle
from agentopt.trace.feedback import Ranking
from agentopt.trace.nodes import Node

if TYPE_CHECKING:
    from agentopt.llm.budget import BudgetLedger
    from agentopt.llm.client import LLMClient
    from agentopt.task import LLMSpec


class RankingError(AgentoptError):
    """No valid ranking could be obtained (input ended, or the judge never answered validly)."""


def show(candidate: Any, limit: int) -> str:
    """The text of a candidate: a node's value, else the value itself, shortened and made inert."""
    value = candidate._value if isinstance(candidate, Node) else candidate
    text = value if isinstance(value, str) else repr(value)
    return truncate_middle(strip_control(text), limit)


def labels(k: int) -> list[str]:
    """A, B, C, ... (then A1, B1, ... past 26 candidates)."""
    letters = string.ascii_uppercase
    return [letters[i % 26] + (str(i // 26) if i >= 26 else "") for i in range(k)]


def parse_order(reply: str, names: Sequence[str]) -> list[int]:
    """Turn 'B A C', 'b,a,c' or 'B > A > C' into candidate indices; raise ValueError on anything else.

    The last candidate may be left out (it can only be the worst)."""
    tokens = [t for t in reply.replace(",", " ").replace(">", " ").upper().split() if t]
    index = {n: i for i, n in enumerate(names)}
    unknown = [t for t in tokens if t not in index]
    if unknown:
        raise ValueError(f"unknown candidate {unknown[0]!r} (use {', '.join(names)})")
    order = [index[t] for t in tokens]
    if len(set(order)) != len(order):
        raise ValueError("a candidate was named twice")
    missing = [i for i in range(len(names)) if i not in order]
    if len(missing) == 1:
        order.append(missing[0])
    elif missing:
        raise ValueError(f"rank all candidates; missing {', '.join(names[i] for i in missing)}")
    return order


class TerminalRanker:
    """Ask a person to order k candidates: each is shown in a panel labelled A, B, C, ...,
    then one line such as ``B A C`` (best first) is read. A bad line is explained and asked
    again (up to ``attempts`` times); end of input is a :class:`RankingError`."""

    def __init__(self, *, console: Console | None = None, stdin: TextIO | None = None, attempts: int = 3,
                 max_chars: int = 2000) -> None:
        self.console = console or Console(stderr=True)
        self.stdin = stdin
        self.attempts = attempts
        self.max_chars = max_chars

    def _readline(self, prompt: str) -> str:
        self.console.print(prompt, end="")
        line = (self.stdin or sys.stdin).readline()
        if not line:
            raise RankingError("no ranking given (end of input)")
        return line

    def rank(self, candidates: Sequence[Any], *, question: str = "Which output is best?") -> Ranking:
        k = len(candidates)
        if k < 2:
            raise RankingError(f"ranking needs at least 2 candidates, got {k}")
        names = labels(k)
        self.console.print(Text(strip_control(question), style="bold"))
        for name, cand in zip(names, candidates, strict=True):
            self.console.print(Panel(Text(show(cand, self.max_chars)), title=f"[bold]{name}[/]", expand=False))
        for _ in range(self.attempts):
            line = self._readline(f"Rank best to worst ({' '.join(names)}): ")
            try:
                return Ranking(order=tuple(parse_order(line, names)))
            except ValueError as err:
                self.console.print(f"[red]{err}[/]")
        raise RankingError(f"no valid ranking after {self.attempts} attempts")

    async def arank(self, candidates: Sequence[Any], *, question: str = "Which output is best?") -> Ranking:
        return self.rank(candidates, question=question)


JUDGE_SYSTEM = """You are a careful judge. You see one task and several candidate outputs, each labelled
with a letter. Order ALL candidates from best to worst for the task.
Reply with exactly one JSON object and nothing else:
{"reason": "<one or two sentences>", "ranking": ["<best letter>", ..., "<worst letter>"]}"""


class LLMJudgeRanker:
    """Ask an LLM (through agentopt's LLMClient: budget, cache, retries, redaction) to order k
    candidates for ``criterion``. Candidates are shown in a seeded random order so a judge's
    position bias does not favour candidate 0; a malformed reply is fed back once per attempt."""

    def __init__(self, llm: LLMClient | LLMSpec, criterion: str, *, ledger: BudgetLedger | None = None,
                 seed: int = 0, attempts: int = 2, max_chars: int = 3000, shuffle: bool = True) -> None:
        self.client = make_client(llm, ledger, "llm judge")
        self.criterion = criterion
        self.rng = random.Random(seed)
        self.attempts = attempts
        self.max_chars = max_chars
        self.shuffle = shuffle
        self.last_messages: list[dict[str, str]] = []

    def _messages(self, shown: Sequence[Any], names: Sequence[str]) -> list[dict[str, str]]:
        parts = [f"#Task\n{self.criterion}"]
        for name, cand in zip(names, shown, strict=True):
            parts.append(f"#Candidate {name}\n{fence(show(cand, self.max_chars))}")
        parts.append(f"Rank all {len(names)} candidates ({', '.join(names)}), best first, as the JSON object.")
        return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]

    @staticmethod
    def parse(reply: str, names: Sequence[str]) -> tuple[list[int], str]:
        """The order (indices into ``names``) and the reason; ValueError explains a bad reply."""
        for obj in _objects(reply):
            if isinstance(obj, dict) and "ranking" in obj:
                ranking = obj["ranking"]
                if not isinstance(ranking, list):
                    raise ValueError("'ranking' must be a list of letters")
                reason = obj.get("reason", "")
                return parse_order(" ".join(str(x) for x in ranking), names), str(reason)[:1000]
        raise ValueError("the reply had no JSON object with a 'ranking' list")

    async def arank(self, candidates: Sequence[Any], *, question: str | None = None) -> Ranking:
        k = len(candidates)
        if k < 2:
            raise RankingError(f"ranking needs at least 2 candidates, got {k}")
        perm = list(range(k))
        if self.shuffle:
            self.rng.shuffle(perm)
        names = labels(k)
        messages = self._messages([candidates[i] for i in perm], names)
        if question:
            messages[1]["content"] = f"#Question\n{question}\n\n" + messages[1]["content"]
        problem = ""
        for _ in range(self.attempts):
            sent = messages if not problem else [*messages, {"role": "user", "content":
                                                              f"Your previous reply was invalid: {problem}. "
                                                              "Answer with the JSON object only."}]
            self.last_messages = sent
            completion = await self.client.complete(sent)
            try:
                shown_order, reason = self.parse(completion.text, names)
            except ValueError as err:
                problem = str(err)
                continue
            return Ranking(order=tuple(perm[i] for i in shown_order), text=reason)
        raise RankingError(f"the LLM judge gave no valid ranking in {self.attempts} attempts: {problem}")

    def rank(self, candidates: Sequence[Any], *, question: str | None = None) -> Ranking:
        """Synchronous :meth:`arank` (shared background loop, like ``Optimizer.step``)."""
        return run_sync(self.arank(candidates, question=question))


RankFn = Callable[[Sequence[Any]], Ranking]


def rank_by_score(score: Callable[[Any], float]) -> RankFn:
    """A ranking oracle from a scoring function (higher is better): for tests, benchmarks and
    for turning a noisy metric into a scale-free signal. Ties keep candidate order."""

    def rank(candidates: Sequence[Any]) -> Ranking:
        values = [score(c._value if isinstance(c, Node) else c) for c in candidates]
        order = sorted(range(len(values)), key=lambda i: -values[i])
        return Ranking(order=tuple(order))

    return rank


__all__ = ["LLMJudgeRanker", "RankingError", "TerminalRanker", "rank_by_score"]
