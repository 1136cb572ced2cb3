"""Start-up of ``agentopt evolve``: wall and CPU from the command's launch to its first evaluation.

The task is the side-by-side benchmark's trivial one (``vs_openevolve/task``) with its mock LLM
running (so the start-up's reachability check is real), and an evaluator that also reports the
moment it ran (``started_at``, wall clock): "to first evaluation" is that moment minus the
moment the command was launched. Also shown: the whole ``evolve -n 0`` command (start-up, the
initial evaluation, the summary, shut-down) and ``agentopt --version`` (interpreter + CLI import,
the floor). Commands alternate over ``--rounds``; the table shows medians and the spread.

Bytecode: the package is compiled first (``bench_vs_openevolve.compile_package``), as ``pip
install`` of a wheel does.

    python benchmarks/bench_startup.py --rounds 7
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_vs_openevolve import AGENTOPT_TASK, TASK, Mock, compile_package  # noqa: E402

WRAPPER = '''

import time as _time


def evaluate(program_path):
    started = _time.time()
    out = _evaluate(program_path)
    out["started_at"] = started
    return out
'''


def _timed(cmd: list[str]) -> tuple[float, float, float, int]:
    """(launch time.time(), wall s, CPU s of the child, return code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t_launch = time.time()
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return t_launch, wall, cpu, rc


def _first_eval_at(db: Path) -> float | None:
    with sqlite3.connect(db) as con:
        row = con.execute("select data from programs order by iteration limit 1").fetchone()
    if row is None:
        return None
    raw = row[0]
    data = json.loads(zlib.decompress(raw) if raw[:1] == b"x" else raw)
    return data.get("metrics", {}).get("started_at")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--ao", action="append", help="agentopt binary (repeatable, interleaved; default: this venv's)")
    parser.add_argument("--no-compile", action="store_true", help="do not compile the package's bytecode first")
    args = parser.parse_args()
    binaries = args.ao or [str(Path(sys.executable).parent / "agentopt")]
    if not args.no_compile:
        compile_package()
    work = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    task_dir = work / "task"
    task_dir.mkdir()
    (task_dir / "initial_program.py").write_text((TASK / "initial_program.py").read_text())
    source = (TASK / "evaluator.py").read_text().split('\nif __name__ == "__main__":')[0]
    (task_dir / "evaluator.py").write_text(source.replace("def evaluate(", "def _evaluate(") + WRAPPER)
    mock = Mock(work, 1.0, nagle=True)
    task = AGENTOPT_TASK.format(task=task_dir, base=mock.base_url, conc=1, n=0, workers=1)
    (work / "task.yaml").write_text(task)
    rows: dict[tuple[str, str], list[tuple[float, float]]] = {}
    loads = []
    try:
        for rnd in range(args.rounds):
            for ao in binaries:
                loads.append(os.getloadavg()[0])
                _, wall, cpu, _ = _timed([ao, "--version"])
                rows.setdefault((ao, "version"), []).append((wall, cpu))
                out = work / f"run{rnd}-{binaries.index(ao)}"
                launch, wall, cpu, rc = _timed([ao, "evolve", str(work / "task.yaml"), "-n", "0", "-o", str(out), "-q"])
                if rc != 0:
                    sys.exit(f"agentopt evolve failed (rc={rc}); try it by hand: {ao} evolve {work / 'task.yaml'} -n 0")
                rows.setdefault((ao, "n0"), []).append((wall, cpu))
                started = _first_eval_at(out / "programs.db")
                if started is not None:
                    rows.setdefault((ao, "first_eval"), []).append((started - launch, float("nan")))
    finally:
        mock.stop()
    print(f"\nagentopt evolve start-up, {args.rounds} interleaved rounds, medians [min-max]; load (1-min avg) "
          f"{min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cpus")
    print("| build | what | wall s | CPU s |")
    print("|---|---|---|---|")
    labels = {"version": "`agentopt --version` (interpreter + CLI import)",
              "first_eval": "launch -> first evaluation starts (in the sandbox)",
              "n0": "`agentopt evolve task.yaml -n 0` (whole command)"}
    for ao in binaries:
        for key, label in labels.items():
            walls = [w for w, _ in rows.get((ao, key), [])]
            cpus = [c for _, c in rows.get((ao, key), []) if c == c]
            if not walls:
                print(f"| {ao} | {label} | n/a | |")
                continue
            cpu = f"{statistics.median(cpus):.2f}" if cpus else "-"
            print(f"| {ao} | {label} | {statistics.median(walls):.2f} [{min(walls):.2f}-{max(walls):.2f}] | {cpu} |")
    print(f"\n(work folder {work})")


if __name__ == "__main__":
    main()
