"""The ``best_of_k`` operator: wrap a seeded randomized construction in best-of-k restarts.

Why: a randomized greedy (cap_set's ``build_cap_set`` draws its order from
``random.Random(SEED)``) scores whatever its one seed gives; the same program run over k
seeds and keeping the best result is a much stronger program (best of 1000 greedy orders
finds the 20-cap in F_3^4 that one order almost never does), and its score is a smoother
function of the other constants. Literal perturbations can change SEED, never turn one
run into many; this operator does, once, and then ``RESTARTS`` is an int the perturbations
move.

Detection is on the AST only (the host never runs a candidate):

* the seed: a module-level ``NAME = <int>`` inside an EVOLVE-BLOCK whose name is passed to
  an RNG constructor or seeder (``random.Random``, ``random.seed``, ``np.random.default_rng``,
  ``np.random.seed``, ``np.random.RandomState``, ``torch.manual_seed``...) inside a top-level
  function of the block;
* the entry: that function, when the evaluator calls it (a string given to ``call_candidate``
  in the evaluator source) or, when the evaluator names none, when no other code of the
  program calls it;
* the judge: the evaluator's optional ``restart_score(value)`` hook: a pure, self-contained
  function (its own imports, no module globals) of the entry's return value, higher is
  better. Its source is copied into the candidate as ``_restart_score``; without it the
  operator never fires (the operator cannot guess what "best" means for a task).

The wrapper keeps the entry's name and signature, runs the original (renamed
``_<name>_once``) with SEED, SEED + 1, ... and returns the best-scoring result. It stops
starting new runs after ``RESTART_SECONDS`` (an int, so tuning leaves it alone), which keeps
the candidate inside the task's time limit; as long as the k runs finish before that, the
result does not depend on the machine's speed.
"""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

from agentopt.evolve.materialize import block_functions
from agentopt.evolve.operators import line_offset
from agentopt.evolve.symbolic import block_spans

__all__ = ["RESTARTS_START", "best_of_k", "restart_hook", "seeded_entries"]

RESTARTS_START = 64  # first k: the perturbations then move it (a run of cap_set's greedy is ~0.2 ms)
RESTART_TIME_SHARE = 0.1  # of sandbox.timeout_s: the guard on the restart loop's wall time
HOOK = "restart_score"
_SEEDERS = frozenset({"Random", "seed", "default_rng", "RandomState", "manual_seed", "Generator", "PCG64"})
_BUILTINS = frozenset(dir(builtins))


def _module_ints(tree: ast.Module, code: str, spans: list[tuple[int, int]]) -> set[str]:
    """Names bound at module level inside a block to a plain int literal."""
    out = set()
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Constant)
            and type(node.value.value) is int
        ):
            lo = line_offset(code, node.lineno)
            if any(b0 <= lo < b1 for b0, b1 in spans):
                out.add(node.targets[0].id)
    return out


def _seed_uses(func: ast.FunctionDef, seeds: set[str]) -> set[str]:
    """Seed names ``func`` passes to an RNG constructor or seeder."""
    used = set()
    for node in ast.walk(func):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name not in _SEEDERS:
            continue
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            for sub in ast.walk(arg):
                if isinstance(sub, ast.Name) and sub.id in seeds:
                    used.add(sub.id)
    return used


def seeded_entries(code: str, entry_names: set[str] | None = None) -> list[tuple[str, str]]:
    """``(function, seed name)`` pairs :func:`best_of_k` can wrap (see the module docstring)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return []
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    if any(name.endswith("_once") and name.startswith("_") for name in names):
        return []  # already wrapped: one restart loop is enough
    seeds = _module_ints(tree, code, block_spans(code))
    called = {
        n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }
    out = []
    for func in block_functions(code):
        used = _seed_uses(func, seeds)
        if not used or func.decorator_list:
            continue
        if entry_names is not None and entry_names:
            if func.name not in entry_names:
                continue
        elif func.name in called:
            continue
        out.append((func.name, sorted(used)[0]))
    return out


def restart_hook(evaluator_path: Path) -> tuple[str | None, set[str]]:
    """The evaluator's ``restart_score`` as candidate source (renamed ``_restart_score``), or
    None when it is missing or not self-contained; and the function names the evaluator passes
    to ``call_candidate``. Read from the evaluator's AST: the host never imports it either."""
    try:
        source = Path(evaluator_path).read_text(encoding="utf-8")
        tree = ast.parse(source)
    except (OSError, SyntaxError, ValueError):
        return None, set()
    entries = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "call_candidate":
            candidates = [*node.args[1:2], *(k.value for k in node.keywords if k.arg == "function")]
            for arg in candidates:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    entries.add(arg.value)
    hook = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == HOOK), None)
    if hook is None or not _self_contained(hook):
        return None, entries
    annotated = hook.returns is not None or any(
        isinstance(a, ast.arg) and a.annotation is not None for a in ast.walk(hook.args)
    )
    segment = None if annotated else ast.get_source_segment(source, hook)
    if segment is not None:  # the author's own text, comments included
        return segment.replace(f"def {HOOK}(", f"def _{HOOK}(", 1), entries
    # Annotations would be evaluated in the candidate (names it may not have): drop them.
    hook.name, hook.returns = f"_{HOOK}", None
    for arg in ast.walk(hook.args):
        if isinstance(arg, ast.arg):
            arg.annotation = None
    return ast.unparse(ast.fix_missing_locations(hook)), entries


def _self_contained(func: ast.FunctionDef) -> bool:
    """Only its parameters, its own local names and imports, and builtins."""
    if func.decorator_list or len(func.args.args) != 1:
        return False
    local = {a.arg for a in ast.walk(func.args) if isinstance(a, ast.arg)}
    for node in ast.walk(func):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            local.add(node.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            local.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.FunctionDef | ast.Lambda) and node is not func:
            local.update(a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg))
        elif isinstance(node, ast.Global | ast.Nonlocal):
            return False
    loads = {n.id for n in ast.walk(func) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return loads <= local | _BUILTINS


def _call_args(args: ast.arguments) -> str:
    """Forward a signature's parameters unchanged: ``a, b, *rest, key=key, **extra``."""
    parts = [a.arg for a in [*args.posonlyargs, *args.args]]
    if args.vararg:
        parts.append(f"*{args.vararg.arg}")
    parts += [f"{a.arg}={a.arg}" for a in args.kwonlyargs]
    if args.kwarg:
        parts.append(f"**{args.kwarg.arg}")
    return ", ".join(parts)


def best_of_k(
    code: str, hook_source: str, entry_names: set[str], seconds: int, restarts: int = RESTARTS_START
) -> tuple[str, str] | None:
    """``code`` with its seeded entry wrapped in best-of-``restarts`` runs; None when nothing
    qualifies (see the module docstring)."""
    found = seeded_entries(code, entry_names)
    if not found:
        return None
    name, seed = found[0]
    func = next(f for f in block_functions(code) if f.name == name)
    if func.end_lineno is None:
        return None
    once = f"_{name}_once"
    lines = code.splitlines(keepends=True)
    def_line = lines[func.lineno - 1]
    newline = "\r\n" if def_line.endswith("\r\n") else "\n"
    signature = ast.unparse(func.args)
    wrapper = [
        "",
        "",
        f"RESTARTS = {max(1, int(restarts))}  # best-of-k: runs of {once}, each with its own {seed}",
        f"RESTART_SECONDS = {max(1, int(seconds))}  # no new run after this (the task's time limit)",
        "",
        "",
        hook_source,
        "",
        "",
        f"def {name}({signature}):",
        f'    """Best of RESTARTS runs of {once} over {seed}, {seed} + 1, ... (by _restart_score)."""',
        "    import time",
        "",
        f"    global {seed}",
        f"    first, best, best_score = {seed}, None, None",
        "    deadline = time.monotonic() + RESTART_SECONDS",
        "    try:",
        "        for k in range(RESTARTS):",
        f"            {seed} = first + k",
        f"            value = {once}({_call_args(func.args)})",
        "            score = _restart_score(value)",
        "            if best_score is None or score > best_score:",
        "                best, best_score = value, score",
        "            if time.monotonic() > deadline:",
        "                break",
        "    finally:",
        f"        {seed} = first",
        "    return best",
    ]
    text = newline.join(line for part in wrapper for line in part.split("\n")) + newline
    head = def_line.replace(f"def {name}(", f"def {once}(", 1)
    end = line_offset(code, func.end_lineno + 1)
    child = code[: line_offset(code, func.lineno)] + head + code[line_offset(code, func.lineno + 1) : end] + text + code[end:]
    if not code[:end].endswith(("\n", "\r")):
        return None
    try:
        ast.parse(child)
    except (SyntaxError, ValueError):
        return None
    return child, f"wrapped {name}() in best-of-{restarts} restarts over {seed} (judged by the evaluator's restart_score)"
