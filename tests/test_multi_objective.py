"""Runs with several objectives: the store keeps each island's Pareto front (and rebuilds it on
reopen), parents come from the front, seeded runs reproduce, a stopped run resumes exactly,
and the summary reports the front. The evaluator is in-process (a fake sandbox) and the
mutator the offline symbolic one, so a run costs well under a second."""

from __future__ import annotations

import asyncio
import json
import random
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agentopt.evolve.charts import front_chart
from agentopt.evolve.controller import EvolutionController, load_task_snapshot, save_task_snapshot
from agentopt.evolve.db import ProgramDB, ProgramDBError
from agentopt.evolve.front import ObjectivePoint, front_summary
from agentopt.evolve.pareto import front
from agentopt.evolve.proposers import SymbolicProposer
from agentopt.evolve.report import build_html
from agentopt.evolve.runview import RunView
from agentopt.evolve.selection import Population, Record, SelectionParams, rank_key
from agentopt.sandbox.base import JobResult, Sandbox, SandboxJob
from agentopt.task import Objective, load_task
from agentopt.watch.pages import dashboard

PROGRAM = "# EVOLVE-BLOCK-START\ndef solve():\n    return 3.5 * 2.0 + 1.25\n# EVOLVE-BLOCK-END\n"
OBJECTIVE = "objective: [{metric: gain, direction: maximize}, {metric: cost, direction: minimize}]\n"
SEARCH = "search: {iterations: 16, seed: 5, num_islands: 2, migration_interval: 6, mutator: symbolic}\n"


class TwoMetricSandbox(Sandbox):
    """gain = the sum of the numbers in the candidate (maximize), cost = the sum of their squares
    (minimize): bigger numbers buy gain at a cost, so the front trades one against the other."""

    name = "fake"

    def __init__(self, interrupt_after: int | None = None) -> None:
        self.calls = 0
        self.interrupt_after = interrupt_after

    async def run(self, job: SandboxJob) -> JobResult:
        if self.interrupt_after is not None and self.calls >= self.interrupt_after:
            raise asyncio.CancelledError  # what Ctrl-C looks like to the controller
        self.calls += 1
        code = Path(job.program_path).read_text()
        numbers = [float(x) for x in re.findall(r"\d+\.\d+|\d+", code.split("def solve")[-1])]
        return JobResult(ok=True, value={"gain": sum(numbers), "cost": sum(x * x for x in numbers)}, wall_s=0.1)

    def available_isolation(self) -> list[str]:
        return []

    async def close(self) -> None:
        return None


def make_task(tmp_path: Path, objective: str = OBJECTIVE, search: str = SEARCH) -> Path:
    (tmp_path / "program.py").write_text(PROGRAM)
    (tmp_path / "evaluator.py").write_text("def evaluate(program_path):\n    return {}\n")
    task = tmp_path / "task.yaml"
    task.write_text("name: pareto\nprogram: program.py\nevaluator: evaluator.py\n" + objective + search)
    return task


def run(task: Path, run_dir: Path, sandbox: TwoMetricSandbox | None = None, iterations: int | None = None) -> Any:
    spec = load_task(task)
    controller = EvolutionController(spec, run_dir, sandbox=sandbox or TwoMetricSandbox(),
                                     proposer=SymbolicProposer(spec), iterations=iterations)  # fmt: skip
    return asyncio.run(controller.run())


def stored(run_dir: Path) -> tuple[list[tuple], list[tuple]]:
    with sqlite3.connect(run_dir / "programs.db") as conn:
        programs = conn.execute("SELECT id, parent_id, score, iteration, island FROM programs ORDER BY seq").fetchall()
        values = conn.execute(
            "SELECT p.id, v.metric, v.value FROM metric_values v JOIN programs p ON p.seq = v.seq ORDER BY p.id, v.metric"
        ).fetchall()
    return programs, values


def test_run_keeps_fronts_reproduces_and_resumes_exactly(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    reference = run(task, tmp_path / "ref")
    assert stored(tmp_path / "ref") == (run(task, tmp_path / "again"), stored(tmp_path / "again"))[1]
    # Stopped mid-run (the 9th evaluation), then resumed: the same store as the straight run.
    with pytest.raises(KeyboardInterrupt):
        run(task, tmp_path / "cut", TwoMetricSandbox(interrupt_after=9))
    save_task_snapshot(load_task(task), tmp_path / "snap")  # what `agentopt resume` reads back
    snapshot = load_task_snapshot(tmp_path / "snap")
    assert snapshot.objective.same_objectives(load_task(task).objective) and snapshot.objective.is_multi
    resumed = run(task, tmp_path / "cut")
    assert stored(tmp_path / "cut") == stored(tmp_path / "ref")
    assert resumed.front == reference.front
    # Extending a finished run equals running longer in one go.
    run(task, tmp_path / "short", iterations=7)
    run(task, tmp_path / "short", iterations=16)
    assert stored(tmp_path / "short") == stored(tmp_path / "ref")

    # The final front: exactly the non-dominated valid programs, best gain (the primary) first.
    programs, values = stored(tmp_path / "ref")
    by_id: dict[str, dict[str, float]] = {}
    for pid, metric, value in values:
        by_id.setdefault(pid, {})[metric] = value
    ids = sorted(by_id)
    expected = {ids[i] for i in front([(by_id[p]["gain"], by_id[p]["cost"]) for p in ids], ("maximize", "minimize"))}
    members = reference.front.members
    assert {m.program_id for m in members} == expected and len(members) >= 2
    assert [m.values["gain"] for m in members] == sorted((m.values["gain"] for m in members), reverse=True)
    assert reference.best_program_id == members[0].program_id  # best_program.py follows the primary
    assert reference.front.hypervolume is not None and reference.front.hypervolume > 0
    history = reference.front.hypervolume_history
    assert history[-1][1] == pytest.approx(reference.front.hypervolume)
    assert all(a[1] < b[1] and a[0] < b[0] for a, b in zip(history, history[1:], strict=False))
    saved = json.loads((tmp_path / "ref" / "summary.json").read_text())
    assert saved["front"]["members"][0]["program_id"] == members[0].program_id
    assert "## Pareto front (by gain)" in (tmp_path / "ref" / "summary.md").read_text()

    # The HTML report and the dashboard show the same front: scatter, table, hypervolume.
    page = build_html(tmp_path / "ref")
    assert "Pareto front (by gain)" in page and 'aria-label="Pareto front: gain against cost"' in page
    assert all(m.program_id in page for m in members) and 'aria-label="hypervolume over iterations"' in page
    view = RunView(tmp_path / "ref")
    try:
        assert view.front() == reference.front
        live = dashboard(view, "ref", False)
        assert "Pareto front (by gain)" in live and f"program/{members[0].program_id}" in live
        assert "hypervolume over iterations" not in live  # the dashboard skips the history
        assert view.objective_values([members[0].program_id]) == {members[0].program_id: members[0].values}
    finally:
        view.close()

    # Each island's front (kept incrementally, rebuilt on reopen) is the non-dominated set of its members.
    spec = load_task(task)
    with ProgramDB.open(tmp_path / "ref" / "programs.db", objective=spec.objective, search=spec.search) as db:
        for island in range(2):
            pop = db._pop
            members_seqs = sorted(key[2] for key in pop.islands[island].ranked)
            points = [pop.records[s].values for s in members_seqs]
            want = {members_seqs[i] for i in front(points, ("maximize", "minimize"))}
            assert {key[2] for key in pop.islands[island].front} == want
            assert {p.id for p in db.front(island)} == {pop.records[s].pid for s in want}


def test_reopen_with_other_objectives_is_one_line(tmp_path: Path) -> None:
    task = make_task(tmp_path, search="search: {iterations: 2, seed: 1, mutator: symbolic}\n")
    run(task, tmp_path / "run")
    other = make_task(tmp_path, objective=OBJECTIVE.replace("minimize", "maximize"))
    spec = load_task(other)
    with pytest.raises(ProgramDBError) as info:
        ProgramDB.open(tmp_path / "run" / "programs.db", objective=spec.objective, search=spec.search)
    message = str(info.value)
    assert "maximize gain, minimize cost (primary gain)" in message and "maximize cost" in message
    assert "\n" not in message


def test_single_objective_store_has_no_front_table(tmp_path: Path) -> None:
    task = make_task(tmp_path, objective="objective: {metric: gain}\n", search="search: {iterations: 2, mutator: symbolic}\n")
    summary = run(task, tmp_path / "run")
    assert summary.front is None
    with sqlite3.connect(tmp_path / "run" / "programs.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "metric_values" not in tables
    assert "front" not in json.loads((tmp_path / "run" / "summary.json").read_text())
    save_task_snapshot(load_task(task), tmp_path / "snap")
    assert "metrics" not in json.loads((tmp_path / "snap" / "task.json").read_text())["objective"]


def _population(top_share: float) -> tuple[Population, set[int]]:
    """Ten programs on a line of trade-offs plus dominated ones; returns the front seqs."""
    pop = Population(SelectionParams(bins=(4,), top_share=top_share), "maximize", ("maximize", "minimize"))
    points = [(1, 1), (2, 3), (3, 5), (4, 9), (1.5, 4), (2, 6), (3, 8), (0.5, 2), (4, 12), (2.5, 7)]
    for seq, (gain, cost) in enumerate(points, start=1):
        pop.insert(Record(seq, f"p{seq}", seq, 0, rank_key(gain, seq, seq, "maximize"), (float(seq),), (gain, cost)))
    want = {s + 1 for s in front(points, ("maximize", "minimize"))}
    return pop, want


def test_parents_and_top_inspirations_come_from_the_front() -> None:
    pop, want = _population(top_share=1.0)
    island = pop.islands[0]
    assert {key[2] for key in island.front} == want == {1, 2, 3, 4}
    rng = random.Random(7)
    parents = [pop.choose_parent(rng, island) for _ in range(400)]
    assert set(parents) == want  # every front member is drawn, nothing else
    # Crowding-weighted: the two extremes (infinite distance) are drawn more than the interior.
    counts = {s: parents.count(s) for s in want}
    assert min(counts[1], counts[4]) > max(counts[2], counts[3])
    for _ in range(20):
        chosen = pop.inspirations(rng, island, 2, num_top=3, num_diverse=0)
        assert set(chosen) == want - {2}
    # With no top share, the mix reaches dominated members too (the exploration share).
    pop, want = _population(top_share=0.0)
    assert set(pop.choose_parent(rng, pop.islands[0]) for _ in range(200)) - want


def test_ci_gates_on_a_chosen_metric(tmp_path: Path) -> None:
    from agentopt.ci import run_ci
    from agentopt.errors import AgentoptError

    program = "# EVOLVE-BLOCK-START\nVALUES = [2.0, 1.0]\n# EVOLVE-BLOCK-END\n"
    (tmp_path / "program.py").write_text(program)
    (tmp_path / "evaluator.py").write_text(
        "import ast, re\n"
        "def evaluate(program_path):\n"
        "    values = ast.literal_eval(re.search(r'VALUES = (.*)', open(program_path).read()).group(1))\n"
        "    return {'gain': sum(values), 'cost': sum(v * v for v in values)}\n"
    )
    (tmp_path / "task.yaml").write_text("name: gate\nprogram: program.py\nevaluator: evaluator.py\n" + OBJECTIVE)
    spec = load_task(tmp_path / "task.yaml")
    baseline = tmp_path / "cost.json"
    code, line = run_ci(spec, baseline_path=baseline, repeats=1, update_baseline=True, metric="cost")
    assert code == 0 and "cost mean 5" in line
    assert json.loads(baseline.read_text())["direction"] == "minimize"
    (tmp_path / "program.py").write_text(program.replace("[2.0, 1.0]", "[2.0, 2.0]"))  # more gain, more cost
    code, line = run_ci(spec, baseline_path=baseline, repeats=1, metric="cost")
    assert code == 1 and "REGRESSION" in line and "cost 8" in line
    with pytest.raises(AgentoptError, match="baseline is for minimize cost, the task optimizes maximize gain"):
        run_ci(spec, baseline_path=baseline, repeats=1)  # default: the primary metric
    with pytest.raises(AgentoptError, match=r"--metric 'time': not an objective of this task \(choose from: gain, cost\)"):
        run_ci(spec, baseline_path=baseline, repeats=1, metric="time")


def test_three_objectives_front_summary_and_chart() -> None:
    objective = Objective.model_validate({"metrics": [{"metric": "a"}, {"metric": "b", "direction": "minimize"},
                                                      {"metric": "c"}], "primary": "c"})  # fmt: skip
    raw = [(1, 1, 0), (2, 2, 0), (1, 1, 5), (0, 0, 1), (2, 3, 0)]  # (2,3,0) dominated by (2,2,0); (1,1,0) by (1,1,5)
    points = [ObjectivePoint(f"p{i}", i, i, float(v[2]), tuple(map(float, v))) for i, v in enumerate(raw)]
    summary = front_summary(points, objective)
    assert [m.program_id for m in summary.members] == ["p2", "p3", "p1"]  # by c, the primary, best first
    assert summary.hypervolume is None and summary.hypervolume_history == []
    svg = front_chart(points, summary)
    assert svg.count('fill="#1a8a4a"') == 3 and "<path" not in svg  # no 2-D staircase for 3 objectives


def test_hypervolume_history_is_thinned_on_long_runs() -> None:
    from agentopt.evolve.front import hypervolume_history

    objective = Objective.model_validate([{"metric": "a", "direction": "minimize"}, {"metric": "b", "direction": "minimize"}])
    # Each iteration adds a point that extends the front: 50 changes, measured at most 10 (+ the last) times.
    points = [ObjectivePoint(f"p{i}", i, i, float(i), (float(i), 100.0 - i)) for i in range(50)]
    full = hypervolume_history(points, objective, (60.0, 120.0))
    thin = hypervolume_history(points, objective, (60.0, 120.0), limit=10)
    assert len(full) == 50 and len(thin) <= 11 and thin[-1] == full[-1]
    assert all(entry in full for entry in thin)


def test_population_cap_never_evicts_front_members() -> None:
    pop = Population(SelectionParams(bins=(2,), population_size=6), "maximize", ("maximize", "minimize"))
    rng = random.Random(3)
    data = [(rng.uniform(0, 10), rng.uniform(0, 10)) for _ in range(60)]
    for seq, (gain, cost) in enumerate(data, start=1):
        pop.insert(Record(seq, f"p{seq}", seq, 0, rank_key(gain, seq, seq, "maximize"), (gain,), (gain, cost)))
    island = pop.islands[0]
    want = {i + 1 for i in front(data, ("maximize", "minimize"))}
    assert {key[2] for key in island.front} == want and want <= island.members
    assert len(island.members) < len(data)  # the cap did evict (dominated programs)


def test_migrants_are_front_members_least_crowded_first() -> None:
    params = SelectionParams(num_islands=2, bins=(4,), top_share=1.0)
    pop = Population(params, "maximize", ("maximize", "minimize"))
    points = [(1, 1), (2, 3), (3, 5), (4, 9), (1.5, 4), (2, 6), (3, 8), (0.5, 2), (4, 12), (2.5, 7)]
    for seq, (gain, cost) in enumerate(points, start=1):
        pop.insert(Record(seq, f"p{seq}", seq, 0, rank_key(gain, seq, seq, "maximize"), (float(seq),), (gain, cost)))
    moves = pop.plan_migration(0.2)  # two of ten members
    # The front is 1..4; the extremes (1: least cost, 4: most gain) have infinite crowding distance.
    assert moves == [(4, 1), (1, 1)]  # tied at infinity: in front order (best gain first)
    pop.apply_migration(moves)
    assert {key[2] for key in pop.islands[1].front} == {1, 4}
