"""OpenEvolve 0.4.0 on bench_engine.py's setup (the engine's overhead as the store grows); run by
``bench_engine.py --openevolve auto|PYTHON`` with OpenEvolve's own venv python, never inside this
project.

Same scripted server (~1 ms delay, SEARCH/REPLACE replies), same program, a trivial evaluator
(OpenEvolve runs it in its worker process), one evaluation at a time, no cascade. The store is
pre-populated with ``database.add`` (population_size = the population, so nothing is evicted).
Iteration wall = time between consecutive LLM requests at the server (steady state, worker-pool
start-up excluded). Framework overhead = iteration wall - the LLM call latency of the same client library (the
openai SDK that OpenEvolve uses, measured against the same server) - evaluation time (the
evaluator is a file read, well under 0.1 ms). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from engine_program import PROGRAM, reply  # noqa: E402  (stdlib only, next to this file)
from llm_server import ScriptedOpenAIServer  # noqa: E402  (stdlib only)

EVALUATOR = '''import re

def evaluate(program_path):
    text = open(program_path).read()
    m = re.search(r"return (-?\\d+(?:\\.\\d+)?)\\n# EVOLVE-BLOCK-END", text)
    return {"combined_score": float(m.group(1)) if m else 0.0}
'''


STAMPS: list[float] = []


def stamped_reply(messages: list[dict]) -> str:
    STAMPS.append(time.perf_counter())  # one per LLM request: iteration boundaries, minus pool start-up
    return reply(messages)


def sdk_latency(base_url: str, n: int = 30) -> float:
    """Median latency of the openai SDK against the server (what OpenEvolve's LLM call costs)."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)
    prompt = [{"role": "user", "content": "def solve():\n    return 1.0\n" * 40}]
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.chat.completions.create(model="scripted", messages=prompt)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[3:])


async def main_async(population: int, iterations: int) -> dict:
    from openevolve.config import Config
    from openevolve.controller import OpenEvolve
    from openevolve.database import Program

    logging.disable(logging.CRITICAL)
    work = Path(tempfile.mkdtemp(prefix="bench-oe-"))
    rng = random.Random(7)
    (work / "program.py").write_text(PROGRAM.format(a=1, b=1, c=1, value=1.0))
    (work / "evaluator.py").write_text(EVALUATOR)
    with ScriptedOpenAIServer(stamped_reply, delay_s=0.001) as server:
        config = Config.from_dict(
            {
                "max_iterations": iterations,
                "checkpoint_interval": 10**9,
                "random_seed": 0,
                "log_level": "ERROR",
                "llm": {
                    "models": [{"name": "scripted", "weight": 1.0}],
                    "api_base": server.base_url,
                    "api_key": "x",
                    "timeout": 30,
                    "retries": 0,
                },
                "database": {"population_size": population + 100, "num_islands": 1, "archive_size": 100},
                "evaluator": {"cascade_evaluation": False, "parallel_evaluations": 1, "timeout": 30},
            }
        )
        oe = OpenEvolve(str(work / "program.py"), str(work / "evaluator.py"), config, output_dir=str(work / "out"))
        t0 = time.perf_counter()
        for i in range(population):
            code = PROGRAM.format(
                a=round(rng.uniform(0, 5), 4), b=round(rng.uniform(0, 5), 4), c=round(rng.uniform(0, 5), 4),
                value=round(rng.uniform(0, 1000), 4),
            ) + f"# variant {i}\n"
            score = float(re.search(r"return (-?\d+(?:\.\d+)?)\n# EVOLVE", code).group(1))
            oe.database.add(Program(id=f"p{i}", code=code, metrics={"combined_score": score}, iteration_found=i),
                            iteration=i)
        populate_s = time.perf_counter() - t0
        oe.database.last_iteration = population
        llm_s = sdk_latency(server.base_url)
        STAMPS.clear()
        await oe.run(iterations=iterations)
        done = len(STAMPS)
    # Steady state: time between the 3rd and the last request (worker start-up excluded).
    per = (STAMPS[-1] - STAMPS[2]) / max(1, done - 3)
    return {
        "system": "openevolve 0.4.0",
        "sandbox": "in-worker",
        "population": population,
        "populate_s": populate_s,
        "iterations": done,
        "wall_ms": 1000 * per,
        "llm_ms": 1000 * llm_s,
        "eval_ms": 0.0,
        "overhead_ms": 1000 * (per - llm_s),
        "overhead_p90_ms": float("nan"),  # only the mean per iteration is observable from outside
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--population", type=int, default=1000)
    parser.add_argument("--iterations", type=int, default=30)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args.population, args.iterations))), flush=True)


if __name__ == "__main__":
    main()
