"""Feedback: what a user says about an output (a score, text, both, or an exception)."""

from __future__ import annotations

import math
import traceback
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from agentopt.trace.errors import InvalidValue, TraceError


class Feedback(BaseModel):
    """Normalised feedback. ``score`` is higher-is-better unless the optimizer is told otherwise."""

    score: float | None = None
    text: str = ""
    error: str | None = None

    @classmethod
    def of(cls, value: Any) -> Feedback:
        """Accept a str, a number, a dict with ``score``/``text`` (or ``feedback``), an exception,
        or a Feedback; anything else is a user error reported in one line."""
        if isinstance(value, Feedback):
            return value
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
        if self.score is not None:
            parts.append(f"score: {self.score:g}")
        if self.text:
            parts.append(self.text)
        if self.error:
            parts.append(f"error:\n{self.error}")
        return "\n".join(parts) or "(no feedback given)"
