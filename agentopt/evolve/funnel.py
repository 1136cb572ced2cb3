"""The adaptive evaluation funnel: rank-based cascade promotion and what the funnel saved.

``cascade.promote_top`` replaces (or tightens) a fixed stage threshold with a rank: after
stage ``i`` a candidate goes on only when its stage-``i`` score is among the best
``promote_top[i]`` fraction of the *recent* candidates that ran stage ``i``, as the Lion
program search did with its proxy tasks.

"Recent", precisely: the last ``cascade.rank_window`` stage-``i`` results of evaluated
candidates in iteration order (the initial program first), counting a candidate that failed
at stage ``i`` as worse than every score. The window a child is judged against is the one as
it stood when its batch started, the same rule by which children sample parents, so the
decision never depends on which evaluation of a batch finished first, and a resumed run
(which rebuilds the window from the stored programs of earlier iterations) decides exactly
as the uninterrupted one. Until a window holds ``cascade.rank_warmup`` results everyone at
that stage is promoted. Cache hits ran no stage and do not enter any window.

The cutoff for fraction ``p`` over a window of ``n`` results is the ``ceil(p * n)``-th best
score; a candidate at least as good as the cutoff is promoted (ties promote). When fewer
than ``ceil(p * n)`` results in the window are scores (many failures), there is no cutoff.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from agentopt.evolve.db import Program
from agentopt.task import CascadeSpec, Objective

# Outcomes recorded per stage by agentopt.evaluate.evaluate_program.
STOPPED, FAILED, PASSED, FINAL = "stopped", "failed", "passed", "final"


class Funnel:
    """Per-stage windows of recent stage results, and the rank cutoffs they give."""

    def __init__(self, cascade: CascadeSpec, objective: Objective) -> None:
        self.cascade = cascade
        self.objective = objective
        self._windows: dict[int, deque[float | None]] = {}

    @property
    def ranking(self) -> bool:
        """True when some stage promotes by rank (otherwise limits() is always None)."""
        return self.cascade.enabled and self.cascade.promote_top is not None

    def observe(self, program: Program | None) -> None:
        """Add an evaluated program's stage results (call in iteration order)."""
        if program is None or not self.ranking:
            return
        for record in program.stages:
            stage = int(record.get("stage", 0))
            if stage < 1:
                continue
            window = self._windows.setdefault(stage, deque(maxlen=self.cascade.rank_window))
            score = record.get("score")
            usable = record.get("outcome") != FAILED and isinstance(score, int | float) and not math.isnan(score)
            window.append(float(score) if usable else None)

    def replay(self, programs: Iterable[Program], *, before_iteration: int) -> None:
        """Rebuild the windows from stored programs of iterations before ``before_iteration``."""
        if not self.ranking:
            return
        for program in programs:
            if program.iteration < before_iteration:
                self.observe(program)

    def cutoff(self, stage: int) -> float | None:
        """The score a stage-``stage`` result must reach to be promoted (None: everyone is)."""
        fraction = self.cascade.promote_fraction(stage)
        window = self._windows.get(stage)
        if fraction is None or window is None or len(window) < self.cascade.rank_warmup:
            return None
        scores = sorted((s for s in window if s is not None), reverse=self.objective.direction == "maximize")
        keep = max(1, math.ceil(fraction * len(window) - 1e-9))
        return scores[keep - 1] if keep <= len(scores) else None

    def limits(self) -> list[float | None] | None:
        """Cutoffs after stages 1, 2, 3 (for evaluate_program's ``rank_limits``), or None."""
        if not self.ranking:
            return None
        return [self.cutoff(stage) for stage in (1, 2, 3)]

    def window_sizes(self) -> dict[int, int]:
        """How many results each stage's window holds (tests and diagnostics)."""
        return {stage: len(w) for stage, w in sorted(self._windows.items())}


class StageStats(BaseModel):
    """What one cascade stage did over a run."""

    stage: int
    function: str = ""
    ran: int = 0
    passed: int = 0
    stopped: int = 0
    failed: int = 0
    mean_wall_s: float = 0.0
    # Estimate: stopped here x the mean wall time of every later stage (None: a later stage
    # never ran, so its cost is unknown).
    saved_s: float | None = None


def funnel_stats(programs: Iterable[Program]) -> list[StageStats]:
    """Per-stage counts and the evaluation time the funnel saved, from stored programs.

    Counts only programs that were evaluated (cache hits have no stage records)."""
    stats: dict[int, StageStats] = {}
    walls: dict[int, list[float]] = {}
    for program in programs:
        for record in program.stages:
            stage = int(record.get("stage", 0))
            row = stats.setdefault(stage, StageStats(stage=stage, function=str(record.get("function", ""))))
            row.ran += 1
            outcome = record.get("outcome")
            if outcome == STOPPED:
                row.stopped += 1
            elif outcome == FAILED:
                row.failed += 1
            else:
                row.passed += 1
            walls.setdefault(stage, []).append(float(record.get("wall_s", 0.0) or 0.0))
    ordered = [stats[s] for s in sorted(stats)]
    for row in ordered:
        row.mean_wall_s = sum(walls[row.stage]) / len(walls[row.stage])
    for i, row in enumerate(ordered):
        later = ordered[i + 1 :]
        complete = bool(later) and all(r.stage == row.stage + k + 1 for k, r in enumerate(later))
        if row.stopped == 0:
            row.saved_s = 0.0
        elif complete:
            row.saved_s = row.stopped * sum(r.mean_wall_s for r in later)
    return ordered


def funnel_text(rows: list[dict[str, Any]]) -> str | None:
    """One summary line: per stage ran/stopped/failed, and the estimated time saved."""
    if not rows:
        return None
    parts = []
    saved = 0.0
    unknown = False
    for row in rows:
        parts.append(
            f"stage {row['stage']}: {row['ran']} ran, {row['stopped']} stopped, {row['failed']} failed "
            f"(mean {row['mean_wall_s']:.2f} s)"
        )
        if row.get("saved_s") is None:
            unknown = True
        else:
            saved += float(row["saved_s"])
    tail = f"~{saved:.1f} s of evaluation saved" + (" (later-stage cost unknown for some)" if unknown else "")
    return "; ".join(parts) + f"; {tail}"
