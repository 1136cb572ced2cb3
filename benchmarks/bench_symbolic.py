"""How far does the offline symbolic mutator get on the bundled tasks?

A plain (1+λ) evolution strategy: mutate the best program λ times with
:class:`agentopt.evolve.symbolic.SymbolicMutator`, evaluate the children in parallel, keep
the best if it beats the parent. Each evaluation is a fresh ``python -c`` driver process
that loads the task's guest evaluator (with ``evaluators/`` on ``sys.path``), the same
process shape the sandbox uses minus its isolation, so seconds are a fair lower bound for
``agentopt evolve`` on this machine.

    python benchmarks/bench_symbolic.py                       # both tasks, 300 evaluations each
    python benchmarks/bench_symbolic.py -n 100 --tasks exp_approx --seeds 0 1 2

Prints one row per task and seed: initial score, best score, evaluations, invalid
children, seconds, and the evaluation at which the best was found.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agentopt.evolve.symbolic import SymbolicMutationError, SymbolicMutator
from agentopt.paths import evaluator_lib_dir, guest_dir

_DRIVER = (
    "import importlib.util, json, sys\n"
    "spec = importlib.util.spec_from_file_location('evaluator', sys.argv[1])\n"
    "mod = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(mod)\n"
    "print(json.dumps(mod.evaluate(sys.argv[2]), default=str))\n"
)


def evaluate(evaluator: Path, program: Path, timeout: float = 60.0) -> float | None:
    """Score of ``program``, or None when the candidate is invalid or the evaluator failed."""
    env = dict(os.environ, PYTHONPATH=str(evaluator_lib_dir()))
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _DRIVER, str(evaluator), str(program)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=program.parent,
        )
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        return None
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result.get("error"):
        return None
    return float(result["score"])


def run_task(task: str, evaluations: int, lam: int, seed: int, mutator: SymbolicMutator) -> dict[str, float]:
    """One (1+λ) run; returns the numbers for one table row."""
    folder = guest_dir("tasks") / task
    evaluator = folder / "evaluator.py"
    best_code = (folder / "initial_program.py").read_text(encoding="utf-8")
    rng = random.Random(seed)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"bench-{task}-") as tmp:
        work = Path(tmp)
        first = work / "initial.py"
        first.write_text(best_code, encoding="utf-8")
        initial = evaluate(evaluator, first)
        if initial is None:
            raise SystemExit(f"{task}: the initial program does not evaluate")
        best, done, invalid, found_at = initial, 0, 0, 0
        with ThreadPoolExecutor(max_workers=lam) as pool:
            while done < evaluations:
                batch = min(lam, evaluations - done)
                children: list[tuple[str, Path]] = []
                for k in range(batch):
                    try:
                        code, _ = mutator.mutate(best_code, rng)
                    except SymbolicMutationError as err:
                        raise SystemExit(f"{task}: {err}") from None
                    path = work / f"child_{done + k}.py"
                    path.write_text(code, encoding="utf-8")
                    children.append((code, path))
                scores = list(pool.map(lambda c: evaluate(evaluator, c[1]), children))
                done += batch
                for (code, path), score in zip(children, scores, strict=True):
                    path.unlink()
                    if score is None:
                        invalid += 1
                    elif score > best:
                        best, best_code, found_at = score, code, done
    return {
        "initial": initial,
        "best": best,
        "evals": done,
        "invalid": invalid,
        "seconds": time.perf_counter() - t0,
        "found_at": found_at,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--evaluations", type=int, default=300, help="evaluations per run")
    parser.add_argument("--lam", type=int, default=2, help="children per generation (= parallel evaluations)")
    parser.add_argument("--tasks", nargs="+", default=["exp_approx", "circle_packing"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--sigma", type=float, default=0.1, help="SymbolicMutator literal_sigma")
    parser.add_argument("--ast-prob", type=float, default=0.25, help="SymbolicMutator ast_edit_prob")
    args = parser.parse_args()
    mutator = SymbolicMutator(literal_sigma=args.sigma, ast_edit_prob=args.ast_prob)
    table = Table(
        title=f"symbolic (1+{args.lam}) evolution, sigma={args.sigma}, ast_edit_prob={args.ast_prob}"
    )
    for col in ("task", "seed", "initial", "best", "evals", "invalid", "best at eval", "seconds", "evals/s"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for task in args.tasks:
        for seed in args.seeds:
            row = run_task(task, args.evaluations, args.lam, seed, mutator)
            table.add_row(
                task,
                str(seed),
                f"{row['initial']:.4f}",
                f"{row['best']:.4f}",
                str(row["evals"]),
                str(row["invalid"]),
                str(row["found_at"]),
                f"{row['seconds']:.1f}",
                f"{row['evals'] / row['seconds']:.1f}",
            )
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
