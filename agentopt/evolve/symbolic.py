"""Offline symbolic mutator: evolve a program with no LLM at all.

When no model is configured or reachable, evolution still has to make progress. Like
AutoNumerics-Zero and the Lion program search, we mutate the program *symbolically*:
perturb numeric literals (the dominant move: most bundled tasks are "tune the constants of
a fixed structure"), copy one constant onto another, swap ``+``/``-`` and ``*``/``/``, swap
the operands of a non-commutative operator, duplicate or delete a simple statement, or
change a comparison.

Design rules, and why:

* Only text strictly between ``# EVOLVE-BLOCK-START`` / ``# EVOLVE-BLOCK-END`` lines
  (found by :func:`agentopt.blocks.find_blocks`) is edited, so the harness code
  around the blocks stays byte-identical (the evaluator relies on it). A program without
  markers is evolvable as a whole, the convention of :mod:`agentopt.blocks`.
* Edits are made on the *source text* at token positions (``tokenize``), never by
  ``ast.unparse``: the stored diff of a child against its parent is then one or two tokens,
  readable in reports and reusable as an LLM "inspiration".
* Every result parses (``ast.parse``) and differs from the input; a kind of edit that is not
  applicable or produces invalid code is retried with another draw.
* All randomness comes from the caller's ``random.Random``: the same rng state gives the
  same child, which keeps seeded runs reproducible.
"""

from __future__ import annotations

import ast
import bisect
import io
import keyword
import math
import random
import token
import tokenize
from collections.abc import Callable
from dataclasses import dataclass

from agentopt.blocks import BlockError, find_blocks
from agentopt.errors import AgentoptError

__all__ = [
    "LiteralSite",
    "SymbolicMutationError",
    "SymbolicMutator",
    "block_spans",
    "float_literal_sites",
    "set_literal_values",
    "shift_ints",
]

# An edit replaces source[start:end] (absolute character offsets) with ``text``.
_Edit = tuple[int, int, str]
_Pos = tuple[int, int]

_MAX_ATTEMPTS = 40
_FLOAT_DIGITS_MAX = 17

# Tokens after which a '-' is a unary minus (i.e. part of a negative literal).
_UNARY_CONTEXT_OPS = frozenset(
    "( [ { , = : ; + - * / % ** // @ < > <= >= == != += -= *= /= //= %= **= -> ~ & | ^ << >>".split()
)
_VALUE_KEYWORDS = frozenset({"True", "False", "None"})
_OPERATOR_SWAPS = {"+": "-", "-": "+", "*": "/", "/": "*", "+=": "-=", "-=": "+=", "*=": "/=", "/=": "*="}
_COMPARISON_SWAPS = {
    "<": ("<=", ">"),
    "<=": ("<", ">="),
    ">": (">=", "<"),
    ">=": (">", "<="),
    "==": ("!=",),
    "!=": ("==",),
}
_NON_COMMUTATIVE = (ast.Sub, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift, ast.RShift)
_ATOMS = (ast.Name, ast.Constant, ast.Attribute, ast.Subscript, ast.Call, ast.List, ast.Tuple, ast.Dict)
_SIMPLE_STMTS = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr)

# Relative weights of the structural edits (chosen with probability ``ast_edit_prob``).
_STRUCTURAL_WEIGHTS = {
    "swap_operator": 0.30,
    "swap_operands": 0.15,
    "duplicate_statement": 0.15,
    "delete_statement": 0.15,
    "change_comparison": 0.25,
}
# Within literal edits: perturbation dominates, constant sharing is occasional.
_SHARE_PROB = 0.12
# Literal perturbation modes and how many literals one perturbation moves.
_FLIP_PROB = 0.03  # sign flip of one literal
_JUMP_PROB = 0.07  # large log-normal jump of one literal
_STEP_DECADES = 6.0  # relative steps from literal_sigma down to literal_sigma * 1e-6
_SINGLE_PROB = 0.5  # else several floats move together
_PAIR_PROB = 0.2
# Ints are often structure (counts, indices, loop bounds) where +-1 breaks an invariant;
# floats are the tunable constants. Pick an int a third as often as a float.
_INT_WEIGHT = 1.0 / 3.0


class SymbolicMutationError(AgentoptError, ValueError):
    """The code cannot be mutated symbolically (does not parse, or has nothing to edit)."""


@dataclass(frozen=True)
class _Literal:
    """A numeric literal inside a block; ``start`` includes a unary minus when present."""

    start: _Pos
    end: _Pos
    text: str  # the token text (without the sign)
    value: float | int  # signed value
    negated: bool  # span starts with a unary '-'
    binop_prev: tokenize.TokenInfo | None  # a binary '+'/'-' right before the literal


class _Source:
    """The code plus the position bookkeeping shared by every edit kind."""

    def __init__(self, code: str) -> None:
        self.code = code
        try:
            self.tree = ast.parse(code)
            self.tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
        except (SyntaxError, tokenize.TokenError, ValueError) as err:
            raise SymbolicMutationError(f"program does not parse: {err}") from None
        # Same line splitting as tokenize (readline splits on '\n' only).
        self.lines = io.StringIO(code).readlines()
        self.line_starts = [0]
        for line in self.lines:
            self.line_starts.append(self.line_starts[-1] + len(line))
        # Character spans are the ground truth every edit is checked against; the line ranges
        # (in tokenize's numbering, which may differ from str.splitlines) pick candidates fast.
        self.block_spans = _block_spans(code)
        self.block_ranges = [
            (bisect.bisect_right(self.line_starts, lo), bisect.bisect_right(self.line_starts, hi - 1))
            for lo, hi in self.block_spans
        ]
        if not self.block_ranges:
            raise SymbolicMutationError("no non-empty EVOLVE-BLOCK to mutate")
        self.literals: list[_Literal] | None = None  # scanned once, reused by every attempt

    def offset(self, pos: _Pos) -> int:
        row, col = pos
        return self.line_starts[row - 1] + col

    def edits_inside(self, edits: list[_Edit]) -> bool:
        """Every edit lies within one block body (so outside text stays byte-identical)."""
        return all(any(lo <= s and e <= hi for lo, hi in self.block_spans) for s, e, _ in edits)

    def in_blocks(self, first_row: int, last_row: int) -> bool:
        return any(lo <= first_row and last_row <= hi for lo, hi in self.block_ranges)

    def ast_col(self, lineno: int, byte_col: int) -> int:
        """AST columns are UTF-8 byte offsets; token columns are characters."""
        line = self.lines[lineno - 1]
        return len(line.encode("utf-8")[:byte_col].decode("utf-8", errors="ignore"))

    def node_span(self, node: ast.AST) -> tuple[int, int] | None:
        end_lineno = getattr(node, "end_lineno", None)
        end_col = getattr(node, "end_col_offset", None)
        if end_lineno is None or end_col is None:
            return None
        start = self.offset((node.lineno, self.ast_col(node.lineno, node.col_offset)))  # type: ignore[attr-defined]
        end = self.offset((end_lineno, self.ast_col(end_lineno, end_col)))
        return start, end


def _block_spans(code: str) -> list[tuple[int, int]]:
    """Character spans of the non-empty block bodies; the whole file when it has no markers.

    A file without markers is evolvable as a whole (the convention of :mod:`blocks`).
    """
    try:
        blocks = find_blocks(code)
    except BlockError as err:
        raise SymbolicMutationError(str(err)) from None
    if not blocks:
        return [(0, len(code))] if code else []
    return [(b.body_start, b.body_end) for b in blocks if b.body_end > b.body_start]


# Calls whose integer arguments are shapes, sizes, counts or axes: perturbing those ints
# breaks the program (OpenEvolve's circle_packing_rect / heilbronn folders have no other
# literals), so they are never picked by a literal edit.
_SHAPE_CALLS = frozenset(
    "zeros ones empty full zeros_like ones_like empty_like full_like reshape resize range arange "
    "linspace logspace eye identity tile repeat broadcast_to split array_split rand randn randint "
    "random normal uniform integers choice permutation shuffle seed default_rng RandomState "
    "combinations permutations product islice".split()
)
_SHAPE_KEYWORDS = frozenset({"shape", "size", "axis", "axes", "ndim", "n", "k", "num", "dtype", "seed"})


def _frozen_int_positions(src: _Source) -> set[_Pos]:
    """Token start positions of int literals that are shapes, sizes, indices or seeds:
    inside a subscript, an argument of a shape-like call, or a shape-like keyword."""
    roots: list[ast.AST] = []
    for node in ast.walk(src.tree):
        if isinstance(node, ast.Subscript):
            roots.append(node.slice)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in _SHAPE_CALLS:
                roots.extend(node.args)
                roots.extend(k.value for k in node.keywords)
            else:
                roots.extend(k.value for k in node.keywords if k.arg in _SHAPE_KEYWORDS)
    out: set[_Pos] = set()
    for root in roots:
        for node in ast.walk(root):
            if isinstance(node, ast.Constant) and type(node.value) is int:
                out.add((node.lineno, src.ast_col(node.lineno, node.col_offset)))
    return out


@dataclass(frozen=True)
class LiteralSite:
    """A float literal inside a block, as seen by operators outside this module: its value
    (with a unary minus) and whether a binary ``-`` precedes it (``a - 2.0``)."""

    index: int
    value: float
    minus_before: bool


def float_literal_sites(code: str) -> list[LiteralSite]:
    """The float literals inside the EVOLVE-BLOCKs of ``code``, in text order ([] if unparsable)."""
    try:
        src = _Source(code)
    except SymbolicMutationError:
        return []
    floats = [lit for lit in SymbolicMutator._scan_literals(src) if isinstance(lit.value, float)]
    return [
        LiteralSite(i, float(lit.value), lit.binop_prev is not None and lit.binop_prev.string == "-")
        for i, lit in enumerate(floats)
    ]


def set_literal_values(code: str, sites: list[LiteralSite], values: list[float]) -> str | None:
    """``code`` with the float literal of each site set to its value; None if that fails."""
    try:
        src = _Source(code)
    except SymbolicMutationError:
        return None
    floats = [lit for lit in SymbolicMutator._scan_literals(src) if isinstance(lit.value, float)]
    edits: list[_Edit] = []
    for site, value in zip(sites, values, strict=True):
        if site.index >= len(floats) or not math.isfinite(value):
            return None
        lit = floats[site.index]
        if value == lit.value:
            continue
        edits.extend(_literal_edits(src, lit, repr(abs(float(value))), value))
    child = _accept(src, (edits, "")) if edits else None
    return child[0] if child else None


def shift_ints(code: str, rng: random.Random) -> tuple[str, str] | None:
    """Move one unit between two positive int literals (``+1`` on one, ``-1`` on the other).

    Counts in a construction often have a fixed total (26 circles in rows of 6, 5, 6, ...):
    a single +-1 breaks the total, a zero-sum shift keeps it and changes the layout. Shape,
    index and seed ints are excluded as for every literal edit. None when fewer than two apply.
    """
    try:
        src = _Source(code)
    except SymbolicMutationError:
        return None
    ints = [lit for lit in SymbolicMutator._scan_literals(src) if type(lit.value) is int and lit.value > 0]
    if len(ints) < 2:
        return None
    for _ in range(_MAX_ATTEMPTS):
        up, down = rng.sample(ints, 2)
        if int(down.value) < 2:
            continue
        edits = [
            *_literal_edits(src, up, str(int(up.value) + 1), int(up.value) + 1),
            *_literal_edits(src, down, str(int(down.value) - 1), int(down.value) - 1),
        ]
        child = _accept(src, (edits, "")) if not _overlapping(edits) else None
        if child is not None:
            return child[0], (
                f"moved one unit from {down.value} (line {down.start[0]}) to {up.value} (line {up.start[0]})"
            )
    return None


def block_spans(code: str) -> list[tuple[int, int]]:
    """Character spans of the non-empty EVOLVE-BLOCK bodies (the whole file without markers)."""
    try:
        return _block_spans(code)
    except SymbolicMutationError:
        return []


# ---------------------------------------------------------------------------- numbers


def _parse_number(text: str) -> float | int | None:
    if text[-1:] in "jJ":
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _format_float(value: float, old: float) -> str:
    """Shortest text that shows the change: a few digits more than the step's magnitude."""
    denom = max(abs(old), abs(value), 1e-300)
    rel = abs(value - old) / denom
    digits = 3 if rel == 0 else min(_FLOAT_DIGITS_MAX, max(3, math.ceil(-math.log10(rel)) + 3))
    text = format(value, f".{digits}g")
    if not any(c in text for c in ".eEn"):
        text += ".0"
    return text


def _perturb_float(value: float, rng: random.Random, mode: str, scale: float) -> float:
    if mode == "flip" and value != 0.0:
        return -value
    if mode == "jump":
        # Occasional large jump: escapes a basin that the fine steps cannot leave.
        return value * math.exp(rng.gauss(0.0, 1.0)) if value != 0.0 else rng.gauss(0.0, 1.0)
    if value == 0.0:
        return rng.gauss(0.0, scale)
    return value * (1.0 + rng.gauss(0.0, scale))


def _perturb_int(value: int, rng: random.Random, mode: str, sigma: float) -> int:
    if mode == "flip" and value != 0:
        return -value
    if abs(value) >= 10 and rng.random() < 0.5:
        step = round(value * rng.gauss(0.0, sigma))
        if step != 0:
            return value + step
    return value + rng.choice((-1, 1)) * rng.choice((1, 1, 1, 2, 3))


# ---------------------------------------------------------------------------- mutator


class SymbolicMutator:
    """Random symbolic edits inside EVOLVE-BLOCKs; see the module docstring.

    ``literal_sigma`` is the largest relative step of a literal perturbation (steps are drawn
    log-uniformly from ``literal_sigma * [1e-6, 1]``); ``ast_edit_prob`` is the probability of
    a structural edit instead of a literal edit.
    """

    def __init__(self, *, literal_sigma: float = 0.1, ast_edit_prob: float = 0.25) -> None:
        if not literal_sigma > 0:
            raise ValueError("literal_sigma must be > 0")
        if not 0.0 <= ast_edit_prob <= 1.0:
            raise ValueError("ast_edit_prob must be in [0, 1]")
        self.literal_sigma = literal_sigma
        self.ast_edit_prob = ast_edit_prob
        self._kinds: dict[str, Callable[[_Source, random.Random], tuple[list[_Edit], str] | None]] = {
            "perturb_literals": self._perturb_literals,
            "share_constant": self._share_constant,
            "swap_operator": self._swap_operator,
            "swap_operands": self._swap_operands,
            "duplicate_statement": self._duplicate_statement,
            "delete_statement": self._delete_statement,
            "change_comparison": self._change_comparison,
        }

    # -- public API

    def mutate(self, code: str, rng: random.Random) -> tuple[str, str]:
        """Return ``(new_code, description)``; raise :class:`SymbolicMutationError` if impossible."""
        new_code, description, _ = self.mutate_with_kind(code, rng)
        return new_code, description

    def mutate_with_kind(self, code: str, rng: random.Random) -> tuple[str, str, str]:
        """Like :meth:`mutate`, plus the kind of edit made (e.g. ``perturb_literals``)."""
        src = _Source(code)
        for _ in range(_MAX_ATTEMPTS):
            kind = self._choose_kind(rng)
            child = _accept(src, self._kinds[kind](src, rng))
            if child is not None:
                return child[0], child[1], kind
        # Fall back to the one edit that almost always applies before giving up.
        for _ in range(_MAX_ATTEMPTS):
            proposal = self._perturb_literals(src, rng)
            if proposal is None:
                break
            child = _accept(src, proposal)
            if child is not None:
                return child[0], child[1], "perturb_literals"
        raise SymbolicMutationError("no applicable symbolic mutation inside the EVOLVE-BLOCKs")

    def perturb_adaptive(
        self, code: str, rng: random.Random, sigmas: list[float]
    ) -> tuple[str, str, list[int]] | None:
        """Move float literals with per-literal relative steps ``sigmas`` (one per float literal
        inside the blocks, in text order): one literal, or several together along a random
        direction. Returns ``(child, description, moved indices)``; None when nothing applies.
        The caller adapts ``sigmas`` from the outcome (see ``SymbolicProposer``)."""
        try:
            src = _Source(code)
        except SymbolicMutationError:
            return None
        floats = [lit for lit in self._literals(src) if isinstance(lit.value, float)]
        if not floats or len(sigmas) != len(floats):
            return None
        for _ in range(_MAX_ATTEMPTS):
            if len(floats) == 1 or rng.random() < _SINGLE_PROB:
                moved = [rng.randrange(len(floats))]
            else:
                moved = sorted(rng.sample(range(len(floats)), rng.randint(2, len(floats))))
            edits: list[_Edit] = []
            for i in moved:
                lit = floats[i]
                old = float(lit.value)
                new = old * (1.0 + sigmas[i] * rng.gauss(0.0, 1.0)) if old else rng.gauss(0.0, sigmas[i])
                edits.extend(self._new_literal_edits(src, lit, new))
            child = _accept(src, (edits, "")) if not _overlapping(edits) else None
            if child is not None:
                lines = sorted({floats[i].start[0] for i in moved})
                return child[0], f"moved {len(moved)} literal(s) with adaptive steps at line(s) {lines}", moved
        return None

    def mutate_many(self, code: str, rng: random.Random, n: int) -> list[tuple[str, str]]:
        """``n`` independent children of ``code`` (a batch for parallel evaluation)."""
        return [self.mutate(code, rng) for _ in range(n)]

    # -- kind selection

    def _choose_kind(self, rng: random.Random) -> str:
        if rng.random() < self.ast_edit_prob:
            names = list(_STRUCTURAL_WEIGHTS)
            return rng.choices(names, weights=[_STRUCTURAL_WEIGHTS[n] for n in names])[0]
        return "share_constant" if rng.random() < _SHARE_PROB else "perturb_literals"

    # -- literal edits

    def _literals(self, src: _Source) -> list[_Literal]:
        if src.literals is None:
            src.literals = self._scan_literals(src)
        return src.literals

    @staticmethod
    def _scan_literals(src: _Source) -> list[_Literal]:
        out: list[_Literal] = []
        toks = [t for t in src.tokens if t.type not in (tokenize.COMMENT, tokenize.NL)]
        frozen = _frozen_int_positions(src)
        for i, tok in enumerate(toks):
            if tok.type != token.NUMBER or not src.in_blocks(tok.start[0], tok.end[0]):
                continue
            value = _parse_number(tok.string)
            if value is None or (isinstance(value, int) and tok.start in frozen):
                continue
            prev = toks[i - 1] if i > 0 else None
            before = toks[i - 2] if i > 1 else None
            negated = prev is not None and prev.string == "-" and _is_unary_context(before)
            binop_prev = None
            if (
                prev is not None
                and prev.string in ("+", "-")
                and not negated
                and not _is_unary_context(before)
            ):
                binop_prev = prev
            start = prev.start if negated and prev is not None else tok.start
            if not src.in_blocks(start[0], tok.end[0]):
                continue
            out.append(
                _Literal(start, tok.end, tok.string, -value if negated else value, negated, binop_prev)
            )
        return out

    def _new_literal_edits(self, src: _Source, lit: _Literal, new_value: float | int) -> list[_Edit]:
        if isinstance(lit.value, float):
            body = _format_float(abs(float(new_value)), abs(lit.value))
        else:
            body = str(abs(int(new_value)))
        return _literal_edits(src, lit, body, new_value)

    def _perturb_literals(self, src: _Source, rng: random.Random) -> tuple[list[_Edit], str] | None:
        """Perturb one literal, or several floats together along one random direction.

        One step size per mutation, drawn log-uniformly from ``literal_sigma * [1e-6, 1]``:
        coarse moves early, 1e-6-relative moves to polish constants. Moving several
        constants at once matters for non-smooth objectives (a max-error, a packing):
        one-at-a-time moves stall at kinks where only a joint move improves.
        """
        lits = self._literals(src)
        if not lits:
            return None
        u = rng.random()
        mode = "flip" if u < _FLIP_PROB else "jump" if u < _FLIP_PROB + _JUMP_PROB else "step"
        scale = self.literal_sigma * 10.0 ** (-rng.uniform(0.0, _STEP_DECADES))
        floats = [i for i, lit in enumerate(lits) if isinstance(lit.value, float)]
        u = rng.random()
        if mode != "step" or len(floats) < 2 or u < _SINGLE_PROB:
            weights = [1.0 if isinstance(lit.value, float) else _INT_WEIGHT for lit in lits]
            chosen = rng.choices(range(len(lits)), weights=weights)
        elif u < _SINGLE_PROB + _PAIR_PROB:
            chosen = sorted(rng.sample(floats, 2))
        else:
            chosen = sorted(rng.sample(floats, rng.randint(2, len(floats))))
        edits: list[_Edit] = []
        notes: list[str] = []
        for idx in chosen:
            lit = lits[idx]
            new_value: float | int
            if isinstance(lit.value, float):
                new_value = _perturb_float(lit.value, rng, mode, scale)
            else:
                new_value = _perturb_int(lit.value, rng, mode, self.literal_sigma)
            lit_edits = self._new_literal_edits(src, lit, new_value)
            new_text = lit_edits[-1][2]
            old_text = src.code[src.offset(lit.start) : src.offset(lit.end)]
            if new_text == old_text and len(lit_edits) == 1:
                continue
            edits.extend(lit_edits)
            sign = "-" if len(lit_edits) == 2 else ""
            notes.append(f"{old_text} -> {sign}{new_text} at line {lit.start[0]}")
        if not edits or _overlapping(edits):
            return None
        if len(notes) == 1:
            return edits, f"scaled literal {notes[0]}"
        return edits, f"perturbed {len(notes)} literals: " + "; ".join(notes)

    def _share_constant(self, src: _Source, rng: random.Random) -> tuple[list[_Edit], str] | None:
        lits = self._literals(src)
        pairs = [
            (a, b)
            for a in lits
            for b in lits
            if a is not b and type(a.value) is type(b.value) and a.value != b.value
        ]
        if not pairs:
            return None
        source, dest = rng.choice(pairs)
        src_text = src.code[src.offset(source.start) : src.offset(source.end)]
        dest_text = src.code[src.offset(dest.start) : src.offset(dest.end)]
        edits = self._new_literal_edits(src, dest, source.value)
        # Keep the source's exact spelling when no operator flip is needed.
        if len(edits) == 1:
            edits = [(edits[0][0], edits[0][1], src_text)]
        desc = (
            f"copied literal {src_text} from line {source.start[0]} to line {dest.start[0]} (was {dest_text})"
        )
        return edits, desc

    # -- token-level structural edits

    def _swap_operator(self, src: _Source, rng: random.Random) -> tuple[list[_Edit], str] | None:
        return self._replace_op(src, rng, _OPERATOR_SWAPS, "swapped operator")

    def _change_comparison(self, src: _Source, rng: random.Random) -> tuple[list[_Edit], str] | None:
        return self._replace_op(src, rng, _COMPARISON_SWAPS, "changed comparison")

    def _replace_op(
        self, src: _Source, rng: random.Random, table: dict[str, str] | dict[str, tuple[str, ...]], verb: str
    ) -> tuple[list[_Edit], str] | None:
        ops = [
            t
            for t in src.tokens
            if t.type == token.OP and t.string in table and src.in_blocks(t.start[0], t.end[0])
        ]
        if not ops:
            return None
        tok = rng.choice(ops)
        repl = table[tok.string]
        new = repl if isinstance(repl, str) else rng.choice(repl)
        edit = (src.offset(tok.start), src.offset(tok.end), new)
        return [edit], f"{verb} {tok.string} -> {new} at line {tok.start[0]}"

    # -- AST-guided structural edits (still applied as text splices)

    def _swap_operands(self, src: _Source, rng: random.Random) -> tuple[list[_Edit], str] | None:
        nodes = [
            n
            for n in ast.walk(src.tree)
            if isinstance(n, ast.BinOp)
            and isinstance(n.op, _NON_COMMUTATIVE)
            and src.in_blocks(n.lineno, n.end_lineno or n.lineno)
        ]
        rng.shuffle(nodes)
        for node in nodes:
            left, right = src.node_span(node.left), src.node_span(node.right)
            if left is None or right is None or left[1] > right[0]:
                continue
            lt, rt = src.code[left[0] : left[1]], src.code[right[0] : right[1]]
            if lt == rt:
                continue
            new_left = rt if isinstance(node.right, _ATOMS) else f"({rt})"
            new_right = lt if isinstance(node.left, _ATOMS) else f"({lt})"
            edits = [(left[0], left[1], new_left), (right[0], right[1], new_right)]
            return edits, f"swapped operands of {type(node.op).__name__} at line {node.lineno}"
        return None

    def _simple_statements(self, src: _Source) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for node in ast.walk(src.tree):
            if not isinstance(node, _SIMPLE_STMTS) or node.end_lineno is None or node.end_col_offset is None:
                continue
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue  # docstrings and bare constants: nothing to gain
            if not src.in_blocks(node.lineno, node.end_lineno):
                continue
            first = src.lines[node.lineno - 1]
            last = src.lines[node.end_lineno - 1]
            head = first[: src.ast_col(node.lineno, node.col_offset)]
            tail = last[src.ast_col(node.end_lineno, node.end_col_offset) :].strip()
            if head.strip() or (tail and not tail.startswith("#")):
                continue  # shares its line with another statement (';' or a compound header)
            out.append(node)
        return out

    def _duplicate_statement(self, src: _Source, rng: random.Random) -> tuple[list[_Edit], str] | None:
        stmts = self._simple_statements(src)
        if not stmts:
            return None
        node = rng.choice(stmts)
        assert node.end_lineno is not None
        start = src.line_starts[node.lineno - 1]
        end = src.line_starts[node.end_lineno]
        text = src.code[start:end]
        if not text.endswith("\n"):  # last line of a file without a trailing newline
            text = "\n" + text
        return [(end, end, text)], f"duplicated statement at line {node.lineno}"

    def _delete_statement(self, src: _Source, rng: random.Random) -> tuple[list[_Edit], str] | None:
        stmts = self._simple_statements(src)
        if not stmts:
            return None
        node = rng.choice(stmts)
        assert node.end_lineno is not None
        start = src.line_starts[node.lineno - 1]
        end = src.line_starts[node.end_lineno]
        return [(start, end, "")], f"deleted statement at line {node.lineno}"


def _literal_edits(src: _Source, lit: _Literal, body: str, new_value: float | int) -> list[_Edit]:
    """Edits that write ``body`` (the unsigned new text) with ``new_value``'s sign."""
    negative = new_value < 0 or (isinstance(new_value, float) and math.copysign(1.0, new_value) < 0)
    start, end = src.offset(lit.start), src.offset(lit.end)
    if not negative:
        return [(start, end, body)]
    if lit.negated:
        return [(start, end, "-" + body)]
    if lit.binop_prev is not None:
        # `a - 2` -> `a + 2` reads better than `a - -2`.
        op = lit.binop_prev
        flipped = "+" if op.string == "-" else "-"
        return [(src.offset(op.start), src.offset(op.end), flipped), (start, end, body)]
    return [(start, end, "-" + body)]


def _is_unary_context(before: tokenize.TokenInfo | None) -> bool:
    """True when a '-' following ``before`` is a unary minus."""
    if before is None:
        return True
    if before.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING):
        return True
    if before.type == token.OP:
        return before.string in _UNARY_CONTEXT_OPS
    if before.type == token.NAME:
        return keyword.iskeyword(before.string) and before.string not in _VALUE_KEYWORDS
    return False


def _accept(src: _Source, proposal: tuple[list[_Edit], str] | None) -> tuple[str, str] | None:
    """The child for ``proposal`` if it stays inside the blocks, changes something and parses."""
    if proposal is None or not src.edits_inside(proposal[0]):
        return None
    new_code = _apply(src.code, proposal[0])
    if new_code == src.code:
        return None
    try:
        ast.parse(new_code)
    except (SyntaxError, ValueError):
        return None
    return new_code, proposal[1]


def _overlapping(edits: list[_Edit]) -> bool:
    spans = sorted((s, e) for s, e, _ in edits)
    return any(spans[i][1] > spans[i + 1][0] for i in range(len(spans) - 1))


def _apply(code: str, edits: list[_Edit]) -> str:
    """Splice non-overlapping edits into ``code`` (applied right to left)."""
    if _overlapping(edits):
        return code
    for start, end, text in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        code = code[:start] + text + code[end:]
    return code
