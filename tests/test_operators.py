"""Offline form-changing operators, literal crossover, frozen shape ints and top-parent selection."""

from __future__ import annotations

import ast
import random
import textwrap

from agentopt.evolve.operators import crossover_literals, extend_horner
from agentopt.evolve.selection import Population, Record, SelectionParams, rank_key
from agentopt.evolve.symbolic import SymbolicMutator, block_spans, float_literal_sites
from agentopt.evolve.tuning import literal_only_change, same_shape

HORNER = textwrap.dedent(
    """\
    # EVOLVE-BLOCK-START
    def f(x):
        p = 0.25  # lead
        p = p * x + 0.5
        p = p * x - 1.0
        return p
    # EVOLVE-BLOCK-END
    """
)


def _poly(code: str, x: float) -> float:
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - our own test program
    return namespace["f"](x)


def test_extend_horner_adds_one_term_and_keeps_the_polynomial_close() -> None:
    child, description = extend_horner(HORNER, random.Random(0), block_spans(HORNER)) or ("", "")
    assert "extended the Horner chain" in description
    body = next(n for n in ast.parse(child).body if isinstance(n, ast.FunctionDef)).body
    assert len(body) == 5  # one more `p = p * x + c` step
    lead = ast.literal_eval(body[0].value)
    assert 0 < lead < 0.25  # a small new leading coefficient
    for x in (-0.3, 0.0, 0.3):  # exactly the parent's polynomial plus lead * x^3
        assert abs(_poly(child, x) - (_poly(HORNER, x) + lead * x**3)) < 1e-12


def test_extend_horner_needs_a_chain_inside_a_block() -> None:
    outside = HORNER.replace("# EVOLVE-BLOCK-START\n", "").replace("# EVOLVE-BLOCK-END\n", "") + (
        "# EVOLVE-BLOCK-START\nK = 1.0\n# EVOLVE-BLOCK-END\n"
    )
    assert extend_horner(outside, random.Random(0), block_spans(outside)) is None


def test_crossover_takes_literals_from_a_same_shape_program_with_signs() -> None:
    other = HORNER.replace("0.25", "0.125").replace("p * x - 1.0", "p * x + 2.0")
    assert same_shape(HORNER, other)
    seen: set[tuple[float, ...]] = set()
    for seed in range(20):
        out = crossover_literals(HORNER, other, random.Random(seed))
        assert out is not None
        child = out[0]
        assert literal_only_change(HORNER, child) is None
        sites = float_literal_sites(child)
        seen.add(tuple((-s.value if s.minus_before else s.value) for s in sites))
    assert (0.125, 0.5, 2.0) in seen or (0.25, 0.5, 2.0) in seen  # a uniform pick of the other's literals
    assert crossover_literals(HORNER, HORNER.replace("p * x + 0.5", "p * 0.5 + x"), random.Random(0)) is None


def test_shape_and_index_ints_are_never_perturbed() -> None:
    code = textwrap.dedent(
        """\
        import numpy as np
        # EVOLVE-BLOCK-START
        def construct():
            pts = np.zeros((11, 2))
            for i in range(11):
                pts[i, 0] = i / 10
            return pts.reshape(11, 2)
        # EVOLVE-BLOCK-END
        """
    )
    mutator = SymbolicMutator(ast_edit_prob=0.0)
    for seed in range(30):
        child, description, kind = mutator.mutate_with_kind(code, random.Random(seed))
        if kind in ("perturb_literals", "share_constant"):
            assert "(11, 2)" in child and "range(11)" in child and "pts[i, 0]" in child
            assert "i / 10" not in child  # the only free literal is the one that moved


def _population(top_share: float) -> Population:
    pop = Population(SelectionParams(bins=(10,), top_share=top_share, top_k=2), "maximize")
    for seq in range(40):
        pop.insert(Record(seq, f"p{seq}", seq, 0, rank_key(float(seq), seq, seq, "maximize"), (float(seq),)))
    return pop


def test_top_share_breeds_mostly_from_the_best_few() -> None:
    rng = random.Random(0)
    pop = _population(0.6)
    best_two = {39, 38}
    picks = [pop.choose_parent(rng, pop.islands[0]) for _ in range(2000)]
    share = sum(p in best_two for p in picks) / len(picks)
    baseline = _population(0.0)
    base_share = sum(baseline.choose_parent(rng, baseline.islands[0]) in best_two for _ in range(2000)) / 2000
    assert share > 0.6 and share > base_share + 0.3


def test_adaptive_steps_move_floats_by_their_own_step() -> None:
    mutator = SymbolicMutator()
    for seed in range(10):
        out = mutator.perturb_adaptive(HORNER, random.Random(seed), [1e-9, 1e-9, 1e-9])
        assert out is not None
        child, _, moved = out
        before = [s.value for s in float_literal_sites(HORNER)]
        after = [s.value for s in float_literal_sites(child)]
        for i, (a, b) in enumerate(zip(before, after, strict=True)):
            assert abs(b - a) <= 1e-7 * abs(a) and ((a != b) <= (i in moved))


def test_adaptive_steps_grow_on_success_and_shrink_on_failure(tmp_path) -> None:
    from agentopt.evolve.db import Program
    from agentopt.evolve.proposal import Child
    from agentopt.evolve.proposers import SIGMA_DOWN, SIGMA_START, SIGMA_UP, SymbolicProposer
    from agentopt.task import load_task

    (tmp_path / "p.py").write_text(HORNER)
    (tmp_path / "e.py").write_text("def evaluate(p):\n    return {'score': 0.0}\n")
    (tmp_path / "t.yaml").write_text("program: p.py\nevaluator: e.py\n")
    proposer = SymbolicProposer(load_task(tmp_path / "t.yaml"))
    parent = Program(id="parent", code=HORNER, iteration=0, score=1.0)
    steps = {"moved": [1], "sigma": [SIGMA_START] * 3}
    worse = Program(id="worse", code=HORNER, iteration=1, score=0.5)
    proposer.observe(Child(1, parent, HORNER, {"steps": steps}), worse)
    assert proposer._sigma["parent"][1] == SIGMA_START * SIGMA_DOWN and "worse" not in proposer._sigma
    better = Program(id="better", code=HORNER, iteration=2, score=2.0)
    proposer.observe(Child(2, parent, HORNER, {"steps": steps}), better)
    assert proposer._sigma["better"][1] == SIGMA_START * SIGMA_DOWN * SIGMA_UP
    assert proposer.state_items()["literal_steps"]["better"][0] == SIGMA_START


def test_block_crossover_takes_one_differing_block_from_the_donor() -> None:
    from agentopt.evolve.operators import crossover_blocks

    two = "# EVOLVE-BLOCK-START\nA = 1\n# EVOLVE-BLOCK-END\nMID = 0\n# EVOLVE-BLOCK-START\nB = 2\n# EVOLVE-BLOCK-END\n"
    donor = two.replace("A = 1", "A = 10").replace("MID = 0", "MID = 5")
    child, description = crossover_blocks(two, donor, random.Random(0)) or ("", "")
    assert "A = 10" in child and "B = 2" in child and "MID = 0" in child and "block 1" in description.lower()
    assert crossover_blocks(two, two, random.Random(0)) is None
    assert crossover_blocks("# EVOLVE-BLOCK-START\nA = 1\n# EVOLVE-BLOCK-END\n", donor, random.Random(0)) is None


def test_every_offline_operator_yields_a_parsable_child(tmp_path) -> None:
    import asyncio

    from agentopt.evolve.db import Program
    from agentopt.evolve.proposers import SymbolicProposer
    from agentopt.task import load_task

    (tmp_path / "p.py").write_text(HORNER)
    (tmp_path / "e.py").write_text("def evaluate(p):\n    return {'score': 0.0}\n")
    (tmp_path / "t.yaml").write_text("program: p.py\nevaluator: e.py\n")
    proposer = SymbolicProposer(load_task(tmp_path / "t.yaml"))
    parent = Program(id="a", code=HORNER, iteration=0, score=1.0)
    twin = Program(id="b", code=HORNER.replace("0.5", "0.75"), iteration=1, score=0.5)
    operators = set()
    for seed in range(60):
        child = asyncio.run(
            proposer.propose(iteration=seed, parent=parent, inspirations=[twin], rng=random.Random(seed),
                             previous_error=None)
        )
        assert child.code is not None, child.error
        ast.parse(child.code)
        operators.add(child.mutation["operator"])
    assert {"extend_horner", "crossover_literals", "perturb_adaptive"} <= operators


def test_shift_ints_keeps_the_total_of_counts() -> None:
    from agentopt.evolve.symbolic import shift_ints

    code = "# EVOLVE-BLOCK-START\nROWS = [(0.1, 6), (0.3, 5), (0.5, 1)]\nGRID = list(range(3))\n# EVOLVE-BLOCK-END\n"
    for seed in range(20):
        child, _ = shift_ints(code, random.Random(seed)) or ("", "")
        rows = ast.literal_eval(child.split("ROWS = ")[1].split("\n")[0])
        assert sum(n for _, n in rows) == 12 and min(n for _, n in rows) >= 1
        assert "range(3)" in child  # a shape-like int is never shifted
