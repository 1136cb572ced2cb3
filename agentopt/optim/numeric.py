"""Numeric optimizer: optuna's seeded TPE over ``number`` and ``choice`` Params, no LLM.

Driven by the same loop as the LLM optimizers (run, ``backward(out, score)``, ``step()``):
each step tells optuna the score of the values just tried and applies the next trial's.
The initial values are enqueued as the first trial so the baseline is always measured.
optuna is an optional extra and imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from agentopt.optim.base import Optimizer, OptimizerError, ParamsLike, StepResult
from agentopt.optim.validate import apply_values
from agentopt.trace.backward import backward

if TYPE_CHECKING:
    from agentopt.optim.base import OptimizeRun


def import_optuna() -> Any:
    """Import optuna or raise a one-line :class:`OptimizerError` naming the extra to install."""
    try:
        import optuna
    except ImportError:
        raise OptimizerError("the numeric optimizer needs optuna: pip install 'agentopt[optuna]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


class NumericOptimizer(Optimizer):
    """Black-box search over number/choice Params with optuna TPE (seeded, reproducible)."""

    kind = "numeric"
    needs_llm = False
    scores_tried_values = True

    def __init__(
        self,
        params: ParamsLike,
        *,
        seed: int = 0,
        direction: Literal["maximize", "minimize"] = "maximize",
        failure_score: float | None = None,
    ) -> None:
        super().__init__(params)
        self.named = {n: p for n, p in self.named.items() if p.param_kind in ("number", "choice")}
        if not self.named:
            raise OptimizerError("the numeric optimizer needs at least one trainable number or choice Param")
        for name, p in self.named.items():
            if p.param_kind == "number" and p.bounds is None:
                raise OptimizerError(f"number Param '{name}' needs bounds=(low, high) for the numeric optimizer")
        self.optuna = import_optuna()
        self.direction = direction
        self.failure_score = failure_score
        sampler = self.optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)
        self.study = self.optuna.create_study(direction=direction, sampler=sampler)
        self._choice_index = {n: list(p.choices or ()) for n, p in self.named.items() if p.param_kind == "choice"}
        self.study.enqueue_trial(self._encode(self.values()))
        self._trial, first = self._ask()
        apply_values(self.named, first)

    def _encode(self, values: dict[str, Any]) -> dict[str, Any]:
        # Choices are passed to optuna as indices so any value type (None, tuples) works.
        return {n: (self._choice_index[n].index(v) if n in self._choice_index else v) for n, v in values.items()}

    def _ask(self) -> tuple[Any, dict[str, Any]]:
        """The next optuna trial and its decoded values (not yet written into the Params)."""
        trial = self.study.ask()
        values: dict[str, Any] = {}
        for name, p in self.named.items():
            if p.param_kind == "choice":
                idx = trial.suggest_categorical(name, list(range(len(self._choice_index[name]))))
                values[name] = self._choice_index[name][idx]
            elif p.integer:
                assert p.bounds is not None
                values[name] = trial.suggest_int(name, int(p.bounds[0]), int(p.bounds[1]), log=p.log)
            else:
                assert p.bounds is not None
                values[name] = trial.suggest_float(name, float(p.bounds[0]), float(p.bounds[1]), log=p.log)
        return trial, values

    @classmethod
    def for_run(cls, run: OptimizeRun) -> NumericOptimizer:
        return cls(run.target, seed=run.cfg.seed, direction=run.cfg.direction)

    def iterate(self, run: OptimizeRun) -> tuple[StepResult, float]:
        """Score the values being tried on the validation set, then tell optuna and ask the next."""
        score, runs = run.val_score()
        for r in runs:
            backward(r.output, r.feedback, params=run.target.parameters())
        return self.step(), score  # the score of the values that were just tried

    async def propose(self) -> StepResult:
        props = self.propagations()
        if not props:
            return StepResult(step=self.steps, skipped="no feedback: call backward(output, score) first")
        scores = [p.feedback.score for p in props if p.feedback.score is not None]
        failed = any(p.feedback.error for p in props)
        self.zero_feedback()
        score: float | None = sum(scores) / len(scores) if scores and not failed else None
        if score is None and self.failure_score is not None:
            score = self.failure_score
        if score is None:
            self.study.tell(self._trial, state=self.optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(self._trial, score)
        self._trial, values = self._ask()
        return StepResult(step=self.steps, applied={**self.values(), **values}, score=score)

    def best(self) -> tuple[dict[str, Any], float] | None:
        """Best decoded values and score so far (None before any completed trial)."""
        complete = [t for t in self.study.trials if t.state == self.optuna.trial.TrialState.COMPLETE]
        if not complete:
            return None
        t = self.study.best_trial
        values = {n: (self._choice_index[n][v] if n in self._choice_index else v) for n, v in t.params.items()}
        return values, float(t.value)

    def apply_best(self) -> tuple[dict[str, Any], float] | None:
        best = self.best()
        if best is not None:
            apply_values(self.named, best[0])
        return best
