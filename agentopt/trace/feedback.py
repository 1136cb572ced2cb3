"""Feedback: what a user says about an output (a score, text, both, an exception), or about
several outputs at once: a :class:`Ranking` of k candidates, best first.

Rankings exist because a person or a judge can often order k outputs reliably when they cannot
score them; ranking optimizers (``agentopt.optim.RankSGD``) learn from the order alone.
"""

from __future__ import annotations

import itertools
import math
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from agentopt.trace.errors import InvalidValue, TraceError

_ranking_groups = itertools.count()


class Ranking(BaseModel):
    """An order over k candidates, best first: ``order[0]`` is the index of the best one.

    ``text`` is an optional reason (a judge's rationale) passed on to every candidate's feedback.
    """

    model_config = ConfigDict(frozen=True)

    order: tuple[int, ...]
    text: str = ""

    @model_validator(mode="after")
    def _permutation(self) -> Ranking:
        if len(self.order) < 2:
            raise InvalidValue(f"a ranking needs at least 2 candidates, got {len(self.order)}")
        if sorted(self.order) != list(range(len(self.order))):
            raise InvalidValue(f"a ranking must order each of the candidates 0..{len(self.order) - 1} "
                               f"exactly once, got {list(self.order)}")
        return self

    @classmethod
    def of(cls, value: Any) -> Ranking:
        """Accept a Ranking or a sequence of candidate indices, best first."""
        if isinstance(value, Ranking):
            return value
        if isinstance(value, Sequence) and not isinstance(value, str | bytes):
            if not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
                raise InvalidValue("a ranking is a list of candidate indices (ints), best first")
            return cls(order=tuple(value))
        raise InvalidValue(f"a ranking must be a Ranking or a list of candidate indices, got {type(value).__name__}")

    @property
    def k(self) -> int:
        return len(self.order)

    def position(self, candidate: int) -> int:
        """0 for the best candidate, k-1 for the worst."""
        return self.order.index(candidate)


class RankInfo(BaseModel):
    """Where one output stood in a ranking: ``position`` (0 = best) of ``of`` candidates;
    ``candidate`` is its index in the list given to ``backward``; ``group`` identifies the
    ranking (one per ``backward`` call), so an optimizer can tell rankings apart."""

    model_config = ConfigDict(frozen=True)

    position: int
    of: int
    candidate: int
    group: int


class Feedback(BaseModel):
    """Normalised feedback. ``score`` is higher-is-better unless the optimizer is told otherwise."""

    score: float | None = None
    text: str = ""
    error: str | None = None
    rank: RankInfo | None = None

    @classmethod
    def ranked(cls, ranking: Ranking) -> list[Feedback]:
        """One Feedback per candidate of ``ranking`` (in candidate order), sharing a new group id."""
        group = next(_ranking_groups)
        return [cls(text=ranking.text, rank=RankInfo(position=ranking.position(i), of=ranking.k, candidate=i,
                                                      group=group)) for i in range(ranking.k)]

    @classmethod
    def of(cls, value: Any) -> Feedback:
        """Accept a str, a number, a dict with ``score``/``text`` (or ``feedback``), an exception,
        or a Feedback; anything else is a user error reported in one line."""
        if isinstance(value, Feedback):
            return value
        if isinstance(value, Ranking):
            raise InvalidValue("a Ranking orders several outputs: pass the list of outputs, backward([o1, o2, ...], ranking)")
        if isinstance(value, str):
            return cls(text=value)
        if isinstance(value, bool):
            return cls(score=float(value))
        if isinstance(value, int | float):
            if not math.isfinite(float(value)):
                raise InvalidValue(f"feedback score must be finite, got {value!r}")
            return cls(score=float(value))
        if isinstance(value, TraceError):
            return cls(text=str(value), error=value.node.traceback)
        if isinstance(value, BaseException):
            text = "".join(traceback.format_exception(type(value), value, value.__traceback__))
            return cls(text=f"{type(value).__name__}: {value}", error=text[-6000:])
        if isinstance(value, Mapping):
            unknown = set(value) - {"score", "text", "feedback", "error"}
            if unknown:
                raise InvalidValue(f"feedback dict has unknown keys {sorted(unknown)} (use score, text, error)")
            score = value.get("score")
            if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)):
                raise InvalidValue(f"feedback 'score' must be a number, got {type(score).__name__}")
            text = value.get("text", value.get("feedback", "")) or ""
            error = value.get("error")
            return cls(score=None if score is None else float(score), text=str(text),
                       error=None if error is None else str(error))
        raise InvalidValue(f"feedback must be a str, number, dict or exception, got {type(value).__name__}")

    def render(self) -> str:
        """Compact text for prompts."""
        parts = []
        if self.rank is not None:
            parts.append(f"ranked {self.rank.position + 1} of {self.rank.of} (1 = best)")
        if self.score is not None:
            parts.append(f"score: {self.score:g}")
        if self.text:
            parts.append(self.text)
        if self.error:
            parts.append(f"error:\n{self.error}")
        return "\n".join(parts) or "(no feedback given)"
