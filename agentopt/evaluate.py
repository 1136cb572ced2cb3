"""Evaluation: turn a guest evaluator's returned dict into an :class:`EvalResult`,
and run cascade stages through a sandbox backend.

The host trusts only what the guest runner sent over its result channel; numeric
metrics are validated here (finite floats), everything else becomes feedback/artifacts.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, Field

RESERVED_KEYS = {"score", "combined_score", "feedback", "artifacts", "error"}


class EvalResult(BaseModel):
    """The scored outcome of one candidate. ``error`` set means the candidate failed."""

    metrics: dict[str, float] = Field(default_factory=dict)
    score: float | None = None
    feedback: str = ""
    artifacts: dict[str, str] = Field(default_factory=dict)
    error: str | None = None
    error_kind: str | None = None
    stage: int = 0  # highest cascade stage reached (0 = single-stage evaluate())
    wall_s: float = 0.0
    isolation: list[str] = Field(default_factory=list)
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None and self.score is not None


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        f = float(value)
        return f if math.isfinite(f) else None
    return None


def result_from_value(value: dict[str, Any], metric: str = "score") -> EvalResult:
    """Map an evaluator's dict to an EvalResult.

    Score precedence: the objective ``metric`` key, then ``combined_score`` (OpenEvolve's
    convention), then ``score``, then the mean of numeric metrics.
    """
    metrics: dict[str, float] = {}
    artifacts: dict[str, str] = {}
    for key, raw in value.items():
        if key in ("feedback", "artifacts", "error"):
            continue
        num = _as_number(raw)
        if num is not None:
            metrics[str(key)] = num
        elif isinstance(raw, int | float) and not isinstance(raw, bool):
            artifacts[str(key)] = repr(raw)  # nan / inf: recorded, never a score
        else:
            artifacts[str(key)] = str(raw)[:10_000]
    raw_artifacts = value.get("artifacts")
    if isinstance(raw_artifacts, dict):
        for k, v in raw_artifacts.items():
            artifacts[str(k)] = str(v)[:10_000]
    feedback = value.get("feedback") or ""
    if not isinstance(feedback, str):
        feedback = str(feedback)
    error = value.get("error")
    score: float | None = None
    for key in (metric, "combined_score", "score"):
        if key in metrics:
            score = metrics[key]
            break
    if score is None and metrics:
        score = sum(metrics.values()) / len(metrics)
    if error:
        return EvalResult(metrics=metrics, feedback=feedback, artifacts=artifacts, error=str(error)[:2000],
                          error_kind="evaluator_error")
    if score is None:
        return EvalResult(metrics=metrics, feedback=feedback, artifacts=artifacts,
                          error=f"evaluator returned no finite numeric '{metric}'", error_kind="bad_result")
    return EvalResult(metrics=metrics, score=score, feedback=feedback[:20_000], artifacts=artifacts)
