"""Graph operations over the implicit parent links: ancestors, Params, minimal subgraphs,
networkx export. All traversals are iterative (a 100k-node chain must not hit the recursion
limit) and linear in the size of the graph.
"""

from __future__ import annotations

from typing import Any

import networkx as nx

from agentopt.trace.nodes import ErrorNode, Node, OpNode, Param


def ancestors(output: Node) -> list[Node]:
    """``output`` and every node it depends on, in topological order (parents first)."""
    order: list[Node] = []
    seen: set[int] = {id(output)}
    stack: list[tuple[Node, int]] = [(output, 0)]
    while stack:
        current, i = stack[-1]
        parents = current.parents
        while i < len(parents) and id(parents[i]) in seen:
            i += 1
        if i < len(parents):
            stack[-1] = (current, i + 1)
            child = parents[i]
            seen.add(id(child))
            stack.append((child, 0))
        else:
            stack.pop()
            order.append(current)
    return order


def trainable_params(output: Node) -> list[Param]:
    """Trainable Params that ``output`` depends on, in topological order."""
    return [n for n in ancestors(output) if isinstance(n, Param) and n.trainable]


def minimal_subgraphs(output: Node, params: list[Param] | None = None) -> dict[Param, list[Node]]:
    """For each Param, the nodes on some path from it to ``output`` plus their direct inputs.

    That is exactly what an optimizer needs to see to reason about one Param: how it flowed
    into the output, and what else was mixed in along the way. Nodes are in topological order.
    """
    order = ancestors(output)
    index = {id(n): i for i, n in enumerate(order)}
    children: dict[int, list[Node]] = {}
    for n in order:
        for p in n.parents:
            children.setdefault(id(p), []).append(n)
    if params is None:
        params = [n for n in order if isinstance(n, Param) and n.trainable]
    result: dict[Param, list[Node]] = {}
    for param in params:
        if id(param) not in index:
            continue
        reached: dict[int, Node] = {id(param): param}
        stack = [param]
        while stack:
            current = stack.pop()
            for child in children.get(id(current), ()):
                if id(child) not in reached:
                    reached[id(child)] = child
                    stack.append(child)
        members = dict(reached)
        for n in reached.values():
            for p in n.parents:
                members.setdefault(id(p), p)
        result[param] = sorted(members.values(), key=lambda n: index[id(n)])
    return result


def node_attributes(n: Node) -> dict[str, Any]:
    attrs: dict[str, Any] = {"kind": n.kind, "label": n.label, "value": n._value}
    if isinstance(n, OpNode):
        attrs["op"] = n.op.name
        attrs["inner"] = len(n.inner)
    if isinstance(n, ErrorNode):
        attrs["traceback"] = n.traceback
    if isinstance(n, Param):
        attrs["param_kind"] = n.param_kind
        attrs["trainable"] = n.trainable
    return attrs


def to_networkx(output: Node, *, include_inner: bool = False) -> nx.DiGraph:
    """A ``networkx.DiGraph`` of ``output``'s ancestors: node key = ``Node.id``, edges parent→child.

    Attributes: ``kind``, ``label``, ``value``, and ``op``/``param_kind``/``traceback`` where
    they apply. With ``include_inner``, nested calls are added too, with an ``inside`` edge
    attribute naming the enclosing call.
    """
    g = nx.DiGraph()
    todo = ancestors(output)
    done: set[int] = set()
    while todo:
        extra: list[Node] = []
        for n in todo:
            if n.id in done:
                continue
            done.add(n.id)
            g.add_node(n.id, **node_attributes(n))
            for p in n.parents:
                g.add_edge(p.id, n.id)
            if include_inner and isinstance(n, OpNode):
                for inner in n.inner:
                    for m in ancestors(inner):
                        if m.id not in done:
                            extra.append(m)
                    g.add_node(inner.id, **node_attributes(inner), inside=n.id)
        todo = extra
    for key in list(g.nodes):  # parents outside the collected set still get attributes
        if "kind" not in g.nodes[key]:
            g.nodes[key]["kind"] = "unknown"
    return g
