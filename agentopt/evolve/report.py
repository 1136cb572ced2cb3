"""`agentopt report RUN_DIR --html FILE`: one self-contained HTML file (no scripts, no CDN).

It shows the best score over iterations (inline SVG), the MAP-Elites grid of each island as a
heat map, the lineage of the best program with the diff of every step, and LLM calls and cost
per model. Every piece of candidate text is HTML-escaped: programs and feedback are data.
"""

from __future__ import annotations

import difflib
import html
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from agentopt.errors import AgentoptError
from agentopt.evolve.controller import load_task_snapshot
from agentopt.evolve.db import Program, ProgramDB
from agentopt.evolve.failures import failure_groups, failures_html, used_llm
from agentopt.evolve.meta_prompts import META_STATE, MetaPromptArchive
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


def _score_chart(programs: list[Program], maximize: bool) -> str:
    points: list[tuple[int, float]] = []
    best: float | None = None
    for p in programs:
        if p.score is None:
            continue
        if best is None or (p.score > best if maximize else p.score < best):
            best = p.score
        points.append((p.iteration, best))
    if len(points) < 1:
        return "<p class=muted>no successful evaluation yet</p>"
    w, h, pad = 900, 260, 40
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = min(ys), max(ys)
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1

    def sx(x: float) -> float:
        return pad + (x - x0) / (x1 - x0) * (w - 2 * pad)

    def sy(y: float) -> float:
        return h - pad - (y - y0) / (y1 - y0) * (h - 2 * pad)

    path = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(points))
    dots = "".join(
        f'<circle cx="{sx(p.iteration):.1f}" cy="{sy(p.score):.1f}" r="2" fill="#9ab"/>'
        for p in programs
        if p.score is not None and y0 <= p.score <= y1
    )
    return (
        f'<svg width="{w}" height="{h}" role="img" aria-label="best score over iterations">'
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#999"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#999"/>'
        f'<text x="{pad}" y="{pad - 8}" font-size="11">{y1:.6g}</text>'
        f'<text x="{pad}" y="{h - 8}" font-size="11">{y0:.6g} · iteration {x0}…{x1}</text>'
        f'{dots}<path d="{path}" fill="none" stroke="#0a6" stroke-width="2"/></svg>'
    )


def _grid_tables(db: ProgramDB, islands: int, maximize: bool) -> str:
    out: list[str] = []
    for island in range(islands):
        cells = db.grid(island)
        if not cells:
            continue
        scored = {cell: db.get(pid) for cell, pid in cells.items()}
        values = [p.score for p in scored.values() if p is not None and p.score is not None]
        lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
        dims = len(next(iter(cells)))
        xs = sorted({c[0] for c in cells})
        ys = sorted({c[1] for c in cells}) if dims > 1 else [0]
        rows = []
        for y in ys:
            tds = []
            for x in xs:
                key = (x, y) + tuple([0] * max(0, dims - 2)) if dims > 1 else (x,)
                program = scored.get(key) if key in scored else None
                if program is None or program.score is None:
                    tds.append('<td class="cell"></td>')
                    continue
                t = 0.5 if hi == lo else (program.score - lo) / (hi - lo)
                t = t if maximize else 1 - t
                color = f"hsl({int(120 * t)},70%,{75 - int(30 * t)}%)"
                tds.append(
                    f'<td class="cell" style="background:{color}" title="{_esc(program.id)} '
                    f'score {program.score:.6g}"></td>'
                )
            rows.append("<tr>" + "".join(tds) + "</tr>")
        out.append(f"<h3>island {island}: {len(cells)} occupied cells</h3><table>{''.join(rows)}</table>")
    return "".join(out) or "<p class=muted>no grid cells</p>"


def _lineage(db: ProgramDB, best: Program | None) -> str:
    if best is None:
        return "<p class=muted>no best program</p>"
    chain: list[Program] = []
    node: Program | None = best
    seen: set[str] = set()
    while node is not None and node.id not in seen:
        seen.add(node.id)
        chain.append(node)
        node = db.get(node.parent_id) if node.parent_id else None
    chain.reverse()
    parts = []
    for prev, cur in zip([None, *chain[:-1]], chain, strict=True):
        header = (
            f"<h3>iteration {cur.iteration} · {_esc(cur.id)} · score "
            f"{'—' if cur.score is None else f'{cur.score:.6g}'} · {_esc(cur.mutation.get('kind', ''))}</h3>"
        )
        if prev is None:
            body = f"<pre>{_esc(cur.code)}</pre>"
        else:
            diff = difflib.unified_diff(prev.code.splitlines(), cur.code.splitlines(), "parent", "child", lineterm="")
            lines = []
            for line in diff:
                cls = "add" if line.startswith("+") else "del" if line.startswith("-") else ""
                lines.append(f'<span class="{cls}">{_esc(line)}</span>')
            body = "<pre>" + "\n".join(lines) + "</pre>"
        if cur.feedback:
            body += f"<details><summary>evaluator feedback</summary><pre>{_esc(cur.feedback)}</pre></details>"
        parts.append(header + body)
    return "".join(parts)


def _llm_table(calls: list[dict[str, Any]]) -> str:
    if not calls:
        return "<p class=muted>no LLM calls (symbolic mutator or replay)</p>"
    per: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for call in calls:
        row = per[str(call.get("model", "?"))]
        row["calls"] += 1
        row["tokens"] += float(call.get("prompt_tokens", 0)) + float(call.get("completion_tokens", 0))
        row["cost"] += float(call.get("cost_usd", 0.0))
        row["errors"] += 1 if call.get("error") else 0
        row["cached"] += 1 if call.get("cached") else 0
    rows = "".join(
        f"<tr><td>{_esc(m)}</td><td>{int(r['calls'])}</td><td>{int(r['cached'])}</td><td>{int(r['errors'])}</td>"
        f"<td>{int(r['tokens'])}</td><td>${r['cost']:.4f}</td></tr>"
        for m, r in sorted(per.items())
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


def build_html(run_dir: Path) -> str:
    spec = load_task_snapshot(run_dir)
    summary = read_summary(run_dir)
    db_path = run_dir / "programs.db"
    if not db_path.is_file():
        raise AgentoptError(f"{run_dir}: no programs.db")
    db = ProgramDB.open(db_path, objective=spec.objective, search=spec.search)
    try:
        programs = list(db.programs(order="iteration"))
        maximize = spec.objective.direction == "maximize"
        best = db.best()
        rows_html = ""
        if summary is not None:
            for label, value in summary_rows(summary):
                rows_html += f"<tr><th>{_esc(label)}</th><td>{_esc(value)}</td></tr>"
        failures = sum(1 for p in programs if p.error)
        meta_state = db.get_state(META_STATE)
        body = [
            f"<h1>agentopt run: {_esc(spec.display_name)}</h1>",
            f"<table>{rows_html}</table>",
            f"<h2>Best score over iterations</h2>{_score_chart(programs, maximize)}",
            f"<p>{len(programs)} programs, {failures} failed.</p>",
            f"<h2>Failures and rejected children</h2>{failures_html(failure_groups(db, llm=used_llm(run_dir)))}",
            f"<h2>MAP-Elites grid</h2>{_grid_tables(db, spec.search.num_islands, maximize)}",
            f"<h2>Lineage of the best program</h2>{_lineage(db, best)}",
            f"<h2>LLM calls and cost per model</h2>{_llm_table(db.llm_calls())}",
            f"<h2>Equivalence cache</h2>{_cache_table(summary)}",
            f"<h2>Meta-prompt variants</h2>{_meta_table(meta_state)}",
            f"<h2>Task</h2><pre>{_esc(json.dumps(spec.model_dump(mode='json'), indent=2))}</pre>",
        ]
    finally:
        db.close()
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>agentopt — {_esc(spec.display_name)}</title><style>{_CSS}</style></head><body>"
        + "".join(body)
        + "</body></html>"
    )


def write_html_report(run_dir: Path, out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_html(Path(run_dir)), encoding="utf-8")
    return out
