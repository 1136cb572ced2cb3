"""The evolution loop's own cost per iteration (controller + store + prompts + LLM client),
with evaluation taken out: an in-process null sandbox (bench_engine.NullSandbox) scores each
candidate at once, and the scripted OpenAI-compatible server runs in its own process, so the
CPU time counted is agentopt's alone.

Compares builds: ``--python`` names the interpreter of each checkout's venv (default: this
one); each run is a fresh interpreter, interleaved over ``--rounds``; medians are printed.

    python benchmarks/bench_loop_cpu.py --python /tmp/base/.venv/bin/python --python .venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SERVER = """
import sys, time
sys.path.insert(0, {tests!r})
from llm_server import ScriptedOpenAIServer
sys.path.insert(0, {bench!r})
from bench_engine import reply
s = ScriptedOpenAIServer(reply, delay_s=0.001).start()
print(s.base_url, flush=True)
time.sleep(10**6)
"""

WORKER = r"""
import asyncio, json, os, resource, sys, tempfile, time
from pathlib import Path
root = Path(sys.argv[1]); base, n, workers, conc = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
sys.path.insert(0, str(root / "benchmarks")); sys.path.insert(0, str(root / "tests"))
t0, c0 = time.perf_counter(), time.process_time()
from bench_engine import EVALUATOR, PROGRAM, NullSandbox
from agentopt.evolve.api import _make_proposer
from agentopt.evolve.controller import EvolutionController, NullReporter
from agentopt.task import TaskSpec
work = Path(tempfile.mkdtemp(prefix="bench-loop-"))
(work / "program.py").write_text(PROGRAM.format(a=1, b=1, c=1, value=1.0))
(work / "evaluator.py").write_text(EVALUATOR)
spec = TaskSpec.model_validate({
    "program": str(work / "program.py"), "evaluator": str(work / "evaluator.py"),
    "llm": {"models": [{"name": "openai/scripted", "api_base": base}], "concurrency": conc},
    "search": {"seed": 0, "parallel_evaluations": workers, "iterations": n}, "sandbox": {"timeout_s": 30}})
async def main():
    proposer = await _make_proposer(spec, work / "run", NullReporter())
    assert hasattr(proposer, "client"), "LLM path expected"
    controller = EvolutionController(spec, work / "run", sandbox=NullSandbox(), mutator=proposer)
    ready = (time.perf_counter() - t0, time.process_time() - c0)
    c1, w1 = time.process_time(), time.perf_counter()
    summary = await controller.run()
    await proposer.client.aclose()
    return ready, (time.process_time() - c1) / n, (time.perf_counter() - w1) / n, summary.iterations
ready, cpu, wall, iters = asyncio.run(main())
print(json.dumps({"ready_wall_s": ready[0], "ready_cpu_s": ready[1], "cpu_ms_per_iter": 1000 * cpu,
                  "wall_ms_per_iter": 1000 * wall, "iterations": iters, "litellm": "litellm" in sys.modules}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", action="append", help="a checkout's venv python (repeatable)")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pythons = args.python or [sys.executable]
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(tests=str(ROOT / "tests"), bench=str(ROOT / "benchmarks"))],
        stdout=subprocess.PIPE, text=True,
    )
    results: dict[tuple[str, int], list[dict]] = {}
    loads = []
    try:
        base = server.stdout.readline().strip()  # type: ignore[union-attr]
        for _ in range(args.rounds):
            for workers in args.workers:
                for py in pythons:
                    checkout = Path(py).absolute().parents[2] if Path(py).parent.name == "bin" else ROOT
                    loads.append(os.getloadavg()[0])
                    out = subprocess.run(
                        [py, "-c", WORKER, str(checkout), base, str(args.n), str(workers), str(workers)],
                        capture_output=True, text=True, cwd=checkout, timeout=900,
                    )
                    if out.returncode != 0:
                        print(f"! {py}: {out.stderr[-800:]}", file=sys.stderr)
                        continue
                    results.setdefault((py, workers), []).append(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        server.kill()
        server.wait()
    print(f"\nloop cost with a null sandbox, N={args.n}, LLM ~1 ms, concurrency = workers, median of "
          f"{args.rounds}; load {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cpus")
    print("| build | workers | CPU ms/iter | wall ms/iter | start-up wall s / CPU s | litellm imported |")
    print("|---|---|---|---|---|---|")
    for (py, workers), runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in ("cpu_ms_per_iter", "wall_ms_per_iter", "ready_wall_s", "ready_cpu_s")}
        print(f"| {py} | {workers} | {med['cpu_ms_per_iter']:.2f} | {med['wall_ms_per_iter']:.2f} | "
              f"{med['ready_wall_s']:.2f} / {med['ready_cpu_s']:.2f} | {runs[0]['litellm']} |")


if __name__ == "__main__":
    main()
