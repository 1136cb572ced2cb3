"""What one warm local job costs the machine: the controller's CPU (all its threads, and its main
thread alone, which every iteration also needs), the guest's CPU (zygote + jobs) and the zygote's
copy-on-write faults, per job, for one or more checkouts, interleaved.

Why these and not latency: with 4 workers on 2 cores an evolution run is CPU-bound, so the
side-by-side ratio against OpenEvolve follows CPU per job; and the main thread is the one the
controller's own work (prompts, SQLite, LLM client) shares. Fault counts do not depend on load.

    python benchmarks/bench_warm_host.py --root /path/to/old/checkout --root . --n 300 --conc 4 --rounds 3

Each measurement runs in a child process started from ``/`` with the checkout first on
``sys.path`` (a child started inside a checkout would import that checkout's agentopt instead).
The task is the side-by-side benchmark's trivial one (``vs_openevolve/task``). Needs root and
everything the warm local sandbox needs (it says what is missing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TASK = HERE / "vs_openevolve" / "task"

CHILD = r"""
import asyncio, json, os, resource, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from agentopt.sandbox.base import SandboxJob
from agentopt.sandbox.warm_local import WarmLocalSandbox, warm_unavailable

def cpu(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime

def proc_stat(pid):
    return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()

# After agentopt (from the checkout above): bench_sandbox puts this checkout on sys.path, which no
# longer changes which agentopt is loaded.
sys.path.insert(0, sys.argv[5])
from bench_sandbox import _tree_cpu_s  # live descendants incl. what they reaped (the zygote its jobs)

async def main(task, n, conc):
    reason = warm_unavailable()
    if reason:
        print(json.dumps({"error": reason}))
        return
    sb = WarmLocalSandbox()
    job = SandboxJob(evaluator_path=Path(task) / "evaluator.py", program_path=Path(task) / "initial_program.py",
                     timeout_s=30)
    try:
        for _ in range(5):
            assert (await sb.run(job)).ok
        sb._cgroups.drain()
        worker = next(iter(sb._workers.values()))
        zygote = int(open(f"/proc/{worker.proc.pid}/task/{worker.proc.pid}/children").read().split()[0])
        flt0 = int(proc_stat(zygote)[7])
        host0, main0, guest0 = cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_THREAD), _tree_cpu_s(os.getpid(), include_root=False)
        sem = asyncio.Semaphore(conc)

        async def one():
            async with sem:
                r = await sb.run(job)
                assert r.ok, r

        await asyncio.gather(*(one() for _ in range(n)))
        sb._cgroups.drain()
        host1, main1, guest1 = cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_THREAD), _tree_cpu_s(os.getpid(), include_root=False)
        flt1 = int(proc_stat(zygote)[7])
        print(json.dumps({"host_ms": 1e3 * (host1 - host0) / n, "main_ms": 1e3 * (main1 - main0) / n,
                          "guest_ms": 1e3 * (guest1 - guest0) / n, "zygote_faults": (flt1 - flt0) / n,
                          "cold_fallbacks": sb.cold_fallbacks}))
    finally:
        await sb.close()

asyncio.run(main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
"""


def measure(python: str, root: Path, n: int, conc: int) -> dict:
    out = subprocess.run([python, "-c", CHILD, str(root), str(TASK), str(n), str(conc), str(HERE)], cwd="/",
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", action="append", type=Path, help="checkout to measure (repeatable; default: this one)")
    parser.add_argument("--python", default=sys.executable, help="interpreter with agentopt's dependencies")
    parser.add_argument("--n", type=int, default=300, help="timed jobs per measurement")
    parser.add_argument("--conc", type=int, default=4, help="jobs in flight at once")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    roots = [r.resolve() for r in (args.root or [HERE.parent])]
    rows: dict[Path, list[dict]] = {r: [] for r in roots}
    loads = []
    for _ in range(args.rounds):
        for root in roots:
            loads.append(os.getloadavg()[0])
            rows[root].append(measure(args.python, root, args.n, args.conc))
    print(f"\nwarm local jobs, {args.n} per measurement, {args.conc} in flight, median of {args.rounds} interleaved "
          f"rounds; load (1-min avg) {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cpus")
    print("| checkout | host CPU ms/job (all threads) | main thread ms/job | guest CPU ms/job | zygote faults/job |")
    print("|---|---|---|---|---|")
    for root, results in rows.items():
        errors = [r["error"] for r in results if "error" in r]
        ok = [r for r in results if "error" not in r]
        if not ok:
            print(f"| {root} | {errors[0] if errors else 'no result'} | | | |")
            continue

        def med(key: str, results: list[dict] = ok) -> float:
            return statistics.median(r[key] for r in results)

        print(f"| {root} | {med('host_ms'):.2f} | {med('main_ms'):.2f} | {med('guest_ms'):.2f} | "
              f"{med('zygote_faults'):.0f} |")
    print("guest = the zygote and the jobs it reaped (clock-tick resolution); faults = the zygote's own minor "
          "faults (copy-on-write after each fork), independent of load")


if __name__ == "__main__":
    main()
