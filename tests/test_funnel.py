"""The adaptive funnel (rank promotion, per-stage counts, time saved) and evaluation settings.

Stage scores come from an in-process fake sandbox that reads a number out of the candidate
file, so the gates, the windows and whole evolution runs are exercised on controlled inputs
without starting a process per evaluation."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import textwrap
from pathlib import Path
from typing import Any

import pytest

from agentopt.errors import TaskError
from agentopt.evaluate import SETTING_ENV, evaluate_program
from agentopt.evolve.controller import EvolutionController
from agentopt.evolve.db import Program
from agentopt.evolve.funnel import Funnel, funnel_stats
from agentopt.evolve.proposers import SymbolicProposer
from agentopt.evolve.summary import summary_rows
from agentopt.sandbox.base import JobResult, Sandbox, SandboxJob
from agentopt.sandbox.factory import make_sandbox
from agentopt.task import load_task

EVALUATOR = textwrap.dedent(
    """\
    def evaluate_stage1(program_path):
        return {"score": 0.0}

    def evaluate_stage2(program_path):
        return {"score": 0.0}

    def evaluate(program_path):
        return {"score": 0.0}
    """
)
PROGRAM = "# EVOLVE-BLOCK-START\ndef solve():\n    return 3.5 * 2.0 + 1.25\n# EVOLVE-BLOCK-END\n"
STAGE_WALL = {"evaluate_stage1": 0.5, "evaluate_stage2": 2.0, "evaluate": 4.0}


class FakeSandbox(Sandbox):
    """Scores a candidate by the sum of the numbers in its code (plus a per-stage offset);
    a setting's ``AGENTOPT_SETTING`` params may scale it. Wall times are fixed per stage."""

    name = "fake"

    def __init__(self, interrupt_after: int | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.interrupt_after = interrupt_after

    async def run(self, job: SandboxJob) -> JobResult:
        if self.interrupt_after is not None and len(self.calls) >= self.interrupt_after:
            raise asyncio.CancelledError  # what Ctrl-C looks like to the controller
        code = Path(job.program_path).read_text()
        self.calls.append((job.function, code))
        numbers = [float(x) for x in re.findall(r"\d+\.\d+|\d+", code.split("def solve")[-1])]
        value = sum(numbers)
        setting = json.loads(job.env.get(SETTING_ENV, "{}"))
        if setting.get("fail"):
            return JobResult(ok=True, value={"score": 0.0, "error": "diverged"}, wall_s=1.0)
        value *= float(setting.get("scale", 1.0))
        value += {"evaluate_stage1": 0.0, "evaluate_stage2": 0.1, "evaluate": 0.2}.get(job.function, 0.0)
        return JobResult(ok=True, value={"score": value, "n": len(numbers)}, wall_s=STAGE_WALL.get(job.function, 1.0))

    def available_isolation(self) -> list[str]:
        return []

    async def close(self) -> None:
        return None


def make_task(tmp_path: Path, extra: str) -> Path:
    (tmp_path / "program.py").write_text(PROGRAM)
    (tmp_path / "evaluator.py").write_text(EVALUATOR)
    task = tmp_path / "task.yaml"
    task.write_text("name: funnel\nprogram: program.py\nevaluator: evaluator.py\n" + extra)
    return task


def staged(iteration: int, *records: tuple[float | None, str]) -> Program:
    """A stored program with stage records (score, outcome) for stages 1, 2, ..."""
    stages = [
        {"stage": i, "function": f"evaluate_stage{i}", "score": s, "wall_s": float(i), "outcome": o}
        for i, (s, o) in enumerate(records, start=1)
    ]
    return Program(id=f"p{iteration}", code="", iteration=iteration, stages=stages)


# ---------------------------------------------------------------------------- windows and cutoffs


def test_cutoff_is_the_ceil_fraction_best_of_the_window_with_failures_counted_worst(tmp_path: Path) -> None:
    spec = load_task(make_task(tmp_path, "cascade: {enabled: true, promote_top: 0.3, rank_window: 10, rank_warmup: 4}\n"))
    funnel = Funnel(spec.cascade, spec.objective)
    for i, score in enumerate([5.0, 1.0, 3.0]):
        funnel.observe(staged(i, (score, "passed")))
    assert funnel.limits() == [None, None, None]  # warm-up: 3 results < 4
    funnel.observe(staged(3, (None, "failed")))
    # window [5, 1, 3, fail]: ceil(0.3 * 4) = 2 -> the 2nd best score
    assert funnel.cutoff(1) == 3.0
    for i, score in enumerate(range(10, 20), start=4):  # slides: only the last 10 count
        funnel.observe(staged(i, (float(score), "stopped")))
    assert funnel.window_sizes() == {1: 10}
    assert funnel.cutoff(1) == 17.0  # ceil(0.3 * 10) = 3rd best of 10..19


def test_minimize_and_per_stage_fractions_and_too_many_failures(tmp_path: Path) -> None:
    spec = load_task(make_task(tmp_path, (
        "objective: {direction: minimize}\n"
        "cascade: {enabled: true, promote_top: [null, 0.5], rank_window: 4, rank_warmup: 2}\n")))
    funnel = Funnel(spec.cascade, spec.objective)
    funnel.observe(staged(0, (9.0, "passed"), (4.0, "passed")))
    funnel.observe(staged(1, (1.0, "passed"), (2.0, "final")))
    assert funnel.limits() == [None, 2.0, None]  # stage 1 has no rank gate; lower is better
    funnel.observe(staged(2, (1.0, "passed"), (None, "failed")))
    funnel.observe(staged(3, (1.0, "passed"), (None, "failed")))
    funnel.observe(staged(4, (1.0, "passed"), (None, "failed")))
    assert funnel.cutoff(2) is None  # ceil(0.5 * 4) = 2 scores needed, the window holds 1


def test_promotion_counts_and_time_saved_on_controlled_inputs(tmp_path: Path) -> None:
    """Ten candidates with scores 1..10 through a top-30% first gate: after the 5-result
    warm-up the gate promotes exactly the candidates in the top 30% of the last 5."""
    spec = load_task(make_task(tmp_path, "cascade: {enabled: true, promote_top: [0.3, 1.0], rank_window: 5, rank_warmup: 5}\n"))
    sandbox = FakeSandbox()
    funnel = Funnel(spec.cascade, spec.objective)
    scores = [4, 8, 1, 6, 3, 9, 2, 7, 10, 5]
    programs = []
    for i, value in enumerate(scores):
        path = tmp_path / f"c{i}.py"
        path.write_text(f"def solve():\n    return {value}\n")
        result = asyncio.run(evaluate_program(sandbox, spec, path, rank_limits=funnel.limits()))
        program = Program(id=str(i), code="", iteration=i, stages=result.stages, score=result.score)
        funnel.observe(program)
        programs.append((value, result, program))
    stopped = [v for v, r, _ in programs if r.stages[-1]["outcome"] == "stopped"]
    # window before candidate i = scores[i-5:i]; cutoff = 2nd best (ceil(0.3*5) = 2)
    expected = [v for i, v in enumerate(scores) if i >= 5 and v < sorted(scores[i - 5 : i])[-2]]
    assert stopped == expected == [2, 5]
    assert all("not in the top 30% of recent candidates" in r.feedback for v, r, _ in programs if v in stopped)
    rows = funnel_stats(p for _, _, p in programs)
    assert [(r.stage, r.ran, r.passed, r.stopped, r.failed) for r in rows] == [(1, 10, 8, 2, 0), (2, 8, 8, 0, 0), (3, 8, 8, 0, 0)]
    assert rows[0].saved_s == pytest.approx(2 * (2.0 + 4.0))  # stopped x mean wall of stages 2 and 3
    assert rows[1].saved_s == 0.0


def test_thresholds_alone_behave_as_before(tmp_path: Path) -> None:
    spec = load_task(make_task(tmp_path, "cascade: {enabled: true, thresholds: [10.0]}\n"))
    path = tmp_path / "c.py"
    path.write_text("def solve():\n    return 4\n")
    result = asyncio.run(evaluate_program(FakeSandbox(), spec, path))
    assert result.feedback == "stopped after stage 1: score 4 did not reach 10"
    assert result.stage == 1 and result.score == 4.0 and result.wall_s == 0.5


@pytest.mark.parametrize(
    ("cascade", "message"),
    [
        ("{promote_top: 1.5}", "key 'cascade.promote_top': Value error, promote_top must be a fraction in (0, 1]"),
        ("{promote_top: [0.5, 0]}", "promote_top[1] must be a fraction in (0, 1]"),
        ("{rank_window: 5, rank_warmup: 6}", "rank_warmup (6) must not exceed rank_window (5)"),
        ("{promote_top: 0.5}", "key 'cascade': Value error, promote_top needs enabled: true"),
    ],
)
def test_bad_funnel_keys_fail_in_one_line(tmp_path: Path, cascade: str, message: str) -> None:
    with pytest.raises(TaskError, match=re.escape(message)) as err:
        load_task(make_task(tmp_path, f"cascade: {cascade}\n"))
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------- whole runs


RUN_KEYS = (
    "search: {iterations: 14, seed: 3, parallel_evaluations: 2, mutator: symbolic}\n"
    "cascade: {enabled: true, promote_top: 0.4, rank_window: 6, rank_warmup: 3}\n"
)


def run(spec_path: Path, run_dir: Path, sandbox: FakeSandbox, iterations: int | None = None) -> Any:
    spec = load_task(spec_path)
    controller = EvolutionController(spec, run_dir, sandbox=sandbox, proposer=SymbolicProposer(spec),
                                     iterations=iterations)
    return asyncio.run(controller.run())


def stored(run_dir: Path) -> list[tuple]:
    with sqlite3.connect(run_dir / "programs.db") as conn:
        return conn.execute("SELECT id, parent_id, score, iteration FROM programs ORDER BY iteration, id").fetchall()


def test_rank_cascade_run_is_deterministic_and_resumes_exactly(tmp_path: Path) -> None:
    task = make_task(tmp_path, RUN_KEYS)
    reference = run(task, tmp_path / "ref", FakeSandbox())
    assert stored(tmp_path / "ref") == (run(task, tmp_path / "again", FakeSandbox()), stored(tmp_path / "again"))[1]
    stages = {r["stage"]: r for r in reference.funnel}
    assert stages[1]["stopped"] > 0, "the rank gate must stop someone in this run"
    assert stages[1]["ran"] == stages[1]["passed"] + stages[1]["stopped"] + stages[1]["failed"]
    assert any(label == "cascade funnel" for label, _ in summary_rows(reference))
    # Interrupted mid-batch (the 20th sandbox job), then resumed: the same store, the same funnel.
    with pytest.raises(KeyboardInterrupt):
        run(task, tmp_path / "cut", FakeSandbox(interrupt_after=20))
    resumed = run(task, tmp_path / "cut", FakeSandbox())
    assert stored(tmp_path / "cut") == stored(tmp_path / "ref")
    assert resumed.funnel == reference.funnel
    # Extending a finished run equals running longer in one go.
    run(task, tmp_path / "short", FakeSandbox(), iterations=6)
    run(task, tmp_path / "short", FakeSandbox(), iterations=14)
    assert stored(tmp_path / "short") == stored(tmp_path / "ref")


# ---------------------------------------------------------------------------- settings


SETTINGS = (
    "settings:\n"
    "  - {name: small, params: {scale: 1.0}}\n"
    "  - {name: large, params: {scale: 0.5}, env: {SIZE: big}}\n"
)


@pytest.mark.parametrize(("aggregate", "direction", "expected"), [
    ("worst", "maximize", 2.2), ("mean", "maximize", 3.2), ("worst", "minimize", 4.2), ("max", "maximize", 4.2),
])  # fmt: skip
def test_settings_aggregate_and_report_per_setting(tmp_path: Path, aggregate: str, direction: str, expected: float) -> None:
    task = make_task(tmp_path, SETTINGS + f"objective: {{aggregate: {aggregate}, direction: {direction}}}\n")
    spec = load_task(task)
    path = tmp_path / "c.py"
    path.write_text("def solve():\n    return 4\n")
    sandbox = FakeSandbox()
    result = asyncio.run(evaluate_program(sandbox, spec, path))
    assert result.score == expected
    assert result.metrics["score@small"] == 4.2 and result.metrics["score@large"] == 2.2  # evaluate() adds 0.2
    assert result.metrics["n@small"] == 1.0 and result.metrics["n"] == 1.0 and result.metrics["score"] == expected
    assert f"per-setting score: small 4.2, large 2.2; {aggregate} = {expected:g}" in result.feedback
    assert len(sandbox.calls) == 2


def test_settings_reach_the_guest_and_any_failure_fails_the_candidate(tmp_path: Path) -> None:
    task = make_task(tmp_path, SETTINGS + "  - {name: broken, params: {fail: true}}\n"
                     "cascade: {enabled: true}\n")
    spec = load_task(task)
    seen: list[dict[str, str]] = []

    class Recording(FakeSandbox):
        async def run(self, job: SandboxJob) -> JobResult:
            seen.append(dict(job.env))
            return await super().run(job)

    path = tmp_path / "c.py"
    path.write_text("def solve():\n    return 4\n")
    result = asyncio.run(evaluate_program(Recording(), spec, path))
    assert json.loads(seen[1][SETTING_ENV]) == {"name": "large", "scale": 0.5} and seen[1]["SIZE"] == "big"
    assert result.error == "setting 'broken': diverged" and not result.ok
    assert result.stages == [{"stage": 1, "function": "evaluate_stage1", "score": None, "wall_s": 2.0, "outcome": "failed"}]
    with pytest.raises(TaskError, match="setting names must be unique"):
        load_task(make_task(tmp_path, "settings: [{name: a}, {name: a}]\n"))


def test_a_real_sandboxed_evaluator_reads_its_setting(tmp_path: Path) -> None:
    """Through the local sandbox (clean environment): the guest sees AGENTOPT_SETTING and env."""
    (tmp_path / "evaluator.py").write_text(textwrap.dedent(
        """\
        import json, os

        def evaluate(program_path):
            setting = json.loads(os.environ["AGENTOPT_SETTING"])
            return {"score": setting["scale"] * (2.0 if os.environ.get("SIZE") == "big" else 1.0)}
        """
    ))
    (tmp_path / "program.py").write_text(PROGRAM)
    task = tmp_path / "task.yaml"
    task.write_text("program: program.py\nevaluator: evaluator.py\nobjective: {aggregate: mean}\n" + SETTINGS)
    spec = load_task(task)
    sandbox = make_sandbox(spec.sandbox)

    async def go() -> Any:
        try:
            return await evaluate_program(sandbox, spec, spec.program)
        finally:
            await sandbox.close()

    result = asyncio.run(go())
    assert result.ok, result.error
    assert result.metrics["score@small"] == 1.0 and result.metrics["score@large"] == 1.0  # 0.5 x 2 (SIZE=big)
    assert result.score == 1.0
