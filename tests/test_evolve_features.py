"""Engine features of issue 3: functional-equivalence cache, multi-file candidates, meta-prompt
evolution, GPU evaluation slots and LLM budget stops. Real scripted OpenAI-compatible server,
real sandbox, real store; nothing in the client library is patched."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import textwrap
from pathlib import Path
from typing import Any

import pytest

from agentopt.errors import TaskError
from agentopt.evolve.api import evolve, resume
from agentopt.evolve.bundle import BundleError, is_bundle, pack, unpack
from agentopt.evolve.controller import EvolutionController
from agentopt.evolve.diff import parse_diffs
from agentopt.evolve.gpu_slots import evaluation_slots
from agentopt.evolve.meta_prompts import MetaPromptArchive
from agentopt.evolve.multifile import apply_bundle_reply
from agentopt.evolve.proposers import SymbolicProposer
from agentopt.evolve.report import build_html
from agentopt.sandbox.base import JobResult, Sandbox, SandboxJob
from agentopt.task import GpuRequest, TaskSpec, load_task


def db_rows(run_dir: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(run_dir / "programs.db") as conn:
        return conn.execute(sql).fetchall()


def is_evolution_prompt(messages: list[dict]) -> bool:
    return any("EVOLVE-BLOCK" in m["content"] for m in messages)


def llm_yaml(server: Any, extra: str = "", model: str = "openai/scripted") -> str:
    return f"llm: {{models: [{{name: {model}, api_base: '{server.base_url}'}}], concurrency: 1{extra}}}\n"


# --------------------------------------------------------------------------- functional cache

FP_PROGRAM = textwrap.dedent(
    """\
    # EVOLVE-BLOCK-START
    def solve(x):
        return x * 2
    # EVOLVE-BLOCK-END
    """
)

FP_EVALUATOR = textwrap.dedent(
    """\
    from agentopt_guest import CandidateError, CandidateProcess, call_candidate

    def fingerprint(program_path):
        proc = CandidateProcess(program_path, import_timeout=5)
        try:
            proc.start()
            return {"outputs": [proc.call("solve", i, timeout=5) for i in range(6)]}
        finally:
            proc.close()

    def evaluate(program_path):
        try:
            value = float(call_candidate(program_path, "solve", (10,), timeout=5))
        except CandidateError as err:
            return {"score": 0.0, "error": str(err)}
        # `chars` proves a reused result: an equivalent child keeps its twin's length.
        return {"score": value, "chars": float(len(open(program_path).read()))}
    """
)


def _body(messages: list[dict]) -> str:
    match = re.search(r"def solve\(x\):\n\s+return ([^\n]+)", messages[-1]["content"])
    assert match, "the prompt must show the parent program"
    return match.group(1)


def test_functional_fingerprint_cache_reuses_results(tmp_path: Path, scripted_llm) -> None:
    # Equivalent rewrites of `x * 2` (functional hits), a new function, a cosmetic variant of it
    # (normalized hit) and that function's exact text again (exact hit).
    targets = ["x + x", "x * 3", "x * 3  # three", "2 * x", "x * 3", "x * 4", "x * 3"]
    used: list[str] = []

    def reply(messages: list[dict]) -> str:
        if not is_evolution_prompt(messages):
            return "ok"
        old = _body(messages)
        new = next(t for t in targets[len(used) :] + ["x * 5"] if t != old)
        used.append(new)
        return f"<<<<<<< SEARCH\n    return {old}\n=======\n    return {new}\n>>>>>>> REPLACE\n"

    server = scripted_llm(reply)
    (tmp_path / "program.py").write_text(FP_PROGRAM)
    (tmp_path / "evaluator.py").write_text(FP_EVALUATOR)
    task = tmp_path / "task.yaml"
    task.write_text(
        "program: program.py\nevaluator: evaluator.py\nsandbox: {timeout_s: 20}\n"
        + llm_yaml(server)
        + "search: {iterations: 7, seed: 4}\n"
    )
    summary = evolve(task, output_dir=tmp_path / "run")
    kinds = summary.cache_hits_by_kind
    assert kinds["functional"] >= 1 and kinds["normalized"] >= 1 and kinds["exact"] >= 1, kinds
    assert summary.cache_lookups == 7 and summary.evaluations + sum(kinds.values()) == 1 + 7
    # Every child that reached the cache ran a fingerprint job except exact/normalized hits.
    assert summary.fingerprints == 1 + 7 - kinds["exact"] - kinds["normalized"]
    rows = db_rows(tmp_path / "run", "SELECT id, func_hash, data FROM programs ORDER BY seq")
    by_id = {pid: (fh, json.loads(data if data[:1] == b"{" else __import__("zlib").decompress(data)))
             for pid, fh, data in rows}
    functional = [(pid, d) for pid, (_, d) in by_id.items() if d["mutation"].get("cache_kind") == "functional"]
    for pid, data in functional:
        twin = by_id[data["mutation"]["cache_hit"]]
        assert by_id[pid][0] == twin[0] and by_id[pid][0]  # same fingerprint hash, stored
        assert data["metrics"] == twin[1]["metrics"]  # reused, not re-run (chars would differ)
    assert all(fh for fh, _ in by_id.values())  # every stored program carries its fingerprint
    assert "functional" in (tmp_path / "run" / "summary.md").read_text()


# --------------------------------------------------------------------------- multi-file

MAIN = textwrap.dedent(
    """\
    from helper import base

    def solve():
        # EVOLVE-BLOCK-START
        scale = 1.0
        # EVOLVE-BLOCK-END
        return base() * scale
    """
)
HELPER = textwrap.dedent(
    """\
    # EVOLVE-BLOCK-START
    def base():
        return 1.0
    # EVOLVE-BLOCK-END
    """
)
MF_EVALUATOR = textwrap.dedent(
    """\
    import os
    from agentopt_guest import CandidateError, call_candidate

    def evaluate(program_path):
        assert os.path.isdir(program_path), "multi-file candidates arrive as a directory"
        try:
            value = float(call_candidate(os.path.join(program_path, "main.py"), "solve", timeout=5))
        except CandidateError as err:
            return {"score": 0.0, "error": str(err)}
        return {"score": value}
    """
)


def make_multi_file_task(tmp_path: Path, extra: str) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "main.py").write_text(MAIN)
    (src / "helper.py").write_text(HELPER)
    (tmp_path / "evaluator.py").write_text(MF_EVALUATOR)
    task = tmp_path / "task.yaml"
    task.write_text("program: src\nevaluator: evaluator.py\nsandbox: {timeout_s: 20}\n" + extra)
    return task


def test_multi_file_task_evolves_every_file(tmp_path: Path, scripted_llm) -> None:
    def reply(messages: list[dict]) -> str:
        if not is_evolution_prompt(messages):
            return "ok"
        text = messages[-1]["content"]
        base = re.search(r"return (\d+\.\d+)", text).group(1)  # helper.py's constant
        scale = re.search(r"scale = (\d+\.\d+)", text).group(1)
        return (
            f"Raise both.\nFile: helper.py\n<<<<<<< SEARCH\n    return {base}\n=======\n    return {float(base) + 1}\n>>>>>>> REPLACE\n"
            # the header is sticky, but this SEARCH text fits main.py only, so it is applied there
            f"<<<<<<< SEARCH\n    scale = {scale}\n=======\n    scale = {float(scale) + 1}\n>>>>>>> REPLACE\n"
        )

    server = scripted_llm(reply)
    task = make_multi_file_task(tmp_path, llm_yaml(server) + "search: {iterations: 3, seed: 1}\n")
    spec = load_task(task)
    assert spec.multi_file and [str(p) for p in spec.program_files] == ["helper.py", "main.py"]
    summary = evolve(task, output_dir=tmp_path / "run")
    assert summary.initial_score == 1.0 and summary.best_score is not None and summary.best_score >= 4.0
    best = Path(summary.best_program_path or "")
    assert best.is_dir() and {p.name for p in best.iterdir()} == {"helper.py", "main.py"}
    assert "scale = " in (best / "main.py").read_text() and "from helper import" in (best / "main.py").read_text()
    prompt = next(r for r in server.requests if is_evolution_prompt(r["messages"]))["messages"]
    assert "File: helper.py" in prompt[-1]["content"] and "File: main.py" in prompt[-1]["content"]
    assert "'File: <path>'" in prompt[0]["content"]  # the reply format asks for file headers
    # Resume from the snapshot works for a directory program.
    assert resume(tmp_path / "run", iterations=4).iterations == 4


def test_multi_file_symbolic_run_and_program_list(tmp_path: Path) -> None:
    task = make_multi_file_task(tmp_path, "search: {iterations: 4, seed: 2}\n")
    task.write_text(task.read_text().replace("program: src", "program: [src/main.py, src/helper.py]"))
    spec = load_task(task)
    assert spec.program == (tmp_path / "src").resolve() and [str(p) for p in spec.program_files] == [
        "main.py",
        "helper.py",
    ]
    summary = evolve(spec, output_dir=tmp_path / "run")
    assert summary.programs >= 2 and summary.mutator == "symbolic"
    codes = [r[0] for r in db_rows(tmp_path / "run", "SELECT b.code FROM programs p JOIN blobs b ON b.id = p.blob")]
    assert codes  # stored as bundles
    assert (tmp_path / "run" / "best_program" / "helper.py").is_file()


def test_bundle_round_trip_and_reply_errors() -> None:
    files = {"a.py": "x = 1\n", "lib/b.py": "# EVOLVE-BLOCK-START\ny = 2\n# EVOLVE-BLOCK-END\n", "c.txt": "no newline"}
    bundle = pack(files)
    assert is_bundle(bundle) and unpack(bundle) == {**files, "c.txt": "no newline\n"}
    with pytest.raises(BundleError):
        pack({"../evil.py": "x"})
    hunk = "<<<<<<< SEARCH\ny = 2\n=======\ny = 3\n>>>>>>> REPLACE\n"
    ok, changed = apply_bundle_reply(bundle, "File: `lib/b.py`\n" + hunk)
    assert ok.code is not None and "y = 3" in unpack(ok.code)["lib/b.py"] and changed == ["lib/b.py"]
    bad, _ = apply_bundle_reply(bundle, "File: nope.py\n" + hunk)
    assert bad.code is None and "not part of the program" in (bad.error or "")
    outside, _ = apply_bundle_reply(bundle, "File: a.py\n" + hunk.replace("y = 2", "x = 1").replace("y = 3", "x = 9"))
    assert outside.code is not None  # a.py has no blocks: editable anywhere
    confined = "File: lib/b.py\n<<<<<<< SEARCH\n# EVOLVE-BLOCK-END\n=======\n# gone\n>>>>>>> REPLACE\n"
    assert apply_bundle_reply(bundle, confined)[0].code is None
    rewrite, _ = apply_bundle_reply(bundle, "File: lib/b.py\n```python\ny = 7\n```\n", "rewrite")
    assert rewrite.code is not None and "y = 7" in unpack(rewrite.code)["lib/b.py"]
    # File headers are optional and sticky; single-file parsing is unchanged.
    hunks = parse_diffs("File: a.py\n" + hunk + hunk + "**File:** b.py\n" + hunk)
    assert [h.file for h in hunks] == ["a.py", "a.py", "b.py"]
    assert parse_diffs(hunk)[0].file is None


def test_task_program_directory_validation(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "evaluator.py").write_text("def evaluate(p):\n    return {'score': 1}\n")
    task = tmp_path / "task.yaml"
    task.write_text("program: src\nevaluator: evaluator.py\n")
    with pytest.raises(TaskError, match="holds no program files"):
        load_task(task)
    task.write_text("program: evaluator.py\nevaluator: evaluator.py\nprogram_files: [a.py]\n")
    with pytest.raises(TaskError, match="program_files"):
        load_task(task)
    task.write_text("program: [src/a.py]\nevaluator: evaluator.py\nprogram_files: [a.py]\n")
    with pytest.raises(TaskError, match="not both"):
        load_task(task)


# --------------------------------------------------------------------------- meta-prompts

SIMPLE_PROGRAM = "# EVOLVE-BLOCK-START\ndef solve():\n    return 1.0\n# EVOLVE-BLOCK-END\n"
SIMPLE_EVALUATOR = textwrap.dedent(
    """\
    from agentopt_guest import CandidateError, call_candidate

    def evaluate(program_path):
        try:
            return {"score": float(call_candidate(program_path, "solve", timeout=5))}
        except CandidateError as err:
            return {"score": 0.0, "error": str(err)}
    """
)
NEW_VARIANT = "You are a relentless {language} optimizer. Always push the constant up to {goal}."


def meta_reply(messages: list[dict]) -> str:
    if "system prompts for code-improving LLMs" in messages[0]["content"]:
        return f"Here it is:\n```text\n{NEW_VARIANT} Attempt {len(messages[-1]['content']) % 97}.\n```\n"
    if not is_evolution_prompt(messages):
        return "ok"
    match = re.search(r"return (\d+\.\d+)[^\n]*", messages[-1]["content"])
    # Only the new LLM-written variants make progress, so the bandit has something to learn.
    new = float(match.group(1)) + (1.0 if "relentless" in messages[0]["content"] else 0.0)
    tag = len(messages[-1]["content"]) % 1000  # other variants still produce a (worse) new child
    return f"<<<<<<< SEARCH\n    {match.group(0)}\n=======\n    return {new} - 0.{tag:03d}\n>>>>>>> REPLACE\n"


def make_meta_task(tmp_path: Path, server: Any, iterations: int) -> Path:
    (tmp_path / "program.py").write_text(SIMPLE_PROGRAM)
    (tmp_path / "evaluator.py").write_text(SIMPLE_EVALUATOR)
    task = tmp_path / "task.yaml"
    task.write_text(
        "program: program.py\nevaluator: evaluator.py\nsandbox: {timeout_s: 20}\n"
        + llm_yaml(server, ", meta_prompts: true, meta_prompt_interval: 2, meta_prompt_max_variants: 6")
        # Window 1: each proposal sees the previous one's reward (the archive's learning is the
        # subject here; with a wider window the first iterations all try the same unpulled variant).
        + f"search: {{iterations: {iterations}, seed: 3, pipeline_window: 1}}\n"
    )
    return task


def meta_state(run_dir: Path) -> dict:
    return json.loads(db_rows(run_dir, "SELECT value FROM state WHERE key = 'meta_prompts'")[0][0])


def test_meta_prompt_archive_grows_learns_and_resumes(tmp_path: Path, scripted_llm) -> None:
    server = scripted_llm(meta_reply)
    task = make_meta_task(tmp_path, server, 8)
    summary = evolve(task, output_dir=tmp_path / "straight")
    state = meta_state(tmp_path / "straight")
    origins = [v["origin"] for v in state["variants"]]
    assert origins[:4] == ["seed:default", "seed:careful", "seed:bold", "seed:analyst"]
    assert "llm" in origins and len(origins) <= 6
    retired = [f"v{i}" for i in range(state["next"]) if f"v{i}" not in state["bandit"]["pulls"]]
    assert sum(state["bandit"]["pulls"].values()) + 3 * len(retired) >= 8  # a pull per proposal
    systems = {r["messages"][0]["content"].split("\n\n")[0] for r in server.requests if is_evolution_prompt(r["messages"])}
    assert len(systems) >= 3 and any("relentless" in s and "python" in s for s in systems)
    assert summary.meta_prompts and summary.meta_prompts[0]["origin"] == "llm"  # the variant that works leads
    assert "meta-prompts" in (tmp_path / "straight" / "summary.md").read_text()
    html = build_html(tmp_path / "straight")
    assert "Meta-prompt variants" in html and "relentless" in html
    # Stopping half way and resuming evolves exactly the same archive.
    evolve(task, iterations=4, output_dir=tmp_path / "split")
    resume(tmp_path / "split", iterations=8)
    assert meta_state(tmp_path / "split") == state


def test_meta_archive_replaces_weakest_llm_variant_only() -> None:
    archive = MetaPromptArchive(max_variants=5)
    first = archive.add("A first proposed prompt for {language}.", parents=["v0"], iteration=2)
    assert first is not None and archive.add("a FIRST proposed   prompt for {language}.", parents=[], iteration=3) is None
    assert archive.add("Second proposed prompt, no room yet.", parents=[], iteration=4) is None  # full, v4 unproven
    for _ in range(3):
        archive.observe(first.id, improved=False)
    second = archive.add("Second proposed prompt, room now.", parents=[], iteration=5)
    assert second is not None and first.id not in archive.variants and len(archive.variants) == 5
    restored = MetaPromptArchive(max_variants=5)
    restored.load_state(json.loads(json.dumps(archive.to_state())))
    assert restored.ranking() == archive.ranking()
    assert MetaPromptArchive.parse_proposal("no fence, too short")[0] is None


# --------------------------------------------------------------------------- GPU slots


class CountingSandbox(Sandbox):
    """In-process stand-in for a GPU backend: scores instantly and records peak concurrency."""

    name = "counting"

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0

    async def run(self, job: SandboxJob) -> JobResult:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(0.01)
            return JobResult(ok=True, value={"score": float(len(Path(job.program_path).read_text()))})
        finally:
            self.running -= 1


def test_gpu_count_and_slots() -> None:
    assert [GpuRequest.parse(g).number(all_as=1) for g in (None, 0, [], 2, ["0", "1", "3"], "1", "0,1")] == [0, 0, 0, 2, 3, 1, 2]
    spec = TaskSpec.model_validate(
        {"program": "p.py", "evaluator": "e.py", "sandbox": {"gpus": 2}, "search": {"parallel_evaluations": 8}}
    )
    assert evaluation_slots(spec)[0] == 2 and "capped" in (evaluation_slots(spec)[1] or "")
    spec.search.evaluations_per_gpu = 3
    assert evaluation_slots(spec) == (6, evaluation_slots(spec)[1])
    spec.search.evaluations_per_gpu = None
    assert evaluation_slots(spec) == (8, None)
    spec.sandbox.gpus = None
    assert evaluation_slots(spec) == (8, None)


@pytest.mark.parametrize(("gpus", "expected_peak"), [(1, 1), (None, 4)])
def test_gpu_tasks_never_run_more_evaluations_than_gpus(tmp_path: Path, gpus: int | None, expected_peak: int) -> None:
    (tmp_path / "p.py").write_text("# EVOLVE-BLOCK-START\nx = 1.5\ny = 2.5\n# EVOLVE-BLOCK-END\n")
    (tmp_path / "e.py").write_text("def evaluate(p):\n    return {}\n")
    spec = TaskSpec.model_validate(
        {
            "program": str(tmp_path / "p.py"),
            "evaluator": str(tmp_path / "e.py"),
            "sandbox": {"gpus": gpus},
            "search": {"parallel_evaluations": 4, "iterations": 8, "seed": 1},
        }
    )
    sandbox = CountingSandbox()
    controller = EvolutionController(spec, tmp_path / "run", sandbox=sandbox, mutator=SymbolicProposer(spec))
    summary = asyncio.run(controller.run())
    assert summary.iterations == 8 and sandbox.peak == expected_peak


# --------------------------------------------------------------------------- LLM budgets


def test_max_tokens_budget_stops_the_run(tmp_path: Path, scripted_llm) -> None:
    server = scripted_llm(meta_reply)
    (tmp_path / "program.py").write_text(SIMPLE_PROGRAM)
    (tmp_path / "evaluator.py").write_text(SIMPLE_EVALUATOR)
    task = tmp_path / "task.yaml"
    task.write_text(
        "program: program.py\nevaluator: evaluator.py\n" + llm_yaml(server)
        + "search: {iterations: 50, budget: {max_tokens: 2500}}\n"
    )
    summary = evolve(task, output_dir=tmp_path / "run")
    assert "token budget of 2500" in summary.stop_reason
    assert 0 < summary.tokens <= 2500 and summary.llm_calls < 50  # the server's usage counts


def test_max_usd_budget_stops_the_run_with_a_priced_model(tmp_path: Path, scripted_llm) -> None:
    # litellm prices openai/gpt-4o-mini from its bundled price map (offline), while api_base
    # sends the request to the scripted server; its usage numbers make the cost.
    server = scripted_llm(meta_reply)
    (tmp_path / "program.py").write_text(SIMPLE_PROGRAM)
    (tmp_path / "evaluator.py").write_text(SIMPLE_EVALUATOR)
    task = tmp_path / "task.yaml"
    task.write_text(
        "program: program.py\nevaluator: evaluator.py\n" + llm_yaml(server, model="openai/gpt-4o-mini")
        + "search: {iterations: 50, budget: {max_usd: 0.0003}}\n"
    )
    summary = evolve(task, output_dir=tmp_path / "run")
    assert "LLM budget of $0.0003" in summary.stop_reason, summary.stop_reason
    assert 0.0003 <= summary.cost_usd < 0.0003 + 0.0002 and summary.llm_calls < 50
