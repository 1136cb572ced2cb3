"""Per-operator reporting (issue 14): children, valid, improved over the parent, new best,
repeats and tuning per operator, from one SQL aggregate over a small synthetic store; shown
in summary.json/summary.md, the terminal report and the (escaped, CSP-locked) HTML report."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agentopt.cli import app
from agentopt.evolve.controller import save_task_snapshot
from agentopt.evolve.db import Program, ProgramDB
from agentopt.evolve.operator_stats import OperatorStats, operator_name, operator_table
from agentopt.evolve.report import build_html
from agentopt.evolve.summary import RunSummary, summary_markdown, write_outputs
from agentopt.task import load_task

HOSTILE = "<script>alert(1)</script>"


def _hex(name: str) -> str:
    """A store-like program id (hex) for a readable test name."""
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def _program(pid: str, parent: str | None, score: float | None, mutation: dict[str, Any], it: int) -> Program:
    return Program(
        id=_hex(pid),
        code=f"x = {it}\n",
        parent_id=None if parent is None else _hex(parent),
        iteration=it,
        score=score,
        error=None if score is not None else "boom",
        mutation=mutation,
        code_hash=_hex(pid),
        norm_hash=_hex(pid),
    )


def _tuned(evaluations: int, before: float, after: float) -> dict[str, Any]:
    return {"operator": "extend_horner", "tuned": {"evaluations": evaluations, "before": before, "after": after}}


# (id, parent, score, mutation) in insertion order; scores maximize.
STORE = [
    ("p0", None, 1.0, {"kind": "initial"}),
    ("a1", "p0", 2.0, {"kind": "symbolic", "description": "scaled literal 1.0 -> 1.1 at line 3"}),  # improved, best
    ("a2", "a1", 1.5, {"kind": "symbolic", "description": "perturbed 2 literals: a; b"}),  # worse
    ("b1", "a1", None, {"kind": "symbolic", "description": "swapped operator + -> - at line 4"}),  # failed
    ("b2", "b1", 1.8, {"operator": "swap_operator"}),  # parent failed: improved, not best
    ("c1", "a1", 2.0, {"kind": "diff", "cache_hit": _hex("a1"), "cache_kind": "normalized"}),  # repeat, tie
    ("t1", "a2", 3.0, _tuned(40, 1.2, 3.0)),  # improved, new best, tuning helped
    ("t2", "a2", 1.0, _tuned(25, 1.0, 1.0)),  # worse, tuning did nothing
    ("h1", "t1", 2.5, {"operator": HOSTILE}),  # worse
]


def _fill(db: ProgramDB, store: list[tuple[str, str | None, float | None, dict[str, Any]]]) -> None:
    for it, (pid, parent, score, mutation) in enumerate(store):
        db.add(_program(pid, parent, score, mutation, it))


@pytest.fixture
def task(tmp_path: Path) -> Path:
    (tmp_path / "program.py").write_text("x = 0\n")
    (tmp_path / "evaluator.py").write_text("def evaluate(p):\n    return {'score': 0.0}\n")
    path = tmp_path / "task.yaml"
    path.write_text("program: program.py\nevaluator: evaluator.py\nsearch: {seed: 3}\n")
    return path


def _by_name(stats: list[OperatorStats]) -> dict[str, OperatorStats]:
    return {s.operator: s for s in stats}


def test_operator_counts_from_the_store(tmp_path: Path, task: Path) -> None:
    spec = load_task(task)
    with ProgramDB.open(tmp_path / "p.db", objective=spec.objective, search=spec.search) as db:
        _fill(db, STORE)
        stats = db.operator_counts()
    got = _by_name(stats)
    assert "initial" not in got  # the initial program is nobody's child
    assert [s.operator for s in stats][:3] == ["extend_horner", "perturb", "swap_operator"]  # most first
    assert got["perturb"].model_dump() == OperatorStats(
        operator="perturb", children=2, valid=2, improved=1, new_best=1
    ).model_dump()
    # The symbolic description and the explicit name land on one operator.
    assert got["swap_operator"].model_dump() == OperatorStats(
        operator="swap_operator", children=2, valid=1, improved=1
    ).model_dump()
    assert got["diff"].model_dump() == OperatorStats(operator="diff", children=1, valid=1, reused=1).model_dump()
    assert got["extend_horner"].model_dump() == OperatorStats(
        operator="extend_horner", children=2, valid=2, improved=1, new_best=1, tuned=2, tune_evaluations=65,
        tune_improved=1,
    ).model_dump()  # fmt: skip
    assert got[HOSTILE].children == 1 and got[HOSTILE].improved == 0


def test_minimize_direction_flips_improvement(tmp_path: Path, task: Path) -> None:
    spec = load_task(task)
    spec.objective.direction = "minimize"
    with ProgramDB.open(tmp_path / "p.db", objective=spec.objective, search=spec.search) as db:
        _fill(db, STORE)
        got = _by_name(db.operator_counts())
    # a1 (2.0 vs 1.0) is now worse; a2 (1.5 vs 2.0) improves on its parent but not on p0's 1.0.
    assert (got["perturb"].improved, got["perturb"].new_best) == (1, 0)
    # t2: 1.0 < a2's 1.5, ties the best 1.0 (not new); t1 is worse. Tuning "helped" neither.
    assert (got["extend_horner"].improved, got["extend_horner"].new_best, got["extend_horner"].tune_improved) == (
        1,
        0,
        0,
    )


def test_rows_stored_before_the_operator_columns_are_read_from_their_mutation(tmp_path: Path, task: Path) -> None:
    spec = load_task(task)
    path = tmp_path / "p.db"
    with ProgramDB.open(path, objective=spec.objective, search=spec.search) as db:
        _fill(db, STORE)
        fresh = db.operator_counts()
    with sqlite3.connect(path) as conn:  # what a schema-2 file looks like after the upgrade
        conn.execute("UPDATE programs SET operator = NULL, reused = NULL, tune_evals = NULL, tune_gain = NULL")
    with ProgramDB.open(path, objective=spec.objective, search=spec.search) as db:
        assert [s.model_dump() for s in db.operator_counts()] == [s.model_dump() for s in fresh]


def test_operator_names() -> None:
    assert operator_name({"operator": "  crossover \n blocks "}) == "crossover blocks"
    assert operator_name({"kind": "symbolic", "description": "lib/a.py: copied literal 2 from line 1"}) == (
        "share_constant"
    )
    assert operator_name({"kind": "symbolic", "description": "something new"}) == "symbolic"
    assert operator_name({"kind": "rewrite"}) == "rewrite"
    assert operator_name({}) == "unknown"
    assert operator_name({"operator": "x"}, has_parent=False) == "initial"


def test_summary_terminal_and_html_show_operators(tmp_path: Path, task: Path) -> None:
    spec = load_task(task)
    run_dir = tmp_path / "run"
    save_task_snapshot(spec, run_dir)
    with ProgramDB.open(run_dir / "programs.db", objective=spec.objective, search=spec.search) as db:
        _fill(db, STORE)
        summary = RunSummary(
            task="t", run_dir=str(run_dir), objective="score", direction="maximize", operators=db.operator_counts()
        )
        write_outputs(run_dir, db, summary, spec)
    data = json.loads((run_dir / "summary.json").read_text())
    assert {row["operator"] for row in data["operators"]} >= {"perturb", "extend_horner", HOSTILE}
    md = (run_dir / "summary.md").read_text()
    assert "## Operators" in md and "| extend_horner | 2 | 2 | 1 (50%) | 1 | 0 | 2 | 65 | 1 |" in md
    assert summary_markdown(summary) == md

    result = CliRunner().invoke(app, ["report", str(run_dir), "--html", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert "children per operator" in result.output and "perturb" in result.output

    page = build_html(run_dir)  # the report's own per-operator tallies (RunView): escaped, CSP kept
    assert "extend_horner" in page
    assert HOSTILE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "default-src 'none'" in page


def test_operator_table_hides_tuning_columns_until_something_is_tuned() -> None:
    header, rows = operator_table([OperatorStats(operator="a", children=4, valid=3, improved=1)])
    assert header == ["operator", "children", "valid", "improved", "new best", "repeats"]
    assert rows == [["a", "4", "3", "1 (25%)", "0", "0"]]
    header, _ = operator_table([OperatorStats(operator="a", children=1, tuned=1, tune_evaluations=9)])
    assert header[-3:] == ["tuned", "tune evals", "tune helped"]


def test_a_tuning_record_of_zero_evaluations_is_not_tuning() -> None:
    from agentopt.evolve.operator_stats import tuning_columns

    assert tuning_columns({"tuned": {"evaluations": 0, "before": None, "after": None}}, True) == (None, None)
    assert tuning_columns({"tuned": {"evaluations": 30, "before": 2.0, "after": 1.5}}, False) == (30, 0.5)
    assert tuning_columns({"tuned": {"evaluations": 30, "before": None, "after": 1.5}}, True) == (30, None)
