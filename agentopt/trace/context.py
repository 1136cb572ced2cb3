"""Per-context recording state, kept in :mod:`contextvars` so threads and asyncio tasks
record separately without locks.

A traced call pushes a :class:`Frame`; reads of ``Node.value`` while a frame is active are
recorded as dependencies of that call, and nested traced calls register themselves in it.
A new thread starts with no frame (contextvars are not inherited by threads), and each
asyncio task works on a copy of its creator's context, so concurrent work never mixes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentopt.trace.nodes import Node


class Frame(list):
    """The state of one in-progress traced call; the list itself holds the nodes the body read.

    Subclassing ``list`` (instead of holding a ``used`` list) saves an allocation per traced
    call, which matters because recording overhead is dominated by allocations. ``inner``
    collects nodes recorded by nested traced calls (None until the first); ``inputs`` are the
    call's own input nodes. ``lookup`` maps the id of a plain value seen in this frame back to
    its node, so that a nested call receiving a plain value (its caller already unwrapped it)
    still links to the right node; it is built lazily because most calls nest nothing.
    """

    __slots__ = ("inner", "inputs", "_lookup")

    def __init__(self, inputs: tuple[Node, ...]) -> None:
        self.inner: list[Node] | None = None
        self.inputs = inputs
        self._lookup: dict[int, Node] | None = None

    @property
    def used(self) -> list[Node]:
        return self

    def lookup(self, value: Any) -> Node | None:
        table = self._lookup
        if table is None:
            table = {id(n._value): n for n in self.inputs}
            for n in self.inner or ():
                table[id(n._value)] = n
            self._lookup = table
        return table.get(id(value))

    def add_inner(self, node: Node) -> None:
        if self.inner is None:
            self.inner = []
        self.inner.append(node)
        if self._lookup is not None:
            self._lookup[id(node._value)] = node


CURRENT_FRAME: ContextVar[Frame | None] = ContextVar("agentopt_trace_frame", default=None)
RECORDER: ContextVar[list[Node] | None] = ContextVar("agentopt_trace_recorder", default=None)
ENABLED: ContextVar[bool] = ContextVar("agentopt_trace_enabled", default=True)


@contextmanager
def record() -> Iterator[list[Node]]:
    """Collect every top-level node recorded in this context (thread / task) into a list.

    Useful to inspect what a run recorded without knowing its output node; other threads and
    tasks recording at the same time are not included.
    """
    nodes: list[Node] = []
    token = RECORDER.set(nodes)
    try:
        yield nodes
    finally:
        RECORDER.reset(token)


@contextmanager
def no_trace() -> Iterator[None]:
    """Run traced functions as plain functions (no nodes) in this context, e.g. for serving."""
    token = ENABLED.set(False)
    try:
        yield
    finally:
        ENABLED.reset(token)


def is_recording() -> bool:
    """True when traced calls in this context record nodes."""
    return ENABLED.get()
