"""CPU cost per LLM call of agentopt's client, by transport, against a local OpenAI-compatible server.

The server runs in its own process, so ``time.process_time`` here counts the client's CPU only:
building the request, HTTP, parsing, cost accounting, the ledger and the call record. Transports:
``fast`` (agentopt.llm.openai_fast, the default for ``api_base`` models), ``litellm``
(``AGENTOPT_LLM_TRANSPORT=litellm``), and the bare openai SDK for reference. Each transport runs
in a fresh interpreter (the litellm import would otherwise distort the others), interleaved over
``--rounds`` rounds; the table shows medians. Also prints the CPU and wall time of the first
call (imports included), which is what start-up pays.

    python benchmarks/bench_llm_client.py --calls 300 --rounds 3
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
PROMPT = "def solve():\n    return 1.0\n" * 40

SERVER = """
import sys, time
sys.path.insert(0, {tests!r})
from llm_server import ScriptedOpenAIServer
s = ScriptedOpenAIServer(["<<<<<<< SEARCH\\n    return 1.0\\n=======\\n    return 2.0\\n>>>>>>> REPLACE"]).start()
print(s.base_url, flush=True)
time.sleep(10**6)
"""

WORKER = """
import asyncio, json, os, sys, time
t0, c0 = time.perf_counter(), time.process_time()
transport, base, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
msgs = [{{"role": "user", "content": {prompt!r}}}]
if transport == "sdk":
    import openai
    client = openai.AsyncOpenAI(base_url=base, api_key="x", max_retries=0)
    async def one():
        await client.chat.completions.create(model="m", messages=msgs)
else:
    os.environ["AGENTOPT_LLM_TRANSPORT"] = "litellm" if transport == "litellm" else ""
    from agentopt.llm.client import LLMClient
    from agentopt.task import LLMSpec, ModelSpec
    client = LLMClient(LLMSpec(models=[ModelSpec(name="openai/mock-model", api_base=base)]))
    client.on_call = lambda record: None
    async def one():
        await client.complete(msgs, seed=1)
async def main():
    await one()
    first = (time.perf_counter() - t0, time.process_time() - c0)
    for _ in range(5):
        await one()
    c1 = time.process_time()
    for _ in range(calls):
        await one()
    return first, (time.process_time() - c1) / calls
first, per = asyncio.run(main())
print(json.dumps({{"first_wall_s": first[0], "first_cpu_s": first[1], "cpu_ms_per_call": 1000 * per}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(tests=str(ROOT / "tests"))], stdout=subprocess.PIPE, text=True
    )
    try:
        base = server.stdout.readline().strip()  # type: ignore[union-attr]
        rows: dict[str, list[dict]] = {"fast": [], "litellm": [], "sdk": []}
        for _ in range(args.rounds):
            for transport in rows:
                out = subprocess.run(
                    [sys.executable, "-c", WORKER.format(prompt=PROMPT), transport, base, str(args.calls)],
                    capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                    check=True,
                )
                rows[transport].append(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        server.kill()
        server.wait()
    load = os.getloadavg()[0]
    print(f"\nLLM client cost, {args.calls} calls x {args.rounds} rounds, medians; load {load:.1f} on {os.cpu_count()} cpus")
    print("| transport | CPU ms per call | first call wall s (imports incl.) | first call CPU s |")
    print("|---|---|---|---|")
    for transport, results in rows.items():
        med = {k: statistics.median(r[k] for r in results) for k in results[0]}
        label = {"fast": "agentopt fast path", "litellm": "agentopt via litellm", "sdk": "openai SDK alone"}[transport]
        print(f"| {label} | {med['cpu_ms_per_call']:.2f} | {med['first_wall_s']:.2f} | {med['first_cpu_s']:.2f} |")


if __name__ == "__main__":
    main()
