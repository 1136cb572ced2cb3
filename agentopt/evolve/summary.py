"""The run summary and the files a finished (or interrupted) run leaves in its folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from agentopt.evolve.bundle import is_bundle, write_bundle
from agentopt.evolve.front import FrontSummary, front_line, front_table
from agentopt.evolve.funnel import funnel_text
from agentopt.evolve.operator_stats import OperatorStats, operator_table

if TYPE_CHECKING:
    from agentopt.evolve.db import ProgramDB
    from agentopt.task import TaskSpec


class RunSummary(BaseModel):
    task: str
    run_dir: str
    objective: str
    direction: str
    initial_score: float | None = None
    best_score: float | None = None
    best_program_id: str | None = None
    best_iteration: int | None = None
    best_program_path: str | None = None
    iterations: int = 0
    programs: int = 0
    # Whole-run counts (every session of a resumed run); session_evaluations: this session only.
    evaluations: int = 0
    session_evaluations: int = 0
    failures: int = 0
    cache_hits: int = 0
    # Whole-run equivalence cache: children looked up (evaluated + reused), hits per kind
    # (exact text, normalized code, functional fingerprint) and fingerprint jobs run.
    cache_lookups: int = 0
    cache_hits_by_kind: dict[str, int] = Field(default_factory=dict)
    fingerprints: int = 0
    # Meta-prompt archive (llm.meta_prompts): one dict per variant, best first.
    meta_prompts: list[dict[str, Any]] = Field(default_factory=list)
    # Children and their outcomes per operator (the move that made them), most used first.
    operators: list[OperatorStats] = Field(default_factory=list)
    rejected_replies: int = 0
    llm_calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    wall_s: float = 0.0
    stop_reason: str = ""
    mutator: str = ""
    isolation: list[str] = Field(default_factory=list)
    # Cascade funnel, one dict per stage (agentopt.evolve.funnel.StageStats): how many
    # candidates ran, passed, were stopped or failed there, and the time stopping them saved.
    funnel: list[dict[str, Any]] = Field(default_factory=list)
    # objective.selection other than "best": what the final selection chose (best_program holds it).
    selection: dict[str, Any] | None = None
    # Several objectives: the final Pareto front (and its hypervolume for two); absent otherwise.
    front: FrontSummary | None = None

    def hit_rate(self, kind: str | None = None) -> float:
        """Fraction of looked-up children served from the cache (by ``kind``, or any kind)."""
        if self.cache_lookups <= 0:
            return 0.0
        hits = sum(self.cache_hits_by_kind.values()) if kind is None else self.cache_hits_by_kind.get(kind, 0)
        return hits / self.cache_lookups

    @property
    def improved(self) -> bool:
        if self.initial_score is None or self.best_score is None:
            return self.best_score is not None
        if self.direction == "maximize":
            return self.best_score > self.initial_score
        return self.best_score < self.initial_score


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"


def _cache_text(summary: RunSummary) -> str:
    if summary.cache_lookups <= 0:
        return str(summary.cache_hits)
    total = sum(summary.cache_hits_by_kind.values())
    kinds = ", ".join(
        f"{kind} {n} ({summary.hit_rate(kind):.0%})" for kind, n in summary.cache_hits_by_kind.items()
    )
    text = f"{total} of {summary.cache_lookups} candidates ({summary.hit_rate():.0%}): {kinds}"
    if summary.fingerprints:
        text += f"; {summary.fingerprints} fingerprint runs"
    return text


def _meta_text(summary: RunSummary) -> str | None:
    if not summary.meta_prompts:
        return None
    best = summary.meta_prompts[0]
    return (
        f"{len(summary.meta_prompts)} variants; best {best['id']} ({best['origin']}): "
        f"{best['improved']}/{best['pulls']} children improved"
    )


def _evaluations_text(summary: RunSummary) -> str:
    if summary.session_evaluations and summary.session_evaluations != summary.evaluations:
        return f"{summary.evaluations} ({summary.session_evaluations} in this session)"
    return str(summary.evaluations)


def _rejected_label(summary: RunSummary) -> str:
    """Children that never reached evaluation: LLM replies that did not apply, or (symbolic
    mutator) mutations that produced no valid program; the label says which."""
    return "rejected LLM replies" if summary.mutator.startswith("llm") else "rejected mutations"


def summary_rows(summary: RunSummary) -> list[tuple[str, str]]:
    """(label, value) rows shown by the terminal table, summary.md and the HTML report."""
    rows = [
        ("task", summary.task),
        ("objective", f"{summary.direction} {summary.objective}"),
        ("initial score", _fmt(summary.initial_score)),
        ("best score", _fmt(summary.best_score)),
        ("best program", f"{summary.best_program_id} (iteration {summary.best_iteration})"),
        ("iterations", str(summary.iterations)),
        ("evaluations", _evaluations_text(summary)),
        ("failed candidates", str(summary.failures)),
        ("equivalence-cache hits", _cache_text(summary)),
        (_rejected_label(summary), str(summary.rejected_replies)),
        ("LLM calls / tokens / cost", f"{summary.llm_calls} / {summary.tokens} / ${summary.cost_usd:.4f}"),
        ("wall time", f"{summary.wall_s:.1f} s"),
        ("mutator", summary.mutator),
        ("isolation", ", ".join(summary.isolation) or "—"),
        ("stopped because", summary.stop_reason),
    ]
    if summary.selection is not None:
        sel = summary.selection
        if sel.get("program_id"):
            prob = sel.get("probability")
            text = (f"{sel['strategy']}: {sel['program_id']} among the top {sel['candidates']} programs "
                    f"x {sel['tests']} tests" + (f" (posterior {prob:.2f})" if prob is not None else ""))
        else:
            text = f"{sel['strategy']}: {sel.get('note', '')}"
        rows.append(("final selection", text))
    meta = _meta_text(summary)
    if meta is not None:
        rows.insert(-1, ("meta-prompts", meta))
    funnel = funnel_text(summary.funnel)
    if funnel is not None:
        rows.insert(-1, ("cascade funnel", funnel))
    if summary.front is not None:
        listed = ", ".join(f"{o['direction']} {o['metric']}" for o in summary.front.objectives)
        rows[1] = ("objective", f"{listed} (best program by {summary.direction} {summary.objective})")
        rows.insert(-1, ("Pareto front", front_line(summary.front)))
    return rows


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def summary_markdown(summary: RunSummary) -> str:
    lines = [f"# agentopt run: {summary.task}", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {_md_cell(v)} |" for k, v in summary_rows(summary)]
    if summary.operators:
        header, rows = operator_table(summary.operators)
        lines += ["", "## Operators", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in rows]
    if summary.front is not None:
        header, rows = front_table(summary.front)
        lines += ["", f"## Pareto front (by {summary.front.ranked_by})", "",
                  "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]  # fmt: skip
        lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_outputs(run_dir: Path, db: ProgramDB, summary: RunSummary, spec: TaskSpec) -> None:
    """Write best_program.*, summary.json and summary.md. Safe to call repeatedly."""
    run_dir.mkdir(parents=True, exist_ok=True)
    best = db.best()
    chosen = (summary.selection or {}).get("program_id")
    if chosen:
        best = db.get(chosen) or best
    if best is not None and summary.best_program_path:
        target = Path(summary.best_program_path)
        if is_bundle(best.code):  # a multi-file candidate: a directory of its files
            if target.is_dir():
                shutil.rmtree(target)
            write_bundle(best.code, target)
        else:
            target.write_text(best.code, encoding="utf-8")
    # A single-objective run's summary.json is exactly what it always was (no "front": null).
    dumped = summary.model_dump_json(indent=2, exclude={"front"} if summary.front is None else None)
    (run_dir / "summary.json").write_text(dumped, encoding="utf-8")
    (run_dir / "summary.md").write_text(summary_markdown(summary), encoding="utf-8")
    if spec.load_warnings:
        (run_dir / "warnings.txt").write_text("\n".join(spec.load_warnings) + "\n", encoding="utf-8")


def read_summary(run_dir: Path) -> RunSummary | None:
    path = run_dir / "summary.json"
    if not path.is_file():
        return None
    return RunSummary.model_validate(json.loads(path.read_text(encoding="utf-8")))
