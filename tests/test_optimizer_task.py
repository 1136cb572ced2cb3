"""The bundled optimizer_discovery task: its evaluator scores the initial AdamW program at
exactly 0 with every comparison reported, scores a different rule by the same arithmetic,
and rejects broken candidates with a reason."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from agentopt.evaluate import evaluator_functions, result_from_value
from agentopt.task import load_task

try:  # `python -m pytest` (repo root on sys.path) or plain `pytest` (tests/ on sys.path)
    from tests.task_files import load_evaluator, with_block
except ImportError:
    from task_files import load_evaluator, with_block  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]
TASK = REPO / "tasks" / "optimizer_discovery"
INITIAL = str(TASK / "initial_program.py")


@pytest.fixture(scope="module")
def opt_eval() -> Iterator[ModuleType]:
    yield from load_evaluator("optimizer_discovery")


def test_task_loads_with_a_rank_funnel_and_three_stages() -> None:
    spec = load_task(TASK / "task.yaml")
    assert spec.name == "optimizer_discovery" and spec.cascade.enabled
    assert spec.cascade.promote_top == [0.5, 0.5]
    assert {"evaluate_stage1", "evaluate_stage2", "evaluate", "fingerprint"} <= evaluator_functions(spec.evaluator)


def test_initial_adamw_scores_zero_and_reports_every_problem(opt_eval: ModuleType) -> None:
    value = opt_eval.evaluate(INITIAL)
    result = result_from_value(value)
    assert result.ok and result.score == 0.0  # the reference AdamW is the same arithmetic
    for name in ("logreg", "mlp", "quad", "softmax"):
        assert result.metrics[f"loss_{name}"] == result.metrics[f"adamw_{name}"]
        sgdm = result.metrics[f"sgdm_{name}"]
        assert math.isfinite(sgdm) and result.metrics[f"vs_sgdm_{name}"] == pytest.approx(
            max(-2.0, min(2.0, math.log10(sgdm / result.metrics[f"loss_{name}"]))))
    assert "softmax [held back]: candidate" in result.feedback and "SGD-momentum" in result.feedback
    stage1 = opt_eval.evaluate_stage1(INITIAL)
    assert stage1["stage_score"] == 0.0 and "loss_softmax" not in stage1  # held back until the final stage
    assert stage1["score"] == -10.0  # proxy stages rank below every fully evaluated candidate


def test_another_rule_is_scored_against_adamw(opt_eval: ModuleType, tmp_path: Path) -> None:
    """Plain gradient descent: each problem's score is log10(AdamW loss / its loss), clipped."""
    block = "def update(params, grads, state, lr):\n    return np.asarray(params) - lr * np.asarray(grads), {}\n"
    value = opt_eval.evaluate_stage1(with_block("optimizer_discovery", tmp_path, block))
    ratios = [value[f"vs_adamw_{n}"] for n in ("logreg", "mlp", "quad")]
    for name, r in zip(("logreg", "mlp", "quad"), ratios, strict=True):
        assert r == pytest.approx(max(-2.0, min(2.0, math.log10(value[f"adamw_{name}"] / value[f"loss_{name}"]))))
    assert value["stage_score"] == pytest.approx(sum(ratios) / 3) and value["stage_score"] != 0.0
    assert value["score"] == pytest.approx(value["stage_score"] - 10.0)


@pytest.mark.parametrize(
    ("block", "reason"),
    [
        ("def update(params, grads, state, lr):\n    return params[:-1], state\n", "shape (8,), expected (9,)"),
        ("def update(params, grads, state, lr):\n    raise ValueError('boom')\n", "update() failed"),
        ("def update(params, grads, state, lr):\n    return params, {'f': print}\n", "update() failed"),
        ("def update(params, grads, state, lr)\n    return params, state\n", "candidate failed"),
    ],
)
def test_broken_candidates_fail_with_a_reason(opt_eval: ModuleType, tmp_path: Path, block: str, reason: str) -> None:
    value = opt_eval.evaluate_stage1(with_block("optimizer_discovery", tmp_path, block))
    result = result_from_value(value)
    assert not result.ok and reason in (result.error or ""), result.error


def test_diverging_rule_gets_the_floor_not_an_error(opt_eval: ModuleType, tmp_path: Path) -> None:
    block = "def update(params, grads, state, lr):\n    return np.asarray(params) + 1e200 * np.asarray(grads), {}\n"
    value = opt_eval.evaluate_stage1(with_block("optimizer_discovery", tmp_path, block))
    assert "error" not in value and value["vs_adamw_quad"] == -2.0 and "diverged" in value["feedback"]
