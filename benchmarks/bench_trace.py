"""Trace recorder benchmark: agentopt vs trace-opt (Microsoft Trace), side by side.

    python benchmarks/bench_trace.py            # ~1-2 min; prints a table

Measures, on a chain of N traced calls (N = 1k, 10k, 100k) rooted at one trainable Param:
- recording overhead per node: (time of the traced loop - time of the same plain loop) / N;
- backward time: agentopt ``backward(output, feedback)`` (every Param's minimal subgraph)
  vs trace-opt ``output.backward(feedback, propagator=GraphPropagator())``.
A chain is the deepest graph of its size, the worst case for graph walks. trace-opt's column
is skipped with a printed reason when it is not installed, and a size is skipped when its
projected time (from the previous size's growth) would exceed the time box.
"""

from __future__ import annotations

import gc
import math
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

SIZES = (1_000, 10_000, 100_000)
MAX_PROJECTED_S = 40.0


def _plain_loop(n: int) -> float:
    def f(x: int) -> int:
        return x + 1

    x = 0
    start = time.perf_counter()
    for _ in range(n):
        x = f(x)
    return time.perf_counter() - start


class Impl:
    """One recorder under test: build a chain (timed) and run backward on it (timed)."""

    name = ""

    def record(self, n: int) -> tuple[float, Any]:
        raise NotImplementedError

    def backward(self, out: Any) -> float:
        raise NotImplementedError


class AgentoptImpl(Impl):
    name = "agentopt"

    def __init__(self) -> None:
        from agentopt.trace import Param, backward, trace

        @trace
        def f(x: int) -> int:
            return x + 1

        self.f, self.Param, self._backward = f, Param, backward

    def record(self, n: int) -> tuple[float, Any]:
        f = self.f
        x = self.Param(0, name="start")
        start = time.perf_counter()
        for _ in range(n):
            x = f(x)
        return time.perf_counter() - start, x

    def backward(self, out: Any) -> float:
        start = time.perf_counter()
        prop = self._backward(out, "the result is too small", accumulate=False)
        elapsed = time.perf_counter() - start
        (subgraph,) = prop.subgraphs.values()  # one Param; its subgraph is the whole chain
        assert subgraph[-1] is out
        return elapsed


class TraceOptImpl(Impl):
    name = "trace-opt"

    def __init__(self) -> None:
        import logging
        import os

        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        logging.getLogger("LiteLLM").setLevel(logging.ERROR)
        from opto.trace import bundle, node
        from opto.trace.propagators import GraphPropagator

        @bundle()
        def f(x: int) -> int:
            return x + 1

        self.f, self.node, self.Propagator = f, node, GraphPropagator

    def record(self, n: int) -> tuple[float, Any]:
        f = self.f
        x = self.node(0, trainable=True)
        start = time.perf_counter()
        for _ in range(n):
            x = f(x)
        return time.perf_counter() - start, x

    def backward(self, out: Any) -> float:
        start = time.perf_counter()
        out.backward("the result is too small", propagator=self.Propagator(), retain_graph=True)
        return time.perf_counter() - start


def load_trace_opt() -> tuple[Impl | None, str]:
    try:
        return TraceOptImpl(), ""
    except ImportError as err:
        return None, f"trace-opt not installed ({err.name}); pip install trace-opt to compare"
    except Exception as err:  # a broken install must not stop our own numbers
        return None, f"trace-opt failed to load: {type(err).__name__}: {err}"


def _project(history: list[tuple[int, float]], n: int) -> float:
    """Project time at size n from the last two measurements (power-law fit), or linearly."""
    if not history:
        return 0.0
    if len(history) == 1:
        n0, t0 = history[0]
        return t0 * n / n0
    (n0, t0), (n1, t1) = history[-2], history[-1]
    k = max(1.0, math.log(max(t1, 1e-9) / max(t0, 1e-9)) / math.log(n1 / n0))
    return t1 * (n / n1) ** k


def measure(impl: Impl, console: Console) -> dict[int, dict[str, str | float]]:
    out: dict[int, dict[str, str | float]] = {}
    rec_hist: list[tuple[int, float]] = []
    bw_hist: list[tuple[int, float]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for n in SIZES:
        row: dict[str, str | float] = {}
        projected = _project(rec_hist, n)
        if projected > MAX_PROJECTED_S:
            row["record"] = f"skipped (~{projected:.0f}s projected)"
            row["backward"] = "skipped"
            out[n] = row
            continue
        gc.collect()
        reps = 3 if n <= 10_000 else 1
        best = float("inf")
        chain = None
        try:
            for _ in range(reps):
                elapsed, chain = impl.record(n)
                best = min(best, elapsed)
        except RecursionError:
            row["record"] = row["backward"] = "RecursionError"
            out[n] = row
            continue
        plain = min(_plain_loop(n) for _ in range(reps))
        row["record"] = max(best - plain, 0.0) / n * 1e6
        rec_hist.append((n, best))
        projected_bw = _project(bw_hist, n)
        if projected_bw > MAX_PROJECTED_S:
            row["backward"] = f"skipped (~{projected_bw:.0f}s projected)"
        else:
            try:
                t = impl.backward(chain)
                row["backward"] = t
                bw_hist.append((n, t))
            except RecursionError:
                row["backward"] = "RecursionError"
        out[n] = row
        console.log(f"{impl.name}: N={n:,} done")
        del chain
    return out


def _fmt(value: str | float, unit: str) -> str:
    if isinstance(value, str):
        return value
    return f"{value:.2f} {unit}" if unit == "µs" else f"{value * 1000:.1f} ms"


def _ratio(a: str | float, b: str | float) -> str:
    if isinstance(a, float) and isinstance(b, float) and a > 0:
        return f"{b / a:.0f}x"
    return "-"


def main() -> int:
    console = Console()
    started = time.perf_counter()
    ours = measure(AgentoptImpl(), console)
    other, reason = load_trace_opt()
    theirs = measure(other, console) if other is not None else {}
    table = Table(title="trace recording and backward: agentopt vs trace-opt (chain graphs)")
    for col in ("nodes", "agentopt record/node", "trace-opt record/node", "speedup",
                "agentopt backward", "trace-opt backward", "speedup"):
        table.add_column(col, justify="right")
    for n in SIZES:
        a = ours[n]
        b = theirs.get(n, {"record": "n/a", "backward": "n/a"})
        table.add_row(f"{n:,}", _fmt(a["record"], "µs"), _fmt(b["record"], "µs"), _ratio(a["record"], b["record"]),
                      _fmt(a["backward"], "s"), _fmt(b["backward"], "s"), _ratio(a["backward"], b["backward"]))
    console.print(table)
    if reason:
        console.print(f"trace-opt column skipped: {reason}")
    console.print(f"total {time.perf_counter() - started:.0f}s; python {sys.version.split()[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

