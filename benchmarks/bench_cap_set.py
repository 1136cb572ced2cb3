"""Does the offline engine reach the cap_set anchor (20 vectors in F_3^4)?

Runs the real engine (``agentopt.evolve.api.evolve``: sandbox, store, equivalence cache,
whatever proposer the task gets offline) on ``tasks/cap_set`` for each seed and prints one
row per seed: initial and best size, the iteration at which the best (and the anchor, if
reached) was first stored, evaluations, cache repeats, wall seconds, and the three
operators that improved on their parent most often.

    python benchmarks/bench_cap_set.py                      # seeds 0 1, 1000 iterations or 10 minutes each
    python benchmarks/bench_cap_set.py -n 300 --seeds 0     # a quick look

Counts (iterations, evaluations) are what to compare across machines; wall seconds depend
on the load, which is printed with the table.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from agentopt.evolve.api import evolve  # noqa: E402
from agentopt.evolve.db import ProgramDB  # noqa: E402
from agentopt.task import load_task  # noqa: E402

TASK = Path(__file__).resolve().parents[1] / "tasks" / "cap_set" / "task.yaml"
ANCHOR = 20.0


def run(seed: int, iterations: int, minutes: float, out: Path) -> list[str]:
    spec = load_task(TASK)
    spec.search.seed = seed
    spec.search.budget.max_wall_s = minutes * 60
    summary = evolve(spec, iterations=iterations, output_dir=out)
    with ProgramDB.open(out / "programs.db", objective=spec.objective, search=spec.search) as db:
        programs = list(db.programs(order="iteration"))
        hit = next((p for p in programs if (p.score or 0) >= ANCHOR), None)
        reached = None if hit is None else f"{hit.iteration} ({hit.created_at - programs[0].created_at:.0f} s)"
        ops = sorted(db.operator_counts(), key=lambda s: -s.improved)[:3]
        best = db.best()
    # Whether the best program runs best-of-k restarts (the best_of_k operator's wrapper), and its k.
    restarts = re.search(r"^RESTARTS = (\d+)", best.code, re.M) if best is not None else None
    return [
        str(seed),
        str(summary.iterations),
        f"{summary.initial_score:g}",
        f"{summary.best_score:g}",
        str(summary.best_iteration),
        "—" if reached is None else reached,
        str(summary.evaluations),
        str(summary.cache_hits),
        restarts.group(1) if restarts else "—",
        f"{summary.wall_s:.0f}",
        ", ".join(f"{s.operator} {s.improved}/{s.children}" for s in ops),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--iterations", type=int, default=1000)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-clock cap per seed")
    args = parser.parse_args()
    table = Table(
        title=f"cap_set (F_3^4, anchor {ANCHOR:g}), offline engine, {args.iterations} iterations or {args.minutes:g} min"
    )
    for col in ("seed", "iterations", "initial", "best", "best at", "anchor at", "evals", "repeats", "best's k", "wall s",
                "top operators (improved/children)"):  # fmt: skip
        table.add_column(col, justify="left" if col.startswith("top") else "right")
    console = Console(width=170)  # a table, also when piped to a file
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            table.add_row(*run(seed, args.iterations, args.minutes, Path(tmp) / f"seed{seed}"))
            console.print(f"seed {seed} done, load average {os.getloadavg()[0]:.1f}")
    console.print(table)
    console.print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
