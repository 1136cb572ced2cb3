"""Selection accuracy of B4 and the heuristics (MaxPass, majority, CodeT) side by side.

Two parts:

1. **Synthetic** (:mod:`agentopt.select.synthetic`): 20 solutions x 20 tests per problem, with
   the fraction of correct solutions and of correct tests set exactly, under two bug regimes:
   a few shared misconceptions (3 bug families, where wrong solutions agree with each other and
   plausible wrong tests encode their bug) and diverse bugs (10 families).
2. **Real** (``benchmarks/select_problems/*.py``): small functions from the code_debug family,
   each with correct and buggy implementations and plausible tests (some wrong), all actually
   executed (one ``python -I`` process per solution, 2 s per call) to build the pass matrix.
   Ground truth comes from a reference implementation on the tests' inputs plus hidden inputs.

Accuracy is the expected chance of picking a correct solution with a uniform tie-break
(a strategy that ties everything scores the fraction of correct solutions).

    python benchmarks/bench_select.py                  # 300 problems per synthetic regime
    python benchmarks/bench_select.py -n 50 --seed 1
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from agentopt.select import STRATEGIES, expected_accuracy, select
from agentopt.select.synthetic import SyntheticSpec, generate

PROBLEMS = Path(__file__).with_name("select_problems")
LABELS = {"max_pass": "MaxPass", "majority": "majority", "codet": "CodeT", "b4": "B4"}

_CHILD = r"""
import json, signal, sys
job = json.loads(sys.stdin.read())
def _alarm(*_):
    raise TimeoutError("call took longer than the limit")
signal.signal(signal.SIGALRM, _alarm)
ns = {}
out = []
try:
    exec(compile(job["source"], "<solution>", "exec"), ns)
    fn = ns[job["entry"]]
except BaseException as exc:
    print(json.dumps([{"error": f"load: {type(exc).__name__}"}] * len(job["calls"])))
    sys.exit(0)
for args in job["calls"]:
    signal.alarm(job["limit"])
    try:
        value = fn(*args)
        signal.alarm(0)
        out.append({"value": json.loads(json.dumps(value))})
    except BaseException as exc:
        signal.alarm(0)
        out.append({"error": type(exc).__name__})
print(json.dumps(out))
"""


def run_calls(source: str, entry: str, calls: list[Any], limit_s: int = 2) -> list[dict[str, Any]]:
    """Run ``entry(*args)`` for each call in a fresh isolated interpreter; one dict per call."""
    job = json.dumps({"source": source, "entry": entry, "calls": calls, "limit": limit_s})
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0"}
    proc = subprocess.run([sys.executable, "-I", "-c", _CHILD], input=job, capture_output=True, text=True,
                          timeout=limit_s * len(calls) + 30, env=env)
    if proc.returncode != 0:
        return [{"error": "crash"}] * len(calls)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def load_problem(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"select_problem_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def real_problem(mod: ModuleType) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Execute every solution on every test (and hidden input); return passes, correct, correct tests."""
    test_args = [list(args) for args, _ in mod.TESTS]
    expected = [json.loads(json.dumps(e)) for _, e in mod.TESTS]
    hidden = [list(args) for args in mod.HIDDEN_INPUTS]
    truth = run_calls(mod.REFERENCE, mod.ENTRY, test_args + hidden)
    if any("error" in t for t in truth):
        raise RuntimeError(f"{mod.ENTRY}: the reference implementation failed: {truth}")
    correct_tests = np.array([t["value"] == e for t, e in zip(truth, expected, strict=False)])
    passes, correct = [], []
    for source in mod.SOLUTIONS:
        res = run_calls(source, mod.ENTRY, test_args + hidden)
        passes.append([("value" in r and r["value"] == e) for r, e in zip(res, expected, strict=False)])
        correct.append(all("value" in r and r["value"] == t["value"] for r, t in zip(res, truth, strict=True)))
    return np.array(passes, dtype=bool), np.array(correct), correct_tests


def synthetic_table(n: int, seed: int) -> Table:
    table = Table(title=f"Synthetic: selection accuracy, {n} problems per row (20 solutions x 20 tests, seed {seed})")
    for col in ("bugs", "correct sol.", "correct tests", *(LABELS[s] for s in STRATEGIES), "random"):
        table.add_column(col, justify="right")
    for families, label in ((3, "3 shared"), (10, "10 diverse")):
        for cs in (0.1, 0.25, 0.5):
            for ct in (0.3, 0.6, 0.9):
                rng = np.random.default_rng([seed, families, int(cs * 100), int(ct * 100)])
                spec = SyntheticSpec(correct_solutions=cs, correct_tests=ct, bug_families=families)
                acc = dict.fromkeys(STRATEGIES, 0.0)
                rand = 0.0
                for _ in range(n):
                    p = generate(spec, rng)
                    rand += p.correct.mean() / n
                    for s in STRATEGIES:
                        acc[s] += expected_accuracy(select(p.passes, s), p.correct) / n
                best = max(acc.values())
                cells = [f"[bold]{v:.2f}[/]" if v >= best - 1e-9 else f"{v:.2f}" for v in acc.values()]
                table.add_row(label, f"{cs:.0%}", f"{ct:.0%}", *cells, f"{rand:.2f}")
    return table


def subset_accuracy(passes: np.ndarray, correct: np.ndarray, rng: np.random.Generator, draws: int,
                    n_sol: int, n_test: int) -> tuple[dict[str, float], float]:
    """Mean accuracy over random draws of ``n_sol`` solutions (>= 1 correct) and ``n_test`` tests:
    many small selection problems whose correct solutions are often a minority."""
    acc = dict.fromkeys(STRATEGIES, 0.0)
    rand = 0.0
    for _ in range(draws):
        while True:
            rows = rng.choice(len(correct), size=min(n_sol, len(correct)), replace=False)
            if correct[rows].any():
                break
        cols = rng.choice(passes.shape[1], size=min(n_test, passes.shape[1]), replace=False)
        sub, ok = passes[np.ix_(rows, cols)], correct[rows]
        rand += ok.mean() / draws
        for s in STRATEGIES:
            acc[s] += expected_accuracy(select(sub, s), ok) / draws
    return acc, rand


def real_tables(seed: int, draws: int) -> tuple[Table, Table]:
    full = Table(title="Real problems (executed), whole pool: selection accuracy")
    sub = Table(title=f"Real problems, {draws} random draws of 5 solutions (>= 1 correct) x 6 tests each")
    for table in (full, sub):
        for col in ("problem", "solutions (correct)", "tests (correct)", *(LABELS[s] for s in STRATEGIES),
                    "random"):
            table.add_column(col, justify="right")
    totals = {"full": dict.fromkeys(STRATEGIES, 0.0), "sub": dict.fromkeys(STRATEGIES, 0.0)}
    rand_total = {"full": 0.0, "sub": 0.0}
    files = sorted(PROBLEMS.glob("*.py"))
    rng = np.random.default_rng(seed)
    for path in files:
        mod = load_problem(path)
        passes, correct, correct_tests = real_problem(mod)
        sizes = (f"{len(correct)} ({int(correct.sum())})", f"{len(correct_tests)} ({int(correct_tests.sum())})")
        accs = {s: expected_accuracy(select(passes, s), correct) for s in STRATEGIES}
        sub_accs, sub_rand = subset_accuracy(passes, correct, rng, draws, 5, 6)
        for key, values, rand, table in (("full", accs, correct.mean(), full), ("sub", sub_accs, sub_rand, sub)):
            for s in STRATEGIES:
                totals[key][s] += values[s] / len(files)
            rand_total[key] += rand / len(files)
            table.add_row(mod.ENTRY, *sizes, *(f"{values[s]:.2f}" for s in STRATEGIES), f"{rand:.2f}")
    for key, table in (("full", full), ("sub", sub)):
        table.add_row("[bold]mean[/]", "", "", *(f"[bold]{v:.2f}[/]" for v in totals[key].values()),
                      f"{rand_total[key]:.2f}")
    return full, sub


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=300, help="synthetic problems per regime")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=300, help="random sub-problems per real problem")
    args = parser.parse_args()
    console = Console(width=140)
    started = time.perf_counter()
    console.print(synthetic_table(args.n, args.seed))
    for table in real_tables(args.seed, args.draws):
        console.print(table)
    load = os.getloadavg()[0]
    console.print(f"{time.perf_counter() - started:.1f} s wall, load average {load:.1f}")


if __name__ == "__main__":
    main()
