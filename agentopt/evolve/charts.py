"""Hand-written SVG charts with real axes (ticks, tick labels, axis titles).

Why not a plotting library: the charts must work offline under a strict Content-Security-Policy
(no scripts, no CDN) and inside a single self-contained HTML file, and two chart kinds (a
scatter + step line, a heat-map grid) do not justify matplotlib's import cost or an extra
dependency. Every number is formatted here and every label is XML-escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable

from agentopt.evolve.front import FrontSummary, ObjectivePoint
from agentopt.evolve.runview import GridView, ScoreSeries

W, H = 900, 300
MAX_STEP_DOTS = 200
MAX_SCATTER_DOTS = 4000  # front scatter: dominated programs beyond this are thinned evenly
PAD_L, PAD_R, PAD_T, PAD_B = 64, 16, 26, 44


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def nice_ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k steps) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, target)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = first
    while v <= hi + step * 1e-9 and len(ticks) < 50:
        ticks.append(0.0 if abs(v) < step * 1e-9 else v)
        v += step
    return ticks


def fmt_tick(v: float) -> str:
    if v == int(v) and abs(v) < 1e7:
        return str(int(v))
    return f"{v:.4g}"


def _axes(
    sx: Callable[[float], float],
    sy: Callable[[float], float],
    xt: list[float],
    yt: list[float],
    x_title: str,
    y_title: str,
    *,
    w: int = W,
    h: int = H,
) -> str:
    """Frame, grid lines, ticks with labels and both axis titles."""
    x_axis_y = h - PAD_B
    parts = [
        f'<rect x="{PAD_L}" y="{PAD_T}" width="{w - PAD_L - PAD_R}" height="{h - PAD_T - PAD_B}" '
        f'fill="none" stroke="#888"/>'
    ]
    for t in xt:
        x = sx(t)
        parts.append(
            f'<line x1="{x:.1f}" y1="{x_axis_y}" x2="{x:.1f}" y2="{x_axis_y + 5}" stroke="#555"/>'
            f'<text x="{x:.1f}" y="{x_axis_y + 17}" text-anchor="middle" class="tick">{_esc(fmt_tick(t))}</text>'
        )
    for t in yt:
        y = sy(t)
        parts.append(
            f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{w - PAD_R}" y2="{y:.1f}" stroke="#eee"/>'
            f'<line x1="{PAD_L - 5}" y1="{y:.1f}" x2="{PAD_L}" y2="{y:.1f}" stroke="#555"/>'
            f'<text x="{PAD_L - 8}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_esc(fmt_tick(t))}</text>'
        )
    parts.append(
        f'<text x="{(PAD_L + w - PAD_R) / 2:.0f}" y="{h - 6}" text-anchor="middle" class="axis">{_esc(x_title)}</text>'
        f'<text transform="translate(14,{(PAD_T + h - PAD_B) / 2:.0f}) rotate(-90)" text-anchor="middle" '
        f'class="axis">{_esc(y_title)}</text>'
    )
    return "".join(parts)


# Text styling lives in the page's stylesheet (CHART_CSS), never in a <style> element or a
# style attribute inside the SVG: the watch pages allow styles from their own origin only.
CHART_CSS = (
    ".tick{font:11px system-ui,sans-serif;fill:#333}.axis{font:12px system-ui,sans-serif;fill:#111}"
    ".legend{font:11px system-ui,sans-serif;fill:#333}figure.grid{display:inline-block;margin:0 1em 1em 0}"
)


def score_chart(series: ScoreSeries, metric: str, *, maximize: bool, link: Callable[[str], str] | None = None) -> str:
    """Every candidate (points, or a density grid on big runs) plus the best-so-far line;
    ``link(program_id)`` makes each improvement's dot a link to that program."""
    if series.count == 0:
        return '<p class="muted">no successful evaluation yet</p>'
    x0, x1 = series.x_range
    y0, y1 = series.y_range
    if x1 <= x0:
        x1 = x0 + 1
    if y1 <= y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    margin = (y1 - y0) * 0.04
    y0, y1 = y0 - margin, y1 + margin
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def sx(x: float) -> float:
        return PAD_L + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return PAD_T + ph - (y - y0) / (y1 - y0) * ph

    body: list[str] = []
    if series.points:
        body.extend(
            f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.2" fill="#7a9cc6" fill-opacity=".65"/>'
            for x, y in series.points
        )
        what = f"{series.count} candidates"
    else:
        nx, ny = series.bins
        top = max(c for _, _, c in series.density)
        cw, ch = pw / nx, ph / ny
        for bx, by, c in series.density:
            alpha = 0.15 + 0.85 * math.log1p(c) / math.log1p(top)
            body.append(
                f'<rect x="{PAD_L + bx * cw:.1f}" y="{PAD_T + ph - (by + 1) * ch:.1f}" width="{cw + 0.3:.1f}" '
                f'height="{ch + 0.3:.1f}" fill="#4a78b0" fill-opacity="{alpha:.2f}"><title>{c} candidates</title></rect>'
            )
        what = f"{series.count} candidates (density, darker = more)"
    steps = series.best_steps
    if steps:
        # One vertex per pixel column is all a 900-px chart can show: a run with 30k
        # improvements draws ~900 vertices, not 30k.
        d = [f"M{sx(steps[0][0]):.1f},{sy(steps[0][1]):.1f}"]
        last_px = None
        for x, y in steps[1:]:
            px = round(sx(x))
            if px == last_px:
                d[-1] = f"V{sy(y):.1f}"
            else:
                d.append(f"H{sx(x):.1f}V{sy(y):.1f}")
            last_px = px
        d.append(f"H{sx(x1):.1f}")
        body.append(f'<path d="{"".join(d)}" fill="none" stroke="#1a8a4a" stroke-width="2.2"/>')
        ids = series.step_ids if len(series.step_ids) == len(steps) else [""] * len(steps)
        for (x, y), pid in list(zip(steps, ids, strict=True))[-MAX_STEP_DOTS:]:  # the latest improvements
            dot = f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.2" fill="#1a8a4a"><title>iteration {x}: {fmt_tick(y)}</title></circle>'
            body.append(f'<a href="{_esc(link(pid))}">{dot}</a>' if link and pid else dot)
    legend = (
        f'<text x="{W - PAD_R}" y="{PAD_T - 9}" text-anchor="end" class="legend">'
        f'● {_esc(what)}   — best so far ({"max" if maximize else "min"})</text>'
    )
    axes = _axes(sx, sy, nice_ticks(x0, x1), nice_ticks(y0, y1), "iteration", metric)
    return (
        f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{_esc(metric)} over iterations" '
        f'xmlns="http://www.w3.org/2000/svg">{axes}{"".join(body)}{legend}</svg>'
    )


def _color(t: float) -> str:
    """Score colour ramp: pale yellow (worst) to dark green (best)."""
    t = min(1.0, max(0.0, t))
    return f"hsl({50 + int(90 * t)},{60 + int(10 * t)}%,{85 - int(55 * t)}%)"


def grid_chart(grid: GridView, *, maximize: bool, link: Callable[[str], str] | None = None) -> str:
    """One island's MAP-Elites grid (first two feature dimensions) as a labelled heat map."""
    if not grid.cells:
        return f'<p class="muted">island {grid.island}: no elites yet</p>'
    dims = grid.dims or ("feature",)
    nx = grid.bins[0] if grid.bins else 1
    ny = grid.bins[1] if len(grid.bins) > 1 else 1
    size = 360
    w, h = size + PAD_L + PAD_R + 10, size + PAD_T + PAD_B
    pw, ph = size, size - 10
    lo_x, hi_x = (grid.lo[0], grid.hi[0]) if grid.lo else (0.0, float(nx))
    lo_y, hi_y = (grid.lo[1], grid.hi[1]) if len(grid.lo) > 1 else (0.0, float(ny))
    if hi_x <= lo_x:
        hi_x = lo_x + 1
    if hi_y <= lo_y:
        hi_y = lo_y + 1

    def sx(v: float) -> float:
        return PAD_L + (v - lo_x) / (hi_x - lo_x) * pw

    def sy(v: float) -> float:
        return PAD_T + ph - (v - lo_y) / (hi_y - lo_y) * ph

    scores = [s for _, s in grid.cells.values()]
    lo_s, hi_s = min(scores), max(scores)
    cw, ch = pw / nx, ph / ny
    # A >2-D grid is projected onto its first two dimensions: each drawn cell keeps its best elite.
    best: dict[tuple[int, int], tuple[str, float]] = {}
    for cell, (pid, score) in grid.cells.items():
        key = (cell[0], cell[1] if len(cell) > 1 else 0)
        if key not in best or (score > best[key][1] if maximize else score < best[key][1]):
            best[key] = (pid, score)
    rects = []
    for (cx, cy), (pid, score) in sorted(best.items()):
        t = 0.5 if hi_s == lo_s else (score - lo_s) / (hi_s - lo_s)
        t = t if maximize else 1 - t
        rect = (
            f'<rect x="{PAD_L + cx * cw:.1f}" y="{PAD_T + ph - (cy + 1) * ch:.1f}" width="{cw - 1:.1f}" '
            f'height="{ch - 1:.1f}" fill="{_color(t)}" stroke="#fff"><title>{_esc(pid)}: {fmt_tick(score)}</title></rect>'
        )
        rects.append(f'<a href="{_esc(link(pid))}">{rect}</a>' if link else rect)
    axes = _axes(
        sx,
        sy,
        nice_ticks(lo_x, hi_x, 4),
        nice_ticks(lo_y, hi_y, 4),
        f"{dims[0]} ({nx} bins)",
        f"{dims[1]} ({ny} bins)" if len(dims) > 1 else "(one dimension)",
        w=w,
        h=h,
    )
    return (
        f'<figure class="grid"><svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        f'aria-label="island {grid.island} MAP-Elites grid" xmlns="http://www.w3.org/2000/svg">'
        f'{"".join(rects)}{axes}</svg><figcaption>island {grid.island}: {len(grid.cells)} elites, '
        f"{grid.members} members; colour: score {fmt_tick(lo_s)} (pale) … {fmt_tick(hi_s)} (dark)</figcaption></figure>"
    )


def front_chart(points: list[ObjectivePoint], front: FrontSummary, *, link: Callable[[str], str] | None = None) -> str:
    """Every valid program on the first two objectives, the Pareto front highlighted (a step
    line through its members, each a dot linking to the program). With more than two
    objectives the front members are non-dominated over all of them, so some look dominated
    in this projection; the table next to it holds every value."""
    if len(front.objectives) < 2 or not points:
        return '<p class="muted">no valid program yet</p>'
    (mx, dx), (my, dy) = ((o["metric"], o["direction"]) for o in front.objectives[:2])
    on_front = {m.program_id for m in front.members}
    xs = [p.values[0] for p in points]
    ys = [p.values[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if x1 <= x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    if y1 <= y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    mxg, myg = (x1 - x0) * 0.04, (y1 - y0) * 0.04
    x0, x1, y0, y1 = x0 - mxg, x1 + mxg, y0 - myg, y1 + myg
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def sx(x: float) -> float:
        return PAD_L + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return PAD_T + ph - (y - y0) / (y1 - y0) * ph

    others = [p for p in points if p.program_id not in on_front]
    step = max(1, math.ceil(len(others) / MAX_SCATTER_DOTS))
    body = [
        f'<circle cx="{sx(p.values[0]):.1f}" cy="{sy(p.values[1]):.1f}" r="2.2" fill="#7a9cc6" fill-opacity=".55"/>'
        for p in others[::step]
    ]
    members = sorted((p for p in points if p.program_id in on_front), key=lambda p: (p.values[0], p.values[1]))
    if len(front.objectives) == 2 and len(members) > 1:
        # The staircase bounding what the front dominates: between two members (by x), the
        # corner lies at the next x and this y when x is minimized, else at this x and the next y.
        d = [f"M{sx(members[0].values[0]):.1f},{sy(members[0].values[1]):.1f}"]
        for prev, p in zip(members, members[1:], strict=False):
            cx, cy = (p.values[0], prev.values[1]) if dx == "minimize" else (prev.values[0], p.values[1])
            d.append(f"L{sx(cx):.1f},{sy(cy):.1f}L{sx(p.values[0]):.1f},{sy(p.values[1]):.1f}")
        body.append(f'<path d="{"".join(d)}" fill="none" stroke="#1a8a4a" stroke-width="1.6"/>')
    for p in members:
        dot = (f'<circle cx="{sx(p.values[0]):.1f}" cy="{sy(p.values[1]):.1f}" r="3.6" fill="#1a8a4a">'
               f"<title>{_esc(p.program_id)} (iteration {p.iteration}): {_esc(mx)} {fmt_tick(p.values[0])}, "
               f"{_esc(my)} {fmt_tick(p.values[1])}</title></circle>")  # fmt: skip
        body.append(f'<a href="{_esc(link(p.program_id))}">{dot}</a>' if link else dot)
    thinned = f" (every {step}th dominated one drawn)" if step > 1 else ""
    legend = (
        f'<text x="{W - PAD_R}" y="{PAD_T - 9}" text-anchor="end" class="legend">'
        f"● {len(points)} valid programs{_esc(thinned)}   ● front: {len(members)}</text>"
    )
    arrow = {"maximize": "higher is better", "minimize": "lower is better"}
    axes = _axes(sx, sy, nice_ticks(x0, x1), nice_ticks(y0, y1), f"{mx} ({arrow[dx]})", f"{my} ({arrow[dy]})")
    return (
        f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="Pareto front: {_esc(mx)} '
        f'against {_esc(my)}" xmlns="http://www.w3.org/2000/svg">{axes}{"".join(body)}{legend}</svg>'
    )


def hypervolume_chart(history: list[tuple[int, float]], last_iteration: int) -> str:
    """The front's hypervolume over the iterations (two objectives): a step line that rises each
    time the front grew, one dot per measurement."""
    if not history:
        return ""
    x0, x1 = 0.0, float(max(last_iteration, history[-1][0], 1))
    y0, y1 = 0.0, history[-1][1] * 1.04 or 1.0
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def sx(x: float) -> float:
        return PAD_L + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return PAD_T + ph - (y - y0) / (y1 - y0) * ph

    d = [f"M{sx(history[0][0]):.1f},{sy(history[0][1]):.1f}"]
    d += [f"H{sx(x):.1f}V{sy(y):.1f}" for x, y in history[1:]]
    d.append(f"H{sx(x1):.1f}")
    dots = "".join(
        f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.6" fill="#1a8a4a"><title>iteration {x}: {fmt_tick(y)}</title></circle>'
        for x, y in history[-MAX_STEP_DOTS:]
    )
    axes = _axes(sx, sy, nice_ticks(x0, x1), nice_ticks(y0, y1), "iteration", "hypervolume")
    return (
        f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="hypervolume over iterations" '
        f'xmlns="http://www.w3.org/2000/svg">{axes}<path d="{"".join(d)}" fill="none" stroke="#1a8a4a" '
        f'stroke-width="2.2"/>{dots}</svg>'
    )
