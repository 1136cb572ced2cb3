"""Form-changing operators that need the program's structure or output (issue 14, item 4):
``best_of_k`` (a seeded construction -> best-of-k restarts judged by the evaluator's
``restart_score``) and ``materialize`` (a zero-argument construction -> the literal list of
its output, computed in the sandbox), plus the guest tuner's CMA-ES for many literals."""

from __future__ import annotations

import asyncio
import importlib
import random
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest

from agentopt.evolve import proposers
from agentopt.evolve.api import evolve, resume
from agentopt.evolve.db import ProgramDB
from agentopt.evolve.materialize import (
    decode_output,
    materialize_program,
    materialize_targets,
    render_materialized,
)
from agentopt.evolve.report import build_html
from agentopt.evolve.restarts import best_of_k, restart_hook, seeded_entries
from agentopt.evolve.tuning import literal_only_change
from agentopt.paths import evaluator_lib_dir
from agentopt.sandbox.local import LocalSandbox
from agentopt.task import load_task

sys.path.insert(0, str(evaluator_lib_dir()))
agentopt_tune = importlib.import_module("agentopt_tune")

ROWS = textwrap.dedent(
    """\
    import math


    # EVOLVE-BLOCK-START
    def layout():
        \"\"\"Centres from rows.\"\"\"
        rows = [(0.1, 3, 0.1, 0.9), (0.5, 2, 0.25, 0.75)]  # (y, count, x_first, x_last)
        centers = []
        for y, count, x_first, x_last in rows:
            for k in range(count):
                centers.append([x_first + (x_last - x_first) * k / (count - 1), y])
        return centers


    def extras():
        return (1, -0.0, (2.5,), [int("3"), 1e-300])


    def scaled(factor):
        return [factor * c for c in range(3)]


    def fixed():
        return [[0.5, 0.5]]
    # EVOLVE-BLOCK-END


    def outside():
        return [i * 0.5 for i in range(3)]


    def total():
        return math.fsum(x + y for x, y in layout())
    """
)

GREEDY = textwrap.dedent(
    """\
    import random

    # EVOLVE-BLOCK-START
    SEED = 3
    NOISE = 1.0


    def build(n):
        rng = random.Random(SEED)
        return [rng.randrange(100) for _ in range(n)]
    # EVOLVE-BLOCK-END
    """
)

HOOK_EVALUATOR = textwrap.dedent(
    """\
    from agentopt_guest import call_candidate

    def restart_score(value):
        # the larger the sum, the better
        return sum(value)

    def evaluate(program_path):
        return {"score": float(sum(call_candidate(program_path, "build", args=(3,))))}
    """
)


def _run(code: str, name: str, *args: Any) -> Any:
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102 - our own test programs
    return namespace[name](*args)


# ---------------------------------------------------------------------------- materialize


def test_materialize_picks_zero_argument_constructions_inside_blocks() -> None:
    # scaled() takes an argument, fixed() is already literal, outside() and total() are outside the block
    assert materialize_targets(ROWS) == ["layout", "extras"]
    assert materialize_targets("def f():\n    return [i for i in range(3)]\n") == ["f"]  # no markers: all evolvable


def test_materialized_program_returns_exactly_the_same_output(tmp_path: Path) -> None:
    path = tmp_path / "rows.py"
    path.write_text(ROWS)
    for name in ("layout", "extras"):
        answer = agentopt_tune.materialize(str(path), name)  # the guest half, as the sandbox job runs it
        value = decode_output(answer["value"])
        child = render_materialized(ROWS, name, value)
        assert child is not None
        original, again = _run(ROWS, name), _run(child, name)
        assert repr(again) == repr(original)  # same numbers, ints stay ints, tuples stay tuples, -0.0 kept
        assert '"""Centres from rows."""' in child and "def outside():" in child
        assert _run(child, "total") == _run(ROWS, "total")
        assert materialize_targets(child) == [n for n in ("layout", "extras") if n != name]
    layout = render_materialized(ROWS, "layout", _run(ROWS, "layout"))
    assert layout is not None and len(agentopt_tune.find_literals(layout)) == 10 + 3 + 2  # 5 centres, extras(), fixed()


@pytest.mark.parametrize(
    "encoded, reason",
    [
        ([True, 1.0], "bool"),
        ([float("nan")], "non-finite"),
        (["x"], "str"),
        ({"list": [1]}, "dict"),
        ([], "no numbers"),
        (list(range(2000)), "more than"),
    ],
)
def test_materialize_rejects_anything_but_numbers(encoded: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        decode_output(encoded)


def test_materialize_guest_reports_failures_without_raising(tmp_path: Path) -> None:
    path = tmp_path / "bad.py"
    path.write_text("def a():\n    return {'k': 1}\n\ndef b():\n    raise RuntimeError('boom')\n")
    assert "returned a dict" in agentopt_tune.materialize(str(path), "a")["error"]
    assert "RuntimeError: boom" in agentopt_tune.materialize(str(path), "b")["error"]
    assert "no function c()" in agentopt_tune.materialize(str(path), "c")["error"]


def test_materialize_runs_in_one_sandbox_job(tmp_path: Path) -> None:
    (tmp_path / "program.py").write_text(ROWS)
    (tmp_path / "evaluator.py").write_text("def evaluate(p):\n    return {'score': 1.0}\n")
    (tmp_path / "task.yaml").write_text("program: program.py\nevaluator: evaluator.py\n")
    spec = load_task(tmp_path / "task.yaml")

    async def run() -> tuple:
        sandbox = LocalSandbox()
        try:
            return await materialize_program(sandbox, spec, tmp_path / "program.py", "layout")
        finally:
            await sandbox.close()

    code, record = asyncio.run(run())
    assert record == {"function": "layout", "numbers": 10}
    assert code is not None and _run(code, "layout") == _run(ROWS, "layout")


# ---------------------------------------------------------------------------- best_of_k


def test_best_of_k_wraps_the_seeded_entry_and_keeps_the_best_result(tmp_path: Path) -> None:
    (tmp_path / "evaluator.py").write_text(HOOK_EVALUATOR)
    hook, entries = restart_hook(tmp_path / "evaluator.py")
    assert entries == {"build"} and hook is not None and "# the larger the sum" in hook
    out = best_of_k(GREEDY, hook, entries, seconds=3, restarts=5)
    assert out is not None and "best-of-5" in out[1]
    child = out[0]
    namespace: dict[str, Any] = {}
    exec(child, namespace)  # noqa: S102 - the operator's output on our own program
    runs = [_run(GREEDY.replace("SEED = 3", f"SEED = {s}"), "build", 4) for s in range(3, 8)]
    assert namespace["build"](4) == max(runs, key=sum)
    assert namespace["SEED"] == 3  # restored after the loop
    assert "RESTARTS = 5" in child and "RESTART_SECONDS = 3" in child
    assert seeded_entries(child, entries) == []  # wrapped once only
    assert best_of_k(child, hook, entries, seconds=3) is None


@pytest.mark.parametrize(
    "program, entries",
    [
        (GREEDY.replace("random.Random(SEED)", "random.Random(7)"), {"build"}),  # no seed constant
        (GREEDY.replace("SEED = 3", "SEED = 3.5"), {"build"}),  # not an int
        (GREEDY, {"construct"}),  # the evaluator calls another function
        (GREEDY + "\n\ndef main():\n    return build(3)\n", set()),  # build is called by the program
        (GREEDY.replace("SEED = 3\n", "").replace("import random\n", "import random\nSEED = 3\n"), {"build"}),
    ],
)
def test_best_of_k_declines_when_it_cannot_tell_seed_or_entry(program: str, entries: set[str]) -> None:
    assert best_of_k(program, "def _restart_score(value):\n    return 0\n", entries, seconds=3) is None


def test_restart_hook_must_be_self_contained(tmp_path: Path) -> None:
    path = tmp_path / "evaluator.py"
    path.write_text("LIMIT = 3\n\ndef restart_score(value):\n    return min(len(value), LIMIT)\n")
    assert restart_hook(path)[0] is None  # reads a module global the candidate does not have
    path.write_text("def restart_score(value: list) -> float:\n    import math\n    return math.fsum(value)\n")
    hook = restart_hook(path)[0]
    assert hook is not None and "list" not in hook and _run(hook, "_restart_score", [1.0, 2.0]) == 3.0


def test_cap_set_restart_score_orders_like_the_evaluator() -> None:
    hook, entries = restart_hook(Path(__file__).resolve().parents[1] / "tasks" / "cap_set" / "evaluator.py")
    assert hook is not None and entries == {"build_cap_set"}
    assert _run(hook, "_restart_score", [[0, 0], [1, 1]]) == 2
    assert _run(hook, "_restart_score", [[0, 0], [1, 1], [2, 2]]) == -1  # a line
    assert _run(hook, "_restart_score", [[0, 0], [0, 0]]) == -1 and _run(hook, "_restart_score", 5) == -1


# ---------------------------------------------------------------------------- CMA-ES


def test_cma_es_tunes_many_literals_and_repeats_for_a_seed(tmp_path: Path) -> None:
    values = ", ".join(f"{0.5 + 0.01 * i!r}" for i in range(16))
    path = tmp_path / "program.py"
    path.write_text(f"# EVOLVE-BLOCK-START\nX = [{values}]\n# EVOLVE-BLOCK-END\n")
    module = types.ModuleType("quadratic")
    exec(  # noqa: S102 - our own test evaluator
        "import ast, pathlib\n"
        "def evaluate(p):\n"
        "    xs = ast.literal_eval(pathlib.Path(p).read_text().splitlines()[1][4:])\n"
        "    return {'score': -sum((x - 0.1 * i) ** 2 for i, x in enumerate(xs))}\n",
        module.__dict__,
    )
    options = {"seed": 4, "evaluations": 600, "time_s": 60}
    out = agentopt_tune.tune(module, str(path), options)
    assert out["method"] == "cma_es" and out["evaluations"] == 600
    assert out["after"] > 0.2 * out["before"]  # the squared distance shrinks at least five-fold
    assert literal_only_change(path.read_text(), out["source"]) is None
    assert agentopt_tune.tune(module, str(path), options)["source"] == out["source"]
    assert agentopt_tune.tune(module, str(path), {**options, "method": "nelder_mead"})["method"] == "nelder_mead"


# ---------------------------------------------------------------------------- in a run


def test_a_run_materializes_then_tunes_and_resumes_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ADAPTIVE_PROB", "EXTEND_PROB", "CROSSOVER_PROB", "BLOCK_CROSSOVER_PROB", "SHIFT_INTS_PROB"):
        monkeypatch.setattr(proposers, name, 0.0)
    monkeypatch.setattr(proposers, "BEST_OF_K_PROB", 0.0)
    monkeypatch.setattr(proposers, "MATERIALIZE_PROB", 1.0)  # every child materializes while it can
    (tmp_path / "program.py").write_text(ROWS.replace("def extras", "def _extras"))
    (tmp_path / "evaluator.py").write_text(
        "import ast, pathlib\n"
        "def evaluate(p):\n"  # never runs the candidate: the score is read from its literals
        "    nums = [n.value for n in ast.walk(ast.parse(pathlib.Path(p).read_text()))\n"
        "            if isinstance(n, ast.Constant) and type(n.value) is float]\n"
        "    return {'score': -sum((x - 0.3) ** 2 for x in nums)}\n"
    )
    (tmp_path / "task.yaml").write_text(
        "program: program.py\nevaluator: evaluator.py\nsandbox: {timeout_s: 30}\n"
        "search: {iterations: 3, seed: 2, parallel_evaluations: 2, tune: 40}\n"
    )
    evolve(tmp_path / "task.yaml", output_dir=tmp_path / "straight")
    evolve(tmp_path / "task.yaml", output_dir=tmp_path / "split", iterations=1)
    resume(tmp_path / "split", iterations=3)
    spec = load_task(tmp_path / "task.yaml")

    def stored(run: str) -> list[tuple]:
        db = ProgramDB.open(tmp_path / run / "programs.db", objective=spec.objective, search=spec.search)
        try:
            return [(p.id, p.score, p.code, p.mutation.get("operator")) for p in db.programs()]
        finally:
            db.close()

    straight = stored("straight")
    assert straight == stored("split")
    materialized = [row for row in straight if row[3] == "materialize"]
    assert materialized, straight
    assert all(row[1] > straight[0][1] for row in materialized)  # tuned after materializing
    assert any("for y, count" not in row[2] and "[0.1, 0.1]" not in row[2] for row in materialized)
    # Reported per operator, in the summary and in the HTML report.
    summary = (tmp_path / "straight" / "summary.md").read_text()
    assert any(line.startswith("| materialize |") for line in summary.splitlines()), summary
    assert ">materialize<" in build_html(tmp_path / "straight")


def test_operator_mix_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    (tmp_path / "evaluator.py").write_text(HOOK_EVALUATOR)
    (tmp_path / "program.py").write_text(GREEDY)
    (tmp_path / "task.yaml").write_text("program: program.py\nevaluator: evaluator.py\n")
    proposer = proposers.SymbolicProposer(load_task(tmp_path / "task.yaml"))
    parent = types.SimpleNamespace(code=GREEDY, id="p", island=0, ok=True)

    def moves(seed: int) -> list[str]:
        rng = random.Random(seed)
        return [proposer._operate(parent, [], rng)[2] for _ in range(200)]  # type: ignore[arg-type]

    assert moves(1) == moves(1) and "best_of_k" in moves(1)
