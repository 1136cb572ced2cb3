"""The accuracy each operation budget buys: the offline engine on tasks/exp_approx_pareto
(score = -log10(max relative error), maximized; ops = multiply/add count, minimized), next
to the Remez minimax reference of every Horner degree (the AutoNumerics-Zero picture).

Runs the task through the Python API (the CLI's code path) from a fresh output directory with
``search.budget.max_wall_s`` as the cap, then reads every stored program and prints one row
per operation count: the best score found with exactly that many operations, whether the
run's Pareto front (``front`` in summary.json: no other program is at least as accurate with
at most as many operations) holds that count, and the best any polynomial of that cost can do
(degree d in Horner form = 2d operations; ``tasks/exp_approx/minimax.py``). The gap is
reference minus found, in decimal digits. The load average before/after is printed with the
numbers (the machine is shared).

    nice .venv/bin/python benchmarks/bench_exp_pareto.py                  # 10 minutes, seed 0
    nice .venv/bin/python benchmarks/bench_exp_pareto.py --minutes 2 --programs
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from agentopt.blocks import find_blocks
from agentopt.evolve.api import evolve
from agentopt.evolve.db import Program, ProgramDB
from agentopt.task import TaskSpec, load_task

ROOT = Path(__file__).resolve().parents[1]
TASK = ROOT / "tasks" / "exp_approx_pareto" / "task.yaml"


def _minimax() -> ModuleType:
    """tasks/exp_approx/minimax.py (task code is not a package: load it by path)."""
    spec = importlib.util.spec_from_file_location("exp_minimax", ROOT / "tasks" / "exp_approx" / "minimax.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["exp_minimax"] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _programs(run_dir: Path, spec: TaskSpec) -> list[Program]:
    db = ProgramDB.open(run_dir / "programs.db", objective=spec.objective, search=spec.search)
    try:
        return [p for p in db.programs() if p.ok and "ops" in p.metrics and p.score is not None]
    finally:
        db.close()


def _rows(programs: list[Program], on_front: set[int], minimax: ModuleType) -> list[list[str]]:
    """One row per operation count found or referenced: best found, whether the run's front
    holds that count (``on_front``, from the summary), the reference, the gap."""
    best: dict[int, Program] = {}
    for p in programs:
        ops = int(p.metrics["ops"])
        if ops not in best or p.metrics["score"] > best[ops].metrics["score"]:
            best[ops] = p
    top = max([*best, 2 * minimax.MAX_DEGREE])
    rows = []
    for ops in range(0, top + 1):
        ref = minimax.remez(ops // 2) if ops % 2 == 0 and ops // 2 <= minimax.MAX_DEGREE else None
        found = best.get(ops)
        if found is None and ref is None:
            continue
        score = found.metrics["score"] if found else None
        rows.append(
            [
                str(ops),
                str(ops // 2) if ref else "-",
                f"{score:.3f}" if score is not None else "-",
                "yes" if ops in on_front else "",
                f"{ref.score:.3f}" if ref else "-",
                f"{ref.score - score:.3f}" if ref and score is not None else "-",
                f"{found.iteration}" if found else "-",
            ]
        )
    return rows


def _block(program: Program) -> str:
    blocks = find_blocks(program.code)
    return "\n".join(b.text.rstrip() for b in blocks) if blocks else program.code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-clock cap of the run (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--programs", action="store_true", help="also print the EVOLVE-BLOCK of every front program")
    parser.add_argument("--keep", type=Path, help="write the run here instead of a temporary directory")
    args = parser.parse_args()
    logging.getLogger("agentopt").setLevel(logging.WARNING)
    minimax = _minimax()
    spec = load_task(TASK)
    search = spec.search.model_copy(
        update={
            "seed": args.seed,
            "iterations": 1_000_000,
            "budget": spec.search.budget.model_copy(update={"max_wall_s": args.minutes * 60}),
        }
    )
    spec = spec.model_copy(update={"search": search})
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-exp-pareto-") as tmp:
        run_dir = args.keep or Path(tmp) / "run"
        summary = evolve(spec, output_dir=run_dir)
        programs = _programs(run_dir, spec)
    load_after = os.getloadavg()[0]
    if summary.front is None:
        raise SystemExit("the run kept no Pareto front: this engine does not support several objectives")
    on_front = {int(m.values["ops"]) for m in summary.front.members}
    hypervolume = f"{summary.front.hypervolume:.3f}" if summary.front.hypervolume is not None else "-"
    points = {(m.values["ops"], m.values["score"]) for m in summary.front.members}
    print(
        f"exp_approx_pareto, seed {args.seed}: {summary.iterations} iterations, {summary.evaluations} evaluations, "
        f"{len(programs)} valid programs, front of {len(summary.front.members)} programs at {len(points)} points "
        f"(hypervolume {hypervolume}), "
        f"wall {summary.wall_s:.0f}s (cap {args.minutes:g} min), "
        f"load 1m {load_before:.1f}/{load_after:.1f} (before/after)"
    )
    header = ["ops", "degree", "best score found", "on front", "minimax score", "gap", "found at iteration"]
    rows = _rows(programs, on_front, minimax)
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if args.programs:
        # Equal points share the front (e.g. variants differing in a dead literal): one each.
        by_id = {p.id: p for p in programs}
        shown: set[int] = set()
        for member in sorted(summary.front.members, key=lambda m: (m.values["ops"], m.iteration)):
            ops = int(member.values["ops"])
            if ops in shown:
                continue
            shown.add(ops)
            print(f"\n# {ops} ops, score {member.score:.3f} (iteration {member.iteration})")
            print(_block(by_id[member.program_id]))


if __name__ == "__main__":
    main()
