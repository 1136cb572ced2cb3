"""HTML pages of ``agentopt watch``: server-rendered, every candidate-written string escaped.

The pages work without JavaScript; ``/static/watch.js`` (the only script, same origin) makes
them live by polling the run's status and swapping in a freshly rendered ``#live`` section
when the store grew. Pages never embed external resources (the CSP forbids them anyway).
"""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import quote, urlencode

from agentopt.evolve.charts import grid_chart, score_chart
from agentopt.evolve.front import FRONT_SHOWN
from agentopt.evolve.report import front_html, llm_table, operators_table
from agentopt.evolve.runview import (
    ProgramRow,
    RunInfo,
    RunView,
    RunViewError,
    format_score,
    unified_diff,
)
from agentopt.textsafe import strip_control

PAGE_SIZE = 50
LINEAGE_DIFFS = 30  # steps of the best program's lineage shown with their diff (latest ones)


def esc(text: Any) -> str:
    """HTML-escape untrusted text (quotes too) and drop control characters."""
    return html.escape(strip_control(str(text)), quote=True)


def _run_base(name: str) -> str:
    return "/r/" + quote(name, safe="") + "/"


def layout(title: str, body: str, *, status_url: str | None = None, nav: str = "") -> str:
    """The page shell. ``status_url`` turns on live updates of the ``#live`` section."""
    live = f' data-status="{esc(status_url)}"' if status_url else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title>"
        '<link rel="stylesheet" href="/static/watch.css"><script src="/static/watch.js" defer></script>'
        f"</head><body{live}><header>{nav}</header><main id=\"live\">{body}</main></body></html>"
    )


def _nav(base: str, name: str, multi: bool) -> str:
    links = [("", "dashboard"), ("programs", "programs"), ("lineage", "lineage of best"), ("failures", "failures")]
    items = "".join(f'<a href="{esc(base + href)}">{esc(label)}</a>' for href, label in links)
    home = '<a href="/">all runs</a> · ' if multi else ""
    return f'<nav>{home}<strong>{esc(name)}</strong> {items}<span id="live-state"></span></nav>'


def _pid_link(base: str, pid: str | None, *, short: bool = True) -> str:
    if not pid:
        return "—"
    text = pid[:8] if short else pid
    return f'<a class="pid" href="{esc(base + "program/" + quote(pid, safe=""))}">{esc(text)}</a>'


def _kv(rows: list[tuple[str, str]]) -> str:
    """A two-column table; values are pre-rendered HTML."""
    return "<table class=kv>" + "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _state_badge(info: RunInfo) -> str:
    return f'<span class="badge {esc(info.state)}" title="{esc(info.state_detail)}">{esc(info.state)}</span>'


def _progress(info: RunInfo) -> str:
    target = f" / {info.target_iterations}" if info.target_iterations else ""
    return f'<span data-field="iteration">{info.next_iteration}</span>{esc(target)}'


def status_json(info: RunInfo) -> bytes:
    """What watch.js polls: small and cheap (no blobs read)."""
    return json.dumps(info.model_dump(mode="json")).encode()


# ---------------------------------------------------------------------------------------- pages
def dashboard(view: RunView, name: str, multi: bool) -> str:
    base = _run_base(name)
    info = view.info()
    summary = _kv([
        ("state", f"{_state_badge(info)} {esc(info.state_detail)}"),
        ("iteration", _progress(info)),
        ("programs", f'<span data-field="programs">{info.programs}</span> ({info.ok} ok, '
                     f'<a href="{esc(base)}programs?failed=1">{info.failed} failed</a>)'),
        ("objective", f"{esc(info.direction)} {esc(info.metric)}"),
        ("initial score", esc(format_score(info.initial_score))),
        ("best score", f'<span data-field="best">{esc(format_score(info.best_score))}</span> '
                       f"(iteration {esc(info.best_iteration)}, {_pid_link(base, info.best_id)})"),
        ("rejected LLM replies", f'<a href="{esc(base)}failures">{info.rejected_replies}</a>'),
        ("LLM calls / cost", f"{info.llm_calls} / ${info.cost_usd:.4f}"),
    ])  # fmt: skip
    maximize = view.maximize
    chart = score_chart(
        view.score_series(), info.metric, maximize=maximize, link=lambda pid: f"{base}program/{quote(pid, safe='')}"
    )
    grid_views = view.grids(wait=False)
    grids = (
        "".join(grid_chart(g, maximize=maximize, link=lambda pid: f"{base}program/{quote(pid, safe='')}") for g in grid_views)
        if grid_views is not None
        else '<p class="muted">replaying the store to rebuild the grids…</p>'
    )
    body = [
        f'<h1>{esc(info.name)} <span class="muted">{esc(name)}</span></h1>',
        summary,
        f"<h2>{esc(info.metric)} over iterations</h2>{chart}",
        front_html(view, link=lambda pid: f"{base}program/{quote(pid, safe='')}", limit=FRONT_SHOWN),
        f"<h2>Operators</h2>{_counting(view)}{operators_table(view.operators(wait=False))}",
        f"<h2>MAP-Elites grids</h2><div class=grids>{grids}</div>",
        f"<h2>Failures</h2>{_counting(view)}{failures_table(view, base, limit=5)}",
        f"<h2>LLM calls per model</h2>{llm_table(view.llm_usage())}",
    ]
    return layout(f"{info.name} — agentopt watch", "".join(body), status_url=base + "api/status", nav=_nav(base, info.name, multi))


def _counting(view: RunView) -> str:
    """While a big store is being folded in the background: how far it got (pages never wait)."""
    if not view.indexing:
        return ""
    return f'<p class="muted">counting… {view.folded()} of {view.info().programs} programs so far</p>'


def failures_table(view: RunView, base: str, *, limit: int | None = None) -> str:
    groups = view.failures(wait=False)
    if not groups:
        return '<p class="muted">no failed candidates</p>'
    shown = groups[:limit] if limit else groups
    rows = "".join(
        f"<tr><td>{g.count}</td><td><code>{esc(g.reason)}</code></td><td>{g.last_iteration}</td>"
        f"<td>{' '.join(_pid_link(base, pid) for pid in g.example_ids)}</td></tr>"
        for g in shown
    )
    more = (
        f'<p><a href="{esc(base)}failures">all {len(groups)} reasons</a></p>' if limit and len(groups) > limit else ""
    )
    return (
        "<table><tr><th>count</th><th>reason</th><th>last iteration</th><th>examples</th></tr>"
        f"{rows}</table>{more}"
    )


def _rows_table(base: str, rows: list[ProgramRow]) -> str:
    body = "".join(
        f"<tr class=\"{'ok' if r.ok else 'failed'}\"><td>{_pid_link(base, r.id)}</td><td>{r.iteration}</td>"
        f"<td>{r.island}</td><td>{r.generation}</td><td>{esc(format_score(r.score))}</td>"
        f"<td>{_pid_link(base, r.parent_id)}</td><td>{esc((r.error or '').splitlines()[0][:140] if r.error else '')}</td></tr>"
        for r in rows
    )
    return (
        "<table class=programs><tr><th>id</th><th>iteration</th><th>island</th><th>generation</th><th>score</th>"
        f"<th>parent</th><th>error</th></tr>{body}</table>"
    )


def programs_page(view: RunView, name: str, multi: bool, query: dict[str, str]) -> str:
    base = _run_base(name)
    order = query.get("order", "score")
    order = order if order in ("score", "iteration", "recent") else "score"
    failed = query.get("failed") == "1"
    island = int(query["island"]) if query.get("island", "").isdigit() else None
    page = max(1, int(query["page"])) if query.get("page", "").isdigit() else 1
    if query.get("it", "").isdigit() and order == "iteration":  # jump to the page of that iteration
        page = 1 + view.count_before(int(query["it"]), failed=failed, island=island) // PAGE_SIZE
    rows, total = view.programs(order=order, failed=failed, island=island, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    pages = max(1, -(-total // PAGE_SIZE))

    def href(**change: Any) -> str:
        q = {"order": order, "failed": "1" if failed else "", "island": "" if island is None else str(island), "page": page}
        q.update(change)
        return base + "programs?" + urlencode({k: v for k, v in q.items() if v not in ("", None)})

    orders = " ".join(
        f'<a href="{esc(href(order=o, page=1))}"{" class=current" if o == order else ""}>{o}</a>'
        for o in ("score", "iteration", "recent")
    )
    filt = f'<a href="{esc(href(failed="" if failed else "1", page=1))}">{"all programs" if failed else "failed only"}</a>'
    islands = " ".join(
        f'<a href="{esc(href(island=i, page=1))}"{" class=current" if i == island else ""}>{i}</a>'
        for i in range(view.search.num_islands)
    )
    pager = (
        (f'<a href="{esc(href(page=page - 1))}">← previous</a> ' if page > 1 else "")
        + f"page {page} of {pages} ({total} programs)"
        + (f' <a href="{esc(href(page=page + 1))}">next →</a>' if page < pages else "")
    )
    body = (
        f"<h1>Programs</h1><p>order: {orders} · {filt} · island: {islands} "
        f'<a href="{esc(href(island="", page=1))}">all</a></p><p class=pager>{pager}</p>'
        f"{_rows_table(base, rows)}<p class=pager>{pager}</p>"
    )
    return layout(f"programs — {name}", body, status_url=base + "api/status", nav=_nav(base, view.info().name, multi))


def diff_html(lines: list[str]) -> str:
    out = []
    for line in lines:
        cls = "add" if line.startswith("+") and not line.startswith("+++") else (
            "del" if line.startswith("-") and not line.startswith("---") else "hunk" if line.startswith("@@") else "")
        out.append(f'<span class="{cls}">{esc(line)}</span>' if cls else esc(line))
    return "<pre class=diff>" + "\n".join(out) + "</pre>" if out else '<p class="muted">no change in the code</p>'


def program_page(view: RunView, name: str, multi: bool, ref: str) -> str:
    base = _run_base(name)
    p = view.program(ref)
    try:
        parent = view.program(p.parent_id) if p.parent_id else None
    except RunViewError:  # a parent id that is not in this store (hand-edited or foreign)
        parent = None
    tail = view.output_tail(p.id)
    mutation = {k: v for k, v in p.mutation.items() if k != "reply"}
    facts = _kv([
        ("id", esc(p.id)),
        ("status", "ok" if p.ok else f'<span class="bad">failed</span> ({esc(p.error_kind or "error")})'),
        ("score", esc(format_score(p.score))),
        ("iteration / generation / island", f"{p.iteration} / {p.generation} / {p.island}"),
        ("parent", _pid_link(base, p.parent_id, short=False)),
        ("children", str(view.children_count(p.id))),
        ("mutation", f"<code>{esc(json.dumps(mutation, default=str))}</code>"),
        ("evaluation", f"stage {p.stage}, {p.wall_s:.2f} s" + (f", isolation {esc(', '.join(p.isolation))}" if p.isolation else "")),
    ])  # fmt: skip
    metrics = (
        "<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{esc(format_score(v) if isinstance(v, float) else v)}</td></tr>"
                            for k, v in sorted(p.metrics.items())) + "</table>"
        if p.metrics else '<p class="muted">no metrics</p>'
    )  # fmt: skip
    parts = [f"<h1>Program {esc(p.id[:8])}</h1>", facts, f"<h2>Metrics</h2>{metrics}"]
    if p.error:
        parts.append(f"<h2>Failure</h2><pre class=error>{esc(p.error)}</pre>")
    if tail:
        parts.append(f"<h2>Guest output (tail)</h2><pre>{esc(tail)}</pre>")
    if p.feedback:
        parts.append(f"<h2>Evaluator feedback</h2><pre>{esc(p.feedback)}</pre>")
    for key, value in sorted(p.artifacts.items()):
        parts.append(f"<details><summary>artifact {esc(key)}</summary><pre>{esc(value)}</pre></details>")
    if parent is not None:
        parts.append(f"<h2>Diff from parent {_pid_link(base, parent.id)}</h2>")
        parts.append(diff_html(unified_diff(parent.code, p.code, f"parent {parent.id[:8]}", f"this {p.id[:8]}")))
    parts.append(f"<h2>Code</h2><pre class=code>{esc(p.code)}</pre>")
    if p.mutation.get("reply"):
        parts.append(f"<details><summary>LLM reply</summary><pre>{esc(p.mutation['reply'])}</pre></details>")
    chain = view.lineage(p.id)
    steps = " → ".join(f"{_pid_link(base, r.id)} ({esc(format_score(r.score))})" for r in chain[-40:])
    parts.append(f"<h2>Lineage ({len(chain)} programs)</h2><p>{'… → ' if len(chain) > 40 else ''}{steps}</p>")
    return layout(f"program {p.id[:8]} — {name}", "".join(parts), nav=_nav(base, view.info().name, multi))


def lineage_page(view: RunView, name: str, multi: bool) -> str:
    base = _run_base(name)
    info = view.info()
    if info.best_id is None:
        body = '<p class="muted">no successful program yet</p>'
    else:
        chain = view.lineage(info.best_id)
        parts = [f"<h1>Lineage of the best program</h1><p>{len(chain)} steps from the initial program to "
                 f"{_pid_link(base, info.best_id)} (score {esc(format_score(info.best_score))}).</p>"]  # fmt: skip
        skipped = max(0, len(chain) - LINEAGE_DIFFS)
        if skipped:
            parts.append(f'<p class="muted">{skipped} earlier steps shown without their diff.</p><p>'
                         + " → ".join(_pid_link(base, r.id) for r in chain[:skipped]) + "</p>")  # fmt: skip
        prev = view.program(chain[skipped - 1].id) if skipped else None
        for row in chain[skipped:]:
            cur = view.program(row.id)
            op = cur.mutation.get("operator") or cur.mutation.get("kind", "")
            parts.append(
                f"<h3>iteration {cur.iteration} · {_pid_link(base, cur.id)} · score {esc(format_score(cur.score))}"
                f" · {esc(op)}</h3>"
            )
            if prev is None:
                parts.append(f"<pre class=code>{esc(cur.code)}</pre>")
            else:
                parts.append(diff_html(unified_diff(prev.code, cur.code, "parent", "child")))
            if cur.feedback:
                parts.append(f"<details><summary>evaluator feedback</summary><pre>{esc(cur.feedback)}</pre></details>")
            prev = cur
        body = "".join(parts)
    return layout(f"lineage — {name}", body, status_url=base + "api/status", nav=_nav(base, info.name, multi))


def failures_page(view: RunView, name: str, multi: bool) -> str:
    base = _run_base(name)
    parts = [f"<h1>Failed candidates</h1>{_counting(view)}{failures_table(view, base)}", "<h1>Rejected LLM replies</h1>"]
    groups = view.rejections()
    if not groups:
        parts.append('<p class="muted">no rejected replies</p>')
    for reason, count, examples in groups:
        parts.append(f"<h3>{count} × {esc(reason)}</h3>")
        for iteration, excerpt in examples:
            parts.append(f"<details><summary>iteration {iteration}</summary><pre>{esc(excerpt)}</pre></details>")
    return layout(f"failures — {name}", "".join(parts), status_url=base + "api/status", nav=_nav(base, view.info().name, multi))


_RUNS_NAV = '<nav><strong>agentopt watch</strong> <a href="/">all runs</a><span id="live-state"></span></nav>'


def runs_page(entries: list[tuple[str, RunInfo | None, str]]) -> str:
    """`agentopt watch runs/`: every run in the folder side by side."""
    if not entries:
        return layout(
            "agentopt watch", '<h1>Runs</h1><p class="muted">no run folders here yet</p>', status_url="/api/runs",
            nav=_RUNS_NAV,
        )
    rows = []
    for name, info, problem in entries:
        link = f'<a href="{esc(_run_base(name))}">{esc(name)}</a>'
        if info is None:
            rows.append(f'<tr><td>{link}</td><td colspan=6 class="bad">{esc(problem)}</td></tr>')
            continue
        rows.append(
            f"<tr><td>{link}</td><td>{esc(info.name)}</td><td>{_state_badge(info)}</td>"
            f"<td>{info.next_iteration}{' / ' + str(info.target_iterations) if info.target_iterations else ''}</td>"
            f"<td>{info.programs} ({info.failed} failed)</td><td>{esc(info.direction)} {esc(info.metric)}</td>"
            f"<td>{esc(format_score(info.best_score))}</td></tr>"
        )
    body = (
        "<h1>Runs</h1><table><tr><th>folder</th><th>task</th><th>state</th><th>iteration</th><th>programs</th>"
        f"<th>objective</th><th>best score</th></tr>{''.join(rows)}</table>"
    )
    return layout("agentopt watch", body, status_url="/api/runs", nav=_RUNS_NAV)


def error_page(code: int, message: str) -> str:
    return layout(f"{code}", f'<h1>{code}</h1><p>{esc(message)}</p><p><a href="/">back</a></p>')
