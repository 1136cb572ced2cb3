"""The ``materialize`` operator: a construction becomes the explicit list of its output numbers.

Why: a program like circle_packing's ``layout()`` builds 26 centres from 5 rows of
``(y, count, x_first, x_last)``; tuning its 15 row numbers can only move whole rows, and the
row layout's optimum (2.5) is below what free centres reach. Replacing the body of such a
zero-argument function with ``return [[x0, y0], [x1, y1], ...]`` (its own output, exactly)
turns every number into a free float literal, which the constants tuner (CMA-ES in that
many dimensions) and the literal perturbations then move one by one.

The host never runs the candidate: the function's output is computed in a sandbox job (the
guest's ``agentopt_tune.materialize``) and comes back as plain JSON numbers, which are
validated here and written back with ``repr`` (an exact round trip), so the materialized
program returns exactly what the original did (ints stay ints, tuples stay tuples).

Which functions qualify (:func:`materialize_targets`): a top-level function inside an
EVOLVE-BLOCK that takes no arguments (its output cannot depend on a call), that computes
something (a loop or a comprehension in its body) and that is not already a literal return.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path
from typing import Any

from agentopt.evolve.operators import line_offset
from agentopt.evolve.symbolic import block_spans
from agentopt.evolve.tuning import guest_tool_job
from agentopt.sandbox.base import Sandbox
from agentopt.task import TaskSpec

__all__ = [
    "block_functions",
    "decode_output",
    "literal_text",
    "materialize_program",
    "materialize_targets",
    "render_materialized",
]

MAX_NUMBERS = 1024  # a construction with more numbers is not worth one literal each
_COMPUTING = (ast.For, ast.While, ast.ListComp, ast.GeneratorExp, ast.SetComp, ast.DictComp, ast.Call)


class _Invalid(ValueError):
    """The guest's answer is not a nest of lists/tuples of finite numbers."""


def _is_literal_return(body: list[ast.stmt]) -> bool:
    stmts = body[1:] if body and _is_docstring(body[0]) else body
    if len(stmts) != 1 or not isinstance(stmts[0], ast.Return) or stmts[0].value is None:
        return False
    try:
        ast.literal_eval(stmts[0].value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def block_functions(code: str) -> list[ast.FunctionDef]:
    """Top-level functions that lie wholly inside one EVOLVE-BLOCK."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return []
    spans = block_spans(code)
    out = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or node.end_lineno is None:
            continue
        first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
        lo, hi = line_offset(code, first), line_offset(code, node.end_lineno + 1)
        if any(b0 <= lo and hi <= b1 for b0, b1 in spans):
            out.append(node)
    return out


def materialize_targets(code: str) -> list[str]:
    """Names of the functions :func:`render_materialized` could replace (see the module docstring)."""
    names = []
    for node in block_functions(code):
        a = node.args
        if a.posonlyargs or a.args or a.vararg or a.kwonlyargs or a.kwarg or node.decorator_list:
            continue
        if _is_literal_return(node.body):
            continue
        if any(isinstance(n, _COMPUTING) for stmt in node.body for n in ast.walk(stmt)):
            names.append(node.name)
    return names


def decode_output(encoded: Any, limit: int = MAX_NUMBERS) -> Any:
    """The guest's encoded output as a Python value (``{"tuple": [...]}`` -> tuple); raises
    ValueError unless it is lists/tuples of finite ints and floats, at most ``limit`` numbers."""
    count = [0]

    def walk(value: Any, depth: int) -> Any:
        if depth > 8:
            raise _Invalid("nested more than 8 deep")
        if isinstance(value, bool):
            raise _Invalid("a bool")
        if isinstance(value, int | float):
            count[0] += 1
            if count[0] > limit:
                raise _Invalid(f"more than {limit} numbers")
            if isinstance(value, float) and not math.isfinite(value):
                raise _Invalid("a non-finite number")
            return value
        if isinstance(value, list):
            return [walk(v, depth + 1) for v in value]
        if isinstance(value, dict) and set(value) == {"tuple"} and isinstance(value["tuple"], list):
            return tuple(walk(v, depth + 1) for v in value["tuple"])
        raise _Invalid(f"a {type(value).__name__}")

    result = walk(encoded, 0)
    if count[0] == 0:
        raise _Invalid("no numbers")
    return result


def literal_text(value: Any) -> str:
    """Python source for ``value`` (numbers by ``repr``: floats round-trip exactly)."""
    if isinstance(value, list):
        return "[" + ", ".join(literal_text(v) for v in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(literal_text(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return repr(value)


def _same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (1 == 1.0 is not the same literal)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def render_materialized(code: str, name: str, value: Any) -> str | None:
    """``code`` with the body of function ``name`` replaced by ``return <value>`` (its
    docstring kept); None when ``name`` is not a target or the result would not round-trip."""
    node = next((f for f in block_functions(code) if f.name == name), None)
    if node is None or node.end_lineno is None:
        return None
    keep = node.body[:1] if _is_docstring(node.body[0]) else []
    first_body = node.body[len(keep)] if len(node.body) > len(keep) else None
    if first_body is None:
        return None
    lines = code.splitlines(keepends=True)
    body_line = lines[first_body.lineno - 1]
    if first_body.lineno == node.lineno:  # `def f(): return ...` on one line
        return None
    indent = body_line[: len(body_line) - len(body_line.lstrip())]
    newline = "\r\n" if body_line.endswith("\r\n") else "\n"
    if isinstance(value, list | tuple) and value and all(isinstance(v, list | tuple) for v in value):
        open_, close = ("[", "]") if isinstance(value, list) else ("(", ")")
        rows = "".join(f"{indent}    {literal_text(v)},{newline}" for v in value)
        text = f"{indent}return {open_}{newline}{rows}{indent}{close}{newline}"
    else:
        text = f"{indent}return {literal_text(value)}{newline}"
    start, end = line_offset(code, first_body.lineno), line_offset(code, node.end_lineno + 1)
    child = code[:start] + text + code[end:]
    try:
        tree = ast.parse(child)
    except (SyntaxError, ValueError):
        return None
    new = next((f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == name), None)
    ret = new.body[-1] if new is not None else None
    if not isinstance(ret, ast.Return) or ret.value is None or not _same(ast.literal_eval(ret.value), value):
        return None
    return child


async def materialize_program(
    sandbox: Sandbox, spec: TaskSpec, program_path: Path, name: str
) -> tuple[str | None, dict[str, Any]]:
    """Run ``name()`` of the candidate at ``program_path`` in one sandbox job and return the
    materialized source (or None) and the record for ``mutation["materialized"]``."""
    original = program_path.read_text(encoding="utf-8")
    result = await sandbox.run(guest_tool_job(spec, program_path, {"materialize": name}))
    record: dict[str, Any] = {"function": name}
    if not result.ok or not isinstance(result.value, dict):
        return None, {**record, "error": (result.error or "materialize job failed")[:300]}
    if "error" in result.value:
        return None, {**record, "error": str(result.value["error"])[:300]}
    try:
        value = decode_output(result.value.get("value"))
    except ValueError as err:
        return None, {**record, "error": f"{name}() output rejected: {err}"}
    child = render_materialized(original, name, value)
    if child is None:
        return None, {**record, "error": f"{name}() could not be written back as literals"}
    if len(child) > spec.search.max_code_length:
        return None, {**record, "error": f"materialized program is over max_code_length ({len(child)} chars)"}
    return child, {**record, "numbers": _count(value)}


def _count(value: Any) -> int:
    return sum(_count(v) for v in value) if isinstance(value, list | tuple) else 1
