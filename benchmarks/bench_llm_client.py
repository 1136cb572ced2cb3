"""Cost per LLM call of agentopt's client, by transport: CPU and wall (round trip) per call.

The server runs in its own process, so ``time.process_time`` here counts the client's CPU only:
building the request, HTTP, parsing, cost accounting, the ledger and the call record. Transports:
``fast`` (agentopt.llm.openai_fast, the default for ``api_base`` models), ``fast, no ACK push``
(the same with its TCP_QUICKACK push switched off: the transport as it was before), ``litellm``
(``AGENTOPT_LLM_TRANSPORT=litellm``), and the bare openai SDK for reference. Each transport runs
in a fresh interpreter (the litellm import would otherwise distort the others), interleaved over
``--rounds`` rounds; the table shows medians. Also prints the CPU and wall time of the first
call (imports included), which is what start-up pays.

Servers (``--server``): ``split`` (default) answers like Python's ``http.server`` with Nagle on,
headers and body in two segments, as the mock LLM of ../shared/bench-evolve and many naive
servers do; ``scripted`` sends them without Nagle; ``harness`` runs ``mock_llm.py`` from
``--harness DIR`` (default ../shared/bench-evolve) itself.

    python benchmarks/bench_llm_client.py --calls 300 --rounds 3
    python benchmarks/bench_llm_client.py --server harness --transports fast fast-noack sdk
"""

from __future__ import annotations

import argparse
import json
import os
import socket
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
reply = "<<<<<<< SEARCH\\n    return 1.0\\n=======\\n    return 2.0\\n>>>>>>> REPLACE"
s = ScriptedOpenAIServer([reply], nagle={nagle!r}).start()
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
    if transport == "fast-noack":
        import agentopt.llm.openai_fast
        agentopt.llm.openai_fast._TCP_QUICKACK = None  # the transport as it was before the ACK push
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
    walls = []
    c1 = time.process_time()
    for _ in range(calls):
        w0 = time.perf_counter()
        await one()
        walls.append(time.perf_counter() - w0)
    walls.sort()
    return first, (time.process_time() - c1) / calls, walls[len(walls) // 2]
first, per, wall = asyncio.run(main())
print(json.dumps({{"first_wall_s": first[0], "first_cpu_s": first[1], "cpu_ms_per_call": 1000 * per,
                  "wall_ms_per_call": 1000 * wall}}))
"""

LABELS = {"fast": "agentopt fast path", "fast-noack": "agentopt fast path, no ACK push (before)",
          "litellm": "agentopt via litellm", "sdk": "openai SDK alone"}


def _start_server(kind: str, harness: str | None) -> tuple[subprocess.Popen, str]:
    """A server process and its base URL."""
    if kind == "harness":
        tried = [Path(harness)] if harness else [ROOT.parent / "shared" / "bench-evolve", ROOT.parents[1] / "shared" / "bench-evolve"]
        found = [d / "mock_llm.py" for d in tried if (d / "mock_llm.py").is_file()]
        if not found:
            sys.exit(f"mock_llm.py not found in {', '.join(map(str, tried))}; pass --harness DIR")
        mock = found[0]
        port = _free_port()
        proc = subprocess.Popen([sys.executable, str(mock), "--port", str(port)], stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # type: ignore[union-attr]  # "listening on ..."
        return proc, f"http://127.0.0.1:{port}/v1"
    code = SERVER.format(tests=str(ROOT / "tests"), nagle=kind == "split")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()  # type: ignore[union-attr]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server", choices=("split", "scripted", "harness"), default="split")
    parser.add_argument("--harness", help="bench-evolve folder for --server harness")
    parser.add_argument("--transports", nargs="+", choices=tuple(LABELS), default=list(LABELS))
    args = parser.parse_args()
    server, base = _start_server(args.server, args.harness)
    try:
        rows: dict[str, list[dict]] = {t: [] for t in args.transports}
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
    print(f"\nLLM client cost, server {args.server!r}, {args.calls} calls x {args.rounds} rounds, medians; "
          f"load {load:.1f} on {os.cpu_count()} cpus")
    print("| transport | wall ms per call (median) | CPU ms per call | first call wall s (imports incl.) | first call CPU s |")
    print("|---|---|---|---|---|")
    for transport, results in rows.items():
        med = {k: statistics.median(r[k] for r in results) for k in results[0]}
        print(f"| {LABELS[transport]} | {med['wall_ms_per_call']:.2f} | {med['cpu_ms_per_call']:.2f} | "
              f"{med['first_wall_s']:.2f} | {med['first_cpu_s']:.2f} |")


if __name__ == "__main__":
    main()
