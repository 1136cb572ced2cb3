"""Framework overhead of the evolution engine per iteration, as the store grows.

Run: ``python benchmarks/bench_engine.py`` (about 2-3 minutes; ``--sizes 1000`` for a quick
look; ``--openevolve auto`` adds OpenEvolve 0.4.0 on the same setup, installed on first use into
its own venv as ``bench_vs_openevolve.py`` does; or ``--openevolve PYTHON`` names an existing venv's
python). The OpenEvolve side runs ``vs_openevolve/engine_openevolve.py`` in that venv.

Setup: a real local OpenAI-compatible server (tests/llm_server.py, ~1 ms reply delay) answering
every prompt with a SEARCH/REPLACE diff, the real LLM client (its fast OpenAI-compatible path), the real controller,
store and prompt builder. To isolate the framework, evaluation runs in an in-process *null
sandbox* (a Sandbox subclass defined here only) that scores the candidate text at once. The
store is pre-populated to 1k / 10k / 100k programs with direct ``db.add`` calls (realistic
~1 KB programs), then ``--iterations`` LLM iterations run with one call in flight.

Per iteration: wall time (between consecutive progress updates), the LLM call latency the
client measured (HTTP + client + the server's delay), and the evaluation time (sandbox
``run``). **Framework overhead = wall - LLM latency - evaluation time**: sampling, prompt
building, diff application, hashing, store writes, bookkeeping. A second row per size uses
the real local sandbox (process + namespaces), whose evaluation time is reported alongside.
Memory: database bytes and process RSS growth per stored program.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from llm_server import ScriptedOpenAIServer  # noqa: E402
from vs_openevolve.engine_program import PROGRAM, reply  # noqa: E402

from agentopt.evolve.api import _make_proposer  # noqa: E402
from agentopt.evolve.controller import STATE_NEXT_ITERATION, EvolutionController, NullReporter  # noqa: E402
from agentopt.evolve.db import Program, ProgramDB, make_program_id  # noqa: E402
from agentopt.evolve.hashing import code_complexity, exact_hash, normalized_code_hash  # noqa: E402
from agentopt.sandbox.base import JobResult, Sandbox, SandboxJob  # noqa: E402
from agentopt.task import TaskSpec  # noqa: E402

EVALUATOR = '''from agentopt_guest import call_candidate

def evaluate(program_path):
    return {"score": float(call_candidate(program_path, "solve", timeout=10))}
'''
_VALUE = re.compile(r"return (-?\d+(?:\.\d+)?)\n# EVOLVE-BLOCK-END")


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class NullSandbox(Sandbox):
    """In-process stand-in for a backend: the score is the constant solve() returns."""

    name = "null"

    def __init__(self) -> None:
        self.time_s = 0.0

    async def run(self, job: SandboxJob) -> JobResult:
        t0 = time.perf_counter()
        path = Path(job.program_path)
        match = _VALUE.search(path.read_text())
        value = {"score": float(match.group(1))} if match else {"error": "no value"}
        self.time_s += time.perf_counter() - t0
        return JobResult(ok=True, value=value)


class TimedSandbox(Sandbox):
    """The real local sandbox, timed, so its share can be taken out of the iteration."""

    name = "local-timed"

    def __init__(self) -> None:
        from agentopt.sandbox.local import LocalSandbox

        self.inner = LocalSandbox()
        self.time_s = 0.0

    async def run(self, job: SandboxJob) -> JobResult:
        t0 = time.perf_counter()
        try:
            return await self.inner.run(job)
        finally:
            self.time_s += time.perf_counter() - t0

    def available_isolation(self) -> list[str]:
        return self.inner.available_isolation()

    async def close(self) -> None:
        await self.inner.close()


class Clock(NullReporter):
    """Timestamps of every finished iteration (the controller reports each in order)."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def update(self, **_: Any) -> None:
        self.stamps.append(time.perf_counter())


def make_code(rng: random.Random, i: int) -> str:
    return PROGRAM.format(
        a=round(rng.uniform(0, 5), 4), b=round(rng.uniform(0, 5), 4), c=round(rng.uniform(0, 5), 4),
        value=round(rng.uniform(0, 1000), 4),
    ) + f"# variant {i}\n"


def populate(spec: TaskSpec, db_path: Path, n: int) -> dict[str, float]:
    """Add ``n`` synthetic programs straight to the store (what n iterations would leave)."""
    rng = random.Random(7)
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    db = ProgramDB.open(db_path, objective=spec.objective, search=spec.search)
    for i in range(n):
        code = make_code(rng, i)
        h = exact_hash(code)
        db.add(
            Program(
                id=make_program_id(spec.search.seed, i, h), code=code, iteration=i, generation=i and 1,
                parent_id=None, island=i % spec.search.num_islands, score=float(_VALUE.search(code).group(1)),
                code_hash=h, norm_hash=normalized_code_hash(code), complexity=code_complexity(code),
                mutation={"kind": "synthetic"}, created_at=time.time(),
            )
        )
    db.set_state(STATE_NEXT_ITERATION, n)
    db.close()
    return {
        "populate_s": time.perf_counter() - t0,
        "db_bytes_per_program": db_path.stat().st_size / n,
        "rss_bytes_per_program": max(0, rss_bytes() - rss0) / n,
    }


async def run_engine(spec: TaskSpec, run_dir: Path, sandbox: Any, iterations: int, start: int) -> dict[str, float]:
    clock = Clock()
    proposer = await _make_proposer(spec, run_dir, clock)
    if not hasattr(proposer, "client"):
        raise SystemExit("the scripted LLM server was not reachable; the benchmark needs the LLM path")
    t_open = time.perf_counter()
    controller = EvolutionController(
        spec, run_dir, sandbox=sandbox, proposer=proposer, reporter=clock, iterations=start + iterations - 1
    )
    open_s = time.perf_counter() - t_open
    t0 = time.perf_counter()
    clock.stamps.append(t0)
    summary = await controller.run()
    await proposer.client.aclose()
    await sandbox.close()
    # LLM latency as the client measured it, per call, in iteration order (one call each).
    db = ProgramDB.open(run_dir / "programs.db", objective=spec.objective, search=spec.search)
    calls = [c for c in db.llm_calls() if not c.get("error")]
    db.close()
    llm = [float(c.get("latency_s", 0.0)) for c in calls][-iterations:]
    walls = [b - a for a, b in zip(clock.stamps, clock.stamps[1:], strict=False)]
    n = min(len(walls), len(llm))
    eval_per = sandbox.time_s / max(1, summary.evaluations)
    overhead = [w - l_ - eval_per for w, l_ in zip(walls[-n:], llm[-n:], strict=True)][2:]  # skip warm-up
    return {
        "iterations": summary.iterations - start + 1,
        "wall_ms": 1000 * statistics.median(walls),
        "llm_ms": 1000 * statistics.median(llm),
        "eval_ms": 1000 * eval_per,
        "overhead_ms": 1000 * statistics.median(overhead),
        "overhead_p90_ms": 1000 * sorted(overhead)[int(0.9 * (len(overhead) - 1))],
        "reopen_s": open_s,
    }


def make_spec(work: Path, server: ScriptedOpenAIServer, population: int) -> TaskSpec:
    (work / "program.py").write_text(PROGRAM.format(a=1, b=1, c=1, value=1.0))
    (work / "evaluator.py").write_text(EVALUATOR)
    return TaskSpec.model_validate(
        {
            "program": str(work / "program.py"),
            "evaluator": str(work / "evaluator.py"),
            "llm": {"models": [{"name": "openai/scripted", "api_base": server.base_url}], "concurrency": 1},
            # Uncapped population: every stored program stays in the selection indexes (as in the
            # OpenEvolve rows, whose population_size is set likewise), the worst case for them.
            "search": {"seed": 0, "parallel_evaluations": 1, "population_size": population},
            "sandbox": {"timeout_s": 30},
        }
    )


def bench_agentopt(sizes: list[int], iterations: int, local_iterations: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with ScriptedOpenAIServer(reply, delay_s=0.001) as server:
        for size in sizes:
            work = Path(tempfile.mkdtemp(prefix=f"bench-engine-{size}-"))
            try:
                spec = make_spec(work, server, size + 1000)
                mem = populate(spec, work / "base" / "programs.db", size)  # once; copied per backend
                for backend in ("null", "local"):
                    n = iterations if backend == "null" else local_iterations
                    if n <= 0:
                        continue
                    run_dir = work / f"run-{backend}"
                    shutil.copytree(work / "base", run_dir)
                    sandbox = NullSandbox() if backend == "null" else TimedSandbox()
                    result = asyncio.run(run_engine(spec, run_dir, sandbox, n, size))
                    rows.append({"system": "agentopt", "sandbox": backend, "population": size, **mem, **result})
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    return rows


def bench_openevolve(python: str, sizes: list[int], iterations: int) -> list[dict[str, Any]]:
    # OpenEvolve's per-iteration cost grows with the population (seconds at 10k), so the
    # iteration count shrinks with size to keep the whole benchmark under 5 minutes.
    """Run vs_openevolve/engine_openevolve.py in OpenEvolve's own venv (never in this project)."""
    script = Path(__file__).parent / "vs_openevolve" / "engine_openevolve.py"
    rows = []
    for size in sizes:
        proc = subprocess.run(
            [python, str(script), "--population", str(size),
             "--iterations", str(iterations if size <= 1000 else max(8, iterations * 1000 // size * 3))],
            capture_output=True, text=True, timeout=240, cwd=ROOT,
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            rows.append({"system": "openevolve 0.4.0", "population": size,
                         "error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]})
        else:
            rows.append(json.loads(lines[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = ("system", "sandbox", "population", "iters", "wall ms/it", "LLM ms", "eval ms", "overhead ms (p50/p90)",
            "reopen s", "DB B/prog", "RSS B/prog")
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['system']} | — | {r['population']} | failed: {r['error']} |")
            continue
        out.append(
            f"| {r['system']} | {r.get('sandbox', '—')} | {r['population']} | {r['iterations']} | {r['wall_ms']:.2f} | "
            f"{r['llm_ms']:.2f} | {r['eval_ms']:.2f} | {r['overhead_ms']:.2f} / {r['overhead_p90_ms']:.2f} | "
            f"{r.get('reopen_s', float('nan')):.2f} | {r.get('db_bytes_per_program', float('nan')):.0f} | "
            f"{r.get('rss_bytes_per_program', float('nan')):.0f} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--local-iterations", type=int, default=20, help="iterations with the real local sandbox")
    parser.add_argument("--openevolve", default=None,
                        help="'auto' (make /tmp/bench_venvs/openevolve on first use) or a venv python with openevolve==0.4.0")
    parser.add_argument("--openevolve-sizes", default="1000,10000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    t0 = time.monotonic()
    rows = bench_agentopt(sizes, args.iterations, args.local_iterations)
    if args.openevolve == "auto":
        from bench_vs_openevolve import (  # deferred: only with --openevolve auto
            DEFAULT_OE_VENV,
            OE_VERSION,
            ensure_openevolve,
        )

        args.openevolve = str(ensure_openevolve(DEFAULT_OE_VENV, OE_VERSION))
    if args.openevolve:
        rows += bench_openevolve(args.openevolve, [int(s) for s in args.openevolve_sizes.split(",") if s], 30)
    print(table(rows))
    print(f"\n(total {time.monotonic() - t0:.0f} s on {os.cpu_count()} CPUs; framework overhead = "
          "iteration wall - LLM latency - evaluation time)")


if __name__ == "__main__":
    main()
