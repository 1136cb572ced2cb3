"""Errors raised by the trace recorder and by Param validation.

Both are :class:`~agentopt.errors.AgentoptError` subclasses so the CLI prints them as one
line; they also carry the structured data (the error node, the offending value) that
optimizers need to turn a failure into feedback instead of a crash.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentopt.errors import AgentoptError

if TYPE_CHECKING:
    from agentopt.trace.nodes import ErrorNode


class TraceError(AgentoptError):
    """Traced code raised. ``node`` is the error node (attach feedback to it with ``backward``).

    ``exception`` is the original exception; it is also the ``__cause__`` so a traceback
    printed by a debugger still shows where the user's code failed.
    """

    def __init__(self, node: ErrorNode, exception: BaseException) -> None:
        op = node.op.name if node.op is not None else "traced call"
        super().__init__(f"{op} raised {type(exception).__name__}: {exception}")
        self.node = node
        self.exception = exception


class InvalidValue(AgentoptError):
    """A value does not fit a Param (wrong type, out of bounds, not a choice, bad code)."""


class ModuleStateError(AgentoptError):
    """A saved Module directory is missing, malformed, or does not match the Module."""
