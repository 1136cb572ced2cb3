"""Softmax kernel task: does the timing tell a fast kernel from a slow one, and is it stable?

The timing claims that tests/test_kernel_task.py must not make (they depend on the machine and
its load) are measured here: the naive initial kernel against the vectorised one, N rounds each,
printing per-round speedups, how often anything was flagged, and the machine's load average.
Run it under `nice` on a quiet machine for numbers worth quoting::

    nice python benchmarks/bench_kernel_timing.py --rounds 5
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TASK = REPO / "tasks" / "softmax_kernel"
VECTORISED = (
    "def softmax(x):\n"
    "    e = np.exp(x - x.max(axis=1, keepdims=True))\n"
    "    e /= e.sum(axis=1, keepdims=True)\n"
    "    return e\n"
)


def _evaluator():
    sys.path.insert(0, str(REPO / "evaluators"))
    spec = importlib.util.spec_from_file_location("softmax_evaluator", TASK / "evaluator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _vectorised(tmp: Path) -> str:
    source = (TASK / "initial_program.py").read_text()
    start, end = source.index("# EVOLVE-BLOCK-START"), source.index("# EVOLVE-BLOCK-END")
    path = tmp / "vectorised.py"
    path.write_text(source[:start] + "# EVOLVE-BLOCK-START\n" + VECTORISED + source[end:])
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    evaluator = _evaluator()
    with tempfile.TemporaryDirectory() as tmp:
        programs = {"initial": str(TASK / "initial_program.py"), "vectorised": _vectorised(Path(tmp))}
        rows = {}
        for name, path in programs.items():
            results = [evaluator.evaluate(path) for _ in range(args.rounds)]
            scores = [r["score"] for r in results]
            rows[name] = {
                "speedup_median": round(statistics.median(scores), 3),
                "speedup_min": round(min(scores), 3),
                "speedup_max": round(max(scores), 3),
                "flagged": sum(int(r.get("flagged", 0)) for r in results),
                "rounds": args.rounds,
            }
    print(json.dumps({"load_avg_1m": round(os.getloadavg()[0], 2), **rows}))


if __name__ == "__main__":
    main()
