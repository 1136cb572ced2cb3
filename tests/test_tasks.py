"""Bundled tasks exp_approx and circle_packing: load, score the initial programs as expected,
score better programs higher, and reject invalid or cheating candidates with a reason."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from agentopt.evaluate import result_from_value
from agentopt.task import load_task

try:  # `python -m pytest` (repo root on sys.path) or plain `pytest` (tests/ on sys.path)
    from tests.task_files import load_evaluator, with_block
except ImportError:
    from task_files import load_evaluator, with_block  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]
TASKS = REPO / "tasks"


@pytest.fixture(scope="module")
def exp_eval() -> Iterator[ModuleType]:
    yield from load_evaluator("exp_approx")


@pytest.fixture(scope="module")
def cp_eval() -> Iterator[ModuleType]:
    yield from load_evaluator("circle_packing")


@pytest.mark.parametrize("task", ["exp_approx", "circle_packing"])
def test_task_files_load(task: str) -> None:
    spec = load_task(TASKS / task / "task.yaml")
    assert spec.name == task
    assert spec.search.parallel_evaluations == 2
    assert spec.objective.metric == "score" and spec.objective.direction == "maximize"
    assert spec.program.name == "initial_program.py" and spec.evaluator.name == "evaluator.py"


# ---------------------------------------------------------------------------- exp_approx


def _exp_fn(body: str) -> str:
    return "def exp_approx(x):\n" + "".join(f"    {line}\n" for line in body.strip().splitlines())


TAYLOR5 = _exp_fn(
    """
p = 0.008333333333333333
p = p * x + 0.041666666666666664
p = p * x + 0.16666666666666666
p = p * x + 0.5
p = p * x + 1.0
return p * x + 1.0
"""
)


def test_exp_initial_score_matches_an_independent_computation(exp_eval: ModuleType) -> None:
    result = exp_eval.evaluate(str(TASKS / "exp_approx" / "initial_program.py"))
    xs = np.linspace(-math.log(2) / 2, math.log(2) / 2, 20001)
    taylor4 = 1 + xs * (1 + xs * (0.5 + xs * (1 / 6 + xs / 24)))
    expected = -math.log10(np.max(np.abs(taylor4 / np.exp(xs) - 1)))
    assert "error" not in result
    assert result["score"] == pytest.approx(expected, abs=1e-6)
    assert 4.0 < result["score"] < 4.5
    assert result["ops"] == 8 and result["mul_ops"] == 4 and result["add_ops"] == 4
    assert (
        "at x=" in result["feedback"]
        and "sign pattern" in result["feedback"]
        and "8 of 10" in result["feedback"]
    )
    assert "error_curve" in result["artifacts"]
    ok = result_from_value(result)
    assert ok.ok and ok.score == result["score"]


def test_exp_better_polynomial_scores_higher(exp_eval: ModuleType, tmp_path: Path) -> None:
    result = exp_eval.evaluate(with_block("exp_approx", tmp_path, TAYLOR5))
    assert "error" not in result, result
    assert result["ops"] == 10
    assert result["score"] > 5.3  # degree-5 Taylor: ~5.49, vs ~4.25 for the initial degree 4


def test_exp_stage1_is_cheap_and_consistent(exp_eval: ModuleType) -> None:
    result = exp_eval.evaluate_stage1(str(TASKS / "exp_approx" / "initial_program.py"))
    assert "error" not in result and result["ops"] == 8
    assert 4.0 < result["score"] < 5.0  # 11 points: close to, at most the full score's grid


@pytest.mark.parametrize(
    ("block", "reason"),
    [
        (_exp_fn("import math\nreturn math.exp(x)"), "Import is not allowed"),
        (_exp_fn("return exp(x)"), "Call is not allowed"),
        (_exp_fn("return 1.0 + x + x ** 2"), "Pow is not allowed"),
        (_exp_fn("return 1.0 + x / 2"), "Div is not allowed"),
        (_exp_fn("p = 1.0\nfor i in range(3):\n    p = p * x\nreturn p"), "For is not allowed"),
        (_exp_fn("return [x][0]"), "not allowed"),
        (_exp_fn("return x + TABLE"), "'TABLE' is not the argument"),
        (_exp_fn("return 1.0 + x + 0.5 * x * x + x * x * x * 0.16 + x * x * x * x * 0.04"), "at most 10"),
        (
            _exp_fn(
                "p = x\np *= x\np += 1\np -= x\np *= 2\np *= 3\np *= 4\np *= 5\np += x\np *= x\np += 1\np *= x\nreturn p"
            ),
            "at most 10",
        ),
        ("def exp_approx(x, c=2.0):\n    return x * c\n", "exactly one argument"),
        ("def exp_approx(x):\n    return x +\n", "syntax error"),
        ("def other(x):\n    return x\n", "exactly one top-level function"),
        (_exp_fn("if x > 0:\n    return x\nreturn 1.0"), "If is not allowed"),
    ],
)
def test_exp_rule_breakers_are_rejected_statically(
    exp_eval: ModuleType, tmp_path: Path, block: str, reason: str
) -> None:
    result = exp_eval.evaluate(with_block("exp_approx", tmp_path, block))
    assert result["score"] == 0.0
    assert reason in result["error"], result["error"]
    assert result["feedback"].startswith("invalid program")
    assert not result_from_value(result).ok


def test_exp_batch_helper_cannot_cheat(exp_eval: ModuleType, tmp_path: Path) -> None:
    """A helper that returns math.exp instead of exp_approx is caught by the cross-check."""
    source = (TASKS / "exp_approx" / "initial_program.py").read_text(encoding="utf-8")
    cheat = source.replace(
        "return [exp_approx(float(x)) for x in xs]", "import math\n    return [math.exp(x) for x in xs]"
    )
    assert cheat != source
    path = tmp_path / "cheat.py"
    path.write_text(cheat, encoding="utf-8")
    result = exp_eval.evaluate(str(path))
    assert result["score"] == 0.0 and "disagrees with exp_approx" in result["error"]


def test_exp_rebinding_after_the_block_cannot_cheat(exp_eval: ModuleType, tmp_path: Path) -> None:
    tail = "\nimport math\nexp_approx = math.exp\n"
    result = exp_eval.evaluate(with_block("exp_approx", tmp_path, TAYLOR5, tail=tail))
    assert result["score"] == 0.0 and "disagrees" in result["error"]


def test_exp_crashing_candidate_is_an_error(exp_eval: ModuleType, tmp_path: Path) -> None:
    result = exp_eval.evaluate_stage1(
        with_block("exp_approx", tmp_path, TAYLOR5, tail="\nraise SystemExit(3)\n")
    )
    assert result["score"] == 0.0 and "exp_approx_batch failed" in result["error"]


# ---------------------------------------------------------------------------- circle_packing


def _packing_program(
    tmp_path: Path,
    centers: list[list[float]],
    radii: list[float] | None,
    name: str = "packing.py",
    extra: str = "",
) -> str:
    """A candidate whose construct_packing returns fixed numbers (radii=None: computed)."""
    body = f"CENTERS = {centers!r}\n{extra}"
    if radii is None:
        body += "def construct_packing():\n    return CENTERS, compute_radii(CENTERS)\n"
    else:
        body += f"def construct_packing():\n    return CENTERS, {radii!r}\n"
    source = (TASKS / "circle_packing" / "initial_program.py").read_text(encoding="utf-8")
    path = tmp_path / name
    path.write_text(source + "\n\n" + body, encoding="utf-8")
    return str(path)


def _grid_packing() -> tuple[list[list[float]], list[float]]:
    """5x5 grid of r=0.1 plus one small circle in a gap: a known valid packing."""
    centers = [[0.1 + 0.2 * i, 0.1 + 0.2 * j] for i in range(5) for j in range(5)]
    gap = 0.1 * (math.sqrt(2) - 1) * 0.999
    return centers + [[0.2, 0.2]], [0.1] * 25 + [gap]


def test_circle_initial_score(cp_eval: ModuleType) -> None:
    result = cp_eval.evaluate(str(TASKS / "circle_packing" / "initial_program.py"))
    assert "error" not in result, result
    assert 2.0 < result["score"] < 2.3
    assert result["ratio_to_alphaevolve"] == pytest.approx(result["score"] / 2.635)
    assert result["sum_radii"] == result["score"]
    assert "largest free spot" in result["feedback"] and "smallest circles" in result["feedback"]
    assert result["artifacts"]["packing_svg"].startswith("<svg")
    assert len(result["artifacts"]["packing"].splitlines()) == 27
    stage1 = cp_eval.evaluate_stage1(str(TASKS / "circle_packing" / "initial_program.py"))
    assert stage1["score"] == result["score"]


def test_circle_known_packing_scores_its_exact_sum(cp_eval: ModuleType, tmp_path: Path) -> None:
    centers, radii = _grid_packing()
    result = cp_eval.evaluate(_packing_program(tmp_path, centers, radii))
    assert "error" not in result, result
    assert result["score"] == pytest.approx(math.fsum(radii), abs=1e-15)
    assert result["score"] > 2.54


def _violations() -> list[tuple[str, list[list[float]], list[float], str]]:
    centers, radii = _grid_packing()
    grown = radii[:25] + [radii[25] * 1.01 / 0.999]  # gap circle now overlaps its 4 neighbours
    bigger = [0.1 + 1e-9] + radii[1:]  # 1e-9 beyond the wall: well above the 1e-12 tolerance
    return [
        ("overlap", centers, grown, "overlap by"),
        ("outside", centers, bigger, "sticks out of the square"),
        ("too_few", centers[:25], radii[:25], "exactly 26"),
        ("zero_radius", centers, radii[:25] + [0.0], "must be > 0"),
        ("negative_radius", centers, radii[:25] + [-0.01], "must be > 0"),
        ("nan", centers, radii, "not finite"),  # made NaN by the program (see below)
    ]


@pytest.mark.parametrize("case", _violations(), ids=lambda c: c[0])
def test_circle_invalid_packings_score_zero(cp_eval: ModuleType, tmp_path: Path, case: tuple) -> None:
    name, centers, radii, reason = case
    extra = "CENTERS[25] = [float('nan'), 0.5]\n" if name == "nan" else ""
    result = cp_eval.evaluate_stage1(_packing_program(tmp_path, centers, radii, extra=extra))
    assert result["score"] == 0.0
    assert reason in result["error"], result["error"]
    assert not result_from_value(result).ok


def test_circle_tolerance_is_tiny_and_exact(cp_eval: ModuleType) -> None:
    """Touching circles and last-bit rounding pass; 1e-10 of overlap does not."""
    centers, radii = _grid_packing()
    tuples = [(c[0], c[1]) for c in centers]
    cp_eval.check_packing(tuples, radii)  # exact contacts at distance 0.2 = 0.1 + 0.1
    nudged = list(radii)
    nudged[0] = 0.1 + 1e-13
    cp_eval.check_packing(tuples, nudged)
    nudged[0] = 0.1 + 1e-10
    with pytest.raises(cp_eval.InvalidPacking):
        cp_eval.check_packing(tuples, nudged)


def test_circle_claimed_totals_are_ignored(cp_eval: ModuleType, tmp_path: Path) -> None:
    centers, radii = _grid_packing()
    extra = "def construct_packing():\n    return CENTERS, RADII, 99.0\n"
    path = _packing_program(tmp_path, centers, radii, extra=f"RADII = {radii!r}\n")
    Path(path).write_text(Path(path).read_text() + extra)  # later definition wins
    result = cp_eval.evaluate_stage1(path)
    assert result["score"] == 0.0 and "(centers, radii)" in result["error"]


def test_circle_candidate_time_limit(
    cp_eval: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cp_eval, "CALL_TIMEOUT_S", 1.0)
    path = _packing_program(tmp_path, [[0.5, 0.5]], None, extra="import time\ntime.sleep(30)\n")
    result = cp_eval.evaluate_stage1(path)
    assert result["score"] == 0.0 and "timeout" in result["error"]
