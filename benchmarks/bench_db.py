"""ProgramDB cost as the store grows: add() and sample() per operation, disk and memory per
stored program, and reopen (index rebuild) time, at 1k / 10k / 100k programs.

Run: ``python benchmarks/bench_db.py`` (about 1-2 minutes; ``--max 10000`` for a quick look).

One store is grown to each size in turn; timings (wall, and process CPU time, which is what
stays meaningful on a shared, loaded machine) are taken over the last ``WINDOW`` adds
before a checkpoint and ``WINDOW`` samples at it, so they show the per-call cost *at* that
size. Two configurations: the default population cap (1000, so eviction runs on every
add) and an uncapped population (every program stays in the in-memory indexes, the worst
case for sorted-list maintenance). Program texts are realistic ~2 KB Python variants; the
controller-side hashing is done outside the timer.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentopt.evolve.db import Program, ProgramDB, make_program_id  # noqa: E402
from agentopt.evolve.hashing import code_complexity, normalized_code_hash  # noqa: E402
from agentopt.task import Objective, SearchSpec  # noqa: E402

WINDOW = 1000
SIZES = (1_000, 10_000, 100_000)

_BODY = '''
import math

# EVOLVE-BLOCK-START
def objective(xs):
    """Score a candidate vector; higher is better."""
    total = 0.0
    for i, x in enumerate(xs):
        total += {a} * math.sin(x * {b}) - {c} * (x - {d}) ** 2
        if total > {e}:
            total = total * {f}
{extra}
    return total
# EVOLVE-BLOCK-END


def run():
    rng = [{g} * k for k in range(32)]
    return objective(rng)
'''
_EXTRA = [
    "        total += math.cos(i * {v})",
    "        total -= abs(x) * {v}",
    "        if i % 3 == 0:\n            total += {v}",
    "        total = max(total, -{v})",
    "        total += math.sqrt(abs(x) + {v})",
]


def make_code(rng: random.Random) -> str:
    extra = "\n".join(
        rng.choice(_EXTRA).format(v=round(rng.uniform(0, 9), 3)) for _ in range(rng.randrange(1, 12))
    )
    nums = {k: round(rng.uniform(0, 10), 4) for k in "abcdefg"}
    padding = "\n".join(f"# note {rng.randrange(10**6)}: tuning history" for _ in range(rng.randrange(0, 30)))
    return _BODY.format(extra=extra, **nums) + padding + "\n"


class ProgramFactory:
    """Unique ~2 KB programs, cheaply: a pool of distinct variants is hashed once, and each
    program appends a unique comment line (which changes the exact hash and the stored
    text, but not the normalized hash or the AST complexity)."""

    def __init__(self, rng: random.Random, pool: int = 400) -> None:
        self.rng = rng
        self.pool = []
        for _ in range(pool):
            code = make_code(rng)
            self.pool.append((code, normalized_code_hash(code), code_complexity(code)))

    def make(self, i: int, island: int, parent: str | None) -> Program:
        rng = self.rng
        base, norm, complexity = self.pool[rng.randrange(len(self.pool))]
        code = f"{base}# variant {i} {rng.getrandbits(64):x}\n"
        h = hashlib.sha256(code.encode()).hexdigest()
        failed = rng.random() < 0.1
        score = None if failed else rng.gauss(0.0, 1.0) + i * 1e-5
        return Program(
            id=make_program_id(0, i, h),
            code=code,
            parent_id=parent,
            iteration=i,
            island=island,
            score=score,
            metrics={} if failed else {"score": score, "runtime_s": rng.uniform(0.1, 2.0)},
            feedback="" if not failed else "Traceback: ZeroDivisionError",
            error="ZeroDivisionError" if failed else None,
            code_hash=h,
            norm_hash=norm,
            complexity=complexity,
            mutation={"kind": "diff", "model": "openai/gpt-4o-mini"},
            wall_s=0.5,
            created_at=1.7e9 + i,
        )


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def bench(label: str, search: SearchSpec, sizes: tuple[int, ...]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    objective = Objective()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "programs.db"
        factory = ProgramFactory(random.Random(1))
        gc.collect()
        rss0 = rss_bytes()
        db = ProgramDB.open(path, objective=objective, search=search)
        last_id: str | None = None
        i = 0
        for size in sizes:
            add_times: list[float] = []
            add_cpu = 0.0
            while i < size:
                program = factory.make(i, db.next_island(i), last_id)
                c0, t0 = time.process_time(), time.perf_counter()
                db.add(program)
                dt = time.perf_counter() - t0
                if size - i <= WINDOW:
                    add_times.append(dt)
                    add_cpu += time.process_time() - c0
                last_id = program.id
                i += 1
            srng = random.Random(2)
            c0, t0 = time.process_time(), time.perf_counter()
            for k in range(WINDOW):
                db.sample(srng, island=db.next_island(k), num_top=3, num_diverse=2)
            sample_us = (time.perf_counter() - t0) / WINDOW * 1e6
            cpu_ms = (add_cpu + time.process_time() - c0) / WINDOW * 1e3
            gc.collect()
            mem = (rss_bytes() - rss0) / size
            db._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            disk = disk_bytes(path) / size
            t0 = time.perf_counter()
            ProgramDB.open(path, objective=objective, search=search).close()
            reopen_s = time.perf_counter() - t0
            add_us = statistics.fmean(add_times) * 1e6
            p99 = sorted(add_times)[int(len(add_times) * 0.99) - 1] * 1e6
            rows.append(
                (
                    label,
                    f"{size:,}",
                    f"{add_us:.0f}",
                    f"{p99:.0f}",
                    f"{sample_us:.0f}",
                    f"{(add_us + sample_us) / 1000:.2f}",
                    f"{cpu_ms:.2f}",
                    f"{disk:,.0f}",
                    f"{mem:,.0f}",
                    f"{reopen_s:.2f}",
                )
            )
            print(" | ".join(rows[-1]), flush=True)
        db.close()
    return rows


CONFIGS = {
    "cap 1000": {"population_size": 1000},
    "uncapped": {"population_size": 10**9},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max", type=int, default=SIZES[-1], help="largest store size")
    parser.add_argument("--config", choices=sorted(CONFIGS), help=argparse.SUPPRESS)  # child run
    args = parser.parse_args()
    sizes = tuple(s for s in SIZES if s <= args.max) or (args.max,)
    common = {"num_islands": 4, "feature_dimensions": ["complexity", "diversity"], "feature_bins": 10}
    if args.config:
        bench(args.config, SearchSpec(**common, **CONFIGS[args.config]), sizes)  # type: ignore[arg-type]
        return
    header = ("config", "programs", "add µs", "add p99 µs", "sample µs", "add+sample ms", "cpu ms",
              "disk B/prog", "RSS B/prog", "reopen s")  # fmt: skip
    print(" | ".join(header))
    print(" | ".join("-" * len(h) for h in header), flush=True)
    start = time.perf_counter()
    for name in CONFIGS:  # one process per config, so RSS per program starts from a clean baseline
        subprocess.run([sys.executable, __file__, "--config", name, "--max", str(args.max)], check=True)
    print(
        f"\ntotal {time.perf_counter() - start:.0f} s, python {sys.version.split()[0]}, load avg {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
