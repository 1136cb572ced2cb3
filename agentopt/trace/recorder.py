"""``@trace``: record each call of a function or method as an operator node.

A top-level call (no traced call in progress in this thread/task) returns an
:class:`~agentopt.trace.nodes.OpNode`. A call made from inside another traced call returns
the plain value, so the caller's body keeps working on ordinary Python objects; the nested
node is kept in the caller's ``inner`` tuple and the caller depends on every node the
nested call used. Exceptions become :class:`~agentopt.trace.nodes.ErrorNode`\\ s; at top
level they surface as :class:`~agentopt.trace.errors.TraceError` carrying the node, while
nested calls re-raise the original exception so user ``try/except`` blocks keep working.
"""

from __future__ import annotations

import functools
import inspect
import operator
import os
import traceback as tb_mod
import types
from collections.abc import Callable
from typing import Any, TypeVar, overload

from agentopt.trace.code import FunctionShape, compile_function, function_source, shape_of_source
from agentopt.trace.context import CURRENT_FRAME, ENABLED, RECORDER, Frame
from agentopt.trace.errors import TraceError
from agentopt.trace.nodes import ErrorNode, Node, OpNode, Param

F = TypeVar("F", bound=Callable[..., Any])

_THIS_FILE = os.path.abspath(__file__)
_ERROR_ATTR = "_agentopt_trace_node"
_MAX_TRACEBACK_CHARS = 6000
_CONTAINERS = (list, tuple, dict)


class Operator:
    """What every node of one traced function shares: name, description, (trainable) code.

    For a trainable function, ``code_param`` holds its source; when an optimizer changes it,
    :meth:`function` compiles the new source once and uses it for all later calls.
    """

    __slots__ = ("name", "fn", "description", "code_param", "is_async", "_signature", "_compiled")

    def __init__(self, fn: Callable[..., Any], name: str, description: str, code_param: Param | None) -> None:
        self.name = name
        self.fn = fn
        self.description = description
        self.code_param = code_param
        self.is_async = inspect.iscoroutinefunction(fn)
        self._signature: inspect.Signature | None = None
        self._compiled: tuple[str, Callable[..., Any]] | None = None

    def function(self) -> Callable[..., Any]:
        """The callable to run now: the original, or the compiled current code Param value."""
        param = self.code_param
        if param is None or param._value == param.initial:
            return self.fn
        src = param._value
        compiled = self._compiled
        if compiled is None or compiled[0] is not src:
            namespace = dict(self.fn.__globals__)
            closure = inspect.getclosurevars(self.fn).nonlocals
            namespace.update(closure)
            compiled = (src, compile_function(src, self.fn.__name__, namespace))
            self._compiled = compiled
        return compiled[1]

    @property
    def signature(self) -> inspect.Signature | None:
        if self._signature is None:
            try:
                self._signature = inspect.signature(self.fn)
            except (TypeError, ValueError):
                return None
        return self._signature

    def source(self) -> str:
        """Source to show in renderings (the current code for trainable functions)."""
        if self.code_param is not None:
            return self.code_param._value
        try:
            return function_source(self.fn)
        except Exception:  # builtins, lambdas in a REPL: fall back to the signature
            sig = self.signature
            return f"def {self.name}{sig if sig is not None else '(...)'}: ..."

    def __repr__(self) -> str:
        return f"Operator({self.name})"


def _format_traceback(exc: BaseException) -> str:
    """The exception with its traceback, minus this module's wrapper frames, capped in size."""
    te = tb_mod.TracebackException.from_exception(exc)
    te.stack = tb_mod.StackSummary.from_list([f for f in te.stack if os.path.abspath(f.filename) != _THIS_FILE])
    text = "".join(te.format())
    if len(text) > _MAX_TRACEBACK_CHARS:
        text = "...\n" + text[-_MAX_TRACEBACK_CHARS:]
    return text


def _unwrap_container(value: Any, parents: list[Node]) -> Any:
    """Replace nodes one level deep inside a list/tuple/dict argument by their values."""
    if isinstance(value, dict):
        if not any(isinstance(v, Node) for v in value.values()):
            return value
        out_d = {}
        for k, v in value.items():
            if isinstance(v, Node):
                parents.append(v)
                v = v._value
            out_d[k] = v
        return out_d
    if not any(isinstance(v, Node) for v in value):
        return value
    items = []
    for v in value:
        if isinstance(v, Node):
            parents.append(v)
            v = v._value
        items.append(v)
    return type(value)(items) if type(value) in (list, tuple) else items


def _unwrap(
    args: tuple[Any, ...], kwargs: dict[str, Any], frame: Frame | None
) -> tuple[tuple[Any, ...], dict[str, Any], list[Node], list[Node]]:
    """Split arguments into plain values, external parent nodes, and in-frame parent nodes."""
    external: list[Node] = []
    internal: list[Node] = []
    raw: list[Any] = []
    for a in args:
        if isinstance(a, Node):
            external.append(a)
            raw.append(a._value)
        elif frame is not None and a is not None and (n := frame.lookup(a)) is not None:
            internal.append(n)
            raw.append(a)
        elif type(a) in _CONTAINERS:
            raw.append(_unwrap_container(a, external))
        else:
            raw.append(a)
    raw_kw = kwargs
    if kwargs:
        raw_kw = {}
        for k, a in kwargs.items():
            if isinstance(a, Node):
                external.append(a)
                a = a._value
            elif frame is not None and a is not None and (n := frame.lookup(a)) is not None:
                internal.append(n)
            elif type(a) in _CONTAINERS:
                a = _unwrap_container(a, external)
            raw_kw[k] = a
    return tuple(raw), raw_kw, external, internal


def _plain_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    raw = tuple(a._value if isinstance(a, Node) else a for a in args)
    raw_kw = {k: (a._value if isinstance(a, Node) else a) for k, a in kwargs.items()}
    return raw, raw_kw


class TracedFunction:
    """A function wrapped by ``@trace``. Call it like the function; it records as it runs."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None, trainable: bool, description: str | None) -> None:
        functools.update_wrapper(self, fn)
        code_param = None
        doc = description if description is not None else (inspect.getdoc(fn) or "")
        if trainable:
            source = function_source(fn)
            code_param = Param(source, "code", name=name or fn.__name__, description=doc)
            shape = shape_of_source(source)
            code_param.shape = shape if shape is not None else FunctionShape(fn.__name__, False, ())
        self.op = Operator(fn, name or fn.__name__, doc, code_param)

    @property
    def code(self) -> Param | None:
        """The code Param of a ``trainable`` function (None otherwise)."""
        return self.op.code_param

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return types.MethodType(self, obj)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        op = self.op
        if op.is_async:
            return self._acall(args, kwargs)
        if not ENABLED.get():
            raw, raw_kw = _plain_args(args, kwargs)
            return op.function()(*raw, **raw_kw)
        outer = CURRENT_FRAME.get()
        raw, raw_kw, external, internal = _unwrap(args, kwargs, outer)
        frame = Frame(tuple(external) + tuple(internal) if internal else tuple(external))
        token = CURRENT_FRAME.set(frame)
        try:
            out = op.function()(*raw, **raw_kw)
        except Exception as exc:
            CURRENT_FRAME.reset(token)
            return self._fail(exc, args, kwargs, external, internal, frame, outer)
        CURRENT_FRAME.reset(token)
        return self._finish(out, args, kwargs, external, internal, frame, outer)

    async def _acall(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        op = self.op
        if not ENABLED.get():
            raw, raw_kw = _plain_args(args, kwargs)
            return await op.function()(*raw, **raw_kw)
        outer = CURRENT_FRAME.get()
        raw, raw_kw, external, internal = _unwrap(args, kwargs, outer)
        frame = Frame(tuple(external) + tuple(internal) if internal else tuple(external))
        token = CURRENT_FRAME.set(frame)
        try:
            out = await op.function()(*raw, **raw_kw)
        except Exception as exc:
            CURRENT_FRAME.reset(token)
            return self._fail(exc, args, kwargs, external, internal, frame, outer)
        CURRENT_FRAME.reset(token)
        return self._finish(out, args, kwargs, external, internal, frame, outer)

    def _parents(self, external: list[Node], internal: list[Node], frame: Frame) -> tuple[list[Node], tuple[Node, ...]]:
        """(nodes external to the caller's frame, all parents deduplicated in order)."""
        ext = external
        if frame:  # nodes the body read
            ext = external + frame
        code = self.op.code_param
        if code is not None:
            ext = ext + [code]
        allp = ext + internal if internal else ext
        if len(allp) > 1:
            allp = list(dict.fromkeys(allp))
        return ext, tuple(allp)

    def _finish(
        self,
        out: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        external: list[Node],
        internal: list[Node],
        frame: Frame,
        outer: Frame | None,
    ) -> Any:
        if isinstance(out, Node):  # the body returned a node: depend on it, store its value
            if outer is None:
                external = external + [out]
            else:
                internal = internal + [out]
            out = out._value
        if (not frame and not internal and not kwargs and self.op.code_param is None
                and len(external) == len(args) and all(map(operator.is_, args, external))):
            # The common case: every argument is a node and nothing else was read. Reuse the
            # args tuple as the parents tuple (one allocation less per node).
            ext, parents = external, args
            if len(args) > 1 and len(set(map(id, args))) != len(args):
                parents = tuple(dict.fromkeys(args))
        else:
            ext, parents = self._parents(external, internal, frame)
        result = OpNode(out, parents, self.op, args, kwargs)
        if frame.inner:
            result.inner = tuple(frame.inner)
        if outer is not None:
            outer.add_inner(result)
            if ext:
                outer.extend(ext)
            return out
        rec = RECORDER.get()
        if rec is not None:
            rec.append(result)
        return result

    def _fail(
        self,
        exc: Exception,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        external: list[Node],
        internal: list[Node],
        frame: Frame,
        outer: Frame | None,
    ) -> Any:
        original: BaseException = exc
        cause: Node | None
        if isinstance(exc, TraceError):  # a top-level traced call made in another context
            cause, original = exc.node, exc.exception
        else:
            cause = getattr(exc, _ERROR_ATTR, None)
        if cause is not None:
            external = external + [cause]
        ext, parents = self._parents(external, internal, frame)
        err = ErrorNode(original, _format_traceback(original), parents, self.op, args, kwargs)
        if frame.inner:
            err.inner = tuple(frame.inner)
        if outer is not None:
            outer.add_inner(err)
            if ext:
                outer.extend(ext)
            try:
                setattr(exc, _ERROR_ATTR, err)
            except (AttributeError, TypeError):
                pass
            raise exc
        rec = RECORDER.get()
        if rec is not None:
            rec.append(err)
        raise TraceError(err, original) from original

    def __repr__(self) -> str:
        return f"<traced {self.op.name}>"


@overload
def trace(fn: F) -> F: ...


@overload
def trace(
    fn: None = None, *, name: str | None = None, trainable: bool = False, description: str | None = None
) -> Callable[[F], F]: ...


def trace(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    trainable: bool = False,
    description: str | None = None,
) -> Any:
    """Record calls of ``fn`` as operator nodes. ``@trace`` or ``@trace(trainable=True, ...)``.

    ``trainable=True`` exposes the function's source as a code Param (``fn.code``) that an
    optimizer may rewrite; rewritten code must keep the function's name and parameters.
    """

    def wrap(f: Callable[..., Any]) -> Any:
        return TracedFunction(f, name=name, trainable=trainable, description=description)

    return wrap(fn) if fn is not None else wrap
