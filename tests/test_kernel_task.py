"""The softmax kernel task: speedup measured from outside, cheats rejected or flagged."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TASK = REPO / "tasks" / "softmax_kernel"


@pytest.fixture(scope="module")
def evaluator():
    sys.path.insert(0, str(REPO / "evaluators"))
    spec = importlib.util.spec_from_file_location("softmax_evaluator", TASK / "evaluator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(REPO / "evaluators"))


def candidate(tmp_path: Path, block: str, name: str = "cand.py") -> str:
    source = (TASK / "initial_program.py").read_text()
    start = source.index("# EVOLVE-BLOCK-START")
    end = source.index("# EVOLVE-BLOCK-END")
    path = tmp_path / name
    path.write_text(source[:start] + "# EVOLVE-BLOCK-START\n" + block + source[end:])
    return str(path)


VECTORISED = """\
def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e
"""


def test_initial_is_correct_and_near_reference(evaluator) -> None:
    result = evaluator.evaluate(str(TASK / "initial_program.py"))
    assert result["correct"] == 1.0 and result["flagged"] == 0.0
    assert 0.5 < result["score"] < 2.0  # same code as the reference, modulo timing noise


def test_vectorised_kernel_is_faster(evaluator, tmp_path: Path) -> None:
    result = evaluator.evaluate(candidate(tmp_path, VECTORISED))
    assert result["correct"] == 1.0
    assert result["score"] > 1.2, result["feedback"]


def test_wrong_output_scores_zero(evaluator, tmp_path: Path) -> None:
    wrong = "def softmax(x):\n    return np.exp(x) / np.exp(x).sum()\n"
    result = evaluator.evaluate(candidate(tmp_path, wrong))
    assert result["score"] == 0.0 and "differs" in result["error"]


def test_caching_across_calls_cannot_pass(evaluator, tmp_path: Path) -> None:
    cheat = (
        "_memo = {}\n"
        "def softmax(x):\n"
        "    key = x.shape\n"
        "    if key not in _memo:\n"
        "        e = np.exp(x - x.max(axis=1, keepdims=True))\n"
        "        _memo[key] = e / e.sum(axis=1, keepdims=True)\n"
        "    return _memo[key]\n"
    )
    result = evaluator.evaluate(candidate(tmp_path, cheat))
    assert result["score"] == 0.0 and "differs" in result["error"]


def test_patching_timers_in_candidate_changes_nothing(evaluator, tmp_path: Path) -> None:
    cheat = "import time\ntime.perf_counter = lambda: 0.0\ntime.monotonic = lambda: 0.0\n" + (
        (TASK / "initial_program.py").read_text().split("# EVOLVE-BLOCK-START\n")[1].split("# EVOLVE-BLOCK-END")[0]
    )
    result = evaluator.evaluate(candidate(tmp_path, cheat))
    assert result["correct"] == 1.0 and result["score"] < 2.0  # still the naive kernel's speed


def test_implausibly_fast_is_flagged_not_crowned(evaluator, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(evaluator, "PEAK_BANDWIDTH_GBS", 1e-6)  # any real time now beats the "bound"
    result = evaluator.evaluate(candidate(tmp_path, VECTORISED))
    assert result["flagged"] == 1.0 and result["score"] == 0.0 and "flagged" in result["feedback"]


def test_stage1_rejects_broken_candidate(evaluator, tmp_path: Path) -> None:
    result = evaluator.evaluate_stage1(candidate(tmp_path, "def softmax(x):\n    raise RuntimeError('boom')\n"))
    assert result["score"] == 0.0 and "boom" in result["error"]
