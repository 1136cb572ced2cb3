"""agentopt.select: strategies on hand-built matrices whose right answer is known, B4's
evidence against a brute-force enumeration, and accuracy on the synthetic generator."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from agentopt.select import STRATEGIES, B4Prior, SelectionError, consensus_sets, expected_accuracy, select
from agentopt.select.b4 import log_evidence
from agentopt.select.synthetic import SyntheticSpec, generate

# Two correct solutions (0, 1) pass the four correct tests (0-3). A family of three wrong
# solutions (2-4) shares one bug: it fails correct test 3 and passes the two wrong tests (4, 5)
# that were written with the same misconception. Five diverse wrong solutions (5-9) each fail a
# different correct test, but all of them pass test 3, which is evidence that test 3 is right.
TRAP = [
    [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0],
    [1, 1, 1, 0, 1, 1], [1, 1, 1, 0, 1, 1], [1, 1, 1, 0, 1, 1],
    [0, 1, 1, 1, 0, 0], [1, 0, 1, 1, 0, 0], [1, 1, 0, 1, 0, 0], [0, 1, 1, 1, 0, 0], [1, 0, 1, 1, 0, 0],
]


def test_consensus_sets_group_identical_rows() -> None:
    sets = consensus_sets(np.array(TRAP, dtype=bool))
    assert sets.labels.tolist() == [0, 0, 1, 1, 1, 2, 3, 4, 2, 3]
    assert sets.sizes.tolist() == [2, 3, 2, 2, 1]
    assert sets.rows.sum(axis=1).tolist() == [4, 5, 3, 3, 3]


def test_heuristics_fall_into_the_shared_bug_trap_b4_does_not() -> None:
    correct = [True] * 2 + [False] * 8
    assert select(TRAP, "majority").tied == [2, 3, 4]   # the biggest group is the buggy family
    assert select(TRAP, "codet").tied == [2, 3, 4]      # 3 solutions x 5 tests beats 2 x 4
    assert select(TRAP, "max_pass").tied == [2, 3, 4]   # 5 passes beat 4
    chosen = select(TRAP, "b4")
    assert chosen.index == 0 and chosen.tied == [0, 1]
    assert expected_accuracy(chosen, correct) == 1.0
    assert expected_accuracy(select(TRAP, "max_pass"), correct) == 0.0
    assert chosen.probability > 0.99


def test_b4_prefers_agreement_when_tests_are_reliable() -> None:
    # Two groups of two; group A passes all 4 tests, group B fails 2: every strategy agrees on A.
    m = [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]]
    for strategy in ("max_pass", "codet", "b4"):
        assert select(m, strategy).tied == [0, 1], strategy
    assert select(m, "majority").tied == [0, 1, 2, 3]  # equal-sized groups: majority cannot tell


def _brute_force_log_evidence(passes: np.ndarray, rows_correct: np.ndarray, prior: B4Prior) -> float:
    """Integrate the four Beta priors numerically-exactly by expanding the model for one (x, y)."""
    x = rows_correct
    y = passes[np.flatnonzero(x)[0]]

    def ev(p, ones, zeros):  # log of integral theta^ones (1-theta)^zeros Beta(theta; a, b) dtheta
        a, b = p.alpha, p.beta
        return (math.lgamma(a + ones) + math.lgamma(b + zeros) - math.lgamma(a + b + ones + zeros)
                - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)))

    total = ev(prior.solution, x.sum(), (~x).sum()) + ev(prior.test, y.sum(), (~y).sum())
    n01 = n00 = n11 = n10 = 0
    for i, j in itertools.product(range(passes.shape[0]), range(passes.shape[1])):
        if x[i]:
            assert passes[i, j] == y[j]  # consistency: a correct solution passes exactly the correct tests
            continue
        if y[j]:
            n01 += passes[i, j]
            n00 += not passes[i, j]
        else:
            n11 += passes[i, j]
            n10 += not passes[i, j]
    return (total + ev(prior.wrong_passes_correct, n01, n00) + ev(prior.wrong_passes_wrong, n11, n10))


def test_b4_evidence_matches_pairwise_enumeration() -> None:
    rng = np.random.default_rng(7)
    prior = B4Prior(solution={"alpha": 2, "beta": 3}, wrong_passes_correct={"alpha": 3, "beta": 1})
    for _ in range(5):
        passes = rng.random((9, 7)) < 0.5
        passes[3] = passes[1]
        sets = consensus_sets(passes)
        fast = log_evidence(passes, sets, prior)
        for k in range(sets.count):
            slow = _brute_force_log_evidence(passes, sets.labels == k, prior)
            assert fast[k] == pytest.approx(slow, rel=1e-9, abs=1e-9)


def test_prior_decides_when_evidence_is_ambiguous() -> None:
    # One solution passing two tests alone vs a pair agreeing on one other test. Believing tests
    # are reliable picks the loner; believing solutions are mostly right picks the pair.
    m = [[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    trust_tests = B4Prior(test={"alpha": 50, "beta": 1}, solution={"alpha": 1, "beta": 50})
    trust_solutions = B4Prior(solution={"alpha": 50, "beta": 1}, test={"alpha": 1, "beta": 50})
    assert select(m, "b4", prior=trust_tests).tied == [0]
    assert select(m, "b4", prior=trust_solutions).tied == [1, 2]
    assert select(m, "b4").tied == [1, 2]  # default priors: agreement wins


def test_bad_input_is_a_one_line_error() -> None:
    with pytest.raises(SelectionError, match="0/1"):
        select([[0, 2]])
    with pytest.raises(SelectionError, match="2-D"):
        select([1, 0, 1])
    with pytest.raises(SelectionError, match="no solutions"):
        select(np.zeros((0, 3)))
    with pytest.raises(SelectionError, match="unknown selection strategy 'vote'"):
        select([[1]], "vote")
    with pytest.raises(SelectionError, match="different lengths"):
        select([[1, 0], [1]])
    with pytest.raises(SelectionError, match="labels"):
        expected_accuracy(select([[1], [0]]), [True])


def test_zero_tests_means_everyone_ties() -> None:
    chosen = select(np.zeros((4, 0), dtype=bool), "b4")
    assert chosen.tied == [0, 1, 2, 3]


def test_synthetic_generator_respects_its_proportions() -> None:
    spec = SyntheticSpec(n_solutions=20, n_tests=10, correct_solutions=0.25, correct_tests=0.6)
    p = generate(spec, np.random.default_rng(0))
    assert p.passes.shape == (20, 10) and p.correct.sum() == 5 and p.correct_tests.sum() == 6
    # Ground-truth consistency: correct solutions pass exactly the correct tests.
    assert (p.passes[p.correct] == p.correct_tests).all()


def test_b4_beats_every_heuristic_when_correct_solutions_are_rare() -> None:
    # 2 correct solutions of 20, 60% correct tests, diverse bugs: B4's home ground in the paper.
    spec = SyntheticSpec(correct_solutions=0.1, correct_tests=0.6, bug_families=10)
    rng = np.random.default_rng(2024)
    acc = dict.fromkeys(STRATEGIES, 0.0)
    for _ in range(60):
        p = generate(spec, rng)
        for s in STRATEGIES:
            acc[s] += expected_accuracy(select(p.passes, s), p.correct) / 60
    assert acc["b4"] > max(acc["max_pass"], acc["codet"], acc["majority"]) + 0.15, acc


def test_evolve_final_selection_b4_replaces_the_top_scored_program(tmp_path) -> None:
    from types import SimpleNamespace

    from pydantic import ValidationError

    from agentopt.evolve.db import Program, ProgramDB, make_program_id
    from agentopt.evolve.final_selection import parse_passes, select_final
    from agentopt.evolve.summary import RunSummary, write_outputs
    from agentopt.task import Objective, SearchSpec

    objective = Objective(selection="b4", selection_top=10)
    db = ProgramDB.open(tmp_path / "programs.db", objective=objective, search=SearchSpec())
    ids = []
    for i, row in enumerate(TRAP):  # score = tests passed, as a pass-rate evaluator would report
        code = f"def f():\n    return {i}\n"
        ids.append(make_program_id(0, i, f"h{i}"))
        passes = "".join(map(str, row)) if i % 2 else str(row)  # both accepted forms: "1101", "[1, 1, 0, 1]"
        db.add(Program(id=ids[-1], code=code, iteration=i, score=float(sum(row)), complexity=10.0,
                       artifacts={"passes": passes}))
    spec = SimpleNamespace(objective=objective, load_warnings=[])
    final = select_final(db, spec)
    assert db.best().id in ids[2:5]  # the buggy family scores highest
    assert final.program_id in ids[:2] and final.candidates == 10 and final.tests == 6
    summary = RunSummary(task="t", run_dir=str(tmp_path), objective="score", direction="maximize",
                         best_score=5.0, best_program_path=str(tmp_path / "best_program.py"),
                         selection=final.model_dump())
    write_outputs(tmp_path, db, summary, spec)
    chosen = ids.index(final.program_id)
    assert (tmp_path / "best_program.py").read_text() == f"def f():\n    return {chosen}\n"
    assert f"b4: {final.program_id} among the top 10 programs x 6 tests" in (tmp_path / "summary.md").read_text()
    assert select_final(db, SimpleNamespace(objective=Objective())) is None  # default: best score
    assert parse_passes("10x") is None and parse_passes("[True, 0]") == [True, False]
    with pytest.raises(ValidationError):
        Objective(selection="vote")


def test_evolve_final_selection_without_pass_vectors_keeps_the_best(tmp_path) -> None:
    from types import SimpleNamespace

    from agentopt.evolve.db import Program, ProgramDB, make_program_id
    from agentopt.evolve.final_selection import select_final
    from agentopt.task import Objective, SearchSpec

    objective = Objective(selection="b4")
    db = ProgramDB.open(tmp_path / "programs.db", objective=objective, search=SearchSpec())
    for i in range(3):
        db.add(Program(id=make_program_id(0, i, f"h{i}"), code=f"x = {i}\n", iteration=i, score=float(i),
                       complexity=5.0))
    final = select_final(db, SimpleNamespace(objective=objective))
    assert final.program_id is None and "fewer than 2 top programs reported 'passes'" in final.note


_VARIANT_PROGRAM = '''"""Which implementation variant this candidate is (the evaluator looks its test results up)."""

# EVOLVE-BLOCK-START
def variant():
    return 7
# EVOLVE-BLOCK-END
'''

_VARIANT_EVALUATOR = f'''from agentopt_guest import call_candidate

ROWS = {TRAP!r}

def evaluate(program_path):
    row = ROWS[int(call_candidate(program_path, "variant", timeout=10))]
    return {{"score": float(sum(row)), "passes": "".join(map(str, row))}}
'''


def test_evolve_run_with_selection_b4_ships_the_b4_choice(tmp_path, scripted_llm) -> None:
    """A real run (scripted LLM, local sandbox): the evaluator's generated tests reward a buggy
    family; with objective.selection b4 the shipped best_program is an agreeing correct one."""
    import re

    from agentopt.evolve.api import evolve

    order = iter([0, 2, 1, 3, 5, 4, 6, 8, 9])

    def reply(messages: list[dict]) -> str:
        text = "\n".join(m["content"] for m in messages)
        match = re.search(r"    return (\d+)", text)
        if "EVOLVE-BLOCK" not in text or match is None:
            return "OK"
        return (f"<<<<<<< SEARCH\n    return {match.group(1)}\n=======\n    return {next(order, 9)}\n"
                ">>>>>>> REPLACE\n")

    server = scripted_llm(reply)
    (tmp_path / "program.py").write_text(_VARIANT_PROGRAM)
    (tmp_path / "evaluator.py").write_text(_VARIANT_EVALUATOR)
    task = tmp_path / "task.yaml"
    task.write_text(
        "name: plausible\nprogram: program.py\nevaluator: evaluator.py\n"
        "objective: {metric: score, selection: b4, selection_top: 10}\n"
        "sandbox: {timeout_s: 30, memory_mb: 1024}\n"
        f"llm: {{models: [{{name: openai/scripted, api_base: '{server.base_url}'}}], concurrency: 1}}\n"
        "search: {iterations: 9, seed: 0}\n")
    summary = evolve(task, output_dir=tmp_path / "run")
    assert summary.best_score == 5.0  # the buggy family tops the generated tests
    assert summary.selection["program_id"] and summary.selection["candidates"] >= 8
    shipped = (tmp_path / "run" / "best_program.py").read_text()
    assert re.search(r"return ([01])\b", shipped), shipped
    assert "final selection" in (tmp_path / "run" / "summary.md").read_text()
