"""Synthetic run folders written through the real ProgramDB (the engine's own write path), so
the watch/inspect tests and the benchmark read exactly what a run stores, without paying for
sandboxed evaluations. ``write_run`` can also keep writing (a live run) from a thread."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

from agentopt.evolve.db import Program, ProgramDB, make_program_id
from agentopt.evolve.hashing import exact_hash
from agentopt.task import Objective, SearchSpec

HOSTILE = '<script>alert("pwned")</script><img src=x onerror=alert(1)> & "quotes"'


def make_search(num_islands: int = 2, iterations: int = 100) -> SearchSpec:
    return SearchSpec(num_islands=num_islands, iterations=iterations, feature_bins=6, migration_interval=10)


def write_task_json(run_dir: Path, search: SearchSpec, name: str = "toy") -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "name": name,
        "program": str(run_dir / "gone.py"),
        "evaluator": str(run_dir / "gone_eval.py"),
        "objective": {"metric": "score", "direction": "maximize"},
        "search": search.model_dump(mode="json"),
    }
    (run_dir / "task.json").write_text(json.dumps(data), encoding="utf-8")


def make_program(i: int, rng: random.Random, parent: Program | None, island: int, *, hostile: bool = False) -> Program:
    """Program ``i``: mostly improving scores, one in 6 fails, operators rotate."""
    value = (parent.score or 0.0) + rng.uniform(-1.0, 1.5) if parent else 1.0
    body = HOSTILE if hostile else f"x = {value:.4f}"
    code = f"# EVOLVE-BLOCK-START\ndef solve():\n    # {body}\n    return {value:.4f}\n# EVOLVE-BLOCK-END\n"
    failed = parent is not None and i % 6 == 5
    operator = ["diff", "rewrite", "swap_operator"][i % 3]
    mutation = {"kind": "initial"} if parent is None else {"kind": "diff", "operator": operator, "model": "m1"}
    return Program(
        id=make_program_id(0, i, exact_hash(code)),
        code=code,
        parent_id=parent.id if parent else None,
        iteration=i,
        generation=(parent.generation + 1) if parent else 0,
        island=island,
        score=None if failed else value,
        metrics={} if failed else {"score": value, "value": value},
        feedback=f"solve() returned {value:.3f}; {HOSTILE}" if hostile else f"solve() returned {value:.3f}",
        error=(f"ZeroDivisionError: division by zero at line {i % 7}" if i % 12 == 5 else "timeout after 5 s")
        if failed
        else None,
        error_kind=("exception" if i % 12 == 5 else "timeout") if failed else None,
        mutation=mutation,
        code_hash=exact_hash(code),
        norm_hash=exact_hash(code),
        created_at=time.time(),
    )


class RunWriter:
    """Writes programs into ``run_dir`` through ProgramDB, optionally at a steady pace."""

    def __init__(self, run_dir: Path, *, num_islands: int = 2, iterations: int = 100, seed: int = 0) -> None:
        self.run_dir = run_dir
        self.search = make_search(num_islands, iterations)
        write_task_json(run_dir, self.search)
        self.db = ProgramDB.open(run_dir / "programs.db", objective=Objective(), search=self.search)
        self.rng = random.Random(seed)
        self.i = self.db.count()
        self.stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, n: int, *, hostile_at: int | None = None) -> None:
        for _ in range(n):
            i = self.i
            island = i % self.search.num_islands
            parent = self.db.best() if i else None
            self.db.add(make_program(i, self.rng, parent, island if parent else 0, hostile=i == hostile_at))
            if i and i % 4 == 0:
                self.db.record_llm_call({
                    "model": "m1" if i % 8 else "m2", "prompt_tokens": 100, "completion_tokens": 20,
                    "cost_usd": 0.001, "cached": False, "error": None, "api_key": "sk-secret",
                })  # fmt: skip
            if i and i % 10 == 3:
                self.db.record_rejection(
                    iteration=i, parent_id=None, reason="SEARCH block not found", reply_excerpt=HOSTILE
                )
            self.db.maybe_migrate(i)
            self.i += 1
            self.db.set_state("next_iteration", self.i)

    def start(self, every_s: float = 0.2) -> None:
        def loop() -> None:
            while not self.stop.wait(every_s):
                self.add(1)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.db.close()
