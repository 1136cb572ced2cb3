"""Source handling for code Params: extract a function's source, check a replacement, compile it.

An optimizer may rewrite a trainable function. Before the new source is used we check that
it parses, defines a function of the same name with the same parameter list (so every call
site keeps working), and compiles. Checks raise :class:`InvalidValue` with a one-line reason
that optimizers feed back to the LLM.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentopt.trace.errors import InvalidValue


@dataclass(frozen=True)
class FunctionShape:
    """What must stay fixed when a function body is replaced: its name and parameter list."""

    name: str
    is_async: bool
    params: tuple[str, ...]

    def describe(self) -> str:
        prefix = "async def" if self.is_async else "def"
        return f"{prefix} {self.name}({', '.join(self.params)})"


def _shape_of(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> FunctionShape:
    a = fn.args
    params: list[str] = [p.arg for p in a.posonlyargs]
    if a.posonlyargs:
        params.append("/")
    params += [p.arg for p in a.args]
    if a.vararg is not None:
        params.append("*" + a.vararg.arg)
    elif a.kwonlyargs:
        params.append("*")
    params += [p.arg for p in a.kwonlyargs]
    if a.kwarg is not None:
        params.append("**" + a.kwarg.arg)
    return FunctionShape(fn.name, isinstance(fn, ast.AsyncFunctionDef), tuple(params))


def function_source(fn: Callable[..., Any]) -> str:
    """Dedented source of ``fn`` without decorator lines (they would re-apply @trace on exec)."""
    try:
        src = inspect.getsource(fn)
    except (OSError, TypeError) as err:
        raise InvalidValue(f"cannot read the source of {getattr(fn, '__qualname__', fn)!r}: {err}") from None
    src = textwrap.dedent(src)
    tree = ast.parse(src)
    node = tree.body[0]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.decorator_list:
        lines = src.splitlines(keepends=True)
        src = "".join(lines[node.lineno - 1 :])  # lineno of a decorated def is the 'def' line
    return src


def shape_of_source(source: str) -> FunctionShape | None:
    """The shape of the single top-level function in ``source``, or None when there is none."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    fns = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    return _shape_of(fns[0]) if len(fns) == 1 else None


def check_code(source: Any, expected: FunctionShape | None) -> str:
    """Return ``source`` when it is valid replacement code, else raise :class:`InvalidValue`."""
    if not isinstance(source, str):
        raise InvalidValue(f"code must be a string of Python source, got {type(source).__name__}")
    source = textwrap.dedent(source)
    try:
        tree = ast.parse(source)
        compile(tree, "<suggestion>", "exec")
    except SyntaxError as err:
        raise InvalidValue(f"code does not compile: {err.msg} (line {err.lineno})") from None
    except ValueError as err:  # e.g. null bytes
        raise InvalidValue(f"code does not compile: {err}") from None
    if expected is None:
        return source
    found = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    same_name = [n for n in found if n.name == expected.name]
    if not same_name:
        raise InvalidValue(f"code must define function '{expected.name}' ({expected.describe()})")
    shape = _shape_of(same_name[-1])
    if shape != expected:
        raise InvalidValue(f"code must keep the signature {expected.describe()}, got {shape.describe()}")
    return source


def compile_function(source: str, name: str, namespace: dict[str, Any]) -> Callable[..., Any]:
    """Execute ``source`` in a copy of ``namespace`` and return the function called ``name``.

    A copy keeps the original module's globals untouched, so a bad rewrite can never replace
    a module attribute that other code relies on.
    """
    ns = dict(namespace)
    code = compile(source, f"<agentopt:{name}>", "exec")
    exec(code, ns)  # noqa: S102 - running the user's own (optimized) workflow code is the point
    fn = ns.get(name)
    if not callable(fn):
        raise InvalidValue(f"code did not define a callable '{name}'")
    return fn
