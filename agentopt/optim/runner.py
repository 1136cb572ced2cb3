"""The ``optimize`` loop: build the Module, measure a baseline, step the optimizer, keep the best.

The optimizer class comes from the table :data:`agentopt.optim.kinds.OPTIMIZERS` and is built
with its ``for_run``; each iteration is its ``iterate`` (default: run a minibatch, ``backward``
each output with its metric feedback, ``step()``, re-score on the validation set; numeric: one
optuna trial scored on the validation set; pareto: one reflective mutation or merge step), and
the runner remembers the best state. At the end the best state is applied, saved with
``Module.save`` and summarised in ``summary.json``.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agentopt.llm.budget import BudgetLedger
from agentopt.llm.client import LLMClient
from agentopt.optim._sync import run_sync
from agentopt.optim.base import Optimizer, OptimizerError, StepResult
from agentopt.optim.config import ConfigError, OptimizeConfig
from agentopt.optim.kinds import OPTIMIZERS
from agentopt.optim.pareto import Evaluation
from agentopt.optim.workflow import ExampleRun, Workflow, WorkflowContext, load_examples
from agentopt.trace.module import Module
from agentopt.trace.render import to_html


@dataclass
class OptimizeResult:
    """What a run produced; ``history`` has one dict per iteration (also in summary.json)."""

    baseline: float
    best: float
    best_iteration: int
    best_state: dict[str, Any]
    output_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)


def _split(cfg: OptimizeConfig, rng: random.Random) -> tuple[list[Any], list[Any]]:
    data = load_examples(cfg.dataset)
    if not data:
        raise ConfigError(f"{cfg.dataset}: no examples")
    if cfg.valset is not None:
        val = load_examples(cfg.valset)
        return data, val or data
    if len(data) < 2:
        return data, data
    shuffled = data[:]
    rng.shuffle(shuffled)
    n_val = min(max(1, round(len(data) * cfg.val_fraction)), len(data) - 1)
    return shuffled[n_val:], shuffled[:n_val]


def _client(cfg: OptimizeConfig, ledger: BudgetLedger) -> LLMClient | None:
    needs_llm = OPTIMIZERS[cfg.optimizer.kind].needs_llm
    if not cfg.llm.models:
        if needs_llm:
            raise OptimizerError(
                f"optimizer '{cfg.optimizer.kind}' needs an LLM but no model is configured "
                "(add llm.models to the config; the 'numeric' optimizer runs offline)"
            )
        return None

    client = LLMClient(cfg.llm, ledger=ledger)
    if needs_llm:
        reason = run_sync(client.check_reachable(timeout_s=min(cfg.llm.timeout_s, 15.0)))
        if reason is not None:
            raise OptimizerError(f"optimizer '{cfg.optimizer.kind}' cannot use its LLM: {reason}")
    return client


class _Loop:
    """State of one run: workflow, Module, data, optimizer, best-so-far."""

    def __init__(self, cfg: OptimizeConfig, console: Console) -> None:
        self.cfg = cfg
        self.console = console
        self.rng = random.Random(cfg.seed)
        self.workflow = Workflow(cfg.workflow, cfg.build, cfg.entry, cfg.metric, failure_score=cfg.failure_score)
        self.target: Module = self.workflow.build()
        if not self.target.parameters():
            raise ConfigError(f"{cfg.workflow}: build() returned a Module without trainable Params")
        self.train, self.val = _split(cfg, self.rng)
        self.ledger = BudgetLedger()
        self.client = _client(cfg, self.ledger)
        self.ctx = WorkflowContext(self.client, cfg.seed)
        self.sign = 1.0 if cfg.direction == "maximize" else -1.0
        self.optimizer: Optimizer = OPTIMIZERS[cfg.optimizer.kind].for_run(self)

    def better(self, a: float, b: float) -> bool:
        return self.sign * a > self.sign * b

    def objective(self) -> str:
        word = "higher" if self.cfg.direction == "maximize" else "lower"
        return (self.cfg.optimizer.objective + f" Scores: {word} is better.").strip()

    def evaluate_one(self, example: Any) -> Evaluation:
        run = self.workflow.run(self.target, example, self.ctx)
        text = run.feedback.text + (f"\n{run.feedback.error}" if run.feedback.error else "")
        return Evaluation(run.score, text, run.output if run.traced else None)

    def run_all(self, examples: list[Any]) -> list[ExampleRun]:
        return [self.workflow.run(self.target, ex, self.ctx) for ex in examples]

    def val_score(self) -> tuple[float, list[ExampleRun]]:
        runs = self.run_all(self.val)
        return sum(r.score for r in runs) / len(runs), runs

    def iterate(self) -> tuple[StepResult, float]:
        """One iteration; returns the step result and the validation score after it."""
        return self.optimizer.iterate(self)


def optimize(cfg: OptimizeConfig, *, console: Console | None = None) -> OptimizeResult:
    """Run the whole loop for ``cfg``; raise :class:`~agentopt.errors.AgentoptError` on user errors."""
    console = console or Console(stderr=True)
    loop = _Loop(cfg, console)
    out_dir = cfg.resolved_output_dir()
    started = time.perf_counter()
    numeric = loop.optimizer.scores_tried_values
    baseline = best = float("nan")
    best_state = loop.target.state_dict()
    best_iter = 0
    history: list[dict[str, Any]] = []
    if not numeric:  # such an optimizer measures its first (baseline) trial inside iteration 1
        baseline, _ = loop.val_score()
        best = baseline
        history.append({"iteration": 0, "val_score": baseline, "applied": {}, "rejected": {}})
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("best {task.fields[best]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"optimize {cfg.display_name()} ({cfg.optimizer.kind})", total=cfg.iterations,
                                 best=f"{best:.4g}")
        for it in range(1, cfg.iterations + 1):
            state_before = loop.target.state_dict()
            result, score = loop.iterate()
            tried = state_before if numeric else loop.target.state_dict()
            if numeric and it == 1:
                baseline = best = score
                best_state = tried
            elif best != best or loop.better(score, best):
                best, best_state, best_iter = score, tried, it
            history.append({
                "iteration": it, "val_score": score, "applied": _jsonable(result.applied),
                "rejected": result.rejected, "error": result.error, "skipped": result.skipped,
            })
            progress.update(task, advance=1, best=f"{best:.4g}")
    loop.target.load_state_dict(best_state)
    result_obj = OptimizeResult(baseline, best, best_iter, best_state, out_dir, history)
    _write_outputs(loop, result_obj, time.perf_counter() - started)
    return result_obj


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(values, default=repr))


def _write_outputs(loop: _Loop, res: OptimizeResult, wall_s: float) -> None:
    out = res.output_dir
    out.mkdir(parents=True, exist_ok=True)
    loop.target.save(out / "best")
    if loop.val:
        run = loop.workflow.run(loop.target, loop.val[0], loop.ctx)
        (out / "best_trace.html").write_text(to_html(run.output, run.feedback, title="best parameters: first "
                                                     "validation example"), encoding="utf-8")
    cfg = loop.cfg
    summary = {
        "name": cfg.display_name(),
        "config": str(cfg.config_file) if cfg.config_file else None,
        "optimizer": cfg.optimizer.kind,
        "direction": cfg.direction,
        "iterations": cfg.iterations,
        "seed": cfg.seed,
        "train_examples": len(loop.train),
        "val_examples": len(loop.val),
        "baseline": res.baseline,
        "best": res.best,
        "best_iteration": res.best_iteration,
        "best_dir": str(out / "best"),
        "llm": {"calls": loop.ledger.calls, "tokens": loop.ledger.tokens, "usd": loop.ledger.usd},
        "wall_s": round(wall_s, 3),
        "history": res.history,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=repr) + "\n", encoding="utf-8")
