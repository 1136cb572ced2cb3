"""Graph nodes: plain values, trainable :class:`Param`\\ s, and the outputs of traced calls.

The graph is implicit, like autograd's: every node holds a tuple of its parents and nothing
holds a global list. Recording a call is therefore a handful of attribute writes, and
graphs recorded in different threads or tasks can never interfere. Nodes use ``__slots__``
because a workflow may create hundreds of thousands of them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from agentopt.trace.code import FunctionShape, check_code, shape_of_source
from agentopt.trace.context import CURRENT_FRAME
from agentopt.trace.errors import InvalidValue

if TYPE_CHECKING:
    from agentopt.trace.backward import ParamFeedback
    from agentopt.trace.recorder import Operator

ParamKind = Literal["text", "code", "number", "choice"]
PARAM_KINDS: tuple[str, ...] = ("text", "code", "number", "choice")

_ids = itertools.count()
_NO_KWARGS: dict[str, Any] = {}


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Node:
    """A value in the graph. Read it with ``.value``; inside a traced call the read is recorded."""

    __slots__ = ("_value", "name", "parents", "id", "__weakref__")
    kind: str = "value"

    def __init__(self, value: Any, name: str | None = None, parents: tuple[Node, ...] = ()) -> None:
        self._value = value
        self.name = name
        self.parents = parents
        self.id = next(_ids)

    @property
    def value(self) -> Any:
        frame = CURRENT_FRAME.get()
        if frame is not None:
            frame.append(self)
        return self._value

    @property
    def data(self) -> Any:
        """Alias of :attr:`value` (the name trace-opt users know)."""
        return self.value

    @property
    def label(self) -> str:
        """A readable, unique-enough name for renderings."""
        return self.name or f"{self.kind}{self.id}"

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label}={_short(self._value)})"


class Param(Node):
    """A trainable value an optimizer may change.

    ``kind`` says how: ``text`` (prompts), ``code`` (Python source of a function), ``number``
    (with optional ``bounds`` and ``log`` scale; integer when the initial value is an int) or
    ``choice`` (one of ``choices``). Every assignment goes through :meth:`coerce`, so a Param
    can never hold a value that breaks its own constraints.
    """

    __slots__ = (
        "param_kind",
        "bounds",
        "choices",
        "description",
        "log",
        "integer",
        "trainable",
        "initial",
        "feedback",
        "shape",
        "auto_name",
    )
    kind = "param"

    def __init__(
        self,
        value: Any,
        kind: ParamKind | None = None,
        *,
        bounds: tuple[float, float] | None = None,
        choices: Sequence[Any] | None = None,
        description: str = "",
        name: str | None = None,
        log: bool = False,
        trainable: bool = True,
    ) -> None:
        if kind is None:
            kind = _infer_kind(value, choices)
        if kind not in PARAM_KINDS:
            raise InvalidValue(f"unknown Param kind {kind!r} (expected one of {', '.join(PARAM_KINDS)})")
        super().__init__(None, name, ())
        self.auto_name = name is None
        if self.auto_name:
            self.name = f"param{self.id}"
        self.param_kind: str = kind
        self.description = description
        self.trainable = trainable
        self.log = log
        self.choices: tuple[Any, ...] | None = tuple(choices) if choices is not None else None
        self.bounds: tuple[float, float] | None = None
        self.integer = False
        self.shape: FunctionShape | None = None
        self.feedback: list[ParamFeedback] = []
        if kind == "choice" and not self.choices:
            raise InvalidValue(f"Param {self.name!r}: kind 'choice' needs a non-empty 'choices' list")
        if kind == "number":
            self.integer = isinstance(value, int) and not isinstance(value, bool)
            if bounds is not None:
                lo, hi = bounds
                if not lo <= hi:
                    raise InvalidValue(f"Param {self.name!r}: bounds {bounds} are not (low, high)")
                self.bounds = (lo, hi)
            if log and (self.bounds is None or self.bounds[0] <= 0):
                raise InvalidValue(f"Param {self.name!r}: log scale needs positive bounds")
        if kind == "code" and isinstance(value, str):
            self.shape = shape_of_source(value)
        self._value = self.coerce(value)
        self.initial = self._value

    @property
    def value(self) -> Any:
        frame = CURRENT_FRAME.get()
        if frame is not None:
            frame.append(self)
        return self._value

    @value.setter
    def value(self, new: Any) -> None:
        self._value = self.coerce(new)

    def set(self, new: Any) -> Any:
        """Validate and assign ``new``; return the stored (coerced) value."""
        self._value = self.coerce(new)
        return self._value

    def coerce(self, new: Any) -> Any:
        """Return ``new`` converted to this Param's type, or raise :class:`InvalidValue`."""
        kind = self.param_kind
        where = f"Param {self.name!r}"
        if kind == "text":
            if not isinstance(new, str):
                raise InvalidValue(f"{where} expects text, got {type(new).__name__}")
            return new
        if kind == "code":
            try:
                return check_code(new, self.shape)
            except InvalidValue as err:
                raise InvalidValue(f"{where}: {err}") from None
        if kind == "choice":
            assert self.choices is not None
            for choice in self.choices:
                if new == choice and type(new) is type(choice):
                    return choice
            for choice in self.choices:  # an LLM may answer "32" for 32
                if str(new) == str(choice):
                    return choice
            raise InvalidValue(f"{where}: {new!r} is not one of {list(self.choices)!r}")
        return self._coerce_number(new, where)

    def _coerce_number(self, new: Any, where: str) -> float | int:
        if isinstance(new, bool) or not isinstance(new, int | float | str):
            raise InvalidValue(f"{where} expects a number, got {type(new).__name__}")
        try:
            num = float(new)
        except ValueError:
            raise InvalidValue(f"{where} expects a number, got {_short(new)}") from None
        if not math.isfinite(num):
            raise InvalidValue(f"{where} expects a finite number, got {new!r}")
        if self.bounds is not None and not self.bounds[0] <= num <= self.bounds[1]:
            raise InvalidValue(f"{where}: {num:g} is outside bounds [{self.bounds[0]:g}, {self.bounds[1]:g}]")
        if self.integer:
            if num != int(num):
                raise InvalidValue(f"{where} expects an integer, got {num:g}")
            return int(num)
        return num

    def constraint(self) -> str:
        """One line describing what values are allowed (shown to optimizers' LLMs)."""
        kind = self.param_kind
        if kind == "number":
            typ = "integer" if self.integer else "float"
            rng = f" in [{self.bounds[0]:g}, {self.bounds[1]:g}]" if self.bounds else ""
            return f"{typ}{rng}{' (log scale)' if self.log else ''}"
        if kind == "choice":
            return f"one of {list(self.choices or ())!r}"
        if kind == "code":
            shape = f" defining {self.shape.describe()}" if self.shape else ""
            return f"Python source{shape}"
        return "text"

    def reset(self) -> None:
        """Restore the initial value."""
        self._value = self.initial

    def zero_feedback(self) -> None:
        """Drop feedback received by :func:`~agentopt.trace.backward.backward` (like ``grad = None``)."""
        self.feedback.clear()

    def __repr__(self) -> str:
        return f"Param({self.name}:{self.param_kind}={_short(self._value)})"


class OpNode(Node):
    """The output of one traced call: which operator, with which arguments, nested calls."""

    __slots__ = ("op", "args", "kwargs", "inner")
    kind = "op"

    def __init__(
        self,
        value: Any,
        parents: tuple[Node, ...],
        op: Operator,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
    ) -> None:
        self._value = value
        self.name = None
        self.parents = parents
        self.id = next(_ids)
        self.op = op
        self.args = args
        self.kwargs = kwargs or _NO_KWARGS  # one shared empty mapping: no dict kept per node
        self.inner: tuple[Node, ...] = ()

    @property
    def label(self) -> str:
        return self.name or f"{self.op.name}{self.id}"


class ErrorNode(OpNode):
    """A traced call that raised. Its value is the exception; ``traceback`` is the formatted text."""

    __slots__ = ("traceback",)
    kind = "error"

    def __init__(
        self,
        exception: BaseException,
        traceback: str,
        parents: tuple[Node, ...],
        op: Operator,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        super().__init__(exception, parents, op, args, kwargs)
        self.traceback = traceback

    @property
    def exception(self) -> BaseException:
        return self._value


def _infer_kind(value: Any, choices: Sequence[Any] | None) -> str:
    if choices is not None:
        return "choice"
    if isinstance(value, bool):
        raise InvalidValue("a bool Param needs kind='choice' with choices=[True, False]")
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    raise InvalidValue(f"cannot infer a Param kind for a {type(value).__name__}; pass kind=")


def node(value: Any, name: str | None = None, *, trainable: bool = False, **param_kw: Any) -> Node:
    """Wrap a plain value as a graph node (a :class:`Param` when ``trainable``); nodes pass through."""
    if isinstance(value, Node):
        return value
    if trainable:
        return Param(value, name=name, **param_kw)
    return Node(value, name)
