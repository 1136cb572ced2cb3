"""The trace half of agentopt: record a workflow as a graph, give feedback, optimize Params.

>>> from agentopt.trace import trace, Param, backward
>>> prompt = Param("Answer briefly.", name="prompt")
>>> @trace
... def ask(p, q): return f"{p} {q}"
>>> out = ask(prompt, "2+2?")
>>> prop = backward(out, "too vague")  # prompt.feedback now holds its subgraph + feedback
"""

from agentopt.trace.backward import ParamFeedback, Propagation, backward
from agentopt.trace.context import is_recording, no_trace, record
from agentopt.trace.errors import InvalidValue, ModuleStateError, TraceError
from agentopt.trace.feedback import Feedback, RankInfo, Ranking
from agentopt.trace.graph import ancestors, minimal_subgraphs, to_networkx, trainable_params
from agentopt.trace.module import Module
from agentopt.trace.nodes import ErrorNode, Node, OpNode, Param, node
from agentopt.trace.recorder import Operator, TracedFunction, trace
from agentopt.trace.render import render_text, to_dot, to_html

__all__ = [
    "ErrorNode",
    "Feedback",
    "InvalidValue",
    "Module",
    "ModuleStateError",
    "Node",
    "OpNode",
    "Operator",
    "Param",
    "ParamFeedback",
    "Propagation",
    "RankInfo",
    "Ranking",
    "TraceError",
    "TracedFunction",
    "ancestors",
    "backward",
    "is_recording",
    "minimal_subgraphs",
    "no_trace",
    "node",
    "record",
    "render_text",
    "to_dot",
    "to_html",
    "to_networkx",
    "trace",
    "trainable_params",
]
