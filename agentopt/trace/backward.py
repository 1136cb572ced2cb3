"""``backward(output, feedback)``: hand each trainable Param its minimal subgraph + feedback.

Unlike numeric autodiff there is nothing to differentiate: the "gradient" an LLM optimizer
needs is the context — which computation the Param flowed through and what the user said
about the result. Each Param accumulates :class:`ParamFeedback` items (one per backward call,
like gradient accumulation over a minibatch) until an optimizer step consumes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from agentopt.trace.errors import InvalidValue, TraceError
from agentopt.trace.feedback import Feedback, Ranking
from agentopt.trace.graph import minimal_subgraphs
from agentopt.trace.nodes import Node, Param
from agentopt.trace.render import render_text


@dataclass(eq=False)
class Propagation:
    """One backward call: the output, its feedback, and every Param's subgraph."""

    output: Node
    feedback: Feedback
    subgraphs: dict[Param, list[Node]] = field(default_factory=dict)

    def union(self, params: list[Param] | None = None) -> list[Node]:
        """Nodes of the given Params' subgraphs (all when None), merged, in topological order."""
        chosen = self.subgraphs if params is None else {p: self.subgraphs[p] for p in params if p in self.subgraphs}
        merged: dict[int, tuple[int, Node]] = {}
        for nodes in chosen.values():
            for n in nodes:
                merged.setdefault(id(n), (n.id, n))
        return [n for _, n in sorted(merged.values(), key=lambda t: t[0])]

    def render(self, params: list[Param] | None = None, *, budget_tokens: int = 2000,
               names: dict[Param, str] | None = None) -> str:
        """Compact text of the (merged) subgraph with the feedback; see :func:`render_text`."""
        return render_text(self.union(params), self.output, self.feedback, budget_tokens=budget_tokens, names=names)


@dataclass(eq=False)
class ParamFeedback:
    """What one Param received from one backward call."""

    param: Param
    propagation: Propagation

    @property
    def nodes(self) -> list[Node]:
        return self.propagation.subgraphs[self.param]

    @property
    def feedback(self) -> Feedback:
        return self.propagation.feedback

    @property
    def output(self) -> Node:
        return self.propagation.output

    def render(self, *, budget_tokens: int = 2000, names: dict[Param, str] | None = None) -> str:
        return self.propagation.render([self.param], budget_tokens=budget_tokens, names=names)


@overload
def backward(output: Node | TraceError, feedback: Any = None, *, params: list[Param] | None = None,
             accumulate: bool = True) -> Propagation: ...


@overload
def backward(output: Sequence[Node | TraceError], feedback: Any = None, *, params: list[Param] | None = None,
             accumulate: bool = True) -> list[Propagation]: ...


def backward(output: Node | TraceError | Sequence[Node | TraceError], feedback: Any = None, *,
             params: list[Param] | None = None, accumulate: bool = True) -> Propagation | list[Propagation]:
    """Propagate ``feedback`` about ``output`` to every trainable Param it depends on.

    ``output`` may be a node or the :class:`TraceError` a traced call raised (then feedback
    defaults to the error itself). Returns the :class:`Propagation`; with ``accumulate`` each
    Param also keeps a :class:`ParamFeedback` in ``param.feedback`` for the next optimizer step.

    With a list of k outputs (candidates, e.g. one per value a ranking optimizer proposed) the
    feedback is a :class:`Ranking` or a list of their indices, best first; each output gets a
    Feedback saying where it stood, and one Propagation per output is returned, in list order.
    """
    if isinstance(output, Sequence):
        outputs = list(output)
        if feedback is None:
            raise InvalidValue("backward() on several outputs needs a ranking: their indices, best first")
        ranking = Ranking.of(feedback)
        if ranking.k != len(outputs):
            raise InvalidValue(f"the ranking orders {ranking.k} candidates but {len(outputs)} outputs were given")
        return [_backward_one(out, fb, params, accumulate)
                for out, fb in zip(outputs, Feedback.ranked(ranking), strict=True)]
    return _backward_one(output, feedback, params, accumulate)


def _backward_one(output: Node | TraceError, feedback: Any, params: list[Param] | None,
                  accumulate: bool) -> Propagation:
    if isinstance(output, TraceError):
        if feedback is None:
            feedback = output
        output = output.node
    if not isinstance(output, Node):
        raise InvalidValue(f"backward() needs the output node of a traced call, got {type(output).__name__}")
    if feedback is None:
        raise InvalidValue("backward() needs feedback: a str, a number, a dict with score/text, or an exception")
    fb = Feedback.of(feedback)
    prop = Propagation(output, fb, minimal_subgraphs(output, params))
    if accumulate:
        for param in prop.subgraphs:
            param.feedback.append(ParamFeedback(param, prop))
    return prop
