"""Terminal views of a run: `agentopt programs`, `show`, `diff` (rich output or JSON).

Presentation only: the queries are :class:`~agentopt.evolve.runview.RunView`'s (read-only,
safe on a running run). Candidate text is made inert (no escape sequences, no rich markup)
before it reaches the terminal; ``--json`` prints plain data for scripts (``jq``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from agentopt.evolve.runview import ProgramRow, RunView, format_score, unified_diff
from agentopt.textsafe import strip_control as inert  # Text() never parses markup


def _write_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def list_programs(
    console: Console,
    run_dir: Path,
    *,
    top: int,
    failed: bool,
    island: int | None,
    order: str,
    as_json: bool,
) -> None:
    view = RunView(run_dir)
    if failed and order == "score":  # failed programs have no score: the latest failures first
        order = "recent"
    rows, total = view.programs(order=order, failed=failed, island=island, limit=top)
    names = [m.metric for m in view.objective.metrics]  # several objectives: a column each
    values = view.objective_values([r.id for r in rows])
    if as_json:
        dumped = [r.model_dump(mode="json") | ({"values": values.get(r.id, {})} if names else {}) for r in rows]
        _write_json({"total": total, "programs": dumped})
        return
    what = "failed programs" if failed else "programs"
    title = f"{len(rows)} of {total} {what}" + (f" on island {island}" if island is not None else "")
    table = Table(title=title + f" (order: {order})", title_justify="left")
    scored = [view.objective.metric, *(n for n in names if n != view.objective.metric)]
    for col in ("id", "iteration", "island", "gen", *scored, "parent", "error"):
        table.add_column(inert(col), overflow="fold" if col == "error" else "ellipsis", no_wrap=col != "error")
    for r in rows:
        error = (r.error or "").strip().splitlines()[0][:120] if r.error else ""
        extra = [format_score(values.get(r.id, {}).get(n)) for n in scored[1:]]
        table.add_row(
            r.id, str(r.iteration), str(r.island), str(r.generation), format_score(r.score), *extra,
            (r.parent_id or "—")[:8], Text(inert(error), style="red"),
        )  # fmt: skip
    console.print(table)


def _lineage_line(chain: list[ProgramRow]) -> str:
    steps = [f"{r.id[:8]}({format_score(r.score)})" for r in chain[-12:]]
    return ("… → " if len(chain) > 12 else "") + " → ".join(steps)


def show_program(console: Console, run_dir: Path, ref: str, *, as_json: bool, code: bool) -> None:
    view = RunView(run_dir)
    p = view.program(ref)
    tail = view.output_tail(p.id)
    chain = view.lineage(p.id)
    if as_json:
        data = p.model_dump(mode="json")
        data["output_tail"] = tail
        data["lineage"] = [r.id for r in chain]
        _write_json(data)
        return
    table = Table(show_header=False, title=f"program {p.id}", title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    status = "ok" if p.ok else f"FAILED ({p.error_kind or 'error'})"
    mutation = {k: v for k, v in p.mutation.items() if k != "reply"}
    facts = [
        ("status", status),
        (view.objective.metric, format_score(p.score)),
        ("iteration / generation / island", f"{p.iteration} / {p.generation} / {p.island}"),
        ("parent", p.parent_id or "—"),
        ("children", str(view.children_count(p.id))),
        ("mutation", json.dumps(mutation, default=str)),
        ("metrics", ", ".join(f"{k}={format_score(v) if isinstance(v, float) else v}" for k, v in sorted(p.metrics.items())) or "—"),
        (f"lineage ({len(chain)})", _lineage_line(chain)),
    ]  # fmt: skip
    for label, value in facts:
        table.add_row(label, Text(inert(value)))
    console.print(table)
    sections = [("failure", p.error or ""), ("guest output (tail)", tail), ("evaluator feedback", p.feedback)]
    if code:
        sections.append(("code", p.code))
    for title, text in sections:
        if text:
            console.rule(title, align="left")
            console.print(Text(inert(text)), soft_wrap=True)


def diff_programs(console: Console, run_dir: Path, ref_a: str, ref_b: str) -> int:
    """Print the unified diff of two programs' code; returns 0 when equal, 1 when they differ
    (the `diff` convention, so scripts can test it)."""
    view = RunView(run_dir)
    a, b = view.program(ref_a), view.program(ref_b)
    lines = unified_diff(a.code, b.code, f"{a.id} ({format_score(a.score)})", f"{b.id} ({format_score(b.score)})")
    if not lines:
        console.print(f"{a.id} and {b.id} have the same code", highlight=False)
        return 0
    for line in lines:
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else "cyan" if line.startswith("@@") else ""
        console.print(Text(inert(line), style=style), soft_wrap=True, highlight=False)
    return 1
