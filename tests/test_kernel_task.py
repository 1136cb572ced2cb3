"""The softmax kernel task: speedup measured from outside, cheats rejected or flagged.

No assertion here depends on how fast this machine is or how loaded it is (CI runs at load 20+);
speed claims (the vectorised kernel beats the naive one) live in benchmarks/bench_kernel_timing.py."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

try:  # `python -m pytest` (repo root on sys.path) or plain `pytest` (tests/ on sys.path)
    from tests.task_files import load_evaluator, with_block
except ImportError:
    from task_files import load_evaluator, with_block  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]
TASK = REPO / "tasks" / "softmax_kernel"


@pytest.fixture(scope="module")
def evaluator():
    yield from load_evaluator("softmax_kernel")


def candidate(tmp_path: Path, block: str, name: str = "cand.py") -> str:
    return with_block("softmax_kernel", tmp_path, block, name=name)


VECTORISED = """\
def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e
"""


def test_initial_is_correct_timed_and_not_flagged(evaluator) -> None:
    result = evaluator.evaluate(str(TASK / "initial_program.py"))
    assert result["correct"] == 1.0 and result["flagged"] == 0.0, result.get("feedback")
    assert math.isfinite(result["score"]) and result["score"] > 0
    assert all(result[f"time_us_{a}x{b}"] > 0 for a, b in evaluator.SHAPES)


def test_vectorised_kernel_is_scored_not_flagged(evaluator, tmp_path: Path) -> None:
    result = evaluator.evaluate(candidate(tmp_path, VECTORISED))
    assert result["correct"] == 1.0 and result["flagged"] == 0.0, result.get("feedback")
    assert math.isfinite(result["score"]) and result["score"] > 0


def test_noise_below_the_bound_is_not_flagged(evaluator) -> None:
    # Samples as a loaded machine gives them (seconds): the no-op calls are as slow as the kernel
    # calls. The old median-minus-median estimate said "0 ns, flagged"; the estimate's resolution
    # (tens of microseconds here) is far above a few-microsecond bound, so nothing is flagged.
    calls = [120e-6, 95e-6, 400e-6, 101e-6, 98e-6, 2e-3, 130e-6, 97e-6, 99e-6]
    noops = [110e-6, 93e-6, 900e-6, 140e-6, 96e-6, 100e-6, 3e-3, 92e-6, 150e-6]
    seconds, resolution = evaluator.kernel_time(calls, noops)
    assert seconds == pytest.approx(3e-6) and resolution > 5e-6
    assert not evaluator.confidently_below(seconds, resolution, bound_s=2.6e-6)
    # A clean, tight measurement far below the bound is flagged.
    quick = [10.1e-6, 10.0e-6, 10.05e-6, 10.2e-6]
    idle = [10.0e-6, 10.02e-6, 10.1e-6, 10.3e-6]
    assert evaluator.confidently_below(*evaluator.kernel_time(quick, idle), bound_s=2.6e-6)


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
    # Timed inside the candidate, the patched clocks would read 0 s: below the bandwidth bound
    # with no spread, i.e. flagged. Timed from outside, it is an ordinary correct kernel.
    assert result["correct"] == 1.0 and result["flagged"] == 0.0, result.get("feedback")


def test_implausibly_fast_is_flagged_not_crowned(evaluator, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(evaluator, "PEAK_BANDWIDTH_GBS", 1e-6)  # any real time now beats the "bound"
    result = evaluator.evaluate(candidate(tmp_path, VECTORISED))
    assert result["flagged"] == 1.0 and result["score"] == 0.0 and "flagged" in result["feedback"]


def test_stage1_rejects_broken_candidate(evaluator, tmp_path: Path) -> None:
    result = evaluator.evaluate_stage1(candidate(tmp_path, "def softmax(x):\n    raise RuntimeError('boom')\n"))
    assert result["score"] == 0.0 and "boom" in result["error"]
