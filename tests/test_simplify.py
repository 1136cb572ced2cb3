"""Dead-code removal before hashing (issue 14, item 5): programs that differ only by code
that cannot matter share a normalized hash; code with effects, or whose removal would change
Python's scoping, keeps programs apart."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from agentopt.evolve.api import evolve
from agentopt.evolve.hashing import normalized_code_hash
from agentopt.evolve.simplify import simplify_tree


def h(code: str, simplify: bool = True) -> str:
    return normalized_code_hash(textwrap.dedent(code), simplify)


def simplified(code: str) -> str:
    return ast.unparse(simplify_tree(ast.parse(textwrap.dedent(code))))


CLEAN = """
def f(x, y):
    r = x * y + 1.5
    return r
"""

# Each variant computes exactly what CLEAN computes.
EQUIVALENT = {
    "unused assignment of a literal": """
        def f(x, y):
            scale = 2.0
            r = x * y + 1.5
            return r
        """,
    "unused copies of a parameter, a tuple and an annotated local": """
        def f(x, y):
            old = x
            pair = (x, y, [1, 2])
            n: int = 3
            r = x * y + 1.5
            return r
        """,
    "a chain of dead locals (removed to a fixpoint)": """
        def f(x, y):
            a = 1
            b = a
            c = (b, a)
            r = x * y + 1.5
            return r
        """,
    "pass and pure expression statements": """
        def f(x, y):
            pass
            x
            -3
            r = x * y + 1.5
            return r
        """,
    "code after return": """
        def f(x, y):
            r = x * y + 1.5
            return r
            print("never")
            r = 2
        """,
    "if False / while 0 / if True": """
        def f(x, y):
            if False:
                launch()
            while 0:
                x += 1
            if True:
                r = x * y + 1.5
            else:
                r = 0
            return r
        """,
}


@pytest.mark.parametrize("name", sorted(EQUIVALENT))
def test_dead_code_variants_hash_equal(name: str) -> None:
    variant = EQUIVALENT[name]
    assert h(variant) == h(CLEAN), simplified(variant)
    assert h(variant, simplify=False) != h(CLEAN, simplify=False)  # the switch really matters


def test_literal_spelling_is_canonical() -> None:
    a = "def f(x):\n    s = u'a' 'b'\n    return x * 1.50 + 0x10 + s\n"
    b = "def f(x):\n    s = 'ab'\n    return x * 1.5 + 16 + s\n"
    assert h(a) == h(b)


def test_nested_branch_with_only_dead_code_becomes_pass_and_else_pass_disappears() -> None:
    a = "def f(x):\n    if x:\n        t = 1\n    else:\n        pass\n    return x\n"
    b = "def f(x):\n    if x:\n        pass\n    return x\n"
    assert h(a) == h(b)
    assert simplified(a) == simplified(b) == "def f(x):\n    if x:\n        pass\n    return x"


# Each variant differs from its base in a way that can change behaviour: never merged.
DIFFERENT = {
    "print": ("def f(x):\n    return x\n", "def f(x):\n    print(x)\n    return x\n"),
    "unused call result": ("def f(x):\n    return x\n", "def f(x):\n    t = g(x)\n    return x\n"),
    "arithmetic that may raise": (
        "def f(x, y):\n    return x\n",
        "def f(x, y):\n    t = x / y\n    return x\n",
    ),
    "arithmetic on unknown types": ("def f(x):\n    return x\n", "def f(x):\n    t = x + 1\n    return x\n"),
    "possibly undefined name": ("def f(x):\n    return x\n", "def f(x):\n    t = undefined\n    return x\n"),
    "attribute store": ("def f(o):\n    return o\n", "def f(o):\n    o.a = 1\n    return o\n"),
    "subscript store": ("def f(d):\n    return d\n", "def f(d):\n    d[0] = 1\n    return d\n"),
    "global": (
        "def f(x):\n    return x\n",
        "def f(x):\n    global G\n    G = 1\n    return x\n",
    ),
    "nonlocal": (
        "def f():\n    n = 0\n    def g():\n        return 1\n    return g\n",
        "def f():\n    n = 0\n    def g():\n        nonlocal n\n        n = 1\n        return 1\n    return g\n",
    ),
    "module-level assignment (the evaluator may read it)": ("X = 1\n", "X = 1\nY = 2\n"),
    "class attribute": ("class A:\n    a = 1\n", "class A:\n    a = 1\n    b = 2\n"),
    "locals() sees every local": (
        "def f():\n    return locals()\n",
        "def f():\n    a = 1\n    return locals()\n",
    ),
    "dead yield makes a generator": (
        "def f():\n    return 1\n",
        "def f():\n    return 1\n    yield 2\n",
    ),
    "dead binding keeps a name local": (
        "def f():\n    print(x)\n",
        "def f():\n    print(x)\n    if False:\n        x = 1\n",
    ),
    "dead global declaration still applies": (
        "def f():\n    Q = 1\n",
        "def f():\n    if False:\n        global Q\n    Q = 1\n",
    ),
    "del needs the binding": (
        "def f():\n    del a\n",
        "def f():\n    a = 1\n    del a\n",
    ),
    "augmented assignment reads": (
        "def f():\n    return 0\n",
        "def f():\n    a = 1\n    a += 1\n    return 0\n",
    ),
    "read by a nested function": (
        "def f():\n    def g():\n        return a\n    return g\n",
        "def f():\n    a = 1\n    def g():\n        return a\n    return g\n",
    ),
    "while True": ("def f():\n    return 1\n", "def f():\n    while True:\n        pass\n    return 1\n"),
    "int vs float literal": ("def f():\n    return 1\n", "def f():\n    return 1.0\n"),
}


@pytest.mark.parametrize("name", sorted(DIFFERENT))
def test_code_with_effects_or_scoping_never_collapses(name: str) -> None:
    base, variant = DIFFERENT[name]
    assert h(base) != h(variant), simplified(variant)


def test_loop_local_is_not_surely_bound_before_assignment() -> None:
    # `t = s` reads s, assigned only later in the loop body: removing it could hide an
    # UnboundLocalError on the first pass, so it stays.
    code = "def f(n):\n    for i in range(n):\n        t = s\n        s = i\n    return n\n"
    assert "t = s" in simplified(code)


def test_simplifier_leaves_unparseable_and_huge_inputs_alone() -> None:
    assert h("__global__ void k() {}") == h("__global__  void k() {}")
    deep = "x = " + "(" * 150 + "1" + ")" * 150 + "\n"
    assert h(deep) == h(deep)  # no exception, deterministic


# --------------------------------------------------------------------------- end to end

PROGRAM = textwrap.dedent(
    """\
    # EVOLVE-BLOCK-START
    def solve(x):
        return x * 2
    # EVOLVE-BLOCK-END
    """
)
EVALUATOR = textwrap.dedent(
    """\
    from agentopt_guest import CandidateError, call_candidate

    def evaluate(program_path):
        try:
            return {"score": float(call_candidate(program_path, "solve", (10,), timeout=5))}
        except CandidateError as err:
            return {"score": 0.0, "error": str(err)}
    """
)
DEAD_CODE_REPLY = "<<<<<<< SEARCH\n    return x * 2\n=======\n    unused = 3.0\n    return x * 2\n    print('never')\n>>>>>>> REPLACE\n"


@pytest.mark.parametrize("simplify", [True, False])
def test_child_with_only_dead_code_reuses_its_twin(tmp_path: Path, scripted_llm, simplify: bool) -> None:
    server = scripted_llm(lambda messages: DEAD_CODE_REPLY)
    (tmp_path / "program.py").write_text(PROGRAM)
    (tmp_path / "evaluator.py").write_text(EVALUATOR)
    task = tmp_path / "task.yaml"
    task.write_text(
        "program: program.py\nevaluator: evaluator.py\nsandbox: {timeout_s: 20}\n"
        f"llm: {{models: [{{name: openai/scripted, api_base: '{server.base_url}'}}], concurrency: 1}}\n"
        f"search: {{iterations: 1, seed: 1, simplify: {str(simplify).lower()}}}\n"
    )
    summary = evolve(task, output_dir=tmp_path / "run")
    (diff,) = summary.operators  # the one child, made by an LLM diff
    assert (diff.operator, diff.children, diff.valid) == ("diff", 1, 1)
    if simplify:
        assert summary.evaluations == 1 and summary.cache_hits_by_kind["normalized"] == 1
        assert diff.reused == 1
    else:
        assert summary.evaluations == 2 and summary.cache_hits == 0
        assert diff.reused == 0
    assert summary.best_score == 20.0
