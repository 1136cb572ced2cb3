"""Guest-side constants tuner: optimize the float literals of a candidate's EVOLVE-BLOCKs.

Runs INSIDE the sandbox (stdlib + numpy only; never imports agentopt). The runner calls
:func:`tune` when a job carries a ``tune`` section: the candidate's float literals inside
its EVOLVE-BLOCKs become a vector, and a seeded Nelder-Mead loop with restarts (adaptive
coefficients, shrinking restart scale; CMA-ES from 12 literals on) optimizes that vector against the task's own
evaluator, calling it on rewritten copies of the program, within an evaluation budget and
a time budget. The answer is the best source found plus counts; it is *advice*, never a
score: the host checks that only literal values inside the blocks changed, and then scores
the tuned program with the normal ``evaluate()`` (so a candidate that tampers with the
tuning objective can only pick its own constants).

Why a direct search (not gradients): the objectives are max-errors, packings and other
kinked functions of the constants; Nelder-Mead's coordinated moves along a ridge are what
a one-literal-at-a-time perturbation never makes (AutoNumerics-Zero tunes every
candidate's constants this way before judging it).

The objective is the evaluator's ``tune_objective(program_path)`` when it defines one (a
cheap proxy, e.g. interpreting a checked AST instead of running the candidate), else the
cascade's stage functions in order (a variant below a stage threshold counts as failed),
else ``evaluate``. Integers are left alone: they are counts, shapes and indices, where a
real-valued step is meaningless.
"""

from __future__ import annotations

import io
import keyword
import math
import os
import random
import shutil
import tempfile
import time
import tokenize
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

_START = "EVOLVE-BLOCK-START"
_END = "EVOLVE-BLOCK-END"
_UNARY_CONTEXT_OPS = frozenset(
    "( [ { , = : ; + - * / % ** // @ < > <= >= == != += -= *= /= //= %= **= -> ~ & | ^ << >>".split()
)
_VALUE_KEYWORDS = frozenset({"True", "False", "None"})
# Tokens after a literal that bind tighter than a binary +/-: flipping that +/- would change
# the meaning (a - 2 * b != a + -2 * b is fine, but a - 2 ** b != a + (-2) ** b).
_TIGHT_AFTER = frozenset({"*", "/", "//", "%", "**", "@", "(", "[", "."})
FAILED = -math.inf


@dataclass(frozen=True)
class Literal:
    """One float literal inside a block: token span (0-based char offsets) and signed value."""

    start: int  # includes a unary '-' when ``negated``
    end: int
    value: float
    negated: bool
    op_start: int  # binary '+'/'-' right before the literal (-1 when none or not flippable)
    op_text: str
    plain_minus: bool  # a leading '-' needs no parentheses here (`a = -1.5`, `f(-1.5)`)


def _block_line_ranges(lines: list[str]) -> list[tuple[int, int]]:
    """1-based inclusive line ranges strictly between START/END marker comment lines."""
    ranges: list[tuple[int, int]] = []
    open_at = 0
    for n, line in enumerate(lines, start=1):
        bare = line.strip()
        if bare.startswith(("#", "//", "/*")):
            text = bare.lstrip("#/* \t")
            if text.startswith(_START) and not open_at:
                open_at = n
            elif text.startswith(_END) and open_at:
                if n - 1 >= open_at + 1:
                    ranges.append((open_at + 1, n - 1))
                open_at = 0
    if not ranges and not any(_START in line for line in lines):
        ranges.append((1, len(lines)))  # no markers: the whole file is evolvable
    return ranges


def _unary_context(tok: tokenize.TokenInfo | None) -> bool:
    if tok is None:
        return True
    if tok.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING):
        return True
    if tok.type == tokenize.OP:
        return tok.string in _UNARY_CONTEXT_OPS
    if tok.type == tokenize.NAME:
        return keyword.iskeyword(tok.string) and tok.string not in _VALUE_KEYWORDS
    return False


def _float_value(text: str) -> float | None:
    low = text.lower()
    if low.endswith("j") or low.startswith(("0x", "0o", "0b")):
        return None
    if not any(c in low for c in ".e"):
        return None  # an int: structure, not a tunable constant
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def find_literals(source: str) -> list[Literal]:
    """The float literals inside the EVOLVE-BLOCKs of ``source``, in text order."""
    lines = io.StringIO(source).readlines()
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    ranges = _block_line_ranges(lines)
    try:
        tokens = [
            t
            for t in tokenize.generate_tokens(io.StringIO(source).readline)
            if t.type not in (tokenize.COMMENT, tokenize.NL)
        ]
    except (tokenize.TokenError, SyntaxError, ValueError):
        return []

    def offset(pos: tuple[int, int]) -> int:
        return starts[pos[0] - 1] + pos[1]

    out: list[Literal] = []
    for i, tok in enumerate(tokens):
        if tok.type != tokenize.NUMBER:
            continue
        value = _float_value(tok.string)
        if value is None:
            continue
        prev = tokens[i - 1] if i > 0 else None
        before = tokens[i - 2] if i > 1 else None
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        negated = prev is not None and prev.string == "-" and _unary_context(before)
        first_row = prev.start[0] if negated and prev is not None else tok.start[0]
        if not any(lo <= first_row and tok.end[0] <= hi for lo, hi in ranges):
            continue
        op_start, op_text = -1, ""
        if (
            prev is not None
            and not negated
            and prev.string in ("+", "-")
            and not _unary_context(before)
            and (nxt is None or nxt.string not in _TIGHT_AFTER)
            and (before is None or before.string != "**")
        ):
            op_start, op_text = offset(prev.start), prev.string
        start = offset(prev.start) if negated and prev is not None else offset(tok.start)
        plain = _unary_context(prev) and (prev is None or prev.string != "**") and (
            nxt is None or nxt.string not in ("**", ".")
        )
        out.append(
            Literal(start, offset(tok.end), -value if negated else value, negated, op_start, op_text, plain)
        )
    return out


def render(source: str, literals: list[Literal], values: list[float]) -> str:
    """``source`` with each literal set to its new value (repr: exact round trip)."""
    edits: list[tuple[int, int, str]] = []
    for lit, value in zip(literals, values, strict=True):
        value = float(value)
        negative = math.copysign(1.0, value) < 0
        body = repr(abs(value))
        if not negative:
            edits.append((lit.start, lit.end, body))
        elif lit.negated:
            edits.append((lit.start, lit.end, "-" + body))
        elif lit.op_start >= 0:
            flipped = "+" if lit.op_text == "-" else "-"
            edits.append((lit.op_start, lit.op_start + 1, flipped))
            edits.append((lit.start, lit.end, body))
        elif lit.plain_minus:
            edits.append((lit.start, lit.end, f"-{body}"))
        else:
            edits.append((lit.start, lit.end, f"(-{body})"))
    for start, end, text in sorted(edits, reverse=True):
        source = source[:start] + text + source[end:]
    return source


# ---------------------------------------------------------------------------- objective


def _score(value: Any, metric: str) -> float | None:
    if not isinstance(value, dict):
        metrics = getattr(value, "metrics", None)
        if not isinstance(metrics, dict):
            return None
        value = metrics
    error = value.get("error")
    if isinstance(error, str) and error.strip():
        return None
    for key in (metric, "combined_score") if metric == "score" else (metric,):
        raw = value.get(key)
        if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(float(raw)):
            return float(raw)
    return None


def make_objective(module: Any, options: dict[str, Any]) -> tuple[Callable[[str], float], str]:
    """``(program_path -> score to maximize, name)`` from the evaluator module and options."""
    metric = str(options.get("metric") or "score")
    sign = -1.0 if options.get("direction") == "minimize" else 1.0
    hook = getattr(module, "tune_objective", None)
    if callable(hook) and options.get("use_hook", True):
        functions = ["tune_objective"]
    else:
        functions = [str(f) for f in options.get("functions") or ["evaluate"]]
    thresholds = [float(t) for t in options.get("thresholds") or []]
    calls = [getattr(module, name) for name in functions]

    def objective(path: str) -> float:
        score: float | None = None
        for index, func in enumerate(calls):
            try:
                score = _score(func(path), metric)
            except Exception:  # noqa: BLE001 - a failing variant is just a bad point
                return FAILED
            if score is None:
                return FAILED
            if index < len(thresholds) and index < len(calls) - 1:
                limit = thresholds[index]
                if (score < limit) if sign > 0 else (score > limit):
                    return FAILED
        return FAILED if score is None else sign * score

    return objective, "+".join(functions)


# ---------------------------------------------------------------------------- search


class _Budget(Exception):
    """Raised inside the search when the evaluation or time budget is spent."""


class _Search:
    """Counts evaluations, remembers the best point, enforces the budgets."""

    def __init__(self, fn: Callable[[np.ndarray], float], max_evals: int, deadline: float) -> None:
        self.fn = fn
        self.max_evals = max_evals
        self.deadline = deadline
        self.evals = 0
        self.best_x: np.ndarray | None = None
        self.best_f = FAILED
        self.stopped = "converged"

    def __call__(self, x: np.ndarray) -> float:
        if self.evals >= self.max_evals:
            self.stopped = "budget"
            raise _Budget
        if time.monotonic() >= self.deadline:
            self.stopped = "time"
            raise _Budget
        self.evals += 1
        f = self.fn(x)
        if f > self.best_f:
            self.best_f, self.best_x = f, x.copy()
        return f


def nelder_mead(search: _Search, x0: np.ndarray, steps: np.ndarray, rng: random.Random, min_rel: float) -> None:
    """One adaptive Nelder-Mead run (Gao & Han coefficients), maximizing ``search``.

    The initial simplex uses per-coordinate ``steps`` with seeded random signs; the run ends
    when the simplex collapses below ``min_rel`` relative size or stops improving.
    """
    n = len(x0)
    alpha, beta = 1.0, 1.0 + 2.0 / n
    gamma, delta = 0.75 - 1.0 / (2.0 * n), 1.0 - 1.0 / n
    simplex = [x0.copy()]
    for i in range(n):
        x = x0.copy()
        x[i] += steps[i] * rng.choice((-1.0, 1.0))
        simplex.append(x)
    values = [search(x) for x in simplex]
    stall = 0
    while True:
        order = sorted(range(n + 1), key=lambda k: -values[k])
        simplex = [simplex[k] for k in order]
        values = [values[k] for k in order]
        spread = max(float(np.max(np.abs(x - simplex[0]))) for x in simplex[1:])
        scale = float(np.max(np.abs(simplex[0]))) or 1.0
        if spread <= min_rel * scale or stall > 30 * n:
            return
        best_before = values[0]
        centroid = np.mean(simplex[:-1], axis=0)
        worst = simplex[-1]
        xr = centroid + alpha * (centroid - worst)
        fr = search(xr)
        if fr > values[0]:
            xe = centroid + beta * (xr - centroid)
            fe = search(xe)
            simplex[-1], values[-1] = (xe, fe) if fe > fr else (xr, fr)
        elif fr > values[-2]:
            simplex[-1], values[-1] = xr, fr
        else:
            outside = fr > values[-1]
            xc = centroid + gamma * ((xr if outside else worst) - centroid)
            fc = search(xc)
            if fc > (fr if outside else values[-1]):
                simplex[-1], values[-1] = xc, fc
            else:
                for k in range(1, n + 1):
                    simplex[k] = simplex[0] + delta * (simplex[k] - simplex[0])
                    values[k] = search(simplex[k])
        stall = 0 if max(values) > best_before else stall + 1


def cma_es(search: _Search, x0: np.ndarray, steps: np.ndarray, seed: int, patience: int = 20) -> None:
    """One CMA-ES run (Hansen's (mu/mu_w, lambda) with rank-one and rank-mu updates), maximizing.

    Why next to Nelder-Mead: in tens of dimensions (26 free circle centres are 52 numbers) a
    simplex needs n + 1 points just to start and then moves one vertex at a time; CMA-ES
    samples a population and learns the correlations of the good moves, which on the
    packing task is the difference between 2.40 and 2.48 in the same 3000 calls. ``steps``
    scales each coordinate (so literals of different magnitudes get comparable moves);
    failed points (``FAILED``) rank last. Ends when the step size collapses or when
    ``patience`` generations in a row found nothing better than the run's best so far (the
    caller then restarts at another scale instead of spending its budget in a dead basin).
    """
    n = len(x0)
    gen = np.random.default_rng(seed)
    lam = 4 + int(3 * math.log(n))
    mu = lam // 2
    weights = np.log(mu + 0.5) - np.log(np.arange(1, mu + 1))
    weights /= weights.sum()
    mueff = 1.0 / float(np.sum(weights**2))
    cc = (4 + mueff / n) / (n + 4 + 2 * mueff / n)
    cs = (mueff + 2) / (n + mueff + 5)
    c1 = 2 / ((n + 1.3) ** 2 + mueff)
    cmu = min(1 - c1, 2 * (mueff - 2 + 1 / mueff) / ((n + 2) ** 2 + mueff))
    damps = 1 + 2 * max(0.0, math.sqrt((mueff - 1) / (n + 1)) - 1) + cs
    chi_n = math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n * n))
    mean = x0.astype(np.float64).copy()
    pc, ps = np.zeros(n), np.zeros(n)
    basis, diag, cov = np.eye(n), np.ones(n), np.eye(n)
    sigma, counted, eigen_at = 1.0, 0, 0
    best_seen, stale = -math.inf, 0
    while sigma * float(np.max(diag)) > 1e-14 and stale < patience:
        z = gen.standard_normal((lam, n))
        y = (z * diag) @ basis.T
        values = np.array([search(mean + sigma * steps * row) for row in y])
        counted += lam
        top = float(np.max(values))
        best_seen, stale = (top, 0) if top > best_seen else (best_seen, stale + 1)
        best = np.argsort(-values, kind="stable")[:mu]
        yw = weights @ y[best]
        mean = mean + sigma * steps * yw
        inv_sqrt = basis @ np.diag(1.0 / diag) @ basis.T
        ps = (1 - cs) * ps + math.sqrt(cs * (2 - cs) * mueff) * (inv_sqrt @ yw)
        norm = float(np.linalg.norm(ps))
        hsig = norm / math.sqrt(1 - (1 - cs) ** (2 * counted / lam)) / chi_n < 1.4 + 2 / (n + 1)
        pc = (1 - cc) * pc + hsig * math.sqrt(cc * (2 - cc) * mueff) * yw
        chosen = y[best]
        cov = (
            (1 - c1 - cmu) * cov
            + c1 * (np.outer(pc, pc) + (0.0 if hsig else cc * (2 - cc)) * cov)
            + cmu * (chosen.T * weights) @ chosen
        )
        sigma *= math.exp(min(1.0, (cs / damps) * (norm / chi_n - 1)))
        if counted - eigen_at > lam / (c1 + cmu) / n / 10:
            eigen_at = counted
            cov = np.triu(cov) + np.triu(cov, 1).T
            eig, basis = np.linalg.eigh(cov)
            diag = np.sqrt(np.maximum(eig, 1e-30))


# Step multipliers of successive CMA-ES restarts: a tight construction (circles in contact) only
# improves by small joint moves, a loose one by large ones; cycling finds either within a budget.
CMA_SCALES = (0.1, 1.0, 0.01, 0.3, 0.03)
# CMA-ES above this many literals (a simplex is the better local polish in a few dimensions).
CMA_MIN_LITERALS = 12


def choose_method(options: dict[str, Any], n: int) -> str:
    """``nelder_mead`` or ``cma_es``: the option, or by dimension when it is ``auto``."""
    method = str(options.get("method") or "auto")
    if method in ("nelder_mead", "cma_es"):
        return method
    return "cma_es" if n >= CMA_MIN_LITERALS else "nelder_mead"


def tune(module: Any, program_path: str, options: dict[str, Any]) -> dict[str, Any]:
    """Tune the float literals of ``program_path``; return the best source and counts.

    Options: ``seed``, ``evaluations`` (objective calls, the first included), ``time_s``,
    ``scale`` (first simplex step relative to each literal), ``max_literals``, ``metric``,
    ``direction``, ``functions`` and ``thresholds`` (the cascade), ``use_hook``, ``method``
    (``auto``, ``nelder_mead`` or ``cma_es``). With ``materialize`` (a function name) the job
    does not tune: it answers :func:`materialize`'s encoded output instead.
    """
    started = time.monotonic()
    if options.get("materialize"):
        return materialize(program_path, str(options["materialize"]))
    with open(program_path, encoding="utf-8") as fh:
        source = fh.read()
    literals = find_literals(source)
    out: dict[str, Any] = {"literals": len(literals), "evaluations": 0, "before": None, "after": None}
    if not literals:
        return {**out, "stopped": "no_literals"}
    max_literals = int(options.get("max_literals", 64))
    if len(literals) > max_literals:
        return {**out, "stopped": f"too_many_literals (> {max_literals})"}
    objective, name = make_objective(module, options)
    out["objective"] = name
    rng = random.Random(int(options.get("seed", 0)))
    scratch = tempfile.mkdtemp(prefix="tune-", dir=_writable_dir(program_path))
    suffix = os.path.splitext(program_path)[1] or ".py"
    counter = [0]

    def at(x: np.ndarray) -> float:
        counter[0] += 1
        path = os.path.join(scratch, f"candidate_{counter[0]}{suffix}")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(render(source, literals, x.tolist()))
        try:
            f = objective(path)
        finally:
            _unlink(path)
        return f if math.isfinite(f) else FAILED

    x0 = np.array([lit.value for lit in literals], dtype=np.float64)
    deadline = started + float(options.get("time_s", 10.0))
    search = _Search(at, max(1, int(options.get("evaluations", 200))), deadline)
    try:
        f0 = search(x0)
        out["before"] = _report(f0, options)
        if f0 == FAILED:
            return {**out, "evaluations": search.evals, "stopped": "failed"}
        scale = float(options.get("scale", 0.05))
        method = out["method"] = choose_method(options, len(literals))
        restart = 0
        while True:
            base = search.best_x if search.best_x is not None else x0
            mags = np.where(np.abs(base) > 0, np.abs(base), 1.0)
            if method == "cma_es":  # restarts from the best point, cycling through step scales
                # Coordinates near 0 (a centre at x = 0.09) still get a step of the typical size.
                floor = float(np.median(np.abs(base))) or 1.0
                factor = CMA_SCALES[restart % len(CMA_SCALES)]
                cma_es(search, base.copy(), scale * factor * np.maximum(np.abs(base), floor), rng.getrandbits(32))
            else:
                jitter = np.array([math.exp(rng.gauss(0.0, 0.5)) for _ in range(len(base))])
                nelder_mead(search, base.copy(), scale * mags * jitter, rng, 1e-13)
            restart += 1
            if method != "cma_es":
                scale = max(scale * 0.3, 1e-9) if restart % 4 else float(options.get("scale", 0.05))
    except _Budget:
        pass
    finally:
        _rmdir(scratch)
    out["evaluations"] = search.evals
    out["stopped"] = search.stopped
    out["after"] = _report(search.best_f, options)
    if search.best_x is not None and search.best_f > f0:
        out["source"] = render(source, literals, search.best_x.tolist())
    return out


# ---------------------------------------------------------------------------- materialize

MATERIALIZE_MAX_NUMBERS = 4096


class _NotPlain(Exception):
    """The output is not a nest of lists/tuples of finite numbers."""


def encode_plain(value: Any, budget: list[int]) -> Any:
    """``value`` as JSON that keeps what a literal needs: lists stay lists, a tuple becomes
    ``{"tuple": [...]}``, ints and floats (numpy scalars included) stay numbers with their
    type; anything else (or a non-finite number, or more than the budget) raises."""
    if isinstance(value, bool):
        raise _NotPlain("a bool")
    if isinstance(value, int | np.integer):
        budget[0] -= 1
        if budget[0] < 0:
            raise _NotPlain(f"more than {MATERIALIZE_MAX_NUMBERS} numbers")
        return int(value)
    if isinstance(value, float | np.floating):
        budget[0] -= 1
        if budget[0] < 0 or not math.isfinite(float(value)):
            raise _NotPlain("a non-finite number" if budget[0] >= 0 else f"more than {MATERIALIZE_MAX_NUMBERS} numbers")
        return float(value)
    if isinstance(value, list | tuple):
        items = [encode_plain(v, budget) for v in value]
        return {"tuple": items} if isinstance(value, tuple) else items
    raise _NotPlain(f"a {type(value).__name__}")


def materialize(program_path: str, function: str) -> dict[str, Any]:
    """Run the candidate's zero-argument ``function`` here (inside the sandbox) and return its
    output encoded by :func:`encode_plain`, for the host to write back as literals (the
    ``materialize`` operator: every number of a construction becomes a free constant).

    The candidate runs in this process, as a ``tune_objective`` would: the job is the sandbox,
    and the host only reads the encoded numbers, never code.
    """
    with open(program_path, encoding="utf-8") as fh:
        source = fh.read()
    namespace: dict[str, Any] = {"__name__": "candidate", "__file__": program_path}
    try:
        exec(compile(source, program_path, "exec"), namespace)  # noqa: S102 - inside the sandbox
        func = namespace.get(function)
        if not callable(func):
            return {"error": f"the program defines no function {function}()"}
        value = func()
        return {"value": encode_plain(value, [MATERIALIZE_MAX_NUMBERS])}
    except _NotPlain as err:
        return {"error": f"{function}() returned {err}, not only lists/tuples of numbers"}
    except Exception as err:  # noqa: BLE001 - the candidate's failure is reported, not raised
        return {"error": f"{function}() failed: {type(err).__name__}: {str(err)[:200]}"}


def _report(f: float, options: dict[str, Any]) -> float | None:
    if f == FAILED:
        return None
    return -f if options.get("direction") == "minimize" else f


def _writable_dir(program_path: str) -> str | None:
    for candidate in (os.path.dirname(os.path.abspath(program_path)), os.getcwd(), os.environ.get("TMPDIR")):
        if candidate and os.access(candidate, os.W_OK):
            return candidate
    return None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _rmdir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
