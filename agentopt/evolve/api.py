"""Public Python API: ``evolve(task)`` runs a whole evolution and returns its summary.

It wires the pieces together — task, sandbox backend, proposer (LLM or symbolic), store —
and is what the CLI calls too, so the CLI adds only presentation.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from agentopt.errors import AgentoptError, SandboxError
from agentopt.evolve.controller import (
    EvolutionController,
    NullReporter,
    Reporter,
    load_task_snapshot,
    save_task_snapshot,
)
from agentopt.evolve.proposal import Proposer
from agentopt.evolve.proposers import LLMProposer, SymbolicProposer
from agentopt.evolve.summary import RunSummary
from agentopt.llm.budget import BudgetLedger
from agentopt.llm.cache import RequestCache
from agentopt.llm.client import LLMClient
from agentopt.llm.local_server import LocalServerError, resolve_local_models
from agentopt.sandbox.factory import make_sandbox
from agentopt.sandbox.requirements import format_missing, missing_requirements
from agentopt.targets import load_any
from agentopt.task import TaskSpec

log = logging.getLogger(__name__)


async def _make_proposer(spec: TaskSpec, run_dir: Path, reporter: Reporter) -> Proposer:
    """LLM proposer when a model is configured and answers; else the symbolic mutator."""
    mode = spec.search.mutator
    if mode == "symbolic":
        return SymbolicProposer(spec)
    if not spec.llm.models:
        if mode == "llm":
            raise AgentoptError("search.mutator is 'llm' but no llm.models are configured")
        reporter.message("no LLM model configured: evolving with the built-in symbolic mutator")
        return SymbolicProposer(spec)

    try:  # `local/<name>` models: start or attach a llama.cpp server and fill in its api_base
        spec = spec.model_copy(update={"llm": await asyncio.to_thread(resolve_local_models, spec.llm)})
    except LocalServerError as err:
        if mode == "llm":
            raise
        reporter.message(f"local model unavailable ({err}): evolving with the built-in symbolic mutator")
        return SymbolicProposer(spec)
    budget = spec.search.budget
    ledger = BudgetLedger(max_usd=budget.max_usd, max_tokens=budget.max_tokens)
    cache_path = spec.llm.cache or (run_dir / "llm_cache.jsonl")
    cache = RequestCache(cache_path, replay_only=spec.llm.replay_only)
    client = LLMClient(spec.llm, ledger=ledger, cache=cache)
    if not spec.llm.replay_only:
        problem = await client.check_reachable(timeout_s=min(spec.llm.timeout_s, 30.0))
        if problem is not None:
            if mode == "llm":
                raise AgentoptError(f"LLM unreachable: {problem}")
            reporter.message(f"LLM unreachable ({problem}): evolving with the built-in symbolic mutator")
            await client.aclose()
            return SymbolicProposer(spec)
    return LLMProposer(spec, client, ledger)


def _check_requirements(spec: TaskSpec) -> None:
    """Say exactly which evaluator packages are missing before the first evaluation, not after."""
    if not spec.sandbox.requirements or spec.sandbox.kind != "local":
        return  # docker images carry their own packages; ray workers check on their node

    missing = missing_requirements(spec.sandbox.requirements)
    if missing:
        req_file = spec.evaluator.parent / "requirements.txt"
        raise SandboxError(format_missing(missing, req_file if req_file.is_file() else None))


def _make_sandbox(spec: TaskSpec) -> Any:
    return make_sandbox(spec.sandbox)


async def run_async(
    spec: TaskSpec,
    run_dir: Path,
    *,
    iterations: int | None = None,
    reporter: Reporter | None = None,
) -> RunSummary:
    """Start or continue the run in ``run_dir`` (continuing is what resume means)."""
    reporter = reporter or NullReporter()
    save_task_snapshot(spec, run_dir)
    for warning in spec.load_warnings:
        reporter.message(f"warning: {warning}")
    _check_requirements(spec)
    sandbox = _make_sandbox(spec)
    proposer = await _make_proposer(spec, run_dir, reporter)
    controller = EvolutionController(
        spec, run_dir, sandbox=sandbox, proposer=proposer, reporter=reporter, iterations=iterations
    )
    try:
        return await controller.run()
    finally:
        await proposer.aclose()
        await sandbox.close()


def evolve(
    task: TaskSpec | str | Path,
    *,
    iterations: int | None = None,
    output_dir: Path | str | None = None,
    quiet: bool = True,
    reporter: Reporter | None = None,
) -> RunSummary:
    """Run an evolution synchronously. ``task`` is a TaskSpec or a path to task.yaml.

    ``iterations`` overrides ``search.iterations``; ``output_dir`` overrides the task's.
    Running again with the same output dir continues the stored run.
    """
    spec = task if isinstance(task, TaskSpec) else load_any(task)
    run_dir = Path(output_dir) if output_dir is not None else spec.resolved_output_dir()
    if quiet:
        logging.getLogger("agentopt").setLevel(logging.WARNING)
    return asyncio.run(run_async(spec, run_dir, iterations=iterations, reporter=reporter))


def resume(run_dir: Path | str, *, iterations: int | None = None, reporter: Reporter | None = None) -> RunSummary:
    """Continue a stopped run from its folder (its task.json and programs.db)."""
    run_dir = Path(run_dir)
    spec = load_task_snapshot(run_dir)
    return asyncio.run(run_async(spec, run_dir, iterations=iterations, reporter=reporter))
