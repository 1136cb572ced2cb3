"""Program simplification before hashing: drop code that cannot change what a program does.

Why: mutations (LLM edits, copied or orphaned lines) often leave code that is never run or
whose result is never read. Two programs that differ only by such code compute the same
thing, so they should meet in the equivalence cache (``hashing.normalized_code_hash``) and
cost one sandbox evaluation, not two. This is the program-simplification step of the Lion
optimizer search (Chen et al. 2023), done on the AST.

The transformation is only used to compute a hash; the stored program is never rewritten.
Every rule is conservative: when a removal could change behaviour, the code stays.

* ``pass`` in a block that has other statements; an empty ``else:``/``orelse`` of ``pass``.
* Expression statements whose value is *pure*: evaluating it cannot raise, call anything
  or touch state (constants, parameters and locals surely assigned before, tuples/lists of
  those, signs of numeric literals, ``+ - *`` between numeric literals).
* Code after ``return``/``raise``/``break``/``continue`` in the same block.
* ``if <literal>:`` keeps only the branch that runs; ``while <false literal>:`` keeps its
  ``else``.
* Inside functions: assignments of pure values to local names that are never read anywhere
  in the function (nested scopes included), repeated until nothing changes.

Dropped code must also be inert for Python's scoping rules: code that contains ``yield``/
``await`` (it makes a function a generator/coroutine), ``global``/``nonlocal``, or binds a
name that is used elsewhere in the function and bound nowhere else (removing the binding
would turn a local into a global lookup) is kept. A function that can see its own locals
(``locals``, ``vars``, ``dir``, ``eval``, ``exec``, frame access) keeps all of its
assignments. Module- and class-level assignments are never removed: other code (the
evaluator, another file) may read them.

Literal formatting needs no rule here: the AST already holds each literal's value
(``1.0``/``1.``/``1e0``, ``0x10``/``16``, quoting, implicit string concatenation), and
:func:`simplify_tree` clears the one spelling flag the AST keeps (``u""`` prefixes).
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Iterator

__all__ = ["simplify_tree"]

_FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
_ScopeNode = ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef
_ComprehensionNode = ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp
_TERMINAL = (ast.Return, ast.Raise, ast.Break, ast.Continue)
# Statement fields holding a block that must not be empty ("body") or may be ("orelse", ...).
_REQUIRED_BLOCKS = ("body",)
_OPTIONAL_BLOCKS = ("orelse", "finalbody")
# Names through which a function can observe its own local variables.
_INTROSPECTION_NAMES = frozenset({"locals", "vars", "dir", "eval", "exec"})
_INTROSPECTION_ATTRS = frozenset({"f_locals", "_getframe", "currentframe", "f_back"})
_MAX_INT = 2**64  # integer literals combined by + - * stay small (no huge-int work to skip)
_MAX_ROUNDS = 50  # dead-assignment fixpoint bound; each round removes at least one statement


def simplify_tree(tree: ast.Module) -> ast.Module:
    """Simplify ``tree`` in place (see the module docstring) and return it."""
    functions: list[_FunctionNode] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            node.kind = None
        elif isinstance(node, _FunctionNode):
            functions.append(node)
    _simplify_blocks(tree, _Scope(None), frozenset())
    for fn in functions:  # one removed with dead code costs a little work and changes nothing
        _remove_dead_assignments(fn)
    return tree


# ---------------------------------------------------------------------------- purity


def _is_number(node: ast.expr) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        node = node.operand
    if not isinstance(node, ast.Constant) or isinstance(node.value, bool):
        return False
    value = node.value
    return isinstance(value, float) or (isinstance(value, int) and abs(value) <= _MAX_INT)


def _is_pure(node: ast.expr, bound: frozenset[str]) -> bool:
    """True when evaluating ``node`` can neither raise nor have an effect.

    ``bound`` holds the names surely bound at this point (parameters, earlier plain
    assignments); any other name could raise NameError/UnboundLocalError."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.Name):
        return isinstance(node.ctx, ast.Load) and node.id in bound
    if isinstance(node, ast.Tuple | ast.List):
        return all(not isinstance(e, ast.Starred) and _is_pure(e, bound) for e in node.elts)
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.Not):
            return isinstance(node.operand, ast.Constant)
        return _is_number(node)
    if isinstance(node, ast.BinOp):
        return (
            isinstance(node.op, ast.Add | ast.Sub | ast.Mult)
            and _is_number(node.left)
            and _is_number(node.right)
        )
    if isinstance(node, ast.Lambda):
        return not node.args.defaults and not any(node.args.kw_defaults)
    return False


# ---------------------------------------------------------------------------- scope facts


def _walk(node: ast.AST, skip: set[int] | None = None, *, nested: bool = True) -> Iterator[ast.AST]:
    """Nodes under ``node`` (itself excluded), minus the subtrees whose ids are in ``skip``.
    With ``nested=False`` only ``node``'s own scope: nested functions, lambdas, classes and
    comprehensions are yielded but not entered."""
    stack = list(ast.iter_child_nodes(node))
    while stack:
        child = stack.pop()
        if skip and id(child) in skip:
            continue
        yield child
        if nested or not isinstance(child, _ScopeNode | _ComprehensionNode):
            stack.extend(ast.iter_child_nodes(child))


def _params(fn: _FunctionNode | ast.Lambda) -> set[str]:
    a = fn.args
    names = {x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)}
    names.update(x.arg for x in (a.vararg, a.kwarg) if x is not None)
    return names


def _bound_names(nodes: Iterator[ast.AST]) -> set[str]:
    """Names that the given nodes bind (or delete) in the scope they belong to."""
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            names.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.MatchAs | ast.MatchStar) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            names.add(node.rest)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            names.update(node.names)
    return names


def _mentioned_names(nodes: Iterator[ast.AST]) -> set[str]:
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            names.update(node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
    return names


def _removable(dropped: list[ast.stmt], scope: ast.AST | None) -> bool:
    """Whether deleting ``dropped`` (code that never runs) leaves the program's meaning alone."""
    inner = [n for stmt in dropped for n in (stmt, *_walk(stmt))]
    if any(isinstance(n, ast.Yield | ast.YieldFrom | ast.Await | ast.Global | ast.Nonlocal) for n in inner):
        return False
    if not isinstance(scope, _FunctionNode):
        return True  # module and class names are looked up at run time: no static locality
    binds = _bound_names(n for stmt in dropped for n in (stmt, *_walk(stmt, nested=False)))
    if not binds:
        return True
    skip = {id(stmt) for stmt in dropped}
    at_risk = binds & _mentioned_names(_walk(scope, skip))
    if not at_risk:
        return True
    # Still local without the dropped code only if bound elsewhere in the function itself.
    elsewhere = _params(scope) | _bound_names(_walk(scope, skip, nested=False))
    return at_risk <= elsewhere


# ---------------------------------------------------------------------------- blocks


def _truthiness(test: ast.expr) -> bool | None:
    """The branch a literal test takes (None: not a literal)."""
    return bool(test.value) if isinstance(test, ast.Constant) else None


def _deleted_names(fn: ast.AST) -> frozenset[str]:
    return frozenset(n.id for n in _walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Del))


class _Scope:
    """The scope a statement list belongs to: a function (with the names it ever deletes,
    which are never "surely bound"), a class, or the module (node None)."""

    __slots__ = ("deleted", "node")

    def __init__(self, node: ast.AST | None) -> None:
        self.node = node
        self.deleted = _deleted_names(node) if isinstance(node, _FunctionNode) else frozenset()

    @property
    def is_function(self) -> bool:
        return isinstance(self.node, _FunctionNode)


def _simplify_blocks(node: ast.AST, scope: _Scope, bound: frozenset[str]) -> None:
    """Simplify every statement list under ``node`` (recursively), in place."""
    if isinstance(node, _FunctionNode):
        scope = _Scope(node)
        bound = frozenset(_params(node) - scope.deleted)
    elif isinstance(node, ast.ClassDef):
        scope, bound = _Scope(node), frozenset()
    for field in (*_REQUIRED_BLOCKS, *_OPTIONAL_BLOCKS):
        stmts = getattr(node, field, None)
        if isinstance(stmts, list) and stmts and isinstance(stmts[0], ast.stmt):
            new = _simplify_list(stmts, scope, bound)
            if not new and field in _REQUIRED_BLOCKS:
                new = [ast.Pass()]
            setattr(node, field, new)
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ExceptHandler | ast.match_case):
            _simplify_blocks(child, scope, bound)


def _simplify_list(stmts: list[ast.stmt], scope: _Scope, bound: frozenset[str]) -> list[ast.stmt]:
    out: list[ast.stmt] = []
    known = set(bound)
    for i, stmt in enumerate(stmts):
        replacement = _constant_branch(stmt, scope)
        if replacement is not None:
            out.extend(_simplify_list(replacement, scope, frozenset(known)))
            continue
        _simplify_blocks(stmt, scope, frozenset(known))
        if isinstance(stmt, ast.Pass):
            continue
        if isinstance(stmt, ast.Expr) and _is_pure(stmt.value, frozenset(known)):
            continue
        out.append(stmt)
        if scope.is_function and isinstance(stmt, ast.Assign):
            known.update(t.id for t in stmt.targets if isinstance(t, ast.Name) and t.id not in scope.deleted)
        if isinstance(stmt, _TERMINAL):
            rest = stmts[i + 1 :]
            if rest and not _removable(rest, scope.node):
                for later in rest:  # kept for scoping; still simplified inside
                    _simplify_blocks(later, scope, frozenset(known))
                out.extend(rest)
            break
    return out


def _constant_branch(stmt: ast.stmt, scope: _Scope) -> list[ast.stmt] | None:
    """The statements that replace an ``if``/``while`` on a literal, or None to keep it."""
    if isinstance(stmt, ast.If):
        truth = _truthiness(stmt.test)
        if truth is None:
            return None
        kept, dropped = (stmt.body, stmt.orelse) if truth else (stmt.orelse, stmt.body)
    elif isinstance(stmt, ast.While):
        if _truthiness(stmt.test) is not False:
            return None
        kept, dropped = stmt.orelse, stmt.body
    else:
        return None
    if dropped and not _removable(dropped, scope.node):
        return None
    return list(kept)


# ---------------------------------------------------------------------------- dead locals


def _read_counts(fn: _FunctionNode) -> tuple[Counter[str], frozenset[str]] | None:
    """How often each name is read, deleted, augmented or declared anywhere in ``fn``
    (nested scopes too), and the names it deletes; None when ``fn`` can see its own locals."""
    counts: Counter[str] = Counter()
    deleted: set[str] = set()
    for node in _walk(fn):
        if isinstance(node, ast.Name):
            if node.id in _INTROSPECTION_NAMES:
                return None
            if isinstance(node.ctx, ast.Del):
                deleted.add(node.id)
            if not isinstance(node.ctx, ast.Store):
                counts[node.id] += 1
        elif isinstance(node, ast.Attribute) and node.attr in _INTROSPECTION_ATTRS:
            return None
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            counts[node.target.id] += 1
        elif isinstance(node, ast.Global | ast.Nonlocal):
            counts.update(node.names)
    return counts, frozenset(deleted)


def _remove_dead_assignments(fn: _FunctionNode) -> None:
    """Drop dead local assignments until none is left. Reads are counted once; dropping a
    statement un-counts the names its value read, which may make another one dead."""
    facts = _read_counts(fn)
    if facts is None:
        return
    reads, deleted = facts
    entry = frozenset(_params(fn) - deleted)
    for _ in range(_MAX_ROUNDS):
        if not _drop_dead(fn, reads, deleted, entry):
            return


def _dead(stmt: ast.stmt, reads: Counter[str], known: set[str]) -> bool:
    """A plain assignment of a pure value to local names nobody reads."""
    if isinstance(stmt, ast.Assign):
        targets: list[ast.expr] = list(stmt.targets)
        value: ast.expr | None = stmt.value
    elif isinstance(stmt, ast.AnnAssign) and stmt.simple:
        targets, value = [stmt.target], stmt.value  # local annotations are never evaluated
    else:
        return False
    if not all(isinstance(t, ast.Name) and reads[t.id] <= 0 for t in targets):
        return False
    return value is None or _is_pure(value, frozenset(known))


def _drop_dead(node: ast.AST, reads: Counter[str], deleted: frozenset[str], bound: frozenset[str]) -> bool:
    """Remove dead assignments from the blocks of ``node`` that belong to the function's own
    scope (nested functions are handled on their own). ``bound``: names surely bound on
    entry to these blocks."""
    changed = False
    for field in (*_REQUIRED_BLOCKS, *_OPTIONAL_BLOCKS):
        stmts = getattr(node, field, None)
        if not (isinstance(stmts, list) and stmts and isinstance(stmts[0], ast.stmt)):
            continue
        known = set(bound)
        kept: list[ast.stmt] = []
        for stmt in stmts:
            if _dead(stmt, reads, known):
                changed = True
                value = getattr(stmt, "value", None)
                if value is not None:
                    reads.subtract(n.id for n in ast.walk(value) if isinstance(n, ast.Name))
                continue
            kept.append(stmt)
            if not isinstance(stmt, _ScopeNode):
                changed |= _drop_dead(stmt, reads, deleted, frozenset(known))
            if isinstance(stmt, ast.Assign):
                known.update(t.id for t in stmt.targets if isinstance(t, ast.Name) and t.id not in deleted)
        if len(kept) != len(stmts):
            setattr(node, field, kept or ([ast.Pass()] if field in _REQUIRED_BLOCKS else []))
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ExceptHandler | ast.match_case):
            changed |= _drop_dead(child, reads, deleted, bound)
    return changed
