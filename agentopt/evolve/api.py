"""Public Python API: ``evolve(task)`` runs a whole evolution and returns its summary.

It wires the pieces together — task, sandbox backend, proposer (LLM or symbolic), store —
and is what the CLI calls too, so the CLI adds only presentation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Any

from agentopt.errors import AgentoptError, SandboxError
from agentopt.evaluate import EvalResult, evaluate_program, job_for
from agentopt.evolve.bundle import read_bundle, write_bundle
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
from agentopt.targets import load_any
from agentopt.task import ModelSpec, TaskSpec

log = logging.getLogger(__name__)


_FALLBACK_HINT = "set llm.fallback_to_symbolic: true to evolve with the built-in symbolic mutator instead"


def _unreachable(spec: TaskSpec, problem: str, reporter: Reporter) -> Proposer:
    """Configured models that cannot be reached are an error (a CI run must not pass on the
    symbolic mutator by accident) unless the task allows the fallback."""
    if spec.search.mutator == "llm" or not spec.llm.fallback_to_symbolic:
        raise AgentoptError(f"LLM unreachable: {problem}; {_FALLBACK_HINT}")
    reporter.message(f"LLM unreachable ({problem}): evolving with the built-in symbolic mutator")
    return SymbolicProposer(spec)


async def _make_proposer(spec: TaskSpec, run_dir: Path, reporter: Reporter) -> Proposer:
    """LLM proposer when a model is configured (and answers); the symbolic mutator when none is
    configured, or when none answers and ``llm.fallback_to_symbolic`` allows it."""
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
        if mode == "llm" or not spec.llm.fallback_to_symbolic:
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
            await client.aclose()
            return _unreachable(spec, problem, reporter)
    if budget.max_usd is not None:
        unpriced = await client.unpriced_models()
        if unpriced:
            reporter.message(
                f"warning: search.budget.max_usd cannot limit {', '.join(unpriced)}: no known price, so their calls "
                "count as $0; set usd_per_million_input_tokens / usd_per_million_output_tokens in the model entry"
            )
    return LLMProposer(spec, client, ledger)


def _check_requirements(spec: TaskSpec, reporter: Reporter) -> None:
    """Say exactly which evaluator packages are missing before the first evaluation, not after.

    Only a missing package that the evaluator, the program or an extra Python file imports
    stops the run; one nothing imports (OpenEvolve examples list whole-example requirements)
    is a warning."""
    if not spec.sandbox.requirements or spec.sandbox.kind != "local":
        return  # docker images carry their own packages; ray workers check on their node
    from agentopt.sandbox.requirements import (  # deferred: imports `packaging` (~0.05 s), only for requirements
        format_missing,
        missing_requirements,
    )
    from agentopt.sandbox.used_imports import split_used  # deferred: only for requirements, as above

    missing = missing_requirements(spec.sandbox.requirements)
    if not missing:
        return
    used, unused = split_used(missing, _python_sources(spec))
    req_file = spec.evaluator.parent / "requirements.txt"
    where = req_file if req_file.is_file() else None
    if unused:
        reporter.message(
            f"warning: {format_missing(unused, where)}; nothing in the evaluator or program imports them, so the run goes on"
        )
    if used:
        raise SandboxError(format_missing(used, where))


def _python_sources(spec: TaskSpec) -> list[Path]:
    """The Python files whose imports decide which requirements matter."""
    roots = [spec.evaluator, spec.program, *spec.extra_files]
    files: list[Path] = []
    for root in roots:
        root = Path(root)
        if root.is_dir():
            files.extend(sorted(root.rglob("*.py"))[:500])
        elif root.suffix == ".py":
            files.append(root)
    return files


async def evaluate_initial(spec: TaskSpec) -> EvalResult:
    """Evaluate the task's initial program once, as a run would (``validate --run``): the
    quickest way to see an evaluator's syntax error, missing function or wrong return type."""
    _check_requirements(spec, NullReporter())
    sandbox = _make_sandbox(spec)
    try:
        with tempfile.TemporaryDirectory(prefix="agentopt-validate-") as tmp:
            path = Path(tmp) / f"initial{spec.program.suffix or '.py'}"
            if spec.multi_file:
                path = write_bundle(read_bundle(spec.program, list(spec.program_files)), Path(tmp) / "initial")
            else:
                path.write_text(spec.program.read_text(encoding="utf-8"), encoding="utf-8")
            return await evaluate_program(sandbox, spec, path)
    finally:
        await sandbox.close()


def with_llm_overrides(spec: TaskSpec, *, model: str | None = None, api_base: str | None = None) -> TaskSpec:
    """Point a task at another endpoint or model without editing it (``--model``/``--api-base``,
    or ``AGENTOPT_MODEL``/``AGENTOPT_API_BASE``), as OpenEvolve's CLI allows.

    ``model`` replaces the model list with that one model (keeping the first model's key
    variable); a bare name sent to an ``api_base`` gets litellm's ``openai/`` prefix, as
    OpenAI-compatible servers need. ``api_base`` alone re-points every configured model."""
    if not model and not api_base:
        return spec
    models = list(spec.llm.models)
    if model:
        first = models[0] if models else None
        base = api_base or (first.api_base if first else None)
        name = model.strip()
        if base and "/" not in name:
            name = f"openai/{name}"
        models = [ModelSpec(name=name, api_base=base, api_key_env=first.api_key_env if first else None)]
    elif not models:
        raise AgentoptError("--api-base needs a model: the task configures no llm.models (add --model NAME)")
    else:
        models = [m.model_copy(update={"api_base": api_base}) for m in models]
    return spec.model_copy(update={"llm": spec.llm.model_copy(update={"models": models})})


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
    _check_requirements(spec, reporter)
    sandbox = _make_sandbox(spec)
    warming = asyncio.create_task(_prewarm(sandbox, spec))
    try:
        proposer = await _make_proposer(spec, run_dir, reporter)
    except BaseException:
        await _settle(warming)
        await sandbox.close()
        raise
    controller = EvolutionController(
        spec, run_dir, sandbox=sandbox, proposer=proposer, reporter=reporter, iterations=iterations
    )
    try:
        return await controller.run()
    finally:
        await _settle(warming)
        await proposer.aclose()
        await sandbox.close()


async def _settle(warming: asyncio.Task[None]) -> None:
    """Let a prewarm finish before the sandbox closes (a worker whose start was cancelled halfway
    would not be known to ``close``); it takes a fraction of a second, a stuck one is cancelled."""
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(asyncio.shield(warming), 10.0)
    warming.cancel()


async def _prewarm(sandbox: Any, spec: TaskSpec) -> None:
    """Start the sandbox's worker while the LLM client starts and checks its endpoint (both take
    ~0.1 s, more with a remote LLM), instead of one after the other. Best effort: the first real
    job reports any problem (and waits for a worker still starting)."""
    if spec.settings or spec.multi_file:
        return  # per-setting environments / bundles: nothing shaped like every job to start early
    try:
        await sandbox.prewarm(job_for(spec, spec.program, "evaluate"), count=1)
    except asyncio.CancelledError:
        raise
    except Exception as err:  # noqa: BLE001 - an optimization only
        log.debug("sandbox prewarm skipped: %s", err)


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
