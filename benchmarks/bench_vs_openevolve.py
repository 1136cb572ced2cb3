"""End to end, side by side: agentopt evolve vs OpenEvolve 0.4.0 on the same task and mock LLM.

Self-contained: the trivial task (``vs_openevolve/task``: evolve ``x`` so that ``run()`` returns
0.123), the OpenAI-compatible mock LLM (``vs_openevolve/mock_llm.py``, ~1 ms per reply, one
SEARCH/REPLACE edit of the last ``x = ...`` line) and OpenEvolve's own venv, made on first use::

    python -m venv /tmp/bench_venvs/openevolve && /tmp/bench_venvs/openevolve/bin/pip install openevolve==0.4.0

(``--oe-venv`` / ``--oe-version`` change both; nothing of OpenEvolve is ever imported here).
Runs are interleaved (agentopt, OpenEvolve, agentopt, ...) because shared machines drift; the
table shows medians and the OpenEvolve/agentopt ratio (> 1: agentopt is faster). ``--ao`` may
be given twice (e.g. a baseline checkout's agentopt and this one) to compare builds in the same
interleaving (agentopt's bytecode is compiled first, see :func:`compile_package`). ``--harness DIR`` runs the project's reference harness (``../shared/bench-evolve``:
``run_agentopt.sh`` / ``run_openevolve.sh``) instead of the vendored copy.

    python benchmarks/bench_vs_openevolve.py --n 200 --workers 1 4 --rounds 3
    python benchmarks/bench_vs_openevolve.py --ao-venv /tmp/bench_venvs/agentopt   # agentopt in its own plain venv
    python benchmarks/bench_vs_openevolve.py --inflight --n 200 --workers 4 --conc 32 --latency-ms 500

Columns: wall per iteration of the whole process (start-up included); the loop alone per
iteration (agentopt: ``summary.json``'s ``wall_s``; OpenEvolve: its log, first line to last
finished iteration); start-up + shut-down = wall - loop. ``--inflight`` reports LLM calls in
flight (mean over the mock's busy span / peak): with a slow LLM and ``llm.concurrency`` 32, a loop
that never waits in lock-step keeps ~32 calls out.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent / "vs_openevolve"
TASK = HERE / "task"
DEFAULT_OE_VENV = Path("/tmp/bench_venvs/openevolve")
OE_VERSION = "0.4.0"

AGENTOPT_TASK = """\
name: bench_trivial
description: Evolve the constant x so that run() returns 0.123.
program: {task}/initial_program.py
evaluator: {task}/evaluator.py
objective: {{metric: combined_score, direction: maximize}}
sandbox: {{timeout_s: 30}}
llm:
  models:
    - {{name: openai/mock-model, api_base: "{base}"}}
  temperature: 0.7
  max_tokens: 1024
  timeout_s: 30
  concurrency: {conc}
search:
  iterations: {n}
  seed: 42
  mutator: llm
  parallel_evaluations: {workers}
  num_top_programs: 0
  num_diverse_programs: 0
"""
# agentopt shows the current program before its inspirations and the mock edits the LAST
# ``x = ...`` line, so inspirations are off (as the reference harness's AO_INSP=0).

OPENEVOLVE_CONFIG = """\
max_iterations: {n}
checkpoint_interval: 100
log_level: INFO
random_seed: 42
diff_based_evolution: true
llm:
  api_base: "{base}"
  api_key: "dummy"
  models:
    - name: "mock-model"
      weight: 1.0
  temperature: 0.7
  max_tokens: 1024
  timeout: 30
  retries: 1
  retry_delay: 1
database:
  population_size: 1000
  num_islands: 5
evaluator:
  timeout: 30
  cascade_evaluation: false
  parallel_evaluations: {workers}
  use_llm_feedback: false
"""


def compile_package() -> None:
    """Compile agentopt's bytecode, as ``pip install`` of a wheel does (OpenEvolve's venv has
    it). Why: with ``PYTHONDONTWRITEBYTECODE`` set (some CI images, this project's dev boxes) an
    editable checkout would recompile every module at every start, which no user's install pays."""
    compileall.compile_dir(str(ROOT / "agentopt"), quiet=1)


class Mock:
    """The vendored mock LLM in its own process (so neither tool pays for it); its counters at exit."""

    def __init__(self, run: Path, latency_ms: float, nagle: bool) -> None:
        self.stats_file = run / "mock_stats.json"
        cmd = [sys.executable, str(HERE / "mock_llm.py"), "--latency-ms", str(latency_ms),
               "--stats-file", str(self.stats_file)] + ([] if nagle else ["--no-nagle"])
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split()  # type: ignore[union-attr]
        if len(line) != 2 or line[0] != "listening":
            self.proc.kill()
            sys.exit(f"mock LLM did not start: {line}")
        self.base_url = line[1]

    def stop(self) -> dict:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        return json.loads(self.stats_file.read_text()) if self.stats_file.is_file() else {}


def ensure_openevolve(venv: Path, version: str) -> Path:
    """OpenEvolve's python in its own venv, created and installed on first use."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import importlib.metadata as m; print(m.version('openevolve'))"]
    if python.is_file():
        got = subprocess.run(check, capture_output=True, text=True)
        if got.returncode == 0:
            if got.stdout.strip() != version:
                print(f"note: {venv} holds openevolve {got.stdout.strip()}, not {version}", file=sys.stderr)
            return python
    make_venv(venv, f"openevolve=={version}")
    return python


def make_venv(venv: Path, *requirements: str) -> None:
    """A fresh venv at ``venv`` with ``requirements`` pip-installed (pip's own arguments)."""
    print(f"== creating {venv} with {' '.join(requirements)}", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *requirements], check=True)


def ensure_agentopt_venv(venv: Path) -> str:
    """agentopt as a user installs it (``pip install`` of this checkout, no extras) in its own venv,
    as OpenEvolve gets its own: the dev venv's extras add start-up hooks (numba-cuda's ``.pth``
    import costs ~28 ms at every interpreter start, the controller's and each sandbox worker's)."""
    binary = venv / "bin" / "agentopt"
    if not binary.is_file():
        make_venv(venv, "-e", str(ROOT))
    return str(binary)


def run_agentopt(binary: str, run: Path, n: int, workers: int, conc: int, mock: Mock, timeout: float) -> dict:
    (run / "task.yaml").write_text(
        AGENTOPT_TASK.format(task=TASK, base=mock.base_url, conc=conc, n=n, workers=workers)
    )
    out = run / "output"
    t0 = time.perf_counter()
    with open(run / "stdout.log", "w") as log:
        rc = subprocess.run([binary, "evolve", str(run / "task.yaml"), "-n", str(n), "-o", str(out), "-q"],
                            stdout=log, stderr=subprocess.STDOUT, timeout=timeout).returncode
    wall = time.perf_counter() - t0
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
    best = None
    if (out / "programs.db").is_file():
        with sqlite3.connect(out / "programs.db") as con:
            best = con.execute("select max(score) from programs").fetchone()[0]
    return {"rc": rc, "wall_s": wall, "loop_s": summary.get("wall_s"), "best_score": best}


def run_openevolve(python: Path, run: Path, n: int, workers: int, mock: Mock, timeout: float) -> dict:
    (run / "config.yaml").write_text(OPENEVOLVE_CONFIG.format(base=mock.base_url, n=n, workers=workers))
    cmd = [str(python.parent / "openevolve-run"), str(TASK / "initial_program.py"), str(TASK / "evaluator.py"),
           "--config", str(run / "config.yaml"), "--output", str(run / "output"), "--iterations", str(n)]
    t0 = time.perf_counter()
    with open(run / "stdout.log", "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout).returncode
    wall = time.perf_counter() - t0
    text = (run / "stdout.log").read_text(errors="replace")
    stamped = [line for line in text.splitlines() if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}", line)]
    done = [line for line in stamped if re.search(r" - Iteration \d+: Program", line)]

    def ts(line: str) -> float:
        return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()

    best = None
    info = run / "output" / "best" / "best_program_info.json"
    if info.is_file():
        best = json.loads(info.read_text()).get("metrics", {}).get("combined_score")
    return {"rc": rc, "wall_s": wall, "loop_s": ts(done[-1]) - ts(stamped[0]) if done else None, "best_score": best}


def _harness_run(cmd: list[str], env: dict[str, str], runs_dir: Path, timeout: float) -> dict | None:
    """One run of the reference harness's shell scripts; its result.json, normalised."""
    before = set(runs_dir.iterdir()) if runs_dir.exists() else set()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    for run in sorted(set(runs_dir.iterdir()) - before) if runs_dir.exists() else []:
        if (run / "result.json").is_file():
            data = json.loads((run / "result.json").read_text())
            return {"rc": data.get("rc", proc.returncode), "wall_s": data.get("wall_s"),
                    "loop_s": data.get("loop_s"), "best_score": data.get("best_score"), "run": str(run)}
    print(f"  ! {' '.join(cmd)} produced no result (rc={proc.returncode}): {proc.stderr[-500:]}", file=sys.stderr)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ao", action="append", help="agentopt binary (repeatable; default: this checkout's venv)")
    parser.add_argument("--ao-venv", type=Path, help="also run this checkout installed in its own plain venv "
                        "(made here on first use, e.g. /tmp/bench_venvs/agentopt)")
    parser.add_argument("--n", type=int, default=200, help="iterations per run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--conc", type=int, default=None, help="LLM concurrency (default: = workers)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=1.0)
    parser.add_argument("--no-nagle", action="store_true", help="mock sends headers and body without Nagle")
    parser.add_argument("--inflight", action="store_true", help="report LLM calls in flight")
    parser.add_argument("--no-openevolve", action="store_true")
    parser.add_argument("--oe-venv", type=Path, default=DEFAULT_OE_VENV)
    parser.add_argument("--oe-version", default=OE_VERSION)
    parser.add_argument("--harness", type=Path, help="use this bench-evolve folder's scripts instead")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    if args.harness and not (args.harness / "run_agentopt.sh").is_file():
        sys.exit(f"{args.harness} has no run_agentopt.sh")
    ao_bins = args.ao or ([] if args.ao_venv else [str(Path(sys.executable).parent / "agentopt")])
    if args.ao_venv:
        ao_bins.append(ensure_agentopt_venv(args.ao_venv))
    compile_package()
    oe_python = None if args.no_openevolve or args.harness else ensure_openevolve(args.oe_venv, args.oe_version)
    runs_dir = Path(tempfile.mkdtemp(prefix="bench-vs-oe-"))
    tools = [(f"agentopt[{i}]" if len(ao_bins) > 1 else "agentopt", b) for i, b in enumerate(ao_bins)]
    if not args.no_openevolve:
        tools.append(("openevolve", ""))
    results: dict[tuple[str, int], list[dict]] = {}
    for rnd in range(args.rounds):
        for workers in args.workers:
            conc = args.conc or workers
            for name, binary in tools:
                load = os.getloadavg()[0]
                if args.harness:
                    env = {**os.environ, "RUNS_DIR": str(runs_dir), "MOCK_LATENCY_MS": str(args.latency_ms),
                           "AO_INSP": "0", "AO": binary, "VENV": str(args.oe_venv), "OE_VERSION": args.oe_version}
                    script = "run_openevolve.sh" if name == "openevolve" else "run_agentopt.sh"
                    cmd = [str(args.harness / script), str(args.n), str(workers)]
                    data = _harness_run(cmd + ([] if name == "openevolve" else [str(conc)]), env, runs_dir,
                                        args.timeout)
                    if data is None:
                        continue
                else:
                    run = Path(tempfile.mkdtemp(prefix=f"{name}-w{workers}-", dir=runs_dir))
                    mock = Mock(run, args.latency_ms, nagle=not args.no_nagle)
                    try:
                        if name == "openevolve":
                            data = run_openevolve(oe_python, run, args.n, workers, mock, args.timeout)  # type: ignore[arg-type]
                        else:
                            data = run_agentopt(binary, run, args.n, workers, conc, mock, args.timeout)
                    finally:
                        data_mock = mock.stop()
                    data["mock"], data["run"] = data_mock, str(run)
                if data["rc"] != 0:
                    print(f"  ! {name} rc={data['rc']} (see {data.get('run')}/stdout.log)", file=sys.stderr)
                data["load"] = load
                results.setdefault((name, workers), []).append(data)
                mock = data.get("mock") or {}
                print(f"round {rnd + 1} {name:>12} w={workers}: wall {data['wall_s']:.2f} s, "
                      f"loop {data['loop_s'] or float('nan'):.2f} s, load {load:.1f}"
                      + (f", in flight mean {mock.get('mean_in_flight')} peak {mock.get('max_in_flight')}"
                         if args.inflight else ""), flush=True)
    _report(args, tools, results)
    print(f"\nruns kept in {runs_dir}")


def _report(args: argparse.Namespace, tools: list[tuple[str, str]], results: dict[tuple[str, int], list[dict]]) -> None:
    loads = [d["load"] for v in results.values() for d in v]
    print(f"\nN={args.n}, LLM latency {args.latency_ms} ms, {'Nagle off' if args.no_nagle else 'Nagle on'} at the "
          f"mock, {'harness ' + str(args.harness) if args.harness else 'vendored task and mock'}, median of "
          f"{args.rounds} interleaved rounds, load (1-min avg at run start) {min(loads):.1f}-{max(loads):.1f} "
          f"on {os.cpu_count()} cpus")
    header = "| tool | workers | wall ms/iter (incl. start-up) | loop ms/iter | start-up + shut-down s | best score |"
    if args.inflight:
        header += " LLM in flight mean / peak |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    med: dict[tuple[str, int], dict[str, float]] = {}
    for (name, workers), runs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        ok = [r for r in runs if r["rc"] == 0 and r["loop_s"]]
        if not ok:
            print(f"| {name} | {workers} | failed | | | |")
            continue
        m = {"wall": statistics.median(1000 * r["wall_s"] / args.n for r in ok),
             "loop": statistics.median(1000 * r["loop_s"] / args.n for r in ok),
             "startup": statistics.median(r["wall_s"] - r["loop_s"] for r in ok),
             "best": statistics.median(r["best_score"] for r in ok if r["best_score"] is not None)}
        med[(name, workers)] = m
        row = f"| {name} | {workers} | {m['wall']:.1f} | {m['loop']:.1f} | {m['startup']:.2f} | {m['best']:.4g} |"
        if args.inflight:
            inf = [r["mock"] for r in ok if (r.get("mock") or {}).get("mean_in_flight") is not None]
            mean = statistics.median(i["mean_in_flight"] for i in inf) if inf else float("nan")
            row += f" {mean:.1f} / {max((i['max_in_flight'] for i in inf), default=0)} |"
        print(row)
    if args.no_openevolve:
        return
    print("\n| workers | build | OpenEvolve / agentopt, wall (incl. start-up) | loop |")
    print("|---|---|---|---|")
    for workers in args.workers:
        oe = med.get(("openevolve", workers))
        for name, _ in tools:
            ao = med.get((name, workers))
            if name != "openevolve" and oe and ao:
                print(f"| {workers} | {name} | {oe['wall'] / ao['wall']:.2f}x | {oe['loop'] / ao['loop']:.2f}x |")


if __name__ == "__main__":
    main()
