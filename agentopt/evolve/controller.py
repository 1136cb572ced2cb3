"""The evolution loop: sample parents, mutate (LLM or symbolic), evaluate in a sandbox, store.

Determinism and resume hinge on these choices:

* A sliding window of iterations is in flight (:mod:`agentopt.evolve.pipeline`). Iteration
  ``i`` *starts* — parent and inspirations sampled, the proposer's plan made (prompt, model,
  prompt variant: every choice that reads the store or learned state) — exactly when iteration
  ``i - window`` commits, and draws from its own RNG seeded with ``(seed, i)``. Results are
  committed in iteration order (a reorder buffer), so the store's content does not depend on
  which LLM answer or evaluation finished first.
* Equivalence decisions (exact / normalized hash, against stored programs and against children
  still in flight, which are then awaited instead of evaluated twice) are made in iteration
  order too; functional-fingerprint lookups see only iterations <= ``i - window``.
* Program ids are ``hash(seed, iteration, code)``. Durable records: a start record per started
  iteration (its plan), a pending entry per finished, uncommitted child, and one transaction per
  commit (program or rejection + the run's counters and learned state + the start record of the
  iteration that commit lets start: ``ProgramDB.batch``). After a crash, resuming
  reruns the started iterations from their records (the LLM request cache answers them) and
  takes finished children from the pending area, so nothing is evaluated twice and the run
  continues exactly as the uninterrupted one would have.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import random
import shutil
import time
import warnings
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agentopt.errors import AgentoptError, BudgetExceeded, LLMError
from agentopt.evaluate import EvalResult, evaluate_program, fingerprint_program, has_fingerprint
from agentopt.evolve.bundle import (
    BundleError,
    bundle_complexity,
    bundle_norm_hash,
    is_bundle,
    read_bundle,
    write_bundle,
)
from agentopt.evolve.db import Program, ProgramDB, make_program_id
from agentopt.evolve.final_selection import select_final
from agentopt.evolve.front import front_summary
from agentopt.evolve.funnel import Funnel, funnel_stats
from agentopt.evolve.gpu_slots import evaluation_slots
from agentopt.evolve.hashing import code_identity, exact_hash
from agentopt.evolve.health import FailureRate, RunAborted, initial_failure, output_tail
from agentopt.evolve.materialize import materialize_program
from agentopt.evolve.pipeline import PARKED, STOP, Parked, WindowPipeline
from agentopt.evolve.proposal import Child, Proposer
from agentopt.evolve.summary import RunSummary, write_outputs
from agentopt.evolve.tuning import tune_budget, tune_enabled, tune_program, tune_seed
from agentopt.sandbox.base import Sandbox
from agentopt.task import TaskSpec

log = logging.getLogger(__name__)

STATE_NEXT_ITERATION = "next_iteration"
STATE_STARTED_AT = "wall_s_before"
STATE_PREVIOUS_ERRORS = "previous_errors"
STATE_LEDGER = "llm_ledger"
STATE_NO_IMPROVE = "iterations_without_improvement"
STATE_PENDING = "pending_batch"  # legacy (batch-era runs): pid -> program, read on resume
STATE_WINDOW = "pipeline_window"
PENDING_PREFIX = "pending/"  # + iteration: an evaluated child awaiting its turn to commit
TUNE_PREFIX = "tune/"  # + iteration: the constants-tuning outcome of a child awaiting its commit
MATERIALIZE_PREFIX = "materialize/"  # + iteration: a materialize operator's sandbox outcome, likewise
# A materialized child has many new free literals and happens once per lineage: its tuning gets
# this many times the usual budget (the job's time share still bounds it), so the new form is
# judged after a real search rather than the short polish that suits a small edit.
MATERIALIZE_TUNE_FACTOR = 5
START_PREFIX = "start/"  # + iteration: a started iteration's parent, island and proposal plan
STATE_EVALUATIONS = "evaluations_total"
STATE_CACHE = "equivalence_cache"
STATE_TOTAL_ITERATIONS = "total_iterations"  # the last explicit -n, so resume keeps it
STATE_TOTALS = "run_totals"  # failures / cache hits / rejected replies over every session
CACHE_KINDS = ("exact", "normalized", "functional")


class Reporter(Protocol):
    """Receives progress events; the CLI draws them with rich, the API ignores them."""

    def start(self, *, total: int, done: int, mutator: str) -> None: ...
    def message(self, text: str) -> None: ...
    def update(self, *, iteration: int, program: Program | None, best: Program | None, stats: RunStats) -> None:
        """One iteration committed; ``program`` is None for a rejected child (no program)."""
    def finish(self, summary: RunSummary) -> None: ...


class NullReporter:
    def start(self, **_: Any) -> None:
        pass

    def message(self, text: str) -> None:
        log.info(text)

    def update(self, **_: Any) -> None:
        pass

    def finish(self, summary: RunSummary) -> None:
        pass


@dataclass
class RunStats:
    evaluations: int = 0
    failures: int = 0
    cache_hits: int = 0
    fingerprints: int = 0
    rejected_replies: int = 0
    llm_errors: int = 0
    started: float = field(default_factory=time.monotonic)
    wall_before: float = 0.0

    @property
    def wall_s(self) -> float:
        return self.wall_before + (time.monotonic() - self.started)

    def evals_per_s(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.evaluations / elapsed if elapsed > 0 else 0.0


#: What one iteration yields: the child, its program (None when rejected) and how it was obtained
#: ("evaluated", "cache_hit", "rejected", "resumed" from the pending area, "stored").
IterationResult = tuple[Child, Program | None, str]


class EvolutionController:
    """Runs (or resumes) one evolution run in ``run_dir``."""

    def __init__(
        self,
        spec: TaskSpec,
        run_dir: Path,
        *,
        sandbox: Sandbox,
        proposer: Proposer | None = None,
        reporter: Reporter | None = None,
        iterations: int | None = None,
        mutator: Proposer | None = None,
    ) -> None:
        if mutator is not None:  # the pre-0.2 name of ``proposer``
            warnings.warn("EvolutionController(mutator=...) is now proposer=...; mutator= goes away in agentopt 0.2",
                          DeprecationWarning, stacklevel=2)
            proposer = proposer or mutator
        if proposer is None:
            raise TypeError("EvolutionController needs a proposer")
        self.spec = spec
        self.run_dir = run_dir
        self.sandbox = sandbox
        self.proposer: Proposer = proposer
        self.reporter = reporter or NullReporter()
        self.db = ProgramDB.open(run_dir / "programs.db", objective=spec.objective, search=spec.search)
        # `evolve -n 400` then `resume`: the run's target stays 400 (an explicit -n replaces it).
        stored_total = self.db.get_state(STATE_TOTAL_ITERATIONS)
        if iterations is not None:
            self.total_iterations = iterations
            self.db.set_state(STATE_TOTAL_ITERATIONS, iterations)
        else:
            self.total_iterations = int(stored_total) if stored_total is not None else spec.search.iterations
        self._totals: dict[str, int] = {"failures": 0, "cache_hits": 0, "rejected_replies": 0}
        stored_totals = self.db.get_state(STATE_TOTALS)
        if stored_totals is None and self.db.count() > 0:  # a run stored before totals were kept
            stored_totals = {"failures": self.db.count() - self.db.count(ok_only=True),
                             "rejected_replies": len(self.db.rejections())}
        self._totals.update({k: int(v) for k, v in (stored_totals or {}).items()})
        self._failure_rate = FailureRate(spec.search.max_failure_rate, spec.search.failure_window)
        self._abort: str | None = None
        self.stats = RunStats(wall_before=float(self.db.get_state(STATE_STARTED_AT, 0.0)))
        self.work_dir = run_dir / ".work"
        self._stop_reason: str | None = None
        self._previous_errors: dict[str, str] = dict(self.db.get_state(STATE_PREVIOUS_ERRORS, {}))
        self._no_improve = int(self.db.get_state(STATE_NO_IMPROVE, 0))
        self._evaluations_total = int(self.db.get_state(STATE_EVALUATIONS, 0))
        # Whole-run equivalence-cache counters: lookups, hits per kind, fingerprint jobs run.
        self._cache: dict[str, int] = {"lookups": 0, "fingerprints": 0, **{k: 0 for k in CACHE_KINDS}}
        self._cache.update({k: int(v) for k, v in (self.db.get_state(STATE_CACHE, {}) or {}).items()})
        proposer.attach(self.db)
        slots, self._slots_note = evaluation_slots(spec)
        self._eval_slots = asyncio.Semaphore(slots)
        self._fingerprint = has_fingerprint(spec)
        self._isolation_checked = False
        self._funnel = self._open_funnel()
        self._tune = tune_enabled(spec, proposer)
        # Pipeline state (see the module docstring and pipeline.py).
        self._window = self._window_size()
        self._pending: dict[str, dict[str, Any]] = dict(self.db.get_state(STATE_PENDING, {}) or {})
        for data in self.db.states_with_prefix(PENDING_PREFIX).values():
            self._pending[str(data["id"])] = data
        self._starts: dict[int, dict[str, Any]] = {}
        self._parents: dict[str, Program] = {}
        self._claims: dict[int, asyncio.Event] = {}
        self._registry: dict[str, tuple[int, asyncio.Future[Program]]] = {}
        self._tuned: dict[int, dict[str, Any]] = {
            int(key[len(TUNE_PREFIX) :]): value for key, value in self.db.states_with_prefix(TUNE_PREFIX).items()
        }
        self._materialized: dict[int, dict[str, Any]] = {
            int(key[len(MATERIALIZE_PREFIX) :]): value
            for key, value in self.db.states_with_prefix(MATERIALIZE_PREFIX).items()
        }

    # ------------------------------------------------------------------ helpers
    def _open_funnel(self) -> Funnel:
        """The rank-promotion windows as of the last commit (iterations started later take their
        cutoffs from their start records): rebuilt from
        the stored programs of earlier iterations, so a resumed run decides as before."""
        funnel = Funnel(self.spec.cascade, self.spec.objective)
        if funnel.ranking:
            next_it = int(self.db.get_state(STATE_NEXT_ITERATION, 0))
            funnel.replay(self.db.programs(order="iteration"), before_iteration=next_it)
        return funnel

    def _better(self, a: Program, b: Program | None) -> bool:
        if not a.ok:
            return False
        if b is None or not b.ok:
            return True
        return self.spec.objective.better(a.score, b.score)  # type: ignore[arg-type]

    def _write_candidate(self, code: str, name: str) -> Path:
        """The candidate as the evaluator sees it: one file, or for a multi-file task a
        directory holding every file at its relative path (that directory is program_path)."""
        if self.spec.multi_file or is_bundle(code):
            self.work_dir.mkdir(parents=True, exist_ok=True)
            return write_bundle(code, self.work_dir / name)
        path = self.work_dir / f"{name}{self.spec.program.suffix or '.py'}"
        data = code.encode("utf-8")  # what write_text would write (text mode adds os.linesep)
        if os.linesep != "\n":
            data = code.replace("\n", os.linesep).encode("utf-8")
        try:  # the folder exists after the first candidate: no mkdir syscall per iteration
            _write_file(path, data)
        except FileNotFoundError:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            _write_file(path, data)
        return path

    @staticmethod
    def _remove_candidate(path: Path) -> None:
        try:  # a plain file nearly always: unlink first, no stat syscall per iteration
            os.unlink(path)
        except FileNotFoundError:
            pass
        except (IsADirectoryError, PermissionError):  # EISDIR (EPERM on macOS): a multi-file candidate
            if not path.is_dir():
                raise
            shutil.rmtree(path, ignore_errors=True)

    async def _evaluate_code(
        self,
        code: str,
        name: str,
        *,
        lookup: bool = False,
        max_iteration: int | None = None,
        rank_limits: list[float | None] | None = None,
    ) -> tuple[EvalResult, str, str | None]:
        """Evaluate ``code``: ``(result, func_hash, hit id)``.

        With a ``fingerprint`` hook the cheap fingerprint job runs first (in the same
        evaluation slot); with ``lookup`` its hash is looked up among stored programs of
        iterations <= ``max_iteration`` (the store as of the iteration's start, a fixed set
        whatever has been committed since) and a hit returns that program's result without
        running the evaluation (hit id set). ``rank_limits``: the cascade funnel's cutoffs as of
        the iteration's start (taken then, kept in its start record)."""
        path = self._write_candidate(code, name)
        try:
            async with self._eval_slots:
                func_hash = ""
                if self._fingerprint:
                    digest, problem = await fingerprint_program(self.sandbox, self.spec, path)
                    self.stats.fingerprints += 1
                    self._cache["fingerprints"] += 1
                    if digest is None:
                        log.info("fingerprint of %s failed (%s); evaluating in full", name, problem)
                    else:
                        func_hash = digest
                        cached = (
                            self.db.find_by_hash(func_hash=digest, max_iteration=max_iteration) if lookup else None
                        )
                        if cached is not None:
                            return _result_of(cached), func_hash, cached.id
                return await evaluate_program(self.sandbox, self.spec, path, rank_limits=rank_limits), func_hash, None
        finally:
            self._remove_candidate(path)

    def _hashes(self, code: str) -> tuple[str, float]:
        """Normalized hash and complexity; per file for a multi-file candidate."""
        simplify = self.spec.search.simplify
        if is_bundle(code):
            try:
                return bundle_norm_hash(code, simplify), bundle_complexity(code)
            except BundleError:
                pass  # not a well-formed bundle after all: hash it as plain text
        return code_identity(code, simplify)

    def _program_from(
        self,
        child: Child,
        code: str,
        result: EvalResult,
        pid: str,
        *,
        func_hash: str = "",
        hashes: tuple[str, float] | None = None,
    ) -> Program:
        parent = child.parent
        norm, complexity = hashes or self._hashes(code)
        return Program(
            id=pid,
            code=code,
            parent_id=parent.id if parent else None,
            iteration=child.iteration,
            generation=(parent.generation + 1) if parent else 0,
            island=child.island,
            score=result.score if result.error is None else None,
            metrics=result.metrics,
            feedback=result.feedback,
            artifacts=result.artifacts,
            error=result.error,
            error_kind=result.error_kind,
            output_tail=output_tail(result.stderr, result.stdout) if result.error is not None else "",
            stage=result.stage,
            code_hash=exact_hash(code),
            norm_hash=norm,
            func_hash=func_hash,
            complexity=complexity,
            mutation=child.mutation,
            isolation=result.isolation,
            wall_s=result.wall_s,
            created_at=time.time(),
            stages=result.stages,
        )

    def _check_isolation(self, program: Program) -> None:
        """Warn once when candidates run with fewer protections than this machine allows."""
        if self._isolation_checked or program.error_kind == "sandbox_error":
            return
        self._isolation_checked = True
        possible = set(self.sandbox.available_isolation())
        if self.spec.sandbox.network:
            possible.discard("net_namespace")  # the task asked for network access
        missing = sorted(possible - set(program.isolation))
        if missing:
            self.reporter.message(
                "warning: candidates run with weaker isolation than this machine allows "
                f"(missing: {', '.join(missing)})"
            )
        evaluator_source = self.spec.evaluator.read_text(encoding="utf-8", errors="replace")
        if "agentopt_guest" not in evaluator_source:
            self.reporter.message(
                "warning: the evaluator runs candidates in its own process, so a candidate can tamper with "
                "its score; use agentopt_guest.call_candidate (see docs/sandbox.md)"
            )

    # ------------------------------------------------------------------ budgets
    def _budget_stop(self, next_iteration: int) -> str | None:
        budget = self.spec.search.budget
        if next_iteration > self.total_iterations:
            return f"reached {self.total_iterations} iterations"
        if budget.max_evaluations is not None and self._evaluations_total >= budget.max_evaluations:
            return f"evaluation budget of {budget.max_evaluations} reached"
        if budget.max_wall_s is not None and self.stats.wall_s >= budget.max_wall_s:
            return f"wall-time budget of {budget.max_wall_s:g}s reached"
        if budget.patience is not None and self._no_improve >= budget.patience:
            return f"no improvement in {budget.patience} iterations (patience)"
        ledger_error = self.proposer.budget_error()
        if ledger_error:
            return ledger_error
        return None

    # ------------------------------------------------------------------ steps
    async def _ensure_initial(self) -> None:
        if self.db.count() > 0:
            stored = next(iter(self.db.programs(order="iteration")), None)
            if stored is not None and initial_failure(stored.error, stored.error_kind, "") is not None:
                await self._recheck_initial()  # the setup was broken last time: is it fixed now?
            return
        try:
            if self.spec.multi_file:
                code = read_bundle(self.spec.program, list(self.spec.program_files))
            else:
                code = self.spec.program.read_text(encoding="utf-8")
        except (OSError, BundleError) as err:
            raise AgentoptError(f"cannot read the initial program: {err}") from None
        child = Child(iteration=0, parent=None, code=code, mutation={"kind": "initial"})
        result, func_hash, _ = await self._evaluate_code(code, "initial")
        pid = make_program_id(self.spec.search.seed, 0, exact_hash(code))
        program = self._program_from(child, code, result, pid, func_hash=func_hash)
        self._check_isolation(program)
        self.db.add(program)
        self._funnel.observe(program)
        self.stats.evaluations += 1
        self._evaluations_total += 1
        if not program.ok:
            self.stats.failures += 1
            self._totals["failures"] += 1
            self.reporter.message(f"initial program failed: {program.error}")
            self._abort = initial_failure(program.error, program.error_kind, program.output_tail)
            if self._abort:
                self._show_tail(program.output_tail)
        self.db.set_state(STATE_NEXT_ITERATION, 1)
        self.reporter.update(iteration=0, program=program, best=self.db.best(), stats=self.stats)

    async def _recheck_initial(self) -> None:
        """Evaluate the initial program again (not stored) when its stored result says the setup
        was broken; abort again unless the user fixed the evaluator or the task since."""
        code = next(iter(self.db.programs(order="iteration"))).code
        result, _, _ = await self._evaluate_code(code, "initial-recheck")
        tail = output_tail(result.stderr, result.stdout)
        self._abort = initial_failure(result.error, result.error_kind, tail)
        if self._abort:
            self._show_tail(tail)

    def _show_tail(self, tail: str, lines: int = 12) -> None:
        """The guest's last output lines, one message each (the reporter's one-line contract)."""
        shown = [line for line in tail.splitlines() if line.strip()][-lines:]
        if shown:
            self.reporter.message("guest output (last lines):")
            for line in shown:
                self.reporter.message("  " + line[:500])

    # ------------------------------------------------------------------ pipelined steps
    # One iteration = start (sync: sample + plan, durable) -> run (async: LLM, dedupe, sandbox)
    # -> commit (sync, in iteration order). WindowPipeline (pipeline.py) schedules them.

    def _window_size(self) -> int:
        """Iterations in flight; fixed for the life of a run (stored), since it shapes what each
        iteration samples and so the whole seeded run."""
        stored = self.db.get_state(STATE_WINDOW)
        if stored is not None:
            return int(stored)
        configured = self.spec.search.pipeline_window
        if configured is None:
            # Symbolic proposals cost no wall time, but one extra keeps the next one ready.
            configured = self.spec.search.parallel_evaluations + max(1, self.proposer.concurrency())
        self.db.set_state(STATE_WINDOW, configured)
        return configured

    def _start(self, iteration: int) -> Awaitable[IterationResult] | Parked | None:
        """Start ``iteration`` now (the run is exactly "as of iteration - window"): sample its
        parent, build its proposal plan, write the start record. Past the requested iterations
        the record is written and the iteration parked (see pipeline.PARKED)."""
        if self._abort is not None:  # a run-health check failed at a commit: start nothing more
            return STOP
        record = self._starts.get(iteration)
        if iteration > self.total_iterations:
            if record is None:
                self._write_start(iteration)
            return PARKED
        if record is None:
            reason = self._budget_stop(iteration)
            if reason:
                self._stop_reason = reason
                return STOP
            record = self._write_start(iteration)
        return self._run_iteration(record)

    def _write_start(self, iteration: int) -> dict[str, Any]:
        migrated = self.db.maybe_migrate(iteration)
        if migrated:
            log.info("migrated %d programs between islands at iteration %d", migrated, iteration)
        rng = random.Random(f"{self.spec.search.seed}:{iteration}")
        island = self.db.next_island(iteration)
        parent, inspirations = self.db.sample(
            rng,
            island=island,
            num_top=self.spec.search.num_top_programs,
            num_diverse=self.spec.search.num_diverse_programs,
        )
        plan = self._plan(iteration, parent, inspirations, rng)
        record: dict[str, Any] = {"iteration": iteration, "island": island, "parent_id": parent.id, "plan": plan}
        if self.spec.search.novelty_threshold > 0:
            record["near_duplicates"] = self.db.near_duplicate_candidates(island)
        if self._funnel.ranking:  # the funnel's rank cutoffs as of this start, like the sample
            record["rank_limits"] = self._funnel.limits()
        self.db.set_state(f"{START_PREFIX}{iteration}", record)
        self._starts[iteration] = record
        self._parents[parent.id] = parent
        return record

    def _plan(self, iteration: int, parent: Program, inspirations: list[Program], rng: random.Random) -> dict[str, Any]:
        previous_error = self._previous_errors.get(parent.id)
        return dict(
            self.proposer.plan(
                iteration=iteration, parent=parent, inspirations=inspirations, rng=rng, previous_error=previous_error
            )
        )

    def _run_iteration(self, record: dict[str, Any]) -> Awaitable[IterationResult]:
        """The slow part of a started iteration, as a coroutine. Its turn marker is created now,
        synchronously and in iteration order, so a later iteration can never miss it."""
        self._claims[int(record["iteration"])] = asyncio.Event()
        return self._iterate(record)

    async def _iterate(self, record: dict[str, Any]) -> IterationResult:
        iteration = int(record["iteration"])
        parent = self._parents.get(record["parent_id"]) or self.db.get(record["parent_id"])
        if parent is None:  # cannot happen with an intact store; say so instead of a KeyError
            raise AgentoptError(f"iteration {iteration}: its parent {record['parent_id']} is missing from the store")
        try:
            child: Child = await self.proposer.execute(record["plan"], iteration=iteration, parent=parent)
            child.island = int(record["island"])
            if child.code is not None and isinstance(child.mutation.get("materialize"), str):
                await self._materialize_child(child)
            code = child.code
            if self._tune and code is not None and len(code) <= self.spec.search.max_code_length and not is_bundle(code):
                await self._tune_child(child)
        except BaseException:
            # The run stops at this iteration's turn to commit; never leave later ones blocked.
            self._claims[iteration].set()
            raise
        return await self._finish_child(child, record)

    async def _wait_turn(self, iteration: int) -> None:
        """Equivalence decisions are made in iteration order (so they do not depend on timing):
        wait until the previous iteration has made its own."""
        previous = self._claims.get(iteration - 1)
        if previous is not None:
            await previous.wait()

    async def _finish_child(self, child: Child, record: dict[str, Any]) -> IterationResult:
        """Evaluate (or reuse) a child. Returns (child, program or None, outcome).

        Equivalence, cheapest first, against every earlier iteration: stored programs, and
        children still in flight (a child equal to one being evaluated waits for that result
        instead of running again). Decided in iteration order, so the outcome is the same
        whichever evaluation finishes first."""
        iteration = child.iteration
        await self._wait_turn(iteration)
        try:
            decision = self._decide(child, record)
        finally:
            self._claims[iteration].set()
        kind, payload = decision
        if kind == "done":
            return payload  # type: ignore[return-value]
        pid = make_program_id(self.spec.search.seed, iteration, exact_hash(child.code or ""))
        code = child.code or ""
        hashes = self._hashes(code)
        if kind == "wait":
            future, cache_kind = payload  # type: ignore[misc]
            twin: Program = await asyncio.shield(future)
            result, func_hash, hit_id = _result_of(twin), twin.func_hash, twin.id
        else:
            future = payload  # type: ignore[assignment]
            try:
                cache_kind = "functional"
                result, func_hash, hit_id = await self._evaluate_code(
                    code,
                    pid,
                    lookup=True,
                    max_iteration=iteration - self._window,
                    rank_limits=record.get("rank_limits"),
                )
            except Exception as err:
                if not future.done():
                    future.set_exception(err)
                    future.exception()  # mark retrieved: waiters re-raise it, no "never retrieved" noise
                raise
            except BaseException:
                future.cancel()
                raise
        if hit_id is not None:
            child.mutation = {**child.mutation, "cache_hit": hit_id, "cache_kind": cache_kind}
            outcome = "cache_hit"
        else:
            outcome = "evaluated"
        program = self._program_from(child, code, result, pid, func_hash=func_hash, hashes=hashes)
        if kind == "evaluate" and not future.done():
            future.set_result(program)
        # Durable at once, but kept out of the selection indexes until its turn to commit, so a
        # resumed run samples exactly what the uninterrupted one did.
        data = program.model_dump(mode="json")
        self._pending[pid] = data
        self.db.set_state(f"{PENDING_PREFIX}{iteration}", data)
        return child, program, outcome

    async def _materialize_child(self, child: Child) -> None:
        """The materialize operator's sandbox half (agentopt/evolve/materialize.py): the named
        function's output, computed in one sandbox job, replaces its body as literals. A failed
        job rejects the child (it would otherwise repeat its parent). Kept under
        ``materialize/<iteration>`` until the commit, so a resumed run reuses the outcome."""
        assert child.code is not None
        name = str(child.mutation["materialize"])
        digest = exact_hash(child.code)
        saved = self._materialized.get(child.iteration)
        if not (isinstance(saved, dict) and saved.get("input") == digest):
            path = self._write_candidate(child.code, f"materialize{child.iteration}")
            try:
                async with self._eval_slots:
                    code, record = await materialize_program(self.sandbox, self.spec, path, name)
            finally:
                self._remove_candidate(path)
            saved = {"input": digest, "code": code, "record": record}
            self._materialized[child.iteration] = saved
            self.db.set_state(f"{MATERIALIZE_PREFIX}{child.iteration}", saved)
        record = dict(saved.get("record") or {})
        child.mutation = {**child.mutation, "materialized": record}
        if isinstance(saved.get("code"), str):
            child.code = saved["code"]
        else:
            child.code, child.error = None, f"materialize {name}(): {record.get('error', 'failed')}"

    async def _tune_child(self, child: Child) -> None:
        """Tune the child's float literals in one sandbox job before it is judged (see
        agentopt/evolve/tuning.py); the accepted tuned source replaces ``child.code``.

        The outcome is kept under ``tune/<iteration>`` until the iteration commits, so a resumed
        run reuses it instead of tuning again (a time-limited tuning need not repeat exactly).
        """
        assert child.code is not None
        digest = exact_hash(child.code)
        saved = self._tuned.get(child.iteration)
        if isinstance(saved, dict) and saved.get("input") == digest:
            code, record = saved.get("code"), dict(saved.get("record") or {})
        else:
            path = self._write_candidate(child.code, f"tune{child.iteration}")
            try:
                async with self._eval_slots:
                    outcome = await tune_program(
                        self.sandbox,
                        self.spec,
                        path,
                        tune_seed(self.spec.search.seed, child.iteration),
                        budget_factor=MATERIALIZE_TUNE_FACTOR if child.mutation.get("operator") == "materialize" else 1,
                    )
            finally:
                self._remove_candidate(path)
            code, record = outcome.code, outcome.record
            saved = {"input": digest, "code": code, "record": record}
            self._tuned[child.iteration] = saved
            self.db.set_state(f"{TUNE_PREFIX}{child.iteration}", saved)
        if isinstance(code, str) and len(code) <= self.spec.search.max_code_length:
            child.code = code
        child.mutation = {**child.mutation, "tuned": record}

    def _decide(self, child: Child, record: dict[str, Any]) -> tuple[str, Any]:
        """What to do with a child, decided synchronously on its turn: ("done", result),
        ("wait", (future of an equal child in flight, cache kind)) or ("evaluate", own future,
        registered so later equal children wait for it)."""
        iteration = child.iteration
        if child.code is None:
            return "done", (child, None, "rejected")
        if len(child.code) > self.spec.search.max_code_length:
            child.error = f"program is {len(child.code)} chars, over max_code_length {self.spec.search.max_code_length}"
            return "done", (child, None, "rejected")
        code_hash = exact_hash(child.code)
        pid = make_program_id(self.spec.search.seed, iteration, code_hash)
        threshold = self.spec.search.novelty_threshold
        if threshold > 0 and pid not in self._pending and self.db.is_near_duplicate(
            child.code, island=child.island, threshold=threshold, candidates=record.get("near_duplicates")
        ):
            child.error = f"near-duplicate of a stored program (code distance < {threshold:g})"
            return "done", (child, None, "rejected")
        hashes = self._hashes(child.code)
        keys = (f"x:{code_hash}", f"n:{hashes[0]}")
        if pid in self._pending:  # evaluated before an interruption, not yet committed
            program = Program.model_validate(self._pending[pid])
            self._register(keys, iteration, program)
            return "done", (child, program, "resumed")
        existing = self.db.get(pid)
        if existing is not None:
            return "done", (child, existing, "stored")
        # Earliest equal program wins: committed ones (all earlier than anything in flight), then
        # in-flight ones (the registry holds the first claimant of each hash).
        for cache_kind, lookup, key in (
            ("exact", {"code_hash": code_hash}, keys[0]),
            ("normalized", {"norm_hash": hashes[0]}, keys[1]),
        ):
            cached = self.db.find_by_hash(**lookup, max_iteration=iteration - 1)
            if cached is not None:
                child.mutation = {**child.mutation, "cache_hit": cached.id, "cache_kind": cache_kind}
                program = self._program_from(
                    child, child.code, _result_of(cached), pid, func_hash=cached.func_hash, hashes=hashes
                )
                data = program.model_dump(mode="json")
                self._pending[pid] = data
                self.db.set_state(f"{PENDING_PREFIX}{iteration}", data)
                return "done", (child, program, "cache_hit")
            claimant = self._registry.get(key)
            if claimant is not None:
                return "wait", (claimant[1], cache_kind)
        future: asyncio.Future[Program] = asyncio.get_running_loop().create_future()
        for key in keys:
            self._registry.setdefault(key, (iteration, future))
        return "evaluate", future

    def _register(self, keys: tuple[str, ...], iteration: int, program: Program) -> None:
        future: asyncio.Future[Program] = asyncio.get_running_loop().create_future()
        future.set_result(program)
        for key in keys:
            self._registry.setdefault(key, (iteration, future))

    def _commit_iteration(self, iteration: int, result: IterationResult) -> None:
        child, program, outcome = result
        self._commit(child, program, outcome)
        # This iteration is in the store now: lookups find it there, not in the registry.
        for key in [k for k, (it, _) in self._registry.items() if it == iteration]:
            del self._registry[key]
        self._claims.pop(iteration, None)
        self._starts.pop(iteration, None)
        if program is not None:
            self._pending.pop(program.id, None)
        if len(self._parents) > 4 * self._window:
            live = {r["parent_id"] for r in self._starts.values()}
            self._parents = {k: v for k, v in self._parents.items() if k in live}

    def _commit(self, child: Child, program: Program | None, outcome: str) -> None:
        """Record one finished iteration (called in iteration order): the program (or the
        rejection) and the run's advance land in ONE transaction."""
        parent_id = child.parent.id if child.parent else None
        iteration = child.iteration
        drop = [f"{PENDING_PREFIX}{iteration}", f"{START_PREFIX}{iteration}", f"{TUNE_PREFIX}{iteration}", STATE_PENDING]
        drop.append(f"{MATERIALIZE_PREFIX}{iteration}")
        self._tuned.pop(iteration, None)
        self._materialized.pop(iteration, None)
        self.proposer.observe(child, program)
        if program is None:
            self.stats.rejected_replies += 1
            self._totals["rejected_replies"] += 1
            reason = child.error or "no child produced"
            if parent_id:
                self._previous_errors[parent_id] = reason
            self._no_improve += 1
            self.db.record_rejection(
                iteration=iteration,
                parent_id=parent_id,
                reason=reason,
                reply_excerpt=str(child.mutation.get("reply", ""))[:2000],
                states=self._state_values({STATE_NEXT_ITERATION: iteration + 1}),
                drop_states=drop,
            )
            self.reporter.update(iteration=iteration, program=None, best=self.db.best(), stats=self.stats)
            return
        best_before = self.db.best()
        self._funnel.observe(program)  # cache hits carry no stage records
        if outcome in ("evaluated", "cache_hit"):
            self._cache["lookups"] += 1
        if outcome == "evaluated":
            self.stats.evaluations += 1
            self._evaluations_total += 1
            self._check_isolation(program)
            self._abort = self._abort or self._failure_rate.record(not program.ok)
        elif outcome == "cache_hit":
            self.stats.cache_hits += 1
            self._totals["cache_hits"] += 1
            kind = str(program.mutation.get("cache_kind", "normalized"))
            self._cache[kind] = self._cache.get(kind, 0) + 1
        if not program.ok:
            self.stats.failures += 1
            self._totals["failures"] += 1
            if parent_id and program.error:
                self._previous_errors[parent_id] = f"child failed evaluation: {program.error}"
        elif parent_id:
            self._previous_errors.pop(parent_id, None)
        if self._better(program, best_before):
            self._no_improve = 0
        else:
            self._no_improve += 1
        self.db.add(program, states=self._state_values({STATE_NEXT_ITERATION: iteration + 1}), drop_states=drop)
        self.reporter.update(iteration=iteration, program=program, best=self.db.best(), stats=self.stats)

    def _state_values(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The run's counters and the proposer's learned state, as state-table values."""
        values: dict[str, Any] = {
            STATE_PREVIOUS_ERRORS: self._previous_errors,
            STATE_NO_IMPROVE: self._no_improve,
            STATE_EVALUATIONS: self._evaluations_total,
            STATE_CACHE: self._cache,
            STATE_TOTALS: self._totals,
            STATE_STARTED_AT: self.stats.wall_s,
            **self.proposer.state_items(),
            **(extra or {}),
        }
        snapshot = self.proposer.ledger_snapshot()
        if snapshot is not None:
            values[STATE_LEDGER] = snapshot
        return values

    def _save_state(self, extra: dict[str, Any] | None = None) -> None:
        """Persist the run's counters and the proposer's learned state in one transaction."""
        self.db.set_states(self._state_values(extra))

    def window(self) -> int:
        """Iterations in flight at once (see :class:`~agentopt.evolve.pipeline.WindowPipeline`)."""
        return self._window

    def _resumed_work(self, first: int) -> list[Awaitable[IterationResult]]:
        """Iterations started before an interruption, in order from ``first``: rebuilt from
        their start records, so they send the same requests (answered by the LLM cache) and
        find their finished evaluations in the pending area."""
        work: list[Awaitable[IterationResult]] = []
        iteration = first
        while iteration in self._starts and iteration <= self.total_iterations:
            work.append(self._run_iteration(self._starts[iteration]))
            iteration += 1
        return work

    async def _run_pipeline(self) -> None:
        """Resume the iterations started before an interruption, then keep the window full
        until a budget, a health check or the requested iterations stop it."""
        next_it = int(self.db.get_state(STATE_NEXT_ITERATION, 1))
        self._starts = {
            int(key[len(START_PREFIX) :]): value
            for key, value in self.db.states_with_prefix(START_PREFIX).items()
            if int(key[len(START_PREFIX) :]) >= next_it
        }
        pipeline: WindowPipeline[IterationResult] = WindowPipeline(
            window=self._window, start=self._start, commit=self._commit_iteration, step=self.db.batch
        )
        await pipeline.run(next_it, self._resumed_work(next_it))

    async def run(self) -> RunSummary:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        ledger = self.db.get_state(STATE_LEDGER)
        if ledger is not None:
            self.proposer.restore_ledger(ledger)
        next_it = int(self.db.get_state(STATE_NEXT_ITERATION, 0))
        self.reporter.start(total=self.total_iterations, done=max(0, next_it - 1), mutator=self.proposer.describe())
        if self._slots_note:
            self.reporter.message(self._slots_note)
        if self._tune:
            self.reporter.message(
                f"constants tuning: on ({tune_budget(self.spec)} evaluations per child; search.tune)"
            )
        interrupted = False
        _freeze_startup_objects()
        try:
            await self._ensure_initial()
            if self._abort is None:  # the initial program said the setup is broken: stop here
                await self._run_pipeline()
            if self._stop_reason is None:
                self._stop_reason = f"reached {self.total_iterations} iterations"
        except (asyncio.CancelledError, KeyboardInterrupt):
            interrupted = True
            self._stop_reason = "interrupted (resume with `agentopt resume`)"
        except BudgetExceeded as err:
            self._stop_reason = str(err)
        except LLMError as err:  # e.g. a replay-only cache without the answer: a diverged replay
            self._abort = f"LLM failed: {err}"
        finally:
            with contextlib.suppress(Exception):
                self._save_state()
            shutil.rmtree(self.work_dir, ignore_errors=True)
        if self._abort is not None:
            self._stop_reason = f"aborted: {self._abort}"
        summary = self.summary()
        write_outputs(self.run_dir, self.db, summary, self.spec)
        self.reporter.finish(summary)
        self.db.close()
        if interrupted:
            raise KeyboardInterrupt
        if self._abort is not None:
            raise RunAborted(f"{self._abort} (results so far kept in {self.run_dir})")
        return summary

    def summary(self) -> RunSummary:
        best = self.db.best()
        final = select_final(self.db, self.spec)
        initial = next(iter(self.db.programs(order="iteration")), None)
        totals = self.proposer.totals()
        return RunSummary(
            task=self.spec.display_name,
            run_dir=str(self.run_dir),
            objective=self.spec.objective.metric,
            direction=self.spec.objective.direction,
            initial_score=initial.score if initial else None,
            best_score=best.score if best else None,
            best_program_id=best.id if best else None,
            best_iteration=best.iteration if best else None,
            best_program_path=str(self.run_dir / self._best_name()) if best else None,
            iterations=max(0, int(self.db.get_state(STATE_NEXT_ITERATION, 1)) - 1),
            programs=self.db.count(),
            evaluations=self._evaluations_total,
            session_evaluations=self.stats.evaluations,
            failures=self._totals["failures"],
            cache_hits=self._totals["cache_hits"],
            cache_lookups=self._cache["lookups"],
            cache_hits_by_kind={k: self._cache.get(k, 0) for k in CACHE_KINDS},
            fingerprints=self._cache["fingerprints"],
            meta_prompts=self.proposer.meta_prompt_stats(),
            operators=self.db.operator_counts(),
            rejected_replies=self._totals["rejected_replies"],
            llm_calls=totals.get("calls", 0),
            tokens=totals.get("tokens", 0),
            cost_usd=totals.get("usd", 0.0),
            wall_s=round(self.stats.wall_s, 3),
            stop_reason=self._stop_reason or "finished",
            mutator=self.proposer.describe(),
            isolation=best.isolation if best else [],
            funnel=self._funnel_summary(),
            selection=None if final is None else final.model_dump(),
            front=front_summary(self.db.objective_points(), self.spec.objective) if self.spec.objective.is_multi else None,
        )

    def _funnel_summary(self) -> list[dict[str, Any]]:
        """Per-stage funnel counts for the summary (empty without a cascade)."""
        if not self.spec.cascade.enabled:
            return []
        return [row.model_dump() for row in funnel_stats(self.db.programs(order="iteration"))]

    def _best_name(self) -> str:
        if self.spec.multi_file:
            return "best_program"  # a directory with every file of the best candidate
        return "best_program" + (self.spec.program.suffix or ".py")


def _write_file(path: Path, data: bytes) -> None:
    """Create or truncate ``path`` with ``data``: raw descriptor I/O, since a text-mode file
    object (encoder setup, buffering) cost more than the write itself, once per iteration."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)  # as open(): umask applies
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


_frozen = False


def _freeze_startup_objects() -> None:
    """Move everything alive now (imported modules, the task, the store) out of the cyclic
    GC's reach, once per process: they live for the whole run, yet every full collection
    re-traversed them (about 2% of the controller's CPU per iteration in a 4-worker run)."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.freeze()


def _result_of(program: Program) -> EvalResult:
    """A stored program's outcome, reused for an equivalent child (no sandbox run)."""
    return EvalResult(
        metrics=program.metrics,
        score=program.score,
        feedback=program.feedback,
        artifacts=program.artifacts,
        error=program.error,
        error_kind=program.error_kind,
        stage=program.stage,
        isolation=program.isolation,
    )


def save_task_snapshot(spec: TaskSpec, run_dir: Path) -> None:
    """Store the resolved task next to the run so `agentopt resume RUN_DIR` needs nothing else."""
    run_dir.mkdir(parents=True, exist_ok=True)
    data = spec.model_dump(mode="json")
    data["objective"] = json.loads(spec.objective.stored())  # single objective: exactly as before
    data["__task_file__"] = str(spec.task_file) if spec.task_file else None
    (run_dir / "task.json").write_text(json.dumps(data, indent=2), encoding="utf-8")


def load_task_snapshot(run_dir: Path) -> TaskSpec:
    path = run_dir / "task.json"
    if not path.is_file():
        raise AgentoptError(f"{run_dir}: not an agentopt run directory (no task.json)")
    data = json.loads(path.read_text(encoding="utf-8"))
    task_file = data.pop("__task_file__", None)
    spec = TaskSpec.model_validate(data)
    spec.task_file = Path(task_file) if task_file else None
    for key, p in [("program", spec.program), ("evaluator", spec.evaluator)]:
        if not (Path(p).is_file() or (key == "program" and spec.multi_file and Path(p).is_dir())):
            raise AgentoptError(f"{run_dir}: the task's {key} file is gone: {p}")
    return spec
