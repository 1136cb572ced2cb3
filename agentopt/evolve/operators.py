"""Form-changing and recombining operators for the offline engine.

The literal perturbations of :mod:`agentopt.evolve.symbolic` polish a fixed form; these
operators change the form or recombine good constants, and rely on constants tuning
(:mod:`agentopt.evolve.tuning`) to make the new form competitive before it is judged:

* ``extend_horner``: a Horner chain ``v = c_n; v = v * x + c_{n-1}; ...`` gets one more
  term (``v = c_{n+1}; v = v * x + c_n; ...``). The new leading coefficient starts at a
  small geometric guess, so the child computes nearly the parent's polynomial and tuning
  starts from a good point (a degree-5 exp approximation reaches errors a degree-4 one
  cannot).
* ``crossover_literals``: a child of two programs of the same shape (same code once numeric
  literals are masked) takes each float literal from one parent or a blend of both.
* ``crossover_blocks``: for a program with several EVOLVE-BLOCKs, one block comes from the best
  program of another island (islands evolve apart; this recombines what each found).

Edits are text splices inside the EVOLVE-BLOCKs, as in the symbolic mutator, and every
result parses. All randomness comes from the caller's ``random.Random``.
"""

from __future__ import annotations

import ast
import math
import random

from agentopt.blocks import BlockError, find_blocks, replace_block_texts
from agentopt.evolve.symbolic import LiteralSite, float_literal_sites, set_literal_values
from agentopt.evolve.tuning import same_shape

__all__ = ["crossover_blocks", "crossover_literals", "extend_horner", "truncate_horner"]


def _num(node: ast.AST | None) -> float | None:
    """Value of a numeric literal node (with a unary sign), else None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _num(node.operand)
        return None if inner is None else (-inner if isinstance(node.op, ast.USub) else inner)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return float(node.value)
    return None


def _horner_step(stmt: ast.stmt, var: str) -> tuple[str, float] | None:
    """``(x name, signed constant)`` when ``stmt`` is ``var = var * x +/- c`` (or ``x * var``)."""
    if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
        return None
    if stmt.targets[0].id != var or not isinstance(stmt.value, ast.BinOp):
        return None
    add = stmt.value
    if not isinstance(add.op, ast.Add | ast.Sub):
        return None
    const = _num(add.right)
    mul = add.left
    if const is None or not (isinstance(mul, ast.BinOp) and isinstance(mul.op, ast.Mult)):
        return None
    names = [n.id for n in (mul.left, mul.right) if isinstance(n, ast.Name)]
    if len(names) != 2 or var not in names:
        return None
    other = names[1] if names[0] == var else names[0]
    if other == var:
        return None
    return other, (-const if isinstance(add.op, ast.Sub) else const)


def _chains(tree: ast.AST) -> list[tuple[ast.Assign, ast.Assign, float, float]]:
    """Horner chain heads: ``(lead statement, first step, lead value, first step constant)``."""
    found: list[tuple[ast.Assign, ast.Assign, float, float]] = []
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for first, second in zip(body, body[1:], strict=False):
            if not (isinstance(first, ast.Assign) and len(first.targets) == 1 and isinstance(first.targets[0], ast.Name)):
                continue
            lead = _num(first.value)
            step = _horner_step(second, first.targets[0].id)
            if lead is not None and step is not None:
                found.append((first, second, lead, step[1]))  # type: ignore[arg-type]
    return found


def line_offset(code: str, lineno: int) -> int:
    """Character offset where line ``lineno`` (1-based) of ``code`` starts (``len(code)`` past
    the end): how the AST-driven operators turn a node's lines into a span to splice."""
    lines = code.splitlines(keepends=True)
    return sum(len(line) for line in lines[: lineno - 1])


def _line_span(code: str, node: ast.stmt) -> tuple[int, int]:
    """Character span of the whole lines holding ``node``."""
    return line_offset(code, node.lineno), line_offset(code, (node.end_lineno or node.lineno) + 1)


def _choose_chain(
    code: str, rng: random.Random, blocks: list[tuple[int, int]]
) -> tuple[ast.Assign, ast.Assign, float, float] | None:
    """One Horner chain inside ``blocks``, drawn with ``rng`` (None when the code has none or
    does not parse): what both chain operators start from."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return None
    candidates = _block_chains(code, tree, blocks)
    return rng.choice(candidates) if candidates else None


def extend_horner(code: str, rng: random.Random, blocks: list[tuple[int, int]]) -> tuple[str, str] | None:
    """Add one term to a Horner chain inside ``blocks`` (character spans); None when there is none."""
    chosen = _choose_chain(code, rng, blocks)
    if chosen is None:
        return None
    first, second, lead, step = chosen
    ratio = lead / step if step else 0.1
    ratio = ratio if math.isfinite(ratio) and 0 < abs(ratio) < 1 else 0.1
    new_lead = lead * ratio * rng.uniform(0.5, 1.0)
    first_start, first_end = _line_span(code, first)
    second_start, second_end = _line_span(code, second)
    lead_line = code[first_start:first_end]
    step_line = code[second_start:second_end]
    var = first.targets[0].id  # type: ignore[attr-defined]
    indent = lead_line[: len(lead_line) - len(lead_line.lstrip())]
    newline = "\n" if not lead_line.endswith("\r\n") else "\r\n"
    new_lead_line = f"{indent}{var} = {new_lead!r}{newline}"
    # The old lead becomes the constant of a copied step line (its comment dropped).
    step_tree = ast.parse(step_line.strip()).body[0]
    x_name = _horner_step(step_tree, var)
    if x_name is None:
        return None
    sign = "-" if lead < 0 else "+"
    new_step_line = f"{indent}{var} = {var} * {x_name[0]} {sign} {abs(lead)!r}{newline}"
    child = code[:first_start] + new_lead_line + new_step_line + code[first_end:]
    try:
        ast.parse(child)
    except (SyntaxError, ValueError):
        return None
    return child, f"extended the Horner chain of {var} at line {first.lineno} by one term (lead {new_lead:.3g})"


def crossover_literals(code: str, other: str, rng: random.Random) -> tuple[str, str] | None:
    """Recombine the float literals of two same-shape programs; None when shapes differ."""
    if code == other or not same_shape(code, other):
        return None
    mine, theirs = float_literal_sites(code), float_literal_sites(other)
    if not mine or len(mine) != len(theirs):
        return None
    a = [_effective(s) for s in mine]
    b = [_effective(s) for s in theirs]
    if a == b:
        return None
    if rng.random() < 0.5:
        mask = [rng.random() < 0.5 for _ in a]
        if not any(m for m, x, y in zip(mask, a, b, strict=True) if x != y):
            mask = [x != y for x, y in zip(a, b, strict=True)]
        values = [y if m else x for m, x, y in zip(mask, a, b, strict=True)]
        how = f"took {sum(mask)} of {len(a)} literals from the other parent"
    else:
        t = rng.uniform(-0.25, 1.25)
        values = [x + t * (y - x) for x, y in zip(a, b, strict=True)]
        how = f"blended all {len(a)} literals (t = {t:.2f})"
    child = set_literal_values(code, mine, [_stored(s, v) for s, v in zip(mine, values, strict=True)])
    if child is None or child == code:
        return None
    return child, f"crossover of literals with a same-shape program: {how}"


def _effective(site: LiteralSite) -> float:
    """The literal's contribution with a preceding binary minus folded in (``a - 2`` -> -2)."""
    return -site.value if site.minus_before else site.value


def _stored(site: LiteralSite, effective: float) -> float:
    return -effective if site.minus_before else effective


def crossover_blocks(code: str, donor: str, rng: random.Random) -> tuple[str, str] | None:
    """``code`` with one of its EVOLVE-BLOCK bodies taken from ``donor`` (same block count, at
    least two blocks, the donor's body differs); None when that does not apply or parse."""
    try:
        mine, theirs = find_blocks(code), find_blocks(donor)
    except BlockError:
        return None
    if len(mine) < 2 or len(mine) != len(theirs):
        return None
    differing = [i for i in range(len(mine)) if mine[i].text != theirs[i].text]
    if not differing:
        return None
    k = rng.choice(differing)
    texts = [b.text for b in mine]
    texts[k] = theirs[k].text
    try:
        child = replace_block_texts(code, texts)
        ast.parse(child)
    except (BlockError, SyntaxError, ValueError):
        return None
    return child, f"took EVOLVE-BLOCK {k + 1} from another island's best program"


def truncate_horner(code: str, rng: random.Random, blocks: list[tuple[int, int]]) -> tuple[str, str] | None:
    """Drop the highest-degree term of a Horner chain inside ``blocks``: ``v = c_n; v = v * x +
    c_{n-1}`` becomes ``v = c_{n-1}`` (one multiply and one add fewer). The inverse of
    :func:`extend_horner`: when operation count is an objective, the front needs moves toward
    cheaper programs too; tuning then refits the remaining coefficients. None when no chain."""
    chosen = _choose_chain(code, rng, blocks)
    if chosen is None:
        return None
    first, second, _lead, step = chosen
    start, lead_end = _line_span(code, first)
    end = _line_span(code, second)[1]
    lead_line = code[start:lead_end]
    var = first.targets[0].id  # type: ignore[attr-defined]
    indent = lead_line[: len(lead_line) - len(lead_line.lstrip())]
    newline = "\r\n" if lead_line.endswith("\r\n") else "\n"
    child = code[:start] + f"{indent}{var} = {step!r}{newline}" + code[end:]
    try:
        ast.parse(child)
    except (SyntaxError, ValueError):
        return None
    return child, f"dropped the leading term of the Horner chain of {var} at line {first.lineno}"


def _block_chains(
    code: str, tree: ast.AST, blocks: list[tuple[int, int]]
) -> list[tuple[ast.Assign, ast.Assign, float, float]]:
    """The Horner chain heads of :func:`_chains` whose two lines lie inside one of ``blocks``."""
    inside = []
    for first, second, lead, step in _chains(tree):
        lo, hi = _line_span(code, first)[0], _line_span(code, second)[1]
        if any(b0 <= lo and hi <= b1 for b0, b1 in blocks):
            inside.append((first, second, lead, step))
    return inside
