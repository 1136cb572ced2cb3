"""The evolution loop: sample parents, mutate (LLM or symbolic), evaluate in a sandbox, store.

Determinism and resume hinge on two choices made here:

* Work proceeds in *batches*. Every child of a batch samples from the database state as it
  was when the batch started, and each iteration ``i`` draws from its own RNG seeded with
  ``(seed, i)``. Results are added to the store in iteration order through a reorder buffer,
  so the store's content does not depend on which evaluation finished first.
* Program ids are ``hash(seed, iteration, code)``. After a crash, resuming replays the
  interrupted batch with the same RNGs (and the LLM request cache), and every child whose id
  is already stored is skipped, so nothing is evaluated twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import shutil
import time
import warnings
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
from agentopt.evolve.funnel import Funnel, funnel_stats
from agentopt.evolve.gpu_slots import evaluation_slots
from agentopt.evolve.hashing import code_complexity, exact_hash, normalized_code_hash
from agentopt.evolve.health import FailureRate, RunAborted, initial_failure, output_tail
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
STATE_PENDING = "pending_batch"
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
        self._rank_limits: list[float | None] | None = None  # taken at each batch start
        self._tune = tune_enabled(spec, proposer)

    # ------------------------------------------------------------------ helpers
    def _open_funnel(self) -> Funnel:
        """The rank-promotion windows as they stood when the next batch starts: rebuilt from
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
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if self.spec.multi_file or is_bundle(code):
            return write_bundle(code, self.work_dir / name)
        path = self.work_dir / f"{name}{self.spec.program.suffix or '.py'}"
        path.write_text(code, encoding="utf-8")
        return path

    @staticmethod
    def _remove_candidate(path: Path) -> None:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    async def _evaluate_code(self, code: str, name: str, *, lookup: bool = False) -> tuple[EvalResult, str, str | None]:
        """Evaluate ``code``: ``(result, func_hash, hit id)``.

        With a ``fingerprint`` hook the cheap fingerprint job runs first (in the same
        evaluation slot); with ``lookup`` its hash is looked up in the store and a hit returns
        that program's result without running the evaluation (hit id set)."""
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
                        cached = self.db.find_by_hash(func_hash=digest) if lookup else None
                        if cached is not None:
                            return _result_of(cached), func_hash, cached.id
                return await evaluate_program(self.sandbox, self.spec, path, rank_limits=self._rank_limits), func_hash, None
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
        return normalized_code_hash(code, simplify), code_complexity(code)

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

    async def _produce(self, iteration: int) -> Child:
        rng = random.Random(f"{self.spec.search.seed}:{iteration}")
        island = self.db.next_island(iteration)
        parent, inspirations = self.db.sample(
            rng,
            island=island,
            num_top=self.spec.search.num_top_programs,
            num_diverse=self.spec.search.num_diverse_programs,
        )
        previous_error = self._previous_errors.get(parent.id)
        child: Child = await self.proposer.propose(
            iteration=iteration, parent=parent, inspirations=inspirations, rng=rng, previous_error=previous_error
        )
        child.island = island
        return child

    async def _finish_child(self, child: Child, pending: dict[str, Any]) -> tuple[Child, Program | None, str]:
        """Evaluate (or reuse) a child. Returns (child, program or None, outcome)."""
        if child.code is None:
            return child, None, "rejected"
        if len(child.code) > self.spec.search.max_code_length:
            child.error = f"program is {len(child.code)} chars, over max_code_length {self.spec.search.max_code_length}"
            return child, None, "rejected"
        if self._tune and not is_bundle(child.code):
            await self._tune_child(child, pending)
        code_hash = exact_hash(child.code)
        pid = make_program_id(self.spec.search.seed, child.iteration, code_hash)
        threshold = self.spec.search.novelty_threshold
        if threshold > 0 and pid not in pending and self.db.is_near_duplicate(
            child.code, island=child.island, threshold=threshold
        ):
            child.error = f"near-duplicate of a stored program (code distance < {threshold:g})"
            return child, None, "rejected"
        if pid in pending:  # evaluated before an interruption, not yet merged into the store
            return child, Program.model_validate(pending[pid]), "resumed"
        existing = self.db.get(pid)
        if existing is not None:
            return child, existing, "stored"
        # Equivalence cache, cheapest first: same text, same normalized code, same fingerprint.
        # Lookups see the store as of the batch start (children are added at commit), so the
        # outcome does not depend on which child of a batch finished first.
        kind, hit_id = "exact", None
        hashes = self._hashes(child.code)
        cached = self.db.find_by_hash(code_hash=code_hash)
        if cached is None:
            kind = "normalized"
            cached = self.db.find_by_hash(norm_hash=hashes[0])
        if cached is not None:
            result, func_hash, hit_id = _result_of(cached), cached.func_hash, cached.id
        else:
            kind = "functional"
            result, func_hash, hit_id = await self._evaluate_code(child.code, pid, lookup=True)
        if hit_id is not None:
            child.mutation = {**child.mutation, "cache_hit": hit_id, "cache_kind": kind}
            outcome = "cache_hit"
        else:
            outcome = "evaluated"
        program = self._program_from(child, child.code, result, pid, func_hash=func_hash, hashes=hashes)
        # Durable at once, but kept out of the selection indexes until the batch ends, so a
        # resumed batch samples exactly what the uninterrupted one did.
        pending[pid] = program.model_dump(mode="json")
        self.db.set_state(STATE_PENDING, pending)
        return child, program, outcome

    async def _tune_child(self, child: Child, pending: dict[str, Any]) -> None:
        """Tune the child's float literals in one sandbox job before it is judged (see
        agentopt/evolve/tuning.py); the accepted tuned source replaces ``child.code``.

        The outcome is kept in the pending batch under ``tune:<iteration>``, so a resumed
        batch reuses it instead of tuning again (a time-limited tuning need not repeat exactly).
        """
        assert child.code is not None
        key = f"tune:{child.iteration}"
        digest = exact_hash(child.code)
        saved = pending.get(key)
        if isinstance(saved, dict) and saved.get("input") == digest:
            code, record = saved.get("code"), dict(saved.get("record") or {})
        else:
            path = self._write_candidate(child.code, f"tune{child.iteration}")
            try:
                async with self._eval_slots:
                    outcome = await tune_program(
                        self.sandbox, self.spec, path, tune_seed(self.spec.search.seed, child.iteration)
                    )
            finally:
                self._remove_candidate(path)
            code, record = outcome.code, outcome.record
            pending[key] = {"input": digest, "code": code, "record": record}
            self.db.set_state(STATE_PENDING, pending)
        if isinstance(code, str) and len(code) <= self.spec.search.max_code_length:
            child.code = code
        child.mutation = {**child.mutation, "tuned": record}

    def _commit(self, child: Child, program: Program | None, outcome: str) -> None:
        """Record one finished iteration (called in iteration order)."""
        parent_id = child.parent.id if child.parent else None
        self.proposer.observe(child, program)
        if program is None:
            self.stats.rejected_replies += 1
            self._totals["rejected_replies"] += 1
            reason = child.error or "no child produced"
            if parent_id:
                self._previous_errors[parent_id] = reason
            self.db.record_rejection(
                iteration=child.iteration,
                parent_id=parent_id,
                reason=reason,
                reply_excerpt=str(child.mutation.get("reply", ""))[:2000],
            )
            self._no_improve += 1
            self.reporter.update(iteration=child.iteration, program=None, best=self.db.best(), stats=self.stats)
            return
        best_before = self.db.best()
        if outcome != "stored":
            self.db.add(program)
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
        self.reporter.update(iteration=child.iteration, program=program, best=self.db.best(), stats=self.stats)

    async def _run_batch(self, first: int, size: int) -> None:
        pending: dict[str, Any] = dict(self.db.get_state(STATE_PENDING, {}) or {})
        iterations = list(range(first, first + size))
        self._rank_limits = self._funnel.limits()  # the whole batch is judged by the windows as of now

        async def one(it: int) -> tuple[Child, Program | None, str]:
            return await self._finish_child(await self._produce(it), pending)

        tasks = [asyncio.ensure_future(one(it)) for it in iterations]
        try:
            results = await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for child, program, outcome in results:  # commit strictly in iteration order
            self._commit(child, program, outcome)
        self._save_state({STATE_NEXT_ITERATION: first + size, STATE_PENDING: {}})

    def _save_state(self, extra: dict[str, Any] | None = None) -> None:
        """Persist the run's counters and the proposer's learned state in one transaction
        (with ``extra``: the batch's advance), so a crash never leaves them out of step."""
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
        self.db.set_states(values)

    def batch_size(self) -> int:
        return max(self.spec.search.parallel_evaluations, self.proposer.concurrency())

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
        try:
            await self._ensure_initial()
            while self._abort is None:
                next_it = int(self.db.get_state(STATE_NEXT_ITERATION, 1))
                reason = self._budget_stop(next_it)
                if reason:
                    self._stop_reason = reason
                    break
                size = min(self.batch_size(), self.total_iterations - next_it + 1)
                migrated = self.db.maybe_migrate(next_it)
                if migrated:
                    log.info("migrated %d programs between islands at iteration %d", migrated, next_it)
                await self._run_batch(next_it, size)
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
