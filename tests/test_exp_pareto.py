"""exp_approx as accuracy against operation count: the Remez minimax references, the
evaluator's ops metric and configurable cap, the Horner-truncating operator, and the
two-objective task (tasks/exp_approx_pareto)."""

from __future__ import annotations

import importlib.util
import math
import random
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from agentopt.evolve import proposers
from agentopt.evolve.api import evolve
from agentopt.evolve.db import Program
from agentopt.evolve.operators import extend_horner, truncate_horner
from agentopt.evolve.proposers import SymbolicProposer
from agentopt.evolve.symbolic import block_spans
from agentopt.task import load_task

try:  # `python -m pytest` (repo root on sys.path) or plain `pytest` (tests/ on sys.path)
    from tests.task_files import load_evaluator, with_block
except ImportError:
    from task_files import load_evaluator, with_block  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]
TASKS = REPO / "tasks"


@pytest.fixture(scope="module")
def minimax() -> ModuleType:
    spec = importlib.util.spec_from_file_location("exp_minimax", TASKS / "exp_approx" / "minimax.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["exp_minimax"] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def exp_eval() -> Iterator[ModuleType]:
    yield from load_evaluator("exp_approx")


def _program(tmp_path: Path, minimax: ModuleType, degree: int) -> str:
    ref = minimax.remez(degree)
    body = minimax.horner_source(ref.coefficients).split("\n", 1)[1]  # the body, without the def line
    return with_block("exp_approx", tmp_path, "def exp_approx(x):\n" + body, name=f"deg{degree}.py")


# ---------------------------------------------------------------------------- minimax references


@pytest.mark.parametrize(("degree", "score"), [(4, 5.586), (5, 7.125)])
def test_remez_reproduces_the_known_minimax_scores(minimax: ModuleType, degree: int, score: float) -> None:
    ref = minimax.remez(degree)
    assert ref.score == pytest.approx(score, abs=1e-3)
    assert ref.ops == 2 * degree and len(ref.coefficients) == degree + 1


@pytest.mark.parametrize("degree", [3, 4, 5, 6])
def test_remez_error_equioscillates(minimax: ModuleType, degree: int) -> None:
    """Chebyshev's alternation: d+2 extrema of equal size and alternating sign, spanning the range."""
    ref = minimax.remez(degree)
    xs = np.array(ref.extrema)
    err = minimax.relative_error(ref.coefficients, xs)
    assert len(xs) == degree + 2 and np.all(np.diff(xs) > 0)
    assert np.all(np.sign(err[1:]) == -np.sign(err[:-1]))
    assert np.ptp(np.abs(err)) <= 1e-6 * ref.max_rel_error
    assert xs[0] == pytest.approx(-minimax.HALF_LN2) and xs[-1] == pytest.approx(minimax.HALF_LN2)
    # No polynomial of the same degree does better: a least-squares fit is worse in the max norm.
    grid = minimax.grid()
    lsq = np.polynomial.polynomial.polyfit(grid, np.exp(grid), degree, w=np.exp(-grid))
    assert np.max(np.abs(minimax.relative_error(lsq, grid))) > ref.max_rel_error
    assert minimax.remez(degree - 1).max_rel_error > 10 * ref.max_rel_error  # each degree buys accuracy


def test_remez_rejects_degrees_past_float64(minimax: ModuleType) -> None:
    with pytest.raises(ValueError, match="degree must be in 0..8"):
        minimax.remez(9)


# ---------------------------------------------------------------------------- evaluator: ops, error, cap


def test_evaluator_scores_the_reference_exactly_and_reports_ops(
    minimax: ModuleType, exp_eval: ModuleType, tmp_path: Path
) -> None:
    ref = minimax.remez(5)
    result = exp_eval.evaluate(_program(tmp_path, minimax, 5))
    assert "error" not in result, result
    assert result["ops"] == 10 and result["mul_ops"] == 5 and result["add_ops"] == 5
    assert result["max_rel_error"] == pytest.approx(ref.max_rel_error, rel=1e-9)
    assert result["score"] == pytest.approx(ref.score, abs=1e-9)
    assert "operations used: 10 of 10" in result["feedback"]


def test_operation_cap_is_configurable(
    minimax: ModuleType, exp_eval: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    degree6 = _program(tmp_path, minimax, 6)  # 12 ops
    monkeypatch.delenv(exp_eval.MAX_OPS_ENV, raising=False)
    refused = exp_eval.evaluate(degree6)
    assert refused["score"] == 0.0 and "uses 12 operations" in refused["error"] and "at most 10" in refused["error"]
    assert "at most 10" in exp_eval.tune_objective(degree6)["error"]

    monkeypatch.setenv(exp_eval.MAX_OPS_ENV, "16")
    result = exp_eval.evaluate(degree6)
    assert "error" not in result, result
    assert result["ops"] == 12 and "12 of 16" in result["feedback"]
    assert result["score"] == pytest.approx(minimax.remez(6).score, abs=1e-9)
    assert exp_eval.tune_objective(degree6)["score"] == pytest.approx(result["score"], abs=1e-12)

    monkeypatch.setenv(exp_eval.MAX_OPS_ENV, "11")
    assert "at most 11" in exp_eval.evaluate(degree6)["error"]
    for bad in ("lots", "-1", "1000"):
        monkeypatch.setenv(exp_eval.MAX_OPS_ENV, bad)
        failed = exp_eval.evaluate(degree6)
        assert failed["score"] == 0.0 and "EXP_APPROX_MAX_OPS must be an integer" in failed["error"]


# ---------------------------------------------------------------------------- truncate_horner

HORNER = textwrap.dedent(
    """\
    # EVOLVE-BLOCK-START
    def f(x):
        p = 0.25  # lead
        p = p * x - 0.5
        p = p * x + 1.0
        return p
    # EVOLVE-BLOCK-END
    """
)


def _poly(code: str, x: float) -> float:
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - our own test program
    return namespace["f"](x)


def test_truncate_drops_the_leading_term_with_its_sign() -> None:
    child, description = truncate_horner(HORNER, random.Random(0), block_spans(HORNER)) or ("", "")
    assert "dropped the leading term" in description
    assert "    p = -0.5\n    p = p * x + 1.0\n" in child and "0.25" not in child
    for x in (-0.3, 0.0, 0.3):
        assert _poly(child, x) == pytest.approx(-0.5 * x + 1.0)
    grandchild, _ = truncate_horner(child, random.Random(0), block_spans(child)) or ("", "")
    assert _poly(grandchild, 0.3) == 1.0  # down to the constant: no operation left
    assert truncate_horner(grandchild, random.Random(0), block_spans(grandchild)) is None


def test_truncate_undoes_extend() -> None:
    for seed in range(5):
        extended, _ = extend_horner(HORNER, random.Random(seed), block_spans(HORNER)) or ("", "")
        back, _ = truncate_horner(extended, random.Random(seed), block_spans(extended)) or ("", "")
        for x in (-0.34, 0.1, 0.34):
            assert _poly(back, x) == _poly(HORNER, x)


def test_truncate_stays_inside_blocks_and_keeps_line_endings() -> None:
    outside = HORNER.replace("# EVOLVE-BLOCK-START\n", "").replace("# EVOLVE-BLOCK-END\n", "")
    outside += "# EVOLVE-BLOCK-START\nK = 1.0\n# EVOLVE-BLOCK-END\n"
    assert truncate_horner(outside, random.Random(0), block_spans(outside)) is None
    crlf = HORNER.replace("\n", "\r\n")
    child, _ = truncate_horner(crlf, random.Random(0), block_spans(crlf)) or ("", "")
    assert "\r\n" in child and "\n" not in child.replace("\r\n", "")


def test_truncate_counts_two_operations_fewer(exp_eval: ModuleType) -> None:
    code = (TASKS / "exp_approx" / "initial_program.py").read_text(encoding="utf-8")
    ops = []
    while True:
        ops.append(sum(exp_eval.check_function(code)[1].values()))
        out = truncate_horner(code, random.Random(0), block_spans(code))
        if out is None:
            break
        code = out[0]
    assert ops == [8, 6, 4, 2, 0]
    assert math.isclose(_poly(code.replace("def exp_approx", "def f"), 0.2), 1.0)


# ---------------------------------------------------------------------------- the two-objective task


def test_pareto_task_reuses_exp_approx_with_a_larger_cap() -> None:
    spec = load_task(TASKS / "exp_approx_pareto" / "task.yaml")
    assert spec.name == "exp_approx_pareto" and spec.objective.is_multi
    assert [(m.metric, m.direction) for m in spec.objective.metrics] == [("score", "maximize"), ("ops", "minimize")]
    assert (spec.objective.metric, spec.objective.direction) == ("score", "maximize")  # primary: best program
    assert spec.program == TASKS / "exp_approx" / "initial_program.py"
    assert spec.evaluator == TASKS / "exp_approx" / "evaluator.py"
    assert int(spec.sandbox.env["EXP_APPROX_MAX_OPS"]) >= 12  # degree 6 Horner and more
    assert spec.search.simplify is False


def _children(task: str, seeds: int) -> list[tuple[str, str]]:
    """``(operator, child code)`` the offline proposer makes from the initial program, one per seed."""
    proposer = SymbolicProposer(load_task(TASKS / task / "task.yaml"))
    parent = Program(id="p", code=(TASKS / "exp_approx" / "initial_program.py").read_text(encoding="utf-8"))
    out = []
    for seed in range(seeds):
        code, _, operator, _ = proposer._operate(parent, [], random.Random(seed))
        out.append((operator, code))
    return out


def test_offline_mutator_truncates_only_with_several_objectives() -> None:
    multi = _children("exp_approx_pareto", 200)
    single = _children("exp_approx", 200)
    assert {"truncate_horner", "extend_horner"} <= {op for op, _ in multi}
    assert "truncate_horner" not in {op for op, _ in single}
    # Same draws otherwise: a single-objective run makes exactly the children it made before.
    kept = [i for i, (op, _) in enumerate(multi) if op != "truncate_horner"]
    assert len(kept) < len(multi) and all(single[i] == multi[i] for i in kept)


def test_offline_run_keeps_a_front_across_op_counts(
    minimax: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A short seeded offline run from the degree-4 Taylor program whose children mostly change
    form (40% extend, 40% truncate, the rest small edits; every child tuned): the front spans
    several op counts, below the initial 8 too; accuracy rises with cost along it; and no member
    beats the minimax optimum of its degree (evaluator, engine front and references agree).
    Robust to the draw: the cheapest valid program is always on the front."""
    for name, value in [("ADAPTIVE_PROB", 0.0), ("EXTEND_PROB", 0.4), ("CROSSOVER_PROB", 0.0),
                        ("BLOCK_CROSSOVER_PROB", 0.0), ("SHIFT_INTS_PROB", 0.0), ("TRUNCATE_PROB", 0.4)]:
        monkeypatch.setattr(proposers, name, value)
    spec = load_task(TASKS / "exp_approx_pareto" / "task.yaml")
    search = spec.search.model_copy(update={"seed": 0, "tune": spec.search.tune.model_copy(update={"evaluations": 200})})
    summary = evolve(spec.model_copy(update={"search": search}), iterations=12, output_dir=tmp_path / "run")
    assert summary.front is not None
    points = sorted({(int(m.values["ops"]), m.values["score"]) for m in summary.front.members})
    ops = [o for o, _ in points]
    assert len(set(ops)) == len(ops) >= 3 and min(ops) < 8, points  # the cheapest program is always on it
    assert any(o.operator == "extend_horner" and o.valid for o in summary.operators)  # and dearer ones were judged
    assert all(a[1] < b[1] for a, b in zip(points, points[1:], strict=False))  # more ops buy accuracy
    for count, score in points:
        assert count % 2 == 0 and score <= minimax.remez(count // 2).score + 1e-9
