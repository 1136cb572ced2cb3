"""`agentopt report RUN_DIR --html FILE`: one self-contained HTML file (no scripts, no CDN).

It shows the score of every candidate and the best so far over iterations and the MAP-Elites
grid of each island (inline SVG with labelled axes, shared with ``agentopt watch``), the
per-operator counts, failures and rejected replies grouped by reason, the lineage of the best
program with the diff of every step, and LLM calls and cost per model. It reads the run through
the read-only RunView, so it also works on a running run (a snapshot that says so). Every
piece of candidate text is HTML-escaped: programs and feedback are data.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from agentopt.errors import AgentoptError
from agentopt.evolve.charts import CHART_CSS, front_chart, grid_chart, hypervolume_chart, score_chart
from agentopt.evolve.failures import failures_html
from agentopt.evolve.front import front_line, front_table
from agentopt.evolve.meta_prompts import META_STATE, MetaPromptArchive
from agentopt.evolve.runview import OperatorStats, RunInfo, RunView, format_score, unified_diff
from agentopt.evolve.summary import RunSummary, read_summary, summary_rows

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1,h2{font-weight:600} table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
pre{background:#f6f8fa;padding:.6em;overflow:auto;max-height:30em;font-size:12px}
.add{color:#116329}.del{color:#82071e}.cell{width:22px;height:22px;font-size:9px;text-align:center}
.muted{color:#777}
"""


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _lineage(view: RunView, best_id: str | None, max_diffs: int = 30) -> str:
    if best_id is None:
        return "<p class=muted>no best program</p>"
    chain = view.lineage(best_id)
    skipped = max(0, len(chain) - max_diffs)
    parts = [f"<p class=muted>{skipped} earlier steps not shown.</p>"] if skipped else []
    prev = view.program(chain[skipped - 1].id) if skipped else None
    for row in chain[skipped:]:
        cur = view.program(row.id)
        header = (
            f"<h3>iteration {cur.iteration} · {_esc(cur.id)} · score "
            f"{format_score(cur.score)} · {_esc(cur.mutation.get('operator') or cur.mutation.get('kind', ''))}</h3>"
        )
        if prev is None:
            body = f"<pre>{_esc(cur.code)}</pre>"
        else:
            lines = []
            for line in unified_diff(prev.code, cur.code, "parent", "child"):
                cls = "add" if line.startswith("+") else "del" if line.startswith("-") else ""
                lines.append(f'<span class="{cls}">{_esc(line)}</span>')
            body = "<pre>" + "\n".join(lines) + "</pre>"
        if cur.feedback:
            body += f"<details><summary>evaluator feedback</summary><pre>{_esc(cur.feedback)}</pre></details>"
        parts.append(header + body)
        prev = cur
    return "".join(parts)


def llm_table(usage: list[dict[str, Any]]) -> str:
    """LLM calls, cached, errors, tokens and cost per model (shared with the watch dashboard)."""
    if not usage:
        return "<p class=muted>no LLM calls (symbolic mutator or replay)</p>"
    rows = "".join(
        f"<tr><td>{_esc(u['model'])}</td><td>{u['calls']}</td><td>{u['cached']}</td><td>{u['errors']}</td>"
        f"<td>{u['tokens']}</td><td>${u['cost_usd']:.4f}</td></tr>"
        for u in usage
    )
    return (
        "<table><tr><th>model</th><th>calls</th><th>cached</th><th>errors</th><th>tokens</th><th>cost</th></tr>"
        f"{rows}</table>"
    )


def _cache_table(summary: RunSummary | None) -> str:
    if summary is None or summary.cache_lookups <= 0:
        return "<p class=muted>no cache lookups recorded</p>"
    rows = "".join(
        f"<tr><td>{_esc(kind)}</td><td>{n}</td><td>{summary.hit_rate(kind):.1%}</td></tr>"
        for kind, n in summary.cache_hits_by_kind.items()
    )
    return (
        f"<p>{summary.cache_lookups} candidates looked up, {summary.fingerprints} fingerprint runs.</p>"
        f"<table><tr><th>kind</th><th>hits</th><th>hit rate</th></tr>{rows}</table>"
    )


def _meta_table(state: dict[str, Any] | None) -> str:
    if not state:
        return "<p class=muted>meta-prompt evolution was off (llm.meta_prompts)</p>"
    archive = MetaPromptArchive()
    archive.load_state(state)
    rows = "".join(
        f"<tr><td>{_esc(r['id'])}</td><td>{_esc(r['origin'])}</td><td>{r['improved']}/{r['pulls']}</td>"
        f"<td>{_esc(', '.join(r['parents']) or '—')}</td><td><pre>{_esc(r['text'])}</pre></td></tr>"
        for r in archive.ranking()
    )
    return (
        "<table><tr><th>variant</th><th>origin</th><th>children improved</th><th>from</th><th>system prompt</th></tr>"
        f"{rows}</table>"
    )


def _snapshot_rows(info: RunInfo) -> list[tuple[str, str]]:
    """Summary rows of a run without summary.json (still running, or killed), from the store."""
    return [
        ("task", info.name),
        ("state", f"{info.state}: {info.state_detail}"),
        ("objective", f"{info.direction} {info.metric}"),
        ("initial score", format_score(info.initial_score)),
        ("best score", format_score(info.best_score)),
        ("best program", f"{info.best_id} (iteration {info.best_iteration})"),
        ("iterations", f"{info.next_iteration}" + (f" of {info.target_iterations}" if info.target_iterations else "")),
        ("programs", f"{info.programs} ({info.failed} failed)"),
        ("rejected LLM replies", str(info.rejected_replies)),
        ("LLM calls / cost", f"{info.llm_calls} / ${info.cost_usd:.4f}"),
    ]


def report_rows(run_dir: Path, view: RunView | None = None) -> tuple[list[tuple[str, str]], RunInfo]:
    """(label, value) rows of a run and its live info: summary.json's rows for a finished run,
    a snapshot from the store (saying the run is still going) otherwise."""
    view = view or RunView(run_dir)
    info = view.info()
    summary = read_summary(run_dir)
    if summary is None or info.state != "finished":
        return _snapshot_rows(info), info
    return summary_rows(summary), info


def front_html(view: RunView, *, link: Any = None, limit: int | None = None) -> str:
    """Several objectives: the front's size and hypervolume, the scatter of every valid program
    with the front highlighted, the front table (best scalar first) and, in the report, the
    hypervolume over the iterations; "" for one objective. Shared by the HTML report and the
    watch dashboard (which passes a row ``limit`` and skips the history: it redraws often)."""
    points = view.objective_points()
    front = view.front(points, history=limit is None)
    if front is None:
        return ""
    growth = ""
    if front.hypervolume_history:
        last = max((p.iteration for p in points), default=0)
        growth = f"<h3>Hypervolume over iterations</h3>{hypervolume_chart(front.hypervolume_history, last)}"
    header, rows = front_table(front, limit=limit)
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    cells = []
    for row in rows:
        pid = row[-2]
        shown = f'<a href="{_esc(link(pid))}">{_esc(pid)}</a>' if link else _esc(pid)
        cells.append("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row[:-2]) + f"<td>{shown}</td><td>{_esc(row[-1])}</td></tr>")
    more = len(front.members) - len(rows)
    tail = f"<p class=muted>{more} more front members in summary.json</p>" if more > 0 else ""
    return (
        f"<h2>Pareto front (by {_esc(front.ranked_by)})</h2><p>{_esc(front_line(front))}</p>"
        f"{front_chart(points, front, link=link)}<table><tr>{head}</tr>{''.join(cells)}</table>{tail}{growth}"
    )


def operators_table(ops: dict[str, OperatorStats]) -> str:
    """Per-operator children, failures, improvements over the parent and new bests (shared
    with the watch dashboard)."""
    if not ops:
        return "<p class=muted>no children yet</p>"
    rows = "".join(
        f"<tr><td>{_esc(op)}</td><td>{s.children}</td><td>{s.failed}</td><td>{s.improved}</td>"
        f"<td>{s.improved / s.children:.0%}</td><td>{s.new_best}</td></tr>"
        for op, s in ops.items()
    )
    return (
        "<table><tr><th>operator</th><th>children</th><th>failed</th><th>better than parent</th>"
        f"<th>rate</th><th>new best</th></tr>{rows}</table>"
    )


def build_html(run_dir: Path) -> str:
    """The report of a finished or running run, read through the read-only RunView (never
    reopening the store for writing, so it is safe while the run goes on)."""
    run_dir = Path(run_dir)
    if not (run_dir / "programs.db").is_file():
        raise AgentoptError(f"{run_dir}: no programs.db")
    view = RunView(run_dir)
    try:
        rows, info = report_rows(run_dir, view)
        summary = read_summary(run_dir) if info.state == "finished" else None
        rows_html = "".join(f"<tr><th>{_esc(label)}</th><td>{_esc(value)}</td></tr>" for label, value in rows)
        maximize = view.maximize
        grids = "".join(grid_chart(g, maximize=maximize) for g in view.grids())
        still = (
            f"<p><strong>Snapshot of a {_esc(info.state)} run</strong> ({_esc(info.state_detail)}).</p>"
            if info.state != "finished" else ""
        )  # fmt: skip
        body = [
            f"<h1>agentopt run: {_esc(info.name)}</h1>",
            still,
            f"<table>{rows_html}</table>",
            f"<h2>{_esc(info.metric)} over iterations</h2>{score_chart(view.score_series(), info.metric, maximize=maximize)}",
            f"<p>{info.programs} programs, {info.failed} failed.</p>",
            front_html(view),
            f"<h2>MAP-Elites grid</h2><div>{grids or '<p class=muted>no grid cells</p>'}</div>",
            f"<h2>Operators</h2>{operators_table(view.operators())}",
            f"<h2>Failures and rejected children</h2>{failures_html(view.failure_groups())}",
            f"<h2>Lineage of the best program</h2>{_lineage(view, info.best_id)}",
            f"<h2>LLM calls and cost per model</h2>{llm_table(view.llm_usage())}",
            f"<h2>Equivalence cache</h2>{_cache_table(summary)}",
            f"<h2>Meta-prompt variants</h2>{_meta_table(view.state(META_STATE))}",
            f"<h2>Task</h2><pre>{_esc(json.dumps(view.task, indent=2))}</pre>",
        ]
    finally:
        view.close()
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>agentopt — {_esc(info.name)}</title><style>{_CSS}{CHART_CSS}</style></head><body>"
        + "".join(body)
        + "</body></html>"
    )


def write_html_report(run_dir: Path, out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_html(Path(run_dir)), encoding="utf-8")
    return out
