"""How fast `agentopt watch` pages (and the `programs`/`show` queries behind them) load on big runs.

Run: ``nice python benchmarks/bench_watch.py`` (100k programs: ~1 min to build the store once,
cached under the temp dir; ``--sizes 10000`` for a quick look).

The store is written in the engine's own format (ProgramDB creates the schema; rows are packed
with its ``_pack``, code zlib-compressed per distinct text, ~2 KB of LLM reply per child in the
``data`` blob as in a real LLM run, 1 in 7 candidates failing with one of a few errors). Each page
is fetched over HTTP from a real WatchServer: The first request of a fresh server starts folding every stored row into the incremental
aggregates on a background thread (pages answer from what is folded so far); the other pages
are measured once that is done, and *live* is the dashboard again after 200 more programs were
appended (what a browser on a running run sees).
Times are medians of 3 fetches: wall clock, and the CPU time of the process (server thread
plus the small urllib client), which is what stays meaningful on a loaded shared machine; the
load average is printed beside them. The first table row is a fresh server's first page.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.request
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentopt.evolve.db import ProgramDB, _pack  # noqa: E402
from agentopt.task import Objective, SearchSpec  # noqa: E402
from agentopt.watch.server import WatchServer  # noqa: E402

ISLANDS = 4
ERRORS = [
    ("exception", "ZeroDivisionError: division by zero (line {n})"),
    ("timeout", "evaluation timed out after {n} s"),
    ("exception", "NameError: name 'v{n}' is not defined"),
]
REPLY = "Here is an improved version.\n<<<<<<< SEARCH\n{old}\n=======\n{new}\n>>>>>>> REPLACE\n" * 8


def _code(i: int, value: float) -> str:
    lines = [f"    t{k} = {value * (k + 1):.6f} * x ** {k % 5}" for k in range(40)]
    return "import math\n\n# EVOLVE-BLOCK-START\ndef f(x):\n" + "\n".join(lines) + "\n    return t0\n# EVOLVE-BLOCK-END\n"


def append(run_dir: Path, start: int, n: int, rng: random.Random) -> None:
    """Append programs ``start..start+n`` in one transaction, in ProgramDB's row format."""
    conn = sqlite3.connect(run_dir / "programs.db", isolation_level=None)
    conn.execute("BEGIN")
    best = 1.0
    if start:
        best = conn.execute("SELECT MAX(score) FROM programs").fetchone()[0]
    ids = [r[0] for r in conn.execute("SELECT id FROM programs ORDER BY seq DESC LIMIT 50")]
    for i in range(start, start + n):
        value = best + rng.gauss(-0.2, 0.5) if i else 1.0
        failed = i > 0 and i % 7 == 3
        code = _code(i, value)
        raw = code.encode()
        digest = hashlib.sha256(raw).digest()[:16]
        (blob,) = conn.execute(
            "INSERT INTO blobs(hash, code) VALUES (?, ?) ON CONFLICT(hash) DO UPDATE SET hash = excluded.hash"
            " RETURNING id",
            (digest, zlib.compress(raw)),
        ).fetchone()
        kind, error = ERRORS[i % len(ERRORS)]
        data = _pack({
            "score": None if failed else value, "metrics": {} if failed else {"score": value},
            "feedback": f"f(1) = {value:.4f}", "artifacts": {}, "error": error.format(n=i % 50) if failed else None,
            "error_kind": kind if failed else None, "stage": 1, "complexity": 1200.0,
            "mutation": {"kind": "diff", "operator": ["diff", "rewrite", "crossover"][i % 3], "model": "m",
                         "reply": REPLY.format(old=f"t{i % 40} = 1", new=f"t{i % 40} = {value:.5f}")[:2500]}
            if i else {"kind": "initial"},
            "isolation": [], "wall_s": 0.5, "created_at": 0.0,
        })  # fmt: skip
        pid = hashlib.sha256(f"{i}:{digest.hex()}".encode()).hexdigest()[:16]
        parent = rng.choice(ids) if ids else None
        conn.execute(
            "INSERT INTO programs(id, parent_id, iteration, generation, island, score, rankable, code_hash,"
            " norm_hash, blob, features, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (pid, parent, i, i // 10, i % ISLANDS, None if failed else value, 0 if failed else 1, digest.hex(),
             digest.hex(), blob, None if failed else json.dumps([rng.uniform(800, 1600), rng.random()]), data),
        )  # fmt: skip
        if not failed:
            best = max(best, value)
            ids.append(pid)
            ids = ids[-50:]
        if i % 200 == 0:
            conn.execute("INSERT INTO llm_calls(data) VALUES (?)", (json.dumps({
                "model": "m", "prompt_tokens": 2000, "completion_tokens": 500, "cost_usd": 0.002, "cached": False,
                "error": None}),))  # fmt: skip
        if i % 50 == 7:
            conn.execute(
                "INSERT INTO rejections(iteration, parent_id, reason, reply_excerpt) VALUES (?, ?, ?, ?)",
                (i, parent, "SEARCH block not found", "no such block"),
            )
    conn.execute("INSERT OR REPLACE INTO state(key, value) VALUES ('next_iteration', ?)", (json.dumps(start + n),))
    conn.execute("COMMIT")
    conn.close()


def build(size: int, root: Path) -> Path:
    run_dir = root / f"watch-bench-{size}"
    if (run_dir / "programs.db").is_file():
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    search = SearchSpec(num_islands=ISLANDS, iterations=size * 2)
    ProgramDB.open(run_dir / "programs.db", objective=Objective(), search=search).close()
    (run_dir / "task.json").write_text(json.dumps({"name": f"bench-{size}", "search": search.model_dump(mode="json")}))
    rng = random.Random(size)
    for start in range(0, size, 10_000):
        append(run_dir, start, min(10_000, size - start), rng)
    return run_dir


def fetch(url: str) -> tuple[float, float]:
    """(wall s, CPU s of this process: the server thread plus the small urllib client)."""
    t, c = time.perf_counter(), time.process_time()
    with urllib.request.urlopen(url, timeout=300) as resp:  # noqa: S310 (loopback)
        resp.read()
    return time.perf_counter() - t, time.process_time() - c


def median_fetch(url: str, n: int = 3) -> tuple[float, float]:
    runs = [fetch(url) for _ in range(n)]
    return statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)


PAGES = [
    ("dashboard", "/"),
    ("programs (best first)", "/programs"),
    ("programs, middle page by iteration", "/programs?order=iteration&page={mid}"),
    ("programs failed, island 2", "/programs?failed=1&island=2"),
    ("program page (best)", "/program/best"),
    ("lineage of best", "/lineage"),
    ("failures", "/failures"),
    ("status JSON (polled every 2 s)", "/api/status"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    args = parser.parse_args()
    root = Path(tempfile.gettempdir())
    print(f"load average at start: {os.getloadavg()[0]:.1f} (2 cores shared)")
    print("| programs | page | wall s | CPU s |")
    print("|---:|---|---:|---:|")
    for size in [int(s) for s in args.sizes.split(",")]:
        t = time.perf_counter()
        run_dir = build(size, root)
        built = time.perf_counter() - t
        server = WatchServer(run_dir)
        server.serve_in_thread()
        base = server.url.rstrip("/") + f"/r/{run_dir.name}"
        started, cpu0 = time.perf_counter(), time.process_time()
        wall, cpu = fetch(base + "/")
        print(f"| {size} | first dashboard of a fresh server (warm-up starts) | {wall:.3f} | {cpu:.3f} |", flush=True)
        wall, cpu = median_fetch(base + "/api/status")
        print(f"| {size} | status JSON during the warm-up | {wall:.3f} | {cpu:.3f} |", flush=True)
        view = server.catalog.view(run_dir.name)
        while view.indexing:
            time.sleep(0.05)
        print(f"| {size} | background warm-up done (tallies + grid replay), since start | "
              f"{time.perf_counter() - started:.3f} | {time.process_time() - cpu0:.3f} |", flush=True)
        for label, path in PAGES:
            wall, cpu = median_fetch(base + path.format(mid=size // 100))
            print(f"| {size} | {label} | {wall:.3f} | {cpu:.3f} |", flush=True)
        append(run_dir, size, 200, random.Random(1))  # the run goes on
        wall, cpu = fetch(base + "/")
        print(f"| {size} | dashboard after +200 programs (live refresh) | {wall:.3f} | {cpu:.3f} |", flush=True)
        server.shutdown()
        server.server_close()
        print(f"(store built in {built:.1f} s; {(run_dir / 'programs.db').stat().st_size / 1e6:.0f} MB)", file=sys.stderr)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
