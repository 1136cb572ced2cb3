"""Why did candidates fail? Failures and rejected children, grouped by reason, with examples.

A count ("312 failed candidates") does not tell a user what to fix. Here the stored failures
(``Program.error`` / ``error_kind`` / ``output_tail``) and rejections (replies or mutations
that produced no program) are grouped by a normalized reason, so thirty "line 12: NameError"
variants become one row with a count, and each group keeps one example with the guest's
last output lines. ``agentopt report`` prints the groups; the HTML report embeds them. Both read
the run through :meth:`agentopt.evolve.runview.RunView.failure_groups` (read-only, so a running
run can be reported on).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agentopt.evolve.db import Program
from agentopt.evolve.summary import read_summary

_NUMBER = re.compile(r"(?<![A-Za-z_])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", re.IGNORECASE)
_HEX = re.compile(r"\b(?:0x)?[0-9a-f]{8,}\b", re.IGNORECASE)
_PATH = re.compile(r"(?:/[\w.-]+)+/")
_REASON_CHARS = 160
_SPACES = re.compile(r"\s+")


class FailureGroup(BaseModel):
    """One reason, how often it happened, and one example to look at."""

    source: str  # "evaluation" (the candidate ran and failed) or "rejected" (no program was produced)
    kind: str  # error_kind for evaluations (crash, timeout, ...); "reply"/"mutation" for rejections
    reason: str  # normalized: numbers -> N, hashes and directories removed
    count: int = 0
    example_iteration: int | None = None
    example_id: str | None = None
    example_error: str = ""
    example_output: str = ""  # the example's stored output tail (evaluations) or reply excerpt
    iterations: list[int] = Field(default_factory=list)  # the first few, to find them


def normalize_reason(text: str) -> str:
    """The part of an error message that is the same across candidates hitting the same problem."""
    text = _SPACES.sub(" ", text or "").strip()
    text = _PATH.sub("", text)
    text = _HEX.sub("<id>", text)
    text = _NUMBER.sub("N", text)
    return text[:_REASON_CHARS] or "no reason recorded"


def group_failures(programs: Iterable[Program], rejections: Iterable[dict[str, Any]], *, llm: bool) -> list[FailureGroup]:
    """Groups, most frequent first (ties: first seen first)."""
    groups: dict[tuple[str, str, str], FailureGroup] = {}

    def add(source: str, kind: str, error: str, iteration: int, pid: str | None, output: str) -> None:
        key = (source, kind, normalize_reason(error))
        group = groups.get(key)
        if group is None:
            group = groups[key] = FailureGroup(
                source=source, kind=kind, reason=key[2], example_iteration=iteration, example_id=pid,
                example_error=error[:2000], example_output=output,
            )
        group.count += 1
        if len(group.iterations) < 10:
            group.iterations.append(iteration)

    for program in programs:
        if program.error is None:
            continue
        if program.mutation.get("cache_hit"):
            continue  # a reused result: its original is already counted
        add("evaluation", program.error_kind or "failed", program.error, program.iteration, program.id,
            program.output_tail)
    for row in rejections:
        add("rejected", "reply" if llm else "mutation", str(row.get("reason", "")), int(row.get("iteration", 0)),
            None, str(row.get("reply_excerpt", ""))[-2000:])
    return sorted(groups.values(), key=lambda g: -g.count)


def failures_html(groups: list[FailureGroup], limit: int = 30) -> str:
    """An HTML section body (escaped: every reason and output is candidate-controlled data)."""
    if not groups:
        return "<p class=muted>no failed candidates and no rejected children</p>"
    esc = lambda text: html.escape(str(text), quote=True)  # noqa: E731
    rows = []
    for g in groups[:limit]:
        example = f"iteration {g.example_iteration}" + (f", program {g.example_id}" if g.example_id else "")
        detail = f"<pre>{esc(g.example_error)}</pre>" if g.example_error and g.example_error != g.reason else ""
        if g.example_output:
            label = "guest output (tail)" if g.source == "evaluation" else "reply (excerpt)"
            detail += f"<details><summary>{label}</summary><pre>{esc(g.example_output)}</pre></details>"
        rows.append(
            f"<tr><td>{g.count}</td><td>{esc(g.source)}</td><td>{esc(g.kind)}</td>"
            f"<td>{esc(g.reason)}{detail}</td><td>{esc(example)}</td></tr>"
        )
    more = f"<p class=muted>{len(groups) - limit} more reasons not shown</p>" if len(groups) > limit else ""
    return (
        "<table><tr><th>count</th><th>where</th><th>kind</th><th>reason (example)</th><th>example</th></tr>"
        + "".join(rows)
        + "</table>"
        + more
    )


def used_llm(run_dir: Path) -> bool:
    """Whether the run's children came from an LLM (its summary says which mutator ran)."""
    summary = read_summary(run_dir)
    return summary is not None and summary.mutator.startswith("llm")
