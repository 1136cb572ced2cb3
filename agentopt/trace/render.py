"""Render graphs for people and LLMs: compact text within a token budget, Graphviz dot, HTML.

The text form follows OptoPrime's layout (#Code, #Definitions, #Params, #Inputs, #Others,
#Outputs, #Feedback) because that is what the optimizer prompt explains to the model. Large
values are truncated and, if still over budget, intermediate values are elided from the
middle of the graph (the Params and the outputs are what matter most).
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

from agentopt.trace.feedback import Feedback
from agentopt.trace.graph import ancestors
from agentopt.trace.nodes import ErrorNode, Node, OpNode, Param

CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """Cheap token estimate (~4 characters per token) used for all prompt budgets."""
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    keep = max(limit - 20, 8)
    return f"{text[:keep]}...[+{len(text) - keep} chars]"


def format_value(value: Any, limit: int) -> str:
    if isinstance(value, BaseException):
        text = f"{type(value).__name__}: {value}"
    elif isinstance(value, str) and "\n" in value:
        text = value
    else:
        try:
            text = repr(value)
        except Exception as err:  # a broken __repr__ in user code must not break rendering
            text = f"<unrepresentable {type(value).__name__}: {err}>"
    text = truncate(text, limit)
    if "\n" in text:
        text = "\n" + "\n".join("    " + line for line in text.splitlines())
    return text


def label_nodes(nodes: Iterable[Node], names: dict[Param, str] | None = None) -> dict[int, str]:
    """Short unique labels: Param names (or ``names``), op nodes ``<op><k>``, inputs ``input<k>``."""
    labels: dict[int, str] = {}
    used: set[str] = set()
    counters: dict[str, int] = {}
    for n in nodes:
        if isinstance(n, Param):
            base = (names or {}).get(n) or n.name or f"param{n.id}"
        elif n.name:
            base = n.name
        else:
            stem = n.op.name if isinstance(n, OpNode) else "input"
            counters[stem] = counters.get(stem, -1) + 1
            base = f"{stem}{counters[stem]}"
        label = base
        k = 1
        while label in used:
            label = f"{base}_{k}"
            k += 1
        used.add(label)
        labels[id(n)] = label
    return labels


def _call_line(n: OpNode, labels: dict[int, str], limit: int) -> str:
    def show(a: Any) -> str:
        if isinstance(a, Node):
            return labels.get(id(a)) or truncate(repr(a._value), limit)
        return truncate(repr(a), min(limit, 80))

    parts: list[str] = []
    sig = n.op.signature
    bound = None
    if sig is not None:
        try:
            bound = sig.bind_partial(*n.args, **n.kwargs)
        except TypeError:
            bound = None
    if bound is not None:
        for key, val in bound.arguments.items():
            if key == "self":
                continue
            kind = sig.parameters[key].kind if sig is not None else None
            if kind is not None and kind.name == "VAR_POSITIONAL":
                parts.extend(show(v) for v in val)
            elif kind is not None and kind.name == "VAR_KEYWORD":
                parts.extend(f"{k}={show(v)}" for k, v in val.items())
            else:
                parts.append(f"{key}={show(val)}")
    else:
        parts = [show(a) for a in n.args] + [f"{k}={show(v)}" for k, v in n.kwargs.items()]
    shown = {id(a) for a in list(n.args) + list(n.kwargs.values()) if isinstance(a, Node)}
    uses = [labels[id(p)] for p in n.parents if id(p) not in shown and id(p) in labels
            and p is not n.op.code_param]
    line = f"{labels[id(n)]} = {n.op.name}({', '.join(parts)})"
    if uses:
        line += f"  # reads: {', '.join(uses)}"
    if isinstance(n, ErrorNode):
        line += "  # RAISED"
    return line


def _definitions(nodes: list[Node], limit: int) -> list[str]:
    seen: dict[str, str] = {}
    for n in nodes:
        if isinstance(n, OpNode) and n.op.name not in seen:
            op = n.op
            if op.code_param is not None:
                seen[op.name] = f"{op.name}: trainable, see #Params '{op.code_param.name}'"
                continue
            src = op.source()
            text = truncate(src, max(limit * 2, 200))
            seen[op.name] = f"{op.name}:\n" + "\n".join("    " + ln for ln in text.splitlines())
    return list(seen.values())


def render_text(
    nodes: list[Node],
    output: Node,
    feedback: Feedback | None = None,
    *,
    budget_tokens: int = 2000,
    names: dict[Param, str] | None = None,
    max_value_chars: int = 600,
) -> str:
    """Render a (sub)graph as compact text bounded to about ``budget_tokens`` tokens."""
    budget_chars = max(budget_tokens, 50) * CHARS_PER_TOKEN
    labels = label_nodes(nodes, names)
    params = [n for n in nodes if isinstance(n, Param)]
    ops = [n for n in nodes if isinstance(n, OpNode)]
    inputs = [n for n in nodes if not isinstance(n, Param | OpNode)]
    others = [n for n in ops if n is not output]
    # Huge graphs: never format more lines than could fit, so rendering stays cheap.
    max_lines = max(budget_chars // 40, 8)
    def build(limit: int, keep_others: int) -> str:
        out: list[str] = ["#Code"]
        out += [n.name if isinstance(n, _Elided) else _call_line(n, labels, limit)
                for n in _elide(ops, keep_others + 2)]
        defs = _definitions(ops, limit)
        if defs:
            out += ["", "#Definitions", *defs]
        if params:
            out += ["", "#Params (trainable)"]
            for p in params:
                desc = f"  # {truncate(p.description, 160)}" if p.description else ""
                out.append(f"({p.param_kind}: {p.constraint()}) {labels[id(p)]} = "
                           f"{format_value(p._value, max(limit, 1500))}{desc}")
        if inputs:
            out += ["", "#Inputs"]
            out += [f"({type(n._value).__name__}) {labels[id(n)]} = {format_value(n._value, limit)}" for n in inputs]
        shown_others = _elide(others, keep_others)
        if shown_others:
            out += ["", "#Others (intermediate values)"]
            out += [_value_line(n, labels, limit) for n in shown_others]
        out += ["", "#Outputs"]
        if isinstance(output, ErrorNode):
            out.append(f"{labels.get(id(output), output.label)} raised:\n{truncate(output.traceback, max(limit * 3, 600))}")
        else:
            out.append(f"{labels.get(id(output), output.label)} = {format_value(output._value, max(limit, 300))}")
        if feedback is not None:
            out += ["", "#Feedback", truncate(feedback.render(), max(limit * 3, 800))]
        return "\n".join(out)

    keep = min(len(others), max_lines)
    text = ""
    for limit in (max_value_chars, 300, 150, 80, 40):
        text = build(limit, keep)
        if len(text) <= budget_chars:
            return text
    while keep > 2:
        keep //= 2
        text = build(40, keep)
        if len(text) <= budget_chars:
            return text
    return truncate(text, budget_chars)


def _value_line(n: Node, labels: dict[int, str], limit: int) -> str:
    if isinstance(n, _Elided):
        return n.name or ""
    verb = "raised" if isinstance(n, ErrorNode) else "="
    return f"{labels[id(n)]} {verb} {format_value(n._value, limit)}"


def _elide(items: list[Node], keep: int) -> list[Node]:
    """Keep the first and last ``keep/2`` items with one marker in between."""
    if len(items) <= keep:
        return items
    head = max(keep // 2, 1)
    tail = max(keep - head, 1)
    return [*items[:head], _Elided(len(items) - head - tail), *items[-tail:]]


class _Elided(Node):
    """Placeholder line: 'N nodes elided'. Never part of a real graph."""

    __slots__ = ()
    kind = "elided"

    def __init__(self, count: int) -> None:
        super().__init__(count, f"... {count} nodes elided ...")


# -- Graphviz dot ----------------------------------------------------------------------------

_COLORS = {"param": "#ffe9a8", "op": "#d8e8ff", "error": "#ffc9c9", "value": "#eeeeee"}


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def to_dot(output: Node, *, max_value_chars: int = 40) -> str:
    """Graphviz dot source of ``output``'s ancestors (render with ``dot -Tsvg``)."""
    nodes = ancestors(output)
    labels = label_nodes(nodes)
    lines = ["digraph trace {", "  rankdir=TB;", '  node [shape=box, style="rounded,filled", fontname="Helvetica"];']
    for n in nodes:
        value = format_value(n._value, max_value_chars).strip()
        text = _dot_escape(f"{labels[id(n)]}\n{value}")
        color = _COLORS.get(n.kind, "#ffffff")
        lines.append(f'  n{n.id} [label="{text}", fillcolor="{color}"];')
    for n in nodes:
        for p in n.parents:
            lines.append(f"  n{p.id} -> n{n.id};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- standalone HTML -------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}
pre{margin:0;white-space:pre-wrap;max-height:20em;overflow:auto}
.param{background:#fff7d6}.error{background:#ffe3e3}.op{background:#f0f6ff}.value{background:#fafafa}
.badge{font-size:80%;padding:1px 6px;border-radius:8px;background:#ddd}
"""


def to_html(output: Node, feedback: Any = None, *, title: str = "agentopt trace", max_value_chars: int = 4000) -> str:
    """A self-contained HTML page of ``output``'s graph. Every value is HTML-escaped."""
    e = html.escape
    nodes = ancestors(output)
    labels = label_nodes(nodes)
    rows = []
    for n in nodes:
        parents = ", ".join(f'<a href="#n{p.id}">{e(labels.get(id(p), p.label))}</a>' for p in n.parents)
        what = e(n.op.name) if isinstance(n, OpNode) else e(getattr(n, "param_kind", n.kind))
        body = f"<pre>{e(truncate(format_value(n._value, max_value_chars).strip(), max_value_chars))}</pre>"
        if isinstance(n, ErrorNode):
            body += f"<details open><summary>traceback</summary><pre>{e(n.traceback)}</pre></details>"
        if isinstance(n, OpNode) and n.inner:
            body += f"<div>{len(n.inner)} nested call(s): " + e(", ".join(i.label for i in n.inner[:20])) + "</div>"
        rows.append(
            f'<tr id="n{n.id}" class="{e(n.kind)}"><td>{e(labels[id(n)])}</td>'
            f'<td><span class="badge">{e(n.kind)}</span> {what}</td><td>{parents}</td><td>{body}</td></tr>'
        )
    fb_html = ""
    if feedback is not None:
        fb_html = f"<h2>Feedback</h2><pre>{e(Feedback.of(feedback).render())}</pre>"
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{e(title)}</h1><p>{len(nodes)} nodes; output: {e(labels[id(output)])}</p>{fb_html}"
        "<table><tr><th>node</th><th>kind</th><th>inputs</th><th>value</th></tr>"
        + "".join(rows)
        + f"</table><details><summary>Graphviz dot</summary><pre>{e(to_dot(output))}</pre></details>"
        "</body></html>\n"
    )
