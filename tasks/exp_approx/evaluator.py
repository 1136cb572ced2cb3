"""Evaluator for exp_approx: exp(x) on [-ln2/2, ln2/2] with a capped multiply/add count.

Guest side: stdlib + numpy only, and the candidate is never imported here. It runs in a
child process through ``agentopt_guest.call_candidate``.

Why the score cannot be gamed: the function ``exp_approx`` is checked *statically* (only
its argument, its own locals, numeric constants and + - * ; at most the cap of binary
operations), and the score is computed by interpreting exactly that checked AST here, in
float64 on a dense grid. The candidate's own ``exp_approx_batch`` output (one round trip
for the whole grid) must agree with the interpretation, so a program whose helper returns
something else (``math.exp``, a lookup table...) is rejected instead of scored.

score = -log10(max relative error). Invalid programs get ``score: 0`` and an ``error``.
Metrics beside the score: ``ops`` (the checked multiply/add/subtract count, the cost
objective of ``tasks/exp_approx_pareto``), ``max_rel_error``, ``mul_ops``, ``add_ops``.

The operation cap is 10 unless the environment variable EXP_APPROX_MAX_OPS says otherwise
(a task sets it with ``sandbox: {env: {EXP_APPROX_MAX_OPS: "16"}}``), so one evaluator
serves both the fixed-budget task and the accuracy-against-cost one.
"""

from __future__ import annotations

import ast
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from agentopt_guest import CandidateError, call_candidate

DEFAULT_MAX_OPS = 10
MAX_OPS_ENV = "EXP_APPROX_MAX_OPS"
MAX_OPS_LIMIT = 64  # a sane upper bound for a configured cap
HALF_LN2 = math.log(2.0) / 2.0
GRID_POINTS = 20001
STAGE1_POINTS = 11
CALL_TIMEOUT_S = 10.0
# The candidate's values must match the interpretation of its checked AST this closely.
AGREEMENT_RTOL = 1e-12
MAX_INT_CONSTANT = 2**53

_ALLOWED_BINOPS = {ast.Add: "add", ast.Sub: "add", ast.Mult: "mul"}


class InvalidProgram(Exception):
    """The program breaks a rule; the message is shown to the user and the LLM."""


# ---------------------------------------------------------------------------- static check


def _check_expr(node: ast.expr, defined: set[str], counts: dict[str, int]) -> None:
    if isinstance(node, ast.BinOp):
        kind = _ALLOWED_BINOPS.get(type(node.op))
        if kind is None:
            raise InvalidProgram(
                f"line {node.lineno}: operator {type(node.op).__name__} is not allowed (only + - *)"
            )
        counts[kind] += 1
        _check_expr(node.left, defined, counts)
        _check_expr(node.right, defined, counts)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, ast.USub | ast.UAdd):
            raise InvalidProgram(f"line {node.lineno}: unary {type(node.op).__name__} is not allowed")
        _check_expr(node.operand, defined, counts)  # a sign flip is free
    elif isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidProgram(
                f"line {node.lineno}: only int/float constants are allowed, got {value!r:.40}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidProgram(f"line {node.lineno}: non-finite constant")
        if isinstance(value, int) and abs(value) > MAX_INT_CONSTANT:
            raise InvalidProgram(f"line {node.lineno}: integer constant too large")
    elif isinstance(node, ast.Name):
        if node.id not in defined:
            raise InvalidProgram(
                f"line {node.lineno}: '{node.id}' is not the argument or a local assigned earlier "
                "(globals, builtins and math are not allowed)"
            )
    else:
        raise InvalidProgram(
            f"line {node.lineno}: {type(node).__name__} is not allowed in exp_approx "
            "(no calls, attributes, subscripts, comprehensions, conditionals, / or **)"
        )


def max_ops() -> int:
    """The operation cap: EXP_APPROX_MAX_OPS when set (read per call, so the task's sandbox env
    decides), else 10. A malformed value fails every candidate with a message naming it."""
    raw = os.environ.get(MAX_OPS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_OPS
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_OPS_LIMIT:
        raise InvalidProgram(f"{MAX_OPS_ENV} must be an integer in 0..{MAX_OPS_LIMIT}, got {raw!r:.40}")
    return value


def check_function(code: str, cap: int | None = None) -> tuple[ast.FunctionDef, dict[str, int]]:
    """Validate ``exp_approx`` in ``code``; return its AST and the op counts {mul, add}.
    ``cap`` is the operation limit (default: :func:`max_ops`)."""
    cap = max_ops() if cap is None else cap
    try:
        tree = ast.parse(code)
    except SyntaxError as err:
        raise InvalidProgram(f"syntax error at line {err.lineno}: {err.msg}") from None
    defs = [
        n
        for n in tree.body
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == "exp_approx"
    ]
    if len(defs) != 1 or not isinstance(defs[0], ast.FunctionDef):
        raise InvalidProgram("the program must define exactly one top-level function 'def exp_approx(x)'")
    fn = defs[0]
    args = fn.args
    if (
        len(args.args) != 1
        or args.posonlyargs
        or args.vararg
        or args.kwarg
        or args.kwonlyargs
        or args.defaults
        or fn.decorator_list
    ):
        raise InvalidProgram("exp_approx must take exactly one argument, with no defaults or decorators")
    defined = {args.args[0].arg}
    counts = {"mul": 0, "add": 0}
    body = list(fn.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # docstring
    if not body or not isinstance(body[-1], ast.Return) or body[-1].value is None:
        raise InvalidProgram("exp_approx must end with 'return <expression>'")
    for stmt in body:
        if isinstance(stmt, ast.Pass):
            continue
        if isinstance(stmt, ast.Return):
            if stmt is not body[-1]:
                raise InvalidProgram(f"line {stmt.lineno}: only one return, as the last statement")
            _check_expr(stmt.value, defined, counts)  # type: ignore[arg-type]
        elif isinstance(stmt, ast.Assign):
            if len(stmt.targets) != 1 or not isinstance(stmt.targets[0], ast.Name):
                raise InvalidProgram(f"line {stmt.lineno}: assign to one plain local name")
            _check_expr(stmt.value, defined, counts)
            defined.add(stmt.targets[0].id)
        elif isinstance(stmt, ast.AugAssign):
            if not isinstance(stmt.target, ast.Name) or stmt.target.id not in defined:
                raise InvalidProgram(f"line {stmt.lineno}: augmented assignment to an undefined local")
            kind = _ALLOWED_BINOPS.get(type(stmt.op))
            if kind is None:
                raise InvalidProgram(f"line {stmt.lineno}: operator {type(stmt.op).__name__}= is not allowed")
            counts[kind] += 1
            _check_expr(stmt.value, defined, counts)
        else:
            raise InvalidProgram(
                f"line {stmt.lineno}: {type(stmt).__name__} is not allowed "
                "(straight-line assignments and one final return only: no loops, branches or imports)"
            )
    total = counts["mul"] + counts["add"]
    if total > cap:
        raise InvalidProgram(
            f"exp_approx uses {total} operations ({counts['mul']} *, {counts['add']} +/-); at most {cap}"
        )
    return fn, counts


# ---------------------------------------------------------------------------- interpretation


def _eval_expr(node: ast.expr, env: dict[str, Any]) -> Any:
    if isinstance(node, ast.BinOp):
        left, right = _eval_expr(node.left, env), _eval_expr(node.right, env)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        return left * right
    if isinstance(node, ast.UnaryOp):
        value = _eval_expr(node.operand, env)
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.Constant):
        return float(node.value)
    return env[node.id]  # type: ignore[attr-defined]


def interpret(fn: ast.FunctionDef, xs: np.ndarray) -> np.ndarray:
    """Run the checked function on a float64 array, with the same operation order as Python."""
    env: dict[str, Any] = {fn.args.args[0].arg: xs}
    with np.errstate(all="ignore"):
        for stmt in fn.body:
            if isinstance(stmt, ast.Assign):
                env[stmt.targets[0].id] = _eval_expr(stmt.value, env)  # type: ignore[union-attr]
            elif isinstance(stmt, ast.AugAssign):
                name = stmt.target.id  # type: ignore[union-attr]
                value = _eval_expr(stmt.value, env)
                if isinstance(stmt.op, ast.Add):
                    env[name] = env[name] + value
                elif isinstance(stmt.op, ast.Sub):
                    env[name] = env[name] - value
                else:
                    env[name] = env[name] * value
            elif isinstance(stmt, ast.Return):
                result = _eval_expr(stmt.value, env)  # type: ignore[arg-type]
                return np.broadcast_to(np.asarray(result, dtype=np.float64), xs.shape).copy()
    raise InvalidProgram("exp_approx has no return")  # unreachable after check_function


# ---------------------------------------------------------------------------- scoring


def _grid(n: int) -> np.ndarray:
    return np.linspace(-HALF_LN2, HALF_LN2, n)


def _run(program_path: str, n_points: int) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Check, interpret and cross-check the candidate; return (xs, relative error, op counts)."""
    code = Path(program_path).read_text(encoding="utf-8", errors="replace")
    fn, counts = check_function(code)
    xs = _grid(n_points)
    expected = interpret(fn, xs)
    try:
        got = call_candidate(program_path, "exp_approx_batch", args=(xs.tolist(),), timeout=CALL_TIMEOUT_S)
    except CandidateError as err:
        raise InvalidProgram(f"running exp_approx_batch failed: {err}") from None
    if not isinstance(got, list) or len(got) != len(xs):
        raise InvalidProgram(f"exp_approx_batch must return a list of {len(xs)} floats")
    try:
        got_arr = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidProgram("exp_approx_batch returned non-numeric values") from None
    with np.errstate(all="ignore"):
        agree = np.isclose(got_arr, expected, rtol=AGREEMENT_RTOL, atol=0.0, equal_nan=True)
    if not agree.all():
        i = int(np.argmin(agree))
        raise InvalidProgram(
            f"exp_approx_batch disagrees with exp_approx at x={xs[i]:.6g} ({got_arr[i]!r} vs {expected[i]!r}): "
            "the batch helper must return exp_approx(x) for every x"
        )
    if not np.all(np.isfinite(expected)):
        raise InvalidProgram("exp_approx returns non-finite values on the range")
    truth = np.exp(xs)
    rel = (expected - truth) / truth
    return xs, rel, counts


def _extrema(xs: np.ndarray, rel: np.ndarray, limit: int = 8) -> list[tuple[float, float]]:
    """Local extrema of |error| (incl. the ends): where a minimax fit must equioscillate."""
    a = np.abs(rel)
    floor = 0.05 * float(a.max())  # rounding noise makes tiny local maxima near x = 0
    inner = (a[1:-1] >= a[:-2]) & (a[1:-1] > a[2:]) & (a[1:-1] >= floor)
    idx = sorted({0, len(a) - 1, *(np.nonzero(inner)[0] + 1).tolist()})
    if len(idx) > limit:
        idx = sorted(sorted(idx, key=lambda i: -a[i])[:limit])
    return [(float(xs[i]), float(rel[i])) for i in idx]


def _sign_runs(rel: np.ndarray) -> str:
    """Sign pattern of the error curve, ignoring values below 1% of the maximum."""
    cut = 0.01 * float(np.max(np.abs(rel)))
    positive = rel[~(np.abs(rel) <= cut)] > 0  # vectorised: a Python loop here cost ~60% of evaluate()
    if positive.size == 0:
        return "0"
    starts = np.concatenate(([0], np.flatnonzero(positive[1:] != positive[:-1]) + 1))
    return " ".join("+" if p else "-" for p in positive[starts])


def _invalid(reason: str) -> dict[str, Any]:
    return {"score": 0.0, "error": reason, "feedback": f"invalid program: {reason}"}


def _result(xs: np.ndarray, rel: np.ndarray, counts: dict[str, int], full: bool) -> dict[str, Any]:
    max_err = float(np.max(np.abs(rel)))
    worst = int(np.argmax(np.abs(rel)))
    score = -math.log10(max(max_err, 1e-17))
    pattern = _sign_runs(rel)
    ops = counts["mul"] + counts["add"]
    result: dict[str, Any] = {
        "score": score,
        "max_rel_error": max_err,
        "ops": ops,
        "mul_ops": counts["mul"],
        "add_ops": counts["add"],
        "sign_runs": len(pattern.split()),
    }
    if not full:
        result["feedback"] = f"stage 1 ({len(xs)} points): max relative error {max_err:.3e}, {ops} ops"
        return result
    extrema = ", ".join(f"x={x:+.4f}: {e:+.2e}" for x, e in _extrema(xs, rel))
    result["feedback"] = (
        f"max relative error {max_err:.3e} at x={xs[worst]:+.5f} (score {score:.3f}; {len(xs)} points on "
        f"[-ln2/2, ln2/2]).\n"
        f"error sign pattern across the range: {pattern} ({len(pattern.split())} runs; a best (minimax) "
        f"polynomial of degree d has an error that alternates sign with d+2 equal-size extrema).\n"
        f"extrema of the relative error: {extrema}.\n"
        f"operations used: {ops} of {max_ops()} ({counts['mul']} multiplications, {counts['add']} additions/subtractions)."
    )
    step = max(1, len(xs) // 40)
    curve = "\n".join(f"{xs[i]:+.6f} {rel[i]:+.6e}" for i in range(0, len(xs), step))
    result["artifacts"] = {"error_curve": "x relative_error\n" + curve}
    return result


def evaluate_stage1(program_path: str) -> dict[str, Any]:
    """Cheap check: the rules hold and the program runs and returns one float per point."""
    try:
        xs, rel, counts = _run(program_path, STAGE1_POINTS)
    except InvalidProgram as err:
        return _invalid(str(err))
    return _result(xs, rel, counts, full=False)


def evaluate_stage2(program_path: str) -> dict[str, Any]:
    """Full score on the dense grid, with feedback on where and how the error is distributed."""
    try:
        xs, rel, counts = _run(program_path, GRID_POINTS)
    except InvalidProgram as err:
        return _invalid(str(err))
    return _result(xs, rel, counts, full=True)


def evaluate(program_path: str) -> dict[str, Any]:
    """Single-stage evaluation (the full one)."""
    return evaluate_stage2(program_path)


_TUNE_GRID: tuple[np.ndarray, np.ndarray] | None = None


def tune_objective(program_path: str) -> dict[str, Any]:
    """Cheap proxy for constants tuning: the same score as ``evaluate`` without running the
    candidate (the checked AST is interpreted on the grid), so thousands of coefficient
    variants cost milliseconds each. The stored score still comes from ``evaluate``."""
    global _TUNE_GRID
    if _TUNE_GRID is None:
        xs = _grid(GRID_POINTS)
        _TUNE_GRID = (xs, np.exp(xs))
    xs, truth = _TUNE_GRID
    try:
        fn, _ = check_function(Path(program_path).read_text(encoding="utf-8", errors="replace"))
    except InvalidProgram as err:
        return _invalid(str(err))
    values = interpret(fn, xs)
    if not np.all(np.isfinite(values)):
        return _invalid("exp_approx returns non-finite values on the range")
    max_err = float(np.max(np.abs((values - truth) / truth)))
    return {"score": -math.log10(max(max_err, 1e-17))}
