"""Iterative agent decoding vs best-of-N at equal LLM-call budget on tasks/prompt_opt, offline.

Both methods optimize the task's ``instructions`` Param with N = 4 samples per step and the same
verifier: the prompt_opt workflow run on a training split of the word problems, scored by the
task's own metric (exact integer match). Iterative decoding refines from the best candidate with
feedback from the reward differences; best-of-N samples every candidate from the initial prompt.
At every budget they have made the same number of proposal calls and verifier runs.

Everything runs against one scripted local OpenAI-compatible server (``tests/llm_server.py``):

* the **solver** (the model inside the workflow) answers a problem correctly only when the system
  prompt holds the hint for that problem's kind *and* the hint to end with a single integer; a
  "round to the nearest ten" instruction spoils every answer;
* the **proposer** (the optimizer's model) edits the current-best prompt it is shown: adds one or
  two sentences from a fixed pool (hints, neutral phrases, the harmful one) or removes one,
  chosen by a hash of the request, so runs are reproducible.

The scripted proposer ignores the feedback text, so this curve tests the *mechanics* (refining
from the verified best compounds edits; sampling from the start cannot), not how well a model
uses reward-difference feedback. Point ``--api-base``/``--model`` (and ``--api-key-env``) at a real
model to measure that: it then plays both the solver and the proposer.

    python benchmarks/bench_decoding.py                    # budgets up to 32 calls, 3 seeds
    python benchmarks/bench_decoding.py --budget 64 --seeds 5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agentopt.llm.budget import BudgetLedger  # noqa: E402
from agentopt.llm.client import LLMClient  # noqa: E402
from agentopt.optim import BestOfN, IterativeDecoding  # noqa: E402
from agentopt.optim.workflow import Workflow, WorkflowContext, load_examples  # noqa: E402
from agentopt.task import LLMSpec  # noqa: E402
from tests.llm_server import ScriptedOpenAIServer  # noqa: E402

TASK = REPO / "tasks" / "prompt_opt"
HINTS = {
    "boxes": "Multiply the boxes by the amount in each before subtracting what is given away.",
    "remainder": "When things are shared equally, the answer is the remainder of the division.",
    "change": "Change is the amount paid minus the total cost.",
    "every day": "Subtract the losses once for each day they happen.",
}
FORMAT = "End with the final answer as a single integer."
HARMFUL = "Round numbers to the nearest ten."
NEUTRAL = ["Be concise.", "Think carefully.", "Use plain language.", "Stay polite."]
POOL = [FORMAT, *HINTS.values(), HARMFUL, *NEUTRAL]


def true_answer(question: str) -> tuple[str, int]:
    """The problem's kind and answer, recomputed from its text (generate.py's four templates)."""
    n = [int(x) for x in re.findall(r"\d+", question)]
    if "boxes" in question:
        return "boxes", n[0] * n[1] - n[2]
    if "remainder" in question:
        return "remainder", (n[0] + n[1]) % n[2]
    if "change" in question:
        return "change", n[2] - n[0] * n[1]
    return "every day", n[0] * n[1] - 2 * n[2]


def solver(system: str, question: str) -> str:
    kind, answer = true_answer(question)
    if HINTS[kind] not in system:
        answer += 7  # the typical slip of a model without the hint
    if HARMFUL in system:
        answer = int(round(answer, -1)) + 10
    if FORMAT not in system:
        return f"I think it is {answer}, counting 3 steps."
    return f"Answer: {answer}"


def proposer(user: str) -> str:
    match = re.search(r"## instructions\n(`{3,})\n(.*?)\n\1", user, re.DOTALL)
    current = match.group(2) if match else "Answer the question."
    rng = random.Random(hashlib.sha256(user.encode()).hexdigest())
    present = [p for p in POOL if p in current]
    if present and rng.random() < 0.3:
        new = current.replace(" " + rng.choice(present), "")
    else:
        absent = [p for p in POOL if p not in current]
        new = " ".join([current, *rng.sample(absent, min(len(absent), rng.choice((1, 2))))])
    return json.dumps({"reasoning": "scripted edit", "suggestion": {"instructions": new}})


def reply(messages: list[dict]) -> str:
    system = messages[0]["content"]
    if "You improve the values of some parameters" in system:
        return proposer(messages[-1]["content"])
    return solver(system, messages[-1]["content"])


def run(kind: type[IterativeDecoding], spec: LLMSpec, seed: int, budget: int, n: int,
        train_size: int) -> tuple[list[tuple[int, float]], float]:
    examples = load_examples(TASK / "problems.jsonl")
    random.Random(seed).shuffle(examples)
    train, val = examples[:train_size], examples[train_size:]
    workflow = Workflow(TASK / "workflow.py", "build", "run", "metric", failure_score=0.0)
    module = workflow.build()
    client = LLMClient(spec, ledger=BudgetLedger())
    ctx = WorkflowContext(client, seed)

    def score_on(examples: list[Any]) -> tuple[float, str]:
        runs = [workflow.run(module, ex, ctx) for ex in examples]
        wrong = [r.feedback.text for r in runs if r.score < 1][:3]
        return float(np.mean([r.score for r in runs])), "\n".join(wrong)

    opt = kind(module, verify=lambda: score_on(train), llm=client, n=n, seed=seed,
               objective="Maximize the fraction of word problems answered with the exact integer.")
    while opt.calls < budget:
        opt.step()
    opt.apply_best()
    return opt.curve, score_on(val)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=32, help="proposal LLM calls per run")
    parser.add_argument("-n", type=int, default=4, help="samples per step")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train", type=int, default=12, help="training problems the verifier runs")
    parser.add_argument("--api-base", default=None, help="a real OpenAI-compatible endpoint instead of the script")
    parser.add_argument("--model", default="openai/scripted")
    parser.add_argument("--api-key-env", default=None, help="environment variable holding the real model's key")
    args = parser.parse_args()
    console = Console(width=140)
    started = time.perf_counter()
    server = None
    api_base = args.api_base
    if api_base is None:
        server = ScriptedOpenAIServer(reply).start()
        api_base = server.base_url
    spec = LLMSpec(models=[{"name": args.model, "api_base": api_base, "api_key_env": args.api_key_env}],
                   max_retries=0 if server else 3, temperature=0.7)
    results: dict[str, list[tuple[list[tuple[int, float]], float]]] = {"iterative decoding": [], "best-of-N": []}
    try:
        for seed in range(args.seeds):
            results["iterative decoding"].append(run(IterativeDecoding, spec, seed, args.budget, args.n, args.train))
            results["best-of-N"].append(run(BestOfN, spec, seed, args.budget, args.n, args.train))
    finally:
        if server is not None:
            server.stop()
    budgets = sorted({c for runs in results.values() for curve, _ in runs for c, _ in curve})
    table = Table(title=f"prompt_opt, N={args.n} samples/step: best verifier score (train, {args.train} problems) "
                        f"against proposal calls, mean of {args.seeds} seeds")
    table.add_column("method")
    for b in budgets:
        table.add_column(f"{b} calls", justify="right")
    table.add_column("held-out at end", justify="right")
    for method, runs in results.items():
        cells = [f"{np.mean([dict(curve)[b] for curve, _ in runs]):.3f}" for b in budgets]
        table.add_row(method, *cells, f"{np.mean([v for _, v in runs]):.3f}")
    console.print(table)
    verifier_runs = args.budget + 1
    console.print(f"each method: {args.budget} proposal calls and {verifier_runs} verifier runs "
                  f"({verifier_runs * args.train} solver calls) per seed; "
                  f"{'scripted local server' if server else api_base}; "
                  f"{time.perf_counter() - started:.1f} s wall, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
