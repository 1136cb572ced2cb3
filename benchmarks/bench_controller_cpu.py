"""The controller process's own CPU per iteration on the vendored OpenEvolve benchmark task
(real sandbox, the vendored mock LLM in its own process), next to the machine's busy CPU.

Why a separate number: on a 2-core box the end-to-end race (bench_vs_openevolve.py) is
CPU-bound, so what the controller burns per iteration (``getrusage(RUSAGE_SELF)`` of the
``agentopt evolve`` process: its threads, not the sandbox guests or the mock) is what its own
changes can win. Start-up is included (the same for every build at a given N). The machine's
busy CPU (/proc/stat) also counts anything else running, so read it on a quiet machine only.

Compares checkouts (each with its own ``.venv``), interleaved over ``--rounds``; medians.

    python benchmarks/bench_controller_cpu.py --checkout /work/main --checkout . --n 300 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_vs_openevolve as vs  # noqa: E402

# Runs `agentopt evolve` in-process and prints its CPU seconds (the CLI's own entry point).
CONTROLLER = """
import resource, sys
sys.argv = ["agentopt", "evolve", sys.argv[1], "-n", sys.argv[2], "-o", sys.argv[3], "-q"]
from agentopt.cli import main
try:
    main()
except SystemExit:
    pass
finally:
    r = resource.getrusage(resource.RUSAGE_SELF)
    print("CPU", r.ru_utime + r.ru_stime, file=sys.stderr)
"""


def _busy_ticks() -> int:
    values = list(map(int, Path("/proc/stat").read_text().splitlines()[0].split()[1:]))
    return sum(values) - values[3] - values[4]  # all but idle and iowait


def run_once(checkout: Path, n: int, workers: int) -> tuple[float, float, float]:
    """(controller CPU ms/iter, machine busy CPU ms/iter, wall s) of one run."""
    run = Path(tempfile.mkdtemp(prefix="bench-ctrl-cpu-"))
    mock = vs.Mock(run, 1.0, nagle=True)
    try:
        (run / "task.yaml").write_text(
            vs.AGENTOPT_TASK.format(task=vs.TASK, base=mock.base_url, conc=workers, n=n, workers=workers)
        )
        busy, started = _busy_ticks(), time.perf_counter()
        out = subprocess.run(
            [str(checkout / ".venv" / "bin" / "python"), "-c", CONTROLLER, str(run / "task.yaml"), str(n),
             str(run / "output")],
            capture_output=True, text=True, timeout=900, cwd=run,  # not a checkout: `-c` imports from the cwd
        )
        busy, wall = _busy_ticks() - busy, time.perf_counter() - started
    finally:
        mock.stop()
    cpu = [line for line in out.stderr.splitlines() if line.startswith("CPU ")]
    summary = run / "output" / "summary.json"
    if out.returncode != 0 or not cpu or json.loads(summary.read_text())["iterations"] != n:
        raise RuntimeError(f"{checkout}: run failed: {out.stderr[-800:]}")
    hz = os.sysconf("SC_CLK_TCK")
    return 1000 * float(cpu[-1].split()[1]) / n, 1000 * busy / hz / n, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", action="append", type=Path, help="a checkout with a .venv (repeatable)")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    checkouts = args.checkout or [vs.ROOT]
    results: dict[Path, list[tuple[float, float, float]]] = {c: [] for c in checkouts}
    loads = []
    for _ in range(args.rounds):
        for checkout in checkouts:
            loads.append(os.getloadavg()[0])
            results[checkout].append(run_once(checkout, args.n, args.workers))
    print(f"\nN={args.n}, {args.workers} workers, median of {args.rounds} (interleaved); "
          f"load {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cpus")
    print("| checkout | controller CPU ms/iter (each run) | machine busy CPU ms/iter | wall s |")
    print("|---|---|---|---|")
    for checkout, runs in results.items():
        ctrl = [r[0] for r in runs]
        print(f"| {checkout} | {statistics.median(ctrl):.2f} ({', '.join(f'{c:.1f}' for c in ctrl)}) | "
              f"{statistics.median(r[1] for r in runs):.2f} | {statistics.median(r[2] for r in runs):.2f} |")


if __name__ == "__main__":
    main()
