"""How far the offline engine gets: bundled tasks, no LLM, a wall-clock cap per run.

Runs ``agentopt evolve`` (the Python API, same code path as the CLI) from a fresh output
directory per (task, seed) with ``search.budget.max_wall_s`` as the cap, then prints one table
row per run: iterations, evaluations, tuning evaluations, best score, when each target was
first reached (seconds since the run started, from the stored programs' timestamps), wall
time and the 1-minute load average before/after (the machine is shared: say it with every
number).

    nice .venv/bin/python benchmarks/bench_search.py                       # exp_approx + circle_packing, seed 0
    nice .venv/bin/python benchmarks/bench_search.py --tasks exp_approx --seeds 0 1 2 --minutes 10
    nice .venv/bin/python benchmarks/bench_search.py --no-tune             # the same without constants tuning

Targets (issue 14): exp_approx >= 5.51 (moonshot >= 7.0), circle_packing >= 2.50 (moonshot >= 2.60).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path

from agentopt.evolve.api import evolve
from agentopt.evolve.db import ProgramDB
from agentopt.task import load_task

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"exp_approx": (5.51, 7.0), "circle_packing": (2.50, 2.60), "cap_set": (20.0,)}


def _reached(run_dir: Path, spec, targets: tuple[float, ...]) -> list[str]:
    """Seconds from the initial program to the first program at or above each target."""
    db = ProgramDB.open(run_dir / "programs.db", objective=spec.objective, search=spec.search)
    try:
        programs = list(db.programs(order="iteration"))
    finally:
        db.close()
    start = programs[0].created_at if programs else 0.0
    out = []
    for target in targets:
        hit = next((p for p in programs if p.ok and p.score is not None and p.score >= target), None)
        out.append(f"{hit.created_at - start:.0f}s (it {hit.iteration})" if hit else "-")
    return out


def _tuning_evaluations(run_dir: Path, spec) -> int:
    db = ProgramDB.open(run_dir / "programs.db", objective=spec.objective, search=spec.search)
    try:
        return sum(int((p.mutation.get("tuned") or {}).get("evaluations", 0)) for p in db.programs())
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["exp_approx", "circle_packing"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="wall-clock cap per run")
    parser.add_argument("--no-tune", action="store_true", help="turn constants tuning off (the old engine)")
    args = parser.parse_args()
    logging.getLogger("agentopt").setLevel(logging.WARNING)
    rows = []
    for name in args.tasks:
        for seed in args.seeds:
            spec = load_task(ROOT / "tasks" / name / "task.yaml")
            search = spec.search.model_copy(
                update={
                    "seed": seed,
                    "iterations": 1_000_000,
                    "budget": spec.search.budget.model_copy(update={"max_wall_s": args.minutes * 60}),
                    "tune": spec.search.tune.model_copy(update={"enabled": not args.no_tune}),
                }
            )
            spec = spec.model_copy(update={"search": search})
            load_before = os.getloadavg()[0]
            with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
                run_dir = Path(tmp) / "run"
                summary = evolve(spec, output_dir=run_dir)
                reached = _reached(run_dir, spec, TARGETS.get(name, ()))
                tuned = _tuning_evaluations(run_dir, spec)
            load_after = os.getloadavg()[0]
            rows.append(
                [
                    name,
                    str(seed),
                    "off" if args.no_tune else "on",
                    str(summary.iterations),
                    str(summary.evaluations),
                    str(tuned),
                    f"{summary.initial_score:.6f}" if summary.initial_score is not None else "-",
                    f"{summary.best_score:.6f}" if summary.best_score is not None else "-",
                    *(reached + ["-"] * (2 - len(reached))),
                    f"{summary.wall_s:.0f}s",
                    f"{load_before:.1f}/{load_after:.1f}",
                ]
            )
            print("  ".join(rows[-1]), flush=True)
    header = ["task", "seed", "tune", "iterations", "evaluations", "tune evals", "initial", "best",
              "target", "moonshot", "wall", "load 1m (before/after)"]
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
