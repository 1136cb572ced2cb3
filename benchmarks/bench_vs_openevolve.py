"""End to end, side by side: agentopt evolve vs OpenEvolve 0.4.0 on the same task and mock LLM.

Uses the project's shared harness (``../shared/bench-evolve``, see its README: the trivial task,
the OpenAI-compatible mock LLM, ``run_agentopt.sh`` / ``run_openevolve.sh``; the latter installs
OpenEvolve into its own venv, ``/tmp/bench_venvs/openevolve``, on first use). Runs are
interleaved (agentopt, OpenEvolve, agentopt, ...) because shared machines drift; the table shows
medians and the OpenEvolve/agentopt ratio (> 1: agentopt is faster). ``--ao`` may be given twice
(e.g. a baseline checkout's agentopt and this one) to compare builds in the same interleaving.

    python benchmarks/bench_vs_openevolve.py --n 200 --workers 1 4 --rounds 3
    python benchmarks/bench_vs_openevolve.py --inflight --n 200 --workers 4 --conc 32 --latency-ms 500

``--inflight`` measures LLM calls in flight (the harness's ``mock_inflight.py``): with a slow LLM
and ``llm.concurrency`` 32, a loop that never waits in lock-step keeps ~32 calls out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _harness(path: str | None) -> Path:
    candidates = [Path(path)] if path else [ROOT.parent / "shared" / "bench-evolve", ROOT.parents[1] / "shared" / "bench-evolve"]
    for c in candidates:
        if (c / "run_agentopt.sh").is_file():
            return c
    sys.exit(f"bench-evolve harness not found (tried {', '.join(map(str, candidates))}); pass --harness DIR")


def _run(cmd: list[str], env: dict[str, str], runs_dir: Path, timeout: float) -> dict | None:
    before = set(runs_dir.iterdir()) if runs_dir.exists() else set()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    new = sorted(set(runs_dir.iterdir()) - before) if runs_dir.exists() else []
    for run in new:
        result = run / "result.json"
        if result.is_file():
            data = json.loads(result.read_text())
            if data.get("rc", proc.returncode) != 0:
                print(f"  ! {cmd[0]} rc={data.get('rc')} (see {run}/stdout.log)", file=sys.stderr)
            return data
    print(f"  ! {' '.join(cmd)} produced no result (rc={proc.returncode}): {proc.stderr[-500:]}", file=sys.stderr)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--harness", help="the bench-evolve folder (default: ../shared/bench-evolve)")
    parser.add_argument("--ao", action="append", help="agentopt binary (repeatable; default: this checkout's venv)")
    parser.add_argument("--n", type=int, default=200, help="iterations per run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--conc", type=int, default=None, help="LLM concurrency (default: = workers)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-ms", type=int, default=1)
    parser.add_argument("--inflight", action="store_true", help="count LLM calls in flight (mock_inflight.py)")
    parser.add_argument("--no-openevolve", action="store_true")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    harness = _harness(args.harness)
    ao_bins = args.ao or [str(Path(sys.executable).parent / "agentopt")]
    runs_dir = Path(tempfile.mkdtemp(prefix="bench-vs-oe-"))
    env = {**os.environ, "RUNS_DIR": str(runs_dir), "MOCK_LATENCY_MS": str(args.latency_ms), "AO_INSP": "0"}
    if args.inflight:
        env["MOCK_SCRIPT"] = "mock_inflight.py"
    results: dict[tuple[str, int], list[dict]] = {}
    tools = [(f"agentopt[{i}]" if len(ao_bins) > 1 else "agentopt", b) for i, b in enumerate(ao_bins)]
    if not args.no_openevolve:
        tools.append(("openevolve", ""))
    for rnd in range(args.rounds):
        for workers in args.workers:
            conc = args.conc or workers
            for name, binary in tools:
                if name == "openevolve":
                    cmd = [str(harness / "run_openevolve.sh"), str(args.n), str(workers)]
                    run_env = env
                else:
                    cmd = [str(harness / "run_agentopt.sh"), str(args.n), str(workers), str(conc)]
                    run_env = {**env, "AO": binary}
                if args.inflight:  # the in-flight mock writes its counters to INFLIGHT_FILE at exit
                    tag = Path(tempfile.mkdtemp(prefix="inflight-", dir=runs_dir))
                    run_env = {**run_env, "INFLIGHT_FILE": str(tag / "inflight.json")}
                load = os.getloadavg()[0]
                data = _run(cmd, run_env, runs_dir, args.timeout)
                if data is None:
                    continue
                if args.inflight:
                    f = tag / "inflight.json"
                    data["inflight"] = json.loads(f.read_text()) if f.is_file() else None
                    shutil.rmtree(tag, ignore_errors=True)
                data["load"] = load
                results.setdefault((name, workers), []).append(data)
                print(f"round {rnd + 1} {name:>12} w={workers}: wall/iter {data.get('wall_per_iter_ms')} ms, "
                      f"loop/iter {data.get('loop_per_iter_ms')} ms, load {load:.1f}"
                      + (f", in flight {data['inflight']}" if args.inflight else ""), flush=True)
    print(f"\nN={args.n}, LLM latency {args.latency_ms} ms, median of {args.rounds} interleaved rounds, "
          f"load (1-min avg at run start) {min(d['load'] for v in results.values() for d in v):.1f}-"
          f"{max(d['load'] for v in results.values() for d in v):.1f} on {os.cpu_count()} cpus")
    header = "| tool | workers | wall ms/iter (incl. start-up) | loop ms/iter | best score |"
    if args.inflight:
        header += " LLM in flight mean / peak |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    med: dict[tuple[str, int], dict[str, float]] = {}
    for (name, workers), runs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        m = {k: statistics.median(float(r[k]) for r in runs if r.get(k) is not None)
             for k in ("wall_per_iter_ms", "loop_per_iter_ms", "best_score") if any(r.get(k) is not None for r in runs)}
        med[(name, workers)] = m
        row = f"| {name} | {workers} | {m.get('wall_per_iter_ms', float('nan')):.1f} | {m.get('loop_per_iter_ms', float('nan')):.1f} | {m.get('best_score', float('nan')):.4g} |"
        if args.inflight:
            inf = [r["inflight"] for r in runs if r.get("inflight")]
            mean = statistics.median(i["mean_in_flight"] for i in inf if i.get("mean_in_flight") is not None) if inf else float("nan")
            peak = max(i["max_in_flight"] for i in inf) if inf else 0
            row += f" {mean:.1f} / {peak} |"
        print(row)
    if not args.no_openevolve:
        print("\n| workers | build | OpenEvolve / agentopt, wall (incl. start-up) | loop |")
        print("|---|---|---|---|")
        for workers in args.workers:
            oe = med.get(("openevolve", workers))
            for name, _ in tools:
                ao = med.get((name, workers))
                if name == "openevolve" or not oe or not ao:
                    continue
                wall = oe["wall_per_iter_ms"] / ao["wall_per_iter_ms"]
                loop = oe.get("loop_per_iter_ms", float("nan")) / ao.get("loop_per_iter_ms", float("nan"))
                print(f"| {workers} | {name} | {wall:.2f}x | {loop:.2f}x |")
    print(f"\nruns kept in {runs_dir}")


if __name__ == "__main__":
    main()
