"""Cost of the per-operator table and of dead-code simplification.

Run: ``python benchmarks/bench_operators.py`` (about a minute; ``--programs 10000`` for a
quick look). Prints two tables.

1. ``ProgramDB.operator_counts()`` on a synthetic store of N programs (12 operators, random
   lineage, 5% failures, 3% cache repeats, 20% tuned): the SQL aggregate over the operator
   columns, and the fallback for files written before those columns existed (operators read
   from each row's compressed mutation record). The store is filled with one bulk insert
   (the benchmark measures the query, not ``add``).
2. ``normalized_code_hash`` with and without ``simplify`` on ~2 KB and ~20 KB programs
   (uncached calls), i.e. what simplification adds per child.

Timings are wall and process CPU seconds, best of ``--repeat`` runs; CPU time is what stays
meaningful on a loaded machine, so report ``uptime`` next to the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentopt.evolve.db import ProgramDB  # noqa: E402
from agentopt.evolve.hashing import normalized_code_hash  # noqa: E402
from agentopt.task import Objective, SearchSpec  # noqa: E402

OPERATORS = [
    "perturb", "share_constant", "swap_operator", "swap_operands", "duplicate_statement",
    "delete_statement", "change_comparison", "extend_horner", "restarts", "crossover", "diff", "rewrite",
]  # fmt: skip


def _timed(fn, repeat: int) -> tuple[float, float, object]:
    best_wall, best_cpu, result = float("inf"), float("inf"), None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best_wall, best_cpu, result


def _fill(path: Path, n: int, seed: int) -> None:
    """A store of n programs written straight into ProgramDB's schema, in one transaction."""
    ProgramDB.open(path, objective=Objective(), search=SearchSpec()).close()
    rng = random.Random(seed)
    rows = []
    scores: list[float | None] = []
    for seq in range(1, n + 1):
        parent = None if seq == 1 else rng.randrange(1, seq)
        failed = seq > 1 and rng.random() < 0.05
        score = None if failed else rng.gauss(0.0, 1.0) + seq * 1e-5
        scores.append(score)
        op = "initial" if parent is None else rng.choice(OPERATORS)
        mutation: dict[str, object] = {"operator": op, "description": "x" * 60}
        reused = int(rng.random() < 0.03)
        if reused:
            mutation["cache_hit"] = f"p{parent}"
        tune_evals, tune_gain = None, None
        if op != "initial" and rng.random() < 0.2:
            tune_evals, tune_gain = rng.randint(10, 200), rng.gauss(0.0, 0.1)
            mutation["tuned"] = {"evaluations": tune_evals, "before": 0.0, "after": tune_gain}
        data = json.dumps({"score": score, "mutation": mutation, "feedback": "f" * 300, "metrics": {"score": score}})
        rows.append((
            seq, f"p{seq}", None if parent is None else f"p{parent}", seq, 0, 0, score, int(score is not None),
            f"c{seq}", f"n{seq}", 1, None if score is None else json.dumps([rng.uniform(50, 500), rng.random()]),
            zlib.compress(data.encode()), None, op, reused, tune_evals, tune_gain,
        ))  # fmt: skip
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO blobs(id, hash, code) VALUES (1, x'00', ?)", (zlib.compress(b"x = 1\n"),))
        conn.executemany(
            "INSERT INTO programs(seq, id, parent_id, iteration, generation, island, score, rankable, code_hash,"
            " norm_hash, blob, features, data, func_hash, operator, reused, tune_evals, tune_gain)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


def bench_operator_counts(n: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.db"
        _fill(path, n, seed=1)
        db = ProgramDB.open(path, objective=Objective(), search=SearchSpec())
        try:
            wall, cpu, stats = _timed(db.operator_counts, repeat)
            print(f"| operator_counts, {n} programs (SQL) | {wall:.3f} | {cpu:.3f} | {len(stats)} operators |")  # type: ignore[arg-type]
            db._conn.execute("UPDATE programs SET operator = NULL, reused = NULL, tune_evals = NULL, tune_gain = NULL")
            wall2, cpu2, legacy = _timed(db.operator_counts, 1)
            same = [s.model_dump() for s in legacy] == [s.model_dump() for s in stats]  # type: ignore[union-attr]
            print(f"| operator_counts, {n} programs (pre-schema-3 fallback) | {wall2:.3f} | {cpu2:.3f} | same table: {same} |")
        finally:
            db.close()


def _program(functions: int) -> str:
    parts = ["import math\n"]
    for i in range(functions):
        parts.append(
            f"def f{i}(x, y):\n"
            f"    scale = {i}.5\n"
            f"    total = 0.0\n"
            f"    for k in range(3):\n"
            f"        total += math.sin(x * k) * {i + 1}.25 - y\n"
            f"        if total > {i}:\n"
            f"            break\n"
            f"    unused = (x, y)\n"
            f"    return total * scale\n"
            f"    print('never')\n\n"
        )
    return "".join(parts)


def bench_simplify(repeat: int) -> None:
    raw = normalized_code_hash.__wrapped__  # type: ignore[attr-defined]  # bypass the lru_cache
    for functions in (9, 90):
        code = _program(functions)
        w_off, c_off, _ = _timed(lambda code=code: raw(code, False), repeat)
        w_on, c_on, _ = _timed(lambda code=code: raw(code, True), repeat)
        print(
            f"| normalized_code_hash, {len(code) / 1024:.0f} KB | {w_off * 1e3:.2f} | {c_off * 1e3:.2f} "
            f"| {w_on * 1e3:.2f} | {c_on * 1e3:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"load: {os.getloadavg()[0]:.1f} (1-min average), {os.cpu_count()} CPUs")
    print("\n| per-operator table | wall s | CPU s | note |\n|---|---|---|---|")
    bench_operator_counts(args.programs, args.repeat)
    print("\n| hash | plain wall ms | plain CPU ms | simplified wall ms | simplified CPU ms |\n|---|---|---|---|---|")
    bench_simplify(args.repeat * 5)


if __name__ == "__main__":
    main()
