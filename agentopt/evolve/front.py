"""The Pareto front of a finished (or running) multi-objective run, as the summary, the HTML
report and the dashboard show it: the front's programs with their metric values, and for two
objectives the hypervolume of the final front and how it grew over the iterations.

Built from plain rows (:class:`ObjectivePoint`, read by the store or the read-only view) with
the pure functions of :mod:`agentopt.evolve.pareto`, so it is the same wherever it is shown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from pydantic import BaseModel, Field

from agentopt.evolve.pareto import FrontIndex, front, hypervolume_2d, orient
from agentopt.task import Objective

HISTORY_POINTS = 200  # hypervolume_history: front changes measured at most (evenly thinned)
FRONT_SHOWN = 20  # front rows the terminal and the dashboard print (the report and summary.json: all)


class ObjectivePoint(NamedTuple):
    """One valid program of a multi-objective run: its objective vector in objective order."""

    program_id: str
    iteration: int
    seq: int
    score: float
    values: tuple[float, ...]


class FrontMember(BaseModel):
    program_id: str
    iteration: int
    score: float = Field(description="The scalar score (the primary metric, or the weighted sum).")
    values: dict[str, float]


class FrontSummary(BaseModel):
    """What ``summary.json`` holds under ``front`` for a run with several objectives."""

    objectives: list[dict[str, str]]
    ranked_by: str = Field(description="The scalar the members are sorted by (primary metric or weighted_sum).")
    members: list[FrontMember] = Field(default_factory=list, description="The final front, best scalar first.")
    programs: int = Field(0, description="Valid programs the front was taken over.")
    hypervolume: float | None = Field(None, description="Two objectives: area the front dominates up to the reference.")
    reference: dict[str, float] | None = None
    hypervolume_history: list[tuple[int, float]] = Field(
        default_factory=list,
        description="(iteration, hypervolume) where it grew, measured where the front changed (at most 200 points).",
    )


def reference_point(points: Sequence[ObjectivePoint], objective: Objective) -> tuple[float, ...] | None:
    """The hypervolume reference: ``objective.reference``, else the worst value of each metric
    among ``points`` (None when there are none)."""
    names = [m.metric for m in objective.metrics]
    if objective.reference is not None:
        return tuple(objective.reference[n] for n in names)
    if not points:
        return None
    worst = []
    for i, m in enumerate(objective.metrics):
        column = [p.values[i] for p in points]
        worst.append(min(column) if m.direction == "maximize" else max(column))
    return tuple(worst)


def front_members(points: Sequence[ObjectivePoint], objective: Objective) -> list[ObjectivePoint]:
    """The non-dominated points, best scalar score first (ties: earliest iteration, then seq)."""
    directions = [m.direction for m in objective.metrics]
    members = [points[i] for i in front([p.values for p in points], directions)]
    sign = -1.0 if objective.direction == "maximize" else 1.0
    return sorted(members, key=lambda p: (sign * p.score, p.iteration, p.seq))


def hypervolume_history(
    points: Sequence[ObjectivePoint], objective: Objective, reference: Sequence[float], limit: int = HISTORY_POINTS
) -> list[tuple[int, float]]:
    """(iteration, hypervolume) where the front's hypervolume grew, taking programs in iteration
    order (two objectives). Measured at the iterations where the front changed, thinned evenly
    to at most ``limit`` (plus the last) on long runs, so it costs O(N log F + limit F log F)."""
    directions = [m.direction for m in objective.metrics]
    ref = orient(reference, directions)
    ordered = [(p.iteration, p.seq, o) for p in points if (o := orient(p.values, directions)) is not None]
    ordered.sort(key=lambda t: (t[0], t[1]))
    index = FrontIndex(2)
    changed: list[int] = []
    for iteration, seq, o in ordered:
        if index.add(seq, o) is not None and (not changed or changed[-1] != iteration):
            changed.append(iteration)
    if ref is None or not changed:
        return []
    step = max(1, math.ceil(len(changed) / limit))
    checkpoints = set(changed[::step]) | {changed[-1]}
    index = FrontIndex(2)
    history: list[tuple[int, float]] = []
    for pos, (iteration, seq, o) in enumerate(ordered):
        index.add(seq, o)
        last_of_iteration = pos + 1 == len(ordered) or ordered[pos + 1][0] != iteration
        if last_of_iteration and iteration in checkpoints:
            volume = hypervolume_2d(index.points(), ("minimize", "minimize"), ref)
            if not history or volume > history[-1][1]:
                history.append((iteration, volume))
    return history


def front_summary(points: Sequence[ObjectivePoint], objective: Objective, *, history: bool = True) -> FrontSummary:
    """The front section of a multi-objective run's summary (see :class:`FrontSummary`);
    ``history=False`` skips the hypervolume history (the live dashboard, redrawn often)."""
    names = [m.metric for m in objective.metrics]
    members = front_members(points, objective)
    summary = FrontSummary(
        objectives=[{"metric": m.metric, "direction": m.direction} for m in objective.metrics],
        ranked_by=objective.metric,
        members=[
            FrontMember(program_id=p.program_id, iteration=p.iteration, score=p.score,
                        values=dict(zip(names, p.values, strict=True)))
            for p in members
        ],  # fmt: skip
        programs=len(points),
    )
    reference = reference_point(points, objective)
    if len(names) == 2 and reference is not None:
        directions = [m.direction for m in objective.metrics]
        summary.reference = dict(zip(names, reference, strict=True))
        summary.hypervolume = hypervolume_2d([p.values for p in members], directions, reference)
        if history:
            summary.hypervolume_history = hypervolume_history(points, objective, reference)
    return summary


def front_table(summary: FrontSummary, *, limit: int | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the front table (metrics, program id, iteration), as the terminal,
    summary.md, the HTML report and the dashboard print it."""
    names = [o["metric"] for o in summary.objectives]
    header = [*(f"{o['metric']} ({'max' if o['direction'] == 'maximize' else 'min'})" for o in summary.objectives),
              "program", "iteration"]  # fmt: skip
    members = summary.members if limit is None else summary.members[:limit]
    rows = [[*(f"{m.values[n]:.6g}" for n in names), m.program_id, str(m.iteration)] for m in members]
    return header, rows


def front_line(summary: FrontSummary) -> str:
    """One summary row: how many programs are on the front, and its hypervolume."""
    text = f"{len(summary.members)} of {summary.programs} valid programs"
    if summary.hypervolume is not None and summary.reference is not None:
        ref = ", ".join(f"{k} {v:.6g}" for k, v in summary.reference.items())
        text += f"; hypervolume {summary.hypervolume:.6g} (reference {ref})"
    return text
