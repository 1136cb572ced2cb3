"""A mock OpenAI-compatible LLM for the side-by-side benchmark (``bench_vs_openevolve.py``).

It answers like the project's reference harness (``../shared/bench-evolve/mock_llm.py``): the
last ``x = <number>`` line of the user messages comes back as one SEARCH/REPLACE block that moves
the number by a seeded Gaussian step; with no such line, a full program. The HTTP side is
``tests/llm_server.py`` (the server the test suite uses), so this file holds only the reply
logic and the counters. Like the reference harness, Nagle stays on by default (a stdlib server:
headers and body leave in two segments); ``--no-nagle`` turns it off.

    python benchmarks/vs_openevolve/mock_llm.py --port 18000 --latency-ms 1 --stats-file stats.json

Prints ``listening <base_url>`` once ready; on SIGTERM/SIGINT writes the counters (requests,
diff/full replies, LLM calls in flight: peak, mean over the busy span, histogram at arrival) to
``--stats-file``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from llm_server import ScriptedOpenAIServer  # noqa: E402  (stdlib only)

X_LINE = re.compile(r"^(\s*)x = ([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
FULL_PROGRAM = "# EVOLVE-BLOCK-START\nx = {value}\n# EVOLVE-BLOCK-END\n\n\ndef run():\n    return x\n"


def _text(content: object) -> str:
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    return "" if content is None else str(content)


class MockReplies:
    """The reply callable for ScriptedOpenAIServer, plus in-flight counters.

    Why the latency sleep lives here and not in ``delay_s``: a request counts as in flight from
    the moment its reply starts being made until it is made, which is what ``--inflight`` reports.
    """

    def __init__(self, seed: int, latency_s: float, sigma: float) -> None:
        self.rng = random.Random(seed)
        self.latency_s = latency_s
        self.sigma = sigma
        self.lock = threading.Lock()
        self.diff = self.full = 0
        self.cur = self.peak = 0
        self.area = 0.0
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.t_end: float | None = None
        self.hist: dict[int, int] = {}

    def _bump(self, d: int) -> None:
        now = time.perf_counter()
        with self.lock:
            if self.t_last is not None:
                self.area += self.cur * (now - self.t_last)
            self.t_first = now if self.t_first is None else self.t_first
            self.t_last = now
            self.cur += d
            if d > 0:
                self.peak = max(self.peak, self.cur)
                self.hist[self.cur] = self.hist.get(self.cur, 0) + 1
            else:
                self.t_end = now

    def __call__(self, messages: list[dict]) -> str:
        self._bump(+1)
        try:
            reply = self._reply(messages)
            if self.latency_s > 0:
                time.sleep(self.latency_s)
            return reply
        finally:
            self._bump(-1)

    def _reply(self, messages: list[dict]) -> str:
        user = "\n".join(_text(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "user")
        if not user:
            user = "\n".join(_text(m.get("content")) for m in messages if isinstance(m, dict))
        last = None
        for line in user.splitlines():
            if match := X_LINE.match(line):
                last = (line.rstrip(), match.group(1), match.group(2))
        with self.lock:
            step = self.rng.gauss(0.0, self.sigma)
            if last is None:
                self.full += 1
                return "Here is an improved program.\n\n```python\n" + FULL_PROGRAM.format(value=round(0.5 + step, 4)) + "```\n"
            self.diff += 1
        line, indent, num = last
        try:
            old = float(num)
        except ValueError:
            old = 0.5
        new = round(old + step, 4)
        if f"{new}" == num:
            new = round(new + 0.0001, 4)
        return f"I will perturb the parameter.\n\n<<<<<<< SEARCH\n{line}\n=======\n{indent}x = {new}\n>>>>>>> REPLACE\n"

    def stats(self, requests: int) -> dict:
        with self.lock:
            span = (self.t_end or 0.0) - (self.t_first or 0.0)
            return {
                "chat": requests, "diff_replies": self.diff, "full_replies": self.full,
                "max_in_flight": self.peak, "busy_span_s": round(span, 3),
                "mean_in_flight": round(self.area / span, 2) if span > 0 else None,
                "in_flight_at_arrival_hist": dict(sorted(self.hist.items())),
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sigma", type=float, default=0.1)
    parser.add_argument("--no-nagle", action="store_true", help="send headers and body without Nagle's delay")
    parser.add_argument("--stats-file")
    args = parser.parse_args()
    replies = MockReplies(args.seed, args.latency_ms / 1000.0, args.sigma)
    server = ScriptedOpenAIServer(replies, nagle=not args.no_nagle, port=args.port).start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    print(f"listening {server.base_url}", flush=True)
    while not done.wait(0.2):
        pass
    server.stop()
    if args.stats_file:
        Path(args.stats_file).write_text(json.dumps(replies.stats(len(server.requests)), indent=1))


if __name__ == "__main__":
    main()
