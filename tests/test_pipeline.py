"""The pipelined loop: a sliding window of iterations in flight, committed in order, reproducible
whatever the LLM latencies, exact across a stop + resume, and no duplicate evaluation in flight."""

from __future__ import annotations

import asyncio
import json
import random
import re
import sqlite3
import textwrap
import threading
import time
import zlib
from pathlib import Path

from agentopt.evolve.api import evolve, resume
from agentopt.evolve.pipeline import PARKED, STOP, WindowPipeline

PROGRAM = textwrap.dedent(
    """\
    # EVOLVE-BLOCK-START
    def solve():
        return 1.0
    # EVOLVE-BLOCK-END
    """
)
# Reads the constant from the file (no candidate process): these tests are about the loop.
EVALUATOR = textwrap.dedent(
    """\
    import re

    def evaluate(program_path):
        text = open(program_path).read()
        value = float(re.search(r"return (-?[0-9.]+)", text).group(1))
        return {"score": value}
    """
)


def make_task(tmp_path: Path, search: str, llm: str = "") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "program.py").write_text(PROGRAM)
    (tmp_path / "evaluator.py").write_text(EVALUATOR)
    task = tmp_path / "task.yaml"
    task.write_text(
        "program: program.py\nevaluator: evaluator.py\nsandbox: {timeout_s: 20}\n" + llm + f"search: {search}\n"
    )
    return task


def llm_yaml(server, concurrency: int) -> str:
    return f"llm: {{models: [{{name: openai/scripted, api_base: '{server.base_url}'}}], concurrency: {concurrency}}}\n"


def rows(run_dir: Path) -> list[tuple]:
    with sqlite3.connect(run_dir / "programs.db") as conn:
        out = []
        for pid, parent, score, iteration, data in conn.execute(
            "SELECT id, parent_id, score, iteration, data FROM programs ORDER BY iteration, id"
        ):
            fields = json.loads(data if data[:1] == b"{" else zlib.decompress(data))
            out.append((pid, parent, score, iteration, fields["mutation"].get("cache_kind")))
        return out


# ---------------------------------------------------------------------------------- scheduler


def test_window_pipeline_starts_each_iteration_as_of_iteration_minus_window() -> None:
    window, last = 3, 12
    committed: list[int] = []
    seen_at_start: dict[int, int] = {}
    in_flight = peak = 0
    rng = random.Random(0)

    async def work(i: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(rng.random() * 0.01)  # finish out of order
        in_flight -= 1
        return i * i

    def start(i: int):
        seen_at_start[i] = len(committed)
        if i > last:
            return PARKED
        return work(i)

    def commit(i: int, result: int) -> None:
        assert result == i * i
        committed.append(i)

    nxt = asyncio.run(WindowPipeline(window=window, start=start, commit=commit).run(1))
    assert committed == list(range(1, last + 1)) and nxt == last + 1
    assert peak == window
    # Iteration i starts right after iteration i - window commits, before any later commit.
    assert all(seen_at_start[i] == max(0, i - window) for i in seen_at_start)
    assert max(seen_at_start) == last + window  # parked starts continue up to the window's edge

    stops: list[int] = []

    def stop_at_5(i: int):
        if i >= 5:
            stops.append(i)
            return STOP
        return work(i)

    committed.clear()
    asyncio.run(WindowPipeline(window=window, start=stop_at_5, commit=commit).run(1))
    assert committed == [1, 2, 3, 4] and stops == [5]  # STOP is final: asked once


# ------------------------------------------------------------------------ whole runs


def test_split_run_equals_straight_run_with_a_window(tmp_path: Path) -> None:
    """Stopping at N and resuming to M gives the M-iteration run: iterations past N were
    started on paper (their start records), so they sample exactly what they would have."""
    task = make_task(tmp_path, "{iterations: 10, seed: 9, parallel_evaluations: 2, pipeline_window: 3}")
    evolve(task, output_dir=tmp_path / "straight")
    evolve(task, iterations=4, output_dir=tmp_path / "split")
    summary = resume(tmp_path / "split", iterations=10)
    assert summary.iterations == 10
    assert rows(tmp_path / "split") == rows(tmp_path / "straight")


def test_llm_run_is_reproducible_whatever_the_latencies(tmp_path: Path, scripted_llm) -> None:
    """Two runs whose LLM answers arrive in different orders store the same programs."""

    def server_with_jitter(seed: int):
        jitter = random.Random(seed)
        lock = threading.Lock()

        def reply(messages: list[dict]) -> str:
            text = messages[-1]["content"]
            if "EVOLVE-BLOCK" not in text:
                return "ok"
            with lock:
                delay = jitter.random() * 0.15
            time.sleep(delay)  # answers overtake each other
            old = re.search(r"return (-?[0-9.]+)", text).group(1)
            new = round(float(old) + 0.5 + (len(text) % 3), 3)  # depends only on the prompt
            return f"<<<<<<< SEARCH\n    return {old}\n=======\n    return {new}\n>>>>>>> REPLACE\n"

        return scripted_llm(reply)

    results = []
    for seed in (1, 2):
        server = server_with_jitter(seed)
        task = make_task(tmp_path / f"t{seed}", "{iterations: 9, seed: 3, parallel_evaluations: 2}", llm_yaml(server, 3))
        summary = evolve(task, output_dir=tmp_path / f"run{seed}")
        assert summary.mutator.startswith("llm") and summary.iterations == 9
        results.append(rows(tmp_path / f"run{seed}"))
    assert results[0] == results[1] and len(results[0]) >= 5


def test_children_equal_to_one_in_flight_wait_for_its_result(tmp_path: Path, scripted_llm) -> None:
    """Four iterations start from the same parent and all propose the same code: one evaluation,
    three exact cache hits pointing at it (the old loop evaluated all four)."""

    def reply(messages: list[dict]) -> str:
        if "EVOLVE-BLOCK" not in messages[-1]["content"]:
            return "ok"
        time.sleep(0.05)
        return "<<<<<<< SEARCH\n    return 1.0\n=======\n    return 2.0\n>>>>>>> REPLACE\n"

    server = scripted_llm(reply)
    task = make_task(tmp_path, "{iterations: 4, seed: 1, pipeline_window: 4}", llm_yaml(server, 4))
    summary = evolve(task, output_dir=tmp_path / "run")
    assert summary.evaluations == 2  # the initial program and one child
    assert summary.cache_hits_by_kind["exact"] == 3
    stored = rows(tmp_path / "run")
    evaluated = [r for r in stored if r[3] > 0 and r[4] is None]
    hits = [r for r in stored if r[4] == "exact"]
    assert len(evaluated) == 1 and evaluated[0][3] == 1  # the earliest iteration evaluates
    assert len(hits) == 3 and all(r[2] == evaluated[0][2] == 2.0 for r in hits)
