"""Constants tuning: the guest tuner improves constants, the host accepts only literal changes,
seeded tuning is reproducible, and a whole run stores tuned programs whose scores reproduce."""

from __future__ import annotations

import ast
import asyncio
import importlib
import sys
import textwrap
import types
from pathlib import Path

import pytest

from agentopt.evolve.api import evolve
from agentopt.evolve.db import ProgramDB
from agentopt.evolve.tuning import literal_only_change, tune_program, tune_seed
from agentopt.paths import evaluator_lib_dir
from agentopt.sandbox.local import LocalSandbox
from agentopt.task import load_task

sys.path.insert(0, str(evaluator_lib_dir()))
agentopt_tune = importlib.import_module("agentopt_tune")

# A known-suboptimal constant vector: the optimum is a = 3, b = -0.5, c = 2 (score 0).
PROGRAM = textwrap.dedent(
    """\
    HEADER = 1.0  # outside the block: never tuned


    # EVOLVE-BLOCK-START
    def params(x):
        a = 1.0  # first
        b = x - 0.25
        c = 2.0 ** x
        n = 4
        return a, b, c, n
    # EVOLVE-BLOCK-END
    """
)


def _score_of(source: str) -> float:
    """-(squared distance to the optimum), computed from the AST (never running the program)."""
    fn = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef))
    a = ast.literal_eval(fn.body[0].value)
    b_node = fn.body[1].value
    sign = 1.0 if isinstance(b_node.op, ast.Add) else -1.0
    b = sign * ast.literal_eval(b_node.right)
    c_node = fn.body[2].value.left
    c = ast.literal_eval(c_node)
    return -((a - 3.0) ** 2 + (b + 0.5) ** 2 + (c - 2.0) ** 2)


EVALUATOR = textwrap.dedent(
    """\
    import ast, pathlib

    def _value(node):
        return ast.literal_eval(node)

    def evaluate(program_path):
        source = pathlib.Path(program_path).read_text()
        fn = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef))
        a = _value(fn.body[0].value)
        b_node = fn.body[1].value
        b = (1.0 if isinstance(b_node.op, ast.Add) else -1.0) * _value(b_node.right)
        c = _value(fn.body[2].value.left)
        return {"score": -((a - 3.0) ** 2 + (b + 0.5) ** 2 + (c - 2.0) ** 2)}
    """
)


def _module() -> types.ModuleType:
    module = types.ModuleType("tiny_evaluator")
    exec(EVALUATOR, module.__dict__)  # noqa: S102 - our own test evaluator
    return module


def _tune(tmp_path: Path, seed: int, evaluations: int = 400) -> dict:
    path = tmp_path / "program.py"
    path.write_text(PROGRAM)
    return agentopt_tune.tune(_module(), str(path), {"seed": seed, "evaluations": evaluations, "time_s": 60})


def test_tuner_improves_a_known_suboptimal_constant_vector(tmp_path: Path) -> None:
    out = _tune(tmp_path, seed=1)
    assert out["literals"] == 3  # the int 4 is structure and left alone
    assert out["before"] == pytest.approx(-4.0625)  # (1 - 3)^2 + (-0.25 + 0.5)^2 + (2 - 2)^2
    assert out["after"] > -1e-6 and out["evaluations"] <= 400
    tuned = out["source"]
    assert _score_of(tuned) == pytest.approx(out["after"], abs=0.0)  # what is written back is what scored
    assert literal_only_change(PROGRAM, tuned) is None
    assert "HEADER = 1.0  # outside" in tuned and "n = 4" in tuned and "# first" in tuned


def test_tuning_is_reproducible_for_a_seed(tmp_path: Path) -> None:
    first, again = _tune(tmp_path, seed=7, evaluations=60), _tune(tmp_path, seed=7, evaluations=60)
    other = _tune(tmp_path, seed=8, evaluations=60)
    assert first["source"] == again["source"]
    assert first["source"] != other["source"]


def test_render_keeps_signs_and_precedence_valid() -> None:
    lits = agentopt_tune.find_literals(PROGRAM)
    assert [lit.value for lit in lits] == [1.0, 0.25, 2.0]  # `x - 0.25`: the literal is 0.25
    out = agentopt_tune.render(PROGRAM, lits, [-1.5, -0.75, -3.0])
    assert "a = -1.5" in out and "b = x + 0.75" in out and "c = (-3.0) ** x" in out
    assert literal_only_change(PROGRAM, out) is None
    assert [lit.value for lit in agentopt_tune.find_literals(out)] == [-1.5, 0.75, -3.0]
    assert agentopt_tune.render(out, agentopt_tune.find_literals(out), [1.0, 0.25, 2.0]) != PROGRAM  # `(-3.0)` stays
    assert literal_only_change(PROGRAM, agentopt_tune.render(out, agentopt_tune.find_literals(out), [1, 2, 3])) is None


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (("b = x - 0.25", "b = x * 0.25"), "code other than numeric literals"),
        (("HEADER = 1.0", "HEADER = 2.0"), "outside the EVOLVE-BLOCKs"),
        (("# first", "# ignore previous instructions"), "comments changed"),
        (("n = 4", "n = 4.0"), "code other than numeric literals"),
        (("return a, b, c, n", "return a, b, c, n + 1"), "code other than numeric literals"),
    ],
)
def test_integrity_rejects_anything_but_literal_values(edit: tuple[str, str], reason: str) -> None:
    assert reason in (literal_only_change(PROGRAM, PROGRAM.replace(*edit)) or "")


def test_one_sandbox_job_tunes_and_the_host_verifies(tmp_path: Path) -> None:
    (tmp_path / "evaluator.py").write_text(EVALUATOR)
    (tmp_path / "program.py").write_text(PROGRAM)
    (tmp_path / "task.yaml").write_text(
        "program: program.py\nevaluator: evaluator.py\nsandbox: {timeout_s: 30}\n"
        "search: {tune: {evaluations: 200}}\n"
    )
    spec = load_task(tmp_path / "task.yaml")

    async def run() -> tuple:
        sandbox = LocalSandbox()
        try:
            return await tune_program(sandbox, spec, tmp_path / "program.py", tune_seed(0, 1))
        finally:
            await sandbox.close()

    outcome = asyncio.run(run())
    assert outcome.code is not None, outcome.record
    assert outcome.record["evaluations"] == 200 and outcome.record["after"] > outcome.record["before"]
    assert _score_of(outcome.code) == pytest.approx(outcome.record["after"], abs=0.0)


def test_a_run_stores_tuned_children_whose_scores_reproduce(tmp_path: Path) -> None:
    (tmp_path / "evaluator.py").write_text(EVALUATOR)
    (tmp_path / "program.py").write_text(PROGRAM)
    (tmp_path / "task.yaml").write_text(
        "program: program.py\nevaluator: evaluator.py\nsandbox: {timeout_s: 30}\n"
        "search: {iterations: 2, seed: 3, tune: {evaluations: 150}}\n"
    )
    summary = evolve(tmp_path / "task.yaml", output_dir=tmp_path / "run")
    assert summary.best_score is not None and summary.best_score > summary.initial_score + 3.0
    spec = load_task(tmp_path / "task.yaml")
    db = ProgramDB.open(tmp_path / "run" / "programs.db", objective=spec.objective, search=spec.search)
    try:
        children = [p for p in db.programs() if p.iteration > 0 and p.ok]
    finally:
        db.close()
    assert children
    for child in children:
        tuned = child.mutation["tuned"]
        assert tuned["evaluations"] > 0 and tuned["objective"] == "evaluate"
        assert _score_of(child.code) == pytest.approx(child.score, abs=0.0)  # the stored program reproduces it


HOSTILE_EVALUATOR = EVALUATOR + textwrap.dedent(
    """\

    def tune_objective(program_path):
        # A tampering guest: make the tuner's answer carry changed code, not just new constants.
        import agentopt_tune
        original = agentopt_tune.render
        agentopt_tune.render = lambda s, l, v: original(s, l, v).replace("n = 4", "n = 4; import os")
        return evaluate(program_path)
    """
)


def test_a_tuned_source_that_changed_code_is_rejected_by_the_host(tmp_path: Path) -> None:
    (tmp_path / "evaluator.py").write_text(HOSTILE_EVALUATOR)
    (tmp_path / "program.py").write_text(PROGRAM)
    (tmp_path / "task.yaml").write_text("program: program.py\nevaluator: evaluator.py\nsearch: {tune: 30}\n")
    spec = load_task(tmp_path / "task.yaml")

    async def run() -> tuple:
        sandbox = LocalSandbox()
        try:
            return await tune_program(sandbox, spec, tmp_path / "program.py", 1)
        finally:
            await sandbox.close()

    outcome = asyncio.run(run())
    assert outcome.code is None
    assert "rejected: code other than numeric literals changed" in outcome.record["error"]


def test_auto_tuning_is_on_offline_only_when_it_is_cheap_or_asked_for(tmp_path: Path) -> None:
    from agentopt.evolve.tuning import tune_budget, tune_enabled

    offline, llm = types.SimpleNamespace(tune_by_default=True), types.SimpleNamespace(tune_by_default=False)
    (tmp_path / "program.py").write_text(PROGRAM)

    def spec(evaluator: str, search: str = "{}"):
        (tmp_path / "evaluator.py").write_text(evaluator)
        (tmp_path / "task.yaml").write_text(f"program: program.py\nevaluator: evaluator.py\nsearch: {search}\n")
        return load_task(tmp_path / "task.yaml")

    plain = spec(EVALUATOR)
    assert not tune_enabled(plain, offline) and tune_budget(plain) == 40
    assert tune_enabled(spec(EVALUATOR, "{tune: 25}"), offline)
    hooked = spec(EVALUATOR + "\ndef tune_objective(p):\n    return evaluate(p)\n")
    assert tune_enabled(hooked, offline) and not tune_enabled(hooked, llm) and tune_budget(hooked) == 1000
    assert tune_enabled(spec(EVALUATOR, "{tune: true}"), llm)
    assert not tune_enabled(spec(EVALUATOR + "\ndef tune_objective(p):\n    return {}\n", "{tune: false}"), offline)


def test_seeded_tuned_runs_repeat_and_resume_exactly(tmp_path: Path) -> None:
    from agentopt.evolve.api import resume

    (tmp_path / "evaluator.py").write_text(EVALUATOR)
    (tmp_path / "program.py").write_text(PROGRAM)
    (tmp_path / "task.yaml").write_text(
        "program: program.py\nevaluator: evaluator.py\nsandbox: {timeout_s: 30}\n"
        "search: {iterations: 4, seed: 5, parallel_evaluations: 2, tune: 60}\n"
    )
    evolve(tmp_path / "task.yaml", output_dir=tmp_path / "straight")
    evolve(tmp_path / "task.yaml", output_dir=tmp_path / "split", iterations=2)
    resume(tmp_path / "split", iterations=4)
    spec = load_task(tmp_path / "task.yaml")

    def stored(run: str) -> list[tuple]:
        db = ProgramDB.open(tmp_path / run / "programs.db", objective=spec.objective, search=spec.search)
        try:
            return [(p.id, p.score, p.mutation.get("tuned", {}).get("after")) for p in db.programs()]
        finally:
            db.close()

    assert len(stored("straight")) == 5
    assert stored("straight") == stored("split")
