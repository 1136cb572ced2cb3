"""The offline symbolic mutator: valid, block-confined, deterministic, and actually useful."""

from __future__ import annotations

import ast
import importlib.util
import math
import random
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from agentopt.blocks import find_blocks
from agentopt.evolve.symbolic import SymbolicMutationError, SymbolicMutator

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "tasks"

SAMPLE = '''"""Module docstring with 1.5 and x - 2 that must never change."""
import math

SCALE = 3.0  # outside: never touched


def helper(v):
    return v * 2.0 - 1


def f(x, label="é-ü"):
    # EVOLVE-BLOCK-START
    p = 0.041666666666666664  # keep this comment
    p = p * x + 0.16666666666666666
    p = p * x - 0.5
    q = -2 * x + SCALE
    if x < 3 and q >= 0.25:
        p = p / (x - 1.5) ** 2
    return p * x + 1.0
    # EVOLVE-BLOCK-END


TAIL = [1, 2, 3.25]
'''


def _outside(code: str) -> list[str]:
    """Lines outside the block bodies (markers included)."""
    lines = code.splitlines(keepends=True)
    keep = [True] * len(lines)
    for block in find_blocks(code):
        for i in range(block.start_line, block.end_line - 1):
            keep[i] = False
    return [line for line, k in zip(lines, keep, strict=True) if k]


def _programs() -> list[str]:
    return [
        SAMPLE,
        (TASKS / "exp_approx" / "initial_program.py").read_text(encoding="utf-8"),
        (TASKS / "circle_packing" / "initial_program.py").read_text(encoding="utf-8"),
    ]


@pytest.mark.parametrize("ast_edit_prob", [0.0, 0.25, 1.0])
def test_children_parse_differ_and_keep_outside_identical(ast_edit_prob: float) -> None:
    mutator = SymbolicMutator(ast_edit_prob=ast_edit_prob)
    for code in _programs():
        outside = _outside(code)
        rng = random.Random(7)
        for _ in range(60):
            child, description = mutator.mutate(code, rng)
            assert child != code
            ast.parse(child)
            assert _outside(child) == outside
            assert description and "\n" not in description


def test_deterministic_for_a_given_rng_state() -> None:
    mutator = SymbolicMutator()
    a = [mutator.mutate(SAMPLE, random.Random(s)) for s in range(30)]
    b = [mutator.mutate(SAMPLE, random.Random(s)) for s in range(30)]
    assert a == b
    assert len({code for code, _ in a}) > 20  # and different seeds explore different children


def test_literal_perturbation_dominates_and_edits_one_token() -> None:
    mutator = SymbolicMutator()
    rng = random.Random(3)
    literal = 0
    for _ in range(300):
        child, description = mutator.mutate(SAMPLE, rng)
        literal += description.startswith(("scaled literal", "perturbed"))
        if description.startswith("scaled literal"):
            changed = [
                (old, new)
                for old, new in zip(SAMPLE.splitlines(), child.splitlines(), strict=True)
                if old != new
            ]
            assert len(changed) == 1, description
            old, new = changed[0]
            line_no = int(re.search(r"at line (\d+)$", description).group(1))  # type: ignore[union-attr]
            assert SAMPLE.splitlines()[line_no - 1] == old
            # Only the literal (and possibly its +/- operator) changed: comments, spacing intact.
            assert old.split("#")[1:] == new.split("#")[1:]
            assert len(old.split()) == len(new.split())
    assert literal > 300 * 0.55


def test_every_mutation_kind_is_reachable() -> None:
    mutator = SymbolicMutator(ast_edit_prob=1.0)
    rng = random.Random(11)
    seen = {mutator.mutate(SAMPLE, rng)[1].split(" ")[0] for _ in range(250)}
    assert {"swapped", "duplicated", "deleted", "changed"} <= seen
    descriptions = [mutator.mutate(SAMPLE, random.Random(s))[1] for s in range(250)]
    assert any(d.startswith("swapped operands") for d in descriptions)
    assert any(d.startswith("swapped operator") for d in descriptions)
    literal_only = SymbolicMutator(ast_edit_prob=0.0)
    descriptions = [literal_only.mutate(SAMPLE, random.Random(s))[1] for s in range(200)]
    assert any(d.startswith("copied literal") for d in descriptions)
    assert any(d.startswith("perturbed") for d in descriptions)  # several literals at once


def test_sign_changes_keep_the_meaning_described() -> None:
    """`x - 0.5` with the literal moved to -0.7 must compute x + 0.7, whatever the spelling."""
    code = "def g(x):\n    # EVOLVE-BLOCK-START\n    return x - 0.5 * x + -1.25\n    # EVOLVE-BLOCK-END\n"
    mutator = SymbolicMutator(literal_sigma=3.0, ast_edit_prob=0.0)
    rng = random.Random(5)
    checked = 0
    for _ in range(300):
        child, description = mutator.mutate(code, rng)
        m = re.fullmatch(r"scaled literal (\S+) -> (\S+) at line 3", description)
        if not m:
            continue
        old, new = float(m.group(1)), float(m.group(2))
        namespace: dict[str, object] = {}
        exec(compile(child, "<child>", "exec"), namespace)
        # The literal's value is taken relative to its operator: `- 0.5` has value 0.5.
        if old == 0.5:
            expected = 2.0 - new * 2.0 - 1.25
        else:
            expected = 2.0 - 0.5 * 2.0 + new
        got = namespace["g"](2.0)  # type: ignore[operator]
        assert math.isclose(got, expected, rel_tol=1e-12), (description, child)
        checked += 1
    assert checked > 100


@pytest.mark.parametrize(
    "code",
    [
        # A form feed is a line break for str.splitlines but not for tokenize.
        "a = 1.0\n\x0cb = 2.0\n# EVOLVE-BLOCK-START\nd = 4.25 * 2\n# EVOLVE-BLOCK-END\ne = 5.5\n",
        "a = 1.0\r\n# EVOLVE-BLOCK-START\r\nd = 4.25 * 2\r\n# EVOLVE-BLOCK-END\r\ne = 5.5\r\n",
    ],
    ids=["form_feed", "crlf"],
)
def test_odd_line_separators_keep_edits_inside_the_block(code: str) -> None:
    head, tail = code.split("d = 4.25 * 2")
    rng = random.Random(0)
    for _ in range(60):
        child, _ = SymbolicMutator().mutate(code, rng)
        assert child.startswith(head) and child.endswith(tail) and child != code


def test_program_without_markers_is_mutated_as_a_whole() -> None:
    code = "def f(x):\n    return 2.5 * x\n"
    child, _ = SymbolicMutator(ast_edit_prob=0.0).mutate(code, random.Random(0))
    assert child != code and "2.5 * x" not in child


def test_errors_are_symbolic_mutation_errors() -> None:
    mutator = SymbolicMutator()
    with pytest.raises(SymbolicMutationError, match="does not parse"):
        mutator.mutate("def f(:\n", random.Random(0))
    with pytest.raises(SymbolicMutationError):  # nothing to edit inside the block
        mutator.mutate("x = 1.0\n# EVOLVE-BLOCK-START\npass\n# EVOLVE-BLOCK-END\n", random.Random(0))
    with pytest.raises(SymbolicMutationError):  # unbalanced markers
        mutator.mutate("# EVOLVE-BLOCK-START\nx = 1.0\n", random.Random(0))
    assert issubclass(SymbolicMutationError, ValueError)
    with pytest.raises(ValueError):
        SymbolicMutator(literal_sigma=0.0)
    with pytest.raises(ValueError):
        SymbolicMutator(ast_edit_prob=1.5)


def test_mutate_many_returns_independent_children() -> None:
    children = SymbolicMutator().mutate_many(SAMPLE, random.Random(1), 8)
    assert len(children) == 8
    assert all(code != SAMPLE for code, _ in children)
    assert len({code for code, _ in children}) > 4


def test_hill_climbing_improves_exp_approx() -> None:
    """The mutator alone must make real progress on the bundled exp_approx task.

    The evaluator's own static checker and interpreter score children in-process (no
    candidate is executed), so 200 steps take well under a second.
    """
    sys.path.insert(0, str(ROOT / "evaluators"))  # the evaluator imports agentopt_guest
    try:
        spec = importlib.util.spec_from_file_location(
            "exp_eval_for_symbolic", TASKS / "exp_approx" / "evaluator.py"
        )
        assert spec is not None and spec.loader is not None
        exp_eval = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(exp_eval)
    finally:
        sys.path.remove(str(ROOT / "evaluators"))

    xs = np.linspace(-math.log(2) / 2, math.log(2) / 2, 2001)

    def score(code: str) -> float | None:
        try:
            fn, _ = exp_eval.check_function(code)
        except exp_eval.InvalidProgram:
            return None
        y = exp_eval.interpret(fn, xs)
        err = float(np.max(np.abs(y / np.exp(xs) - 1.0)))
        return -math.log10(err) if math.isfinite(err) and err > 0 else None

    best = (TASKS / "exp_approx" / "initial_program.py").read_text(encoding="utf-8")
    initial = score(best)
    assert initial is not None
    best_score = initial
    mutator, rng = SymbolicMutator(), random.Random(0)
    for _ in range(200):
        child, _ = mutator.mutate(best, rng)
        s = score(child)
        if s is not None and s > best_score:
            best, best_score = child, s
    assert best_score > initial + 0.3, (initial, best_score)
