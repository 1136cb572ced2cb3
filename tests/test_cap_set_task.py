"""Bundled task cap_set (issue 14, item 6): the initial program scores as computed, a known
maximum cap (20 vectors in F_3^4) reaches the anchor, and every malformed or non-cap answer
is rejected with a reason. The candidate runs in a child process, as in a real evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from agentopt.evaluate import result_from_value
from agentopt.task import load_task

try:  # `python -m pytest` (repo root on sys.path) or plain `pytest` (tests/ on sys.path)
    from tests.task_files import load_evaluator
except ImportError:
    from task_files import load_evaluator  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]
TASK = REPO / "tasks" / "cap_set"
# A 20-cap in F_3^4 (the proven maximum, Pellegrino 1970), found by the task's own greedy.
CAP20 = (
    "0122 0211 1021 1102 1111 1112 1121 1211 1212 1220 1222 2012 2110 2111 2121 2122 2201 2212 2221 2222"
).split()


@pytest.fixture(scope="module")
def cap_eval() -> Iterator[ModuleType]:
    yield from load_evaluator("cap_set")


def _fixed(tmp_path: Path, vectors: object, name: str = "cand.py") -> str:
    path = tmp_path / name
    path.write_text(f"def build_cap_set(n):\n    return {vectors!r}\n", encoding="utf-8")
    return str(path)


def _vectors(words: list[str]) -> list[list[int]]:
    return [[int(c) for c in w] for w in words]


def test_task_loads() -> None:
    spec = load_task(TASK / "task.yaml")
    assert spec.name == "cap_set" and spec.objective.direction == "maximize"
    assert spec.search.simplify  # the evaluator never reads the source: dead code cannot matter


def test_initial_program_scores_its_greedy_cap(cap_eval: ModuleType) -> None:
    result = cap_eval.evaluate(str(TASK / "initial_program.py"))
    assert "error" not in result, result
    assert result["score"] == 16.0 and result["n"] == 4 and result["anchor"] == 20
    assert "proven maximum is 20" in result["feedback"] and result["addable"] == 0
    assert len(result["artifacts"]["cap"].splitlines()) == 16
    assert result_from_value(result).ok


def test_a_maximum_cap_reaches_the_anchor(cap_eval: ModuleType, tmp_path: Path) -> None:
    result = cap_eval.evaluate(_fixed(tmp_path, _vectors(CAP20)))
    assert "error" not in result, result
    assert result["score"] == 20.0 and result["ratio_to_anchor"] == 1.0


def test_non_maximal_cap_feedback_names_an_addable_vector(cap_eval: ModuleType, tmp_path: Path) -> None:
    result = cap_eval.evaluate(_fixed(tmp_path, [[0, 0, 0, 0]]))
    assert result["score"] == 1.0 and "not maximal" in result["feedback"] and result["addable"] == 80


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("not a list", "must return a list"),
        ([[0, 0, 0]], "must be a list of 4 entries"),
        ([[0, 0, 0, 3]], "not the int 0, 1 or 2"),
        ([[0, 0, 0, True]], "not the int 0, 1 or 2"),
        ([[0, 0, 0, 1.0]], "not the int 0, 1 or 2"),
        ([[0, 0, 0, 1], [0, 0, 0, 1]], "repeats vector 0"),
        ([[0, 0, 0, 0], [1, 1, 1, 1], [2, 2, 2, 2]], "lie on one line"),
        (_vectors(CAP20) + [[0, 0, 0, 0]], "lie on one line"),  # every other vector completes a line
        ([[0, 0, 0, 0]] * 82, "only 81"),
    ],
)
def test_parse_and_check_reject_non_caps(cap_eval: ModuleType, value: object, reason: str) -> None:
    with pytest.raises(cap_eval.InvalidCap, match=reason):
        cap_eval.check_cap(cap_eval.parse_cap(value, 4))


def test_invalid_and_crashing_candidates_score_zero(cap_eval: ModuleType, tmp_path: Path) -> None:
    result = cap_eval.evaluate(_fixed(tmp_path, [[0, 1, 2, 0], [1, 2, 0, 1], [2, 0, 1, 2]]))
    assert result["score"] == 0.0 and "lie on one line" in result["error"]
    assert not result_from_value(result).ok
    crash = tmp_path / "crash.py"
    crash.write_text("def build_cap_set(n):\n    raise RuntimeError('nope')\n", encoding="utf-8")
    result = cap_eval.evaluate(str(crash))
    assert result["score"] == 0.0 and "build_cap_set(4) failed" in result["error"]


def test_dimension_comes_from_the_sandbox_environment(
    cap_eval: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAPSET_N", "3")
    result = cap_eval.evaluate(str(TASK / "initial_program.py"))
    assert result["n"] == 3 and result["anchor"] == 9 and 0 < result["score"] <= 9
    monkeypatch.setenv("CAPSET_N", "11")
    with pytest.raises(ValueError, match="CAPSET_N must be one of"):
        cap_eval.dimension()
