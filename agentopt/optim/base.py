"""What every optimizer shares: named Params, an LLM client, notes carried between steps,
``astep`` (async) with a ``step`` sync wrapper, and the :class:`StepResult` it returns.

A step is always *propose* then *apply*: :meth:`Optimizer.propose` consumes the pending
feedback and decides (its :class:`StepResult` carries the values in ``applied``), and
:meth:`Optimizer.apply` writes them into the Params. How ``agentopt optimize`` feeds an
optimizer (:meth:`Optimizer.iterate`) and builds it from a config (:meth:`Optimizer.for_run`)
live on the class too, so the runner looks optimizers up in one table
(:data:`agentopt.optim.kinds.OPTIMIZERS`) and never branches on their kind.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self

from pydantic import BaseModel, Field

from agentopt.errors import AgentoptError
from agentopt.llm.client import LLMClient
from agentopt.optim._sync import run_sync
from agentopt.optim.validate import apply_values
from agentopt.task import LLMSpec
from agentopt.trace.backward import ParamFeedback, Propagation, backward
from agentopt.trace.module import Module
from agentopt.trace.nodes import Param

if TYPE_CHECKING:
    from agentopt.llm.budget import BudgetLedger
    from agentopt.optim.config import OptimizeConfig


class OptimizerError(AgentoptError):
    """An optimizer cannot run as configured (no model, no Params, missing optional package)."""


class StepResult(BaseModel):
    """What one step did. ``error`` is a malformed reply (fed back next step), not a crash."""

    step: int
    applied: dict[str, Any] = Field(default_factory=dict)
    rejected: dict[str, str] = Field(default_factory=dict)
    reasoning: str = ""
    error: str | None = None
    skipped: str | None = None
    score: float | None = None

    @property
    def changed(self) -> bool:
        return bool(self.applied)


ParamsLike = Module | Mapping[str, Param] | Iterable[Param]


def name_params(params: ParamsLike) -> dict[str, Param]:
    """Give every trainable Param a unique key the LLM will use: Module paths, mapping keys,
    or ``Param.name`` (suffixed on clashes)."""
    if isinstance(params, Module):
        pairs = params.named_parameters()
    elif isinstance(params, Mapping):
        pairs = list(params.items())
    else:
        pairs = [(p.name or f"param{p.id}", p) for p in params]
    named: dict[str, Param] = {}
    for name, p in pairs:
        if not isinstance(p, Param):
            raise OptimizerError(f"expected Param objects, got {type(p).__name__} for '{name}'")
        if not p.trainable:
            continue
        key = name
        k = 1
        while key in named:
            key = f"{name}_{k}"
            k += 1
        named[key] = p
    if not named:
        raise OptimizerError("the optimizer got no trainable Params")
    return named


def make_client(llm: LLMClient | LLMSpec | None, ledger: BudgetLedger | None, who: str) -> LLMClient:
    """Accept a ready client or an :class:`LLMSpec`; without any model, say so in one line."""
    if isinstance(llm, LLMClient):
        return llm
    if isinstance(llm, LLMSpec):
        if not llm.models:
            raise OptimizerError(f"optimizer '{who}' needs an LLM but no model is configured (llm.models is empty)")
        return LLMClient(llm, ledger=ledger)
    raise OptimizerError(f"optimizer '{who}' needs an LLM: pass llm=LLMSpec(...) or an LLMClient")


class OptimizeRun(Protocol):
    """What ``agentopt optimize`` offers an optimizer (see :mod:`agentopt.optim.runner`)."""

    cfg: OptimizeConfig
    target: Module
    client: LLMClient | None
    train: list[Any]
    val: list[Any]
    rng: random.Random
    sign: float

    def objective(self) -> str: ...
    def evaluate_one(self, example: Any) -> Any: ...
    def run_all(self, examples: list[Any]) -> list[Any]: ...
    def val_score(self) -> tuple[float, list[Any]]: ...


class Optimizer:
    """Base class. Subclasses implement :meth:`propose` (and :meth:`for_run` to be usable from a
    config); users call ``step()`` from sync code or ``await astep()``."""

    kind: ClassVar[str] = "optimizer"
    #: Whether ``agentopt optimize`` must give it a reachable LLM.
    needs_llm: ClassVar[bool] = True
    #: True when :meth:`iterate` scores the values in the Params *before* the step (they are
    #: the ones tried), so the first iteration measures the baseline.
    scores_tried_values: ClassVar[bool] = False

    def __init__(self, params: ParamsLike) -> None:
        self.named = name_params(params)
        self.names: dict[Param, str] = {p: n for n, p in self.named.items()}
        self.steps = 0
        #: One-line problems with the previous reply (invalid values, bad JSON) for the next prompt.
        self.notes: list[str] = []

    async def propose(self) -> StepResult:
        """Consume pending feedback and decide; ``applied`` holds the values :meth:`apply` writes."""
        raise NotImplementedError(f"{type(self).__name__} must implement propose()")

    def apply(self, result: StepResult) -> None:
        """Write the proposed values into the Params."""
        apply_values(self.named, result.applied)

    async def astep(self) -> StepResult:
        """One step: :meth:`propose`, then :meth:`apply`."""
        self.steps += 1
        result = await self.propose()
        self.apply(result)
        return result

    @classmethod
    def for_run(cls, run: OptimizeRun) -> Self:
        """Build this optimizer for an ``agentopt optimize`` run (its config, Module and data)."""
        raise NotImplementedError(f"optimizer '{cls.kind}' cannot be built from an optimize config")

    def iterate(self, run: OptimizeRun) -> tuple[StepResult, float]:
        """One ``agentopt optimize`` iteration: feedback from a training minibatch, a step, and the
        validation score after it. Optimizers fed differently override this."""
        batch = run.rng.sample(run.train, min(run.cfg.optimizer.batch_size, len(run.train)))
        for r in run.run_all(batch):
            backward(r.output, r.feedback)
        result = self.step()
        score, _ = run.val_score()
        return result, score

    def step(self) -> StepResult:
        """Synchronous :meth:`astep` for plain scripts (runs on a shared background loop)."""
        return run_sync(self.astep())

    def zero_feedback(self) -> None:
        for p in self.named.values():
            p.zero_feedback()

    def pending(self) -> list[ParamFeedback]:
        return [fb for p in self.named.values() for fb in p.feedback]

    def propagations(self) -> list[Propagation]:
        """Distinct backward calls that reached any of our Params, in call order."""
        seen: dict[int, Propagation] = {}
        for fb in self.pending():
            seen.setdefault(id(fb.propagation), fb.propagation)
        return list(seen.values())

    def values(self) -> dict[str, Any]:
        return {n: p._value for n, p in self.named.items()}

    def _note_rejections(self, rejected: Mapping[str, str]) -> None:
        for name, reason in rejected.items():
            self.notes.append(f"your value for '{name}' was rejected: {reason}")

    def _take_notes(self) -> list[str]:
        notes, self.notes = self.notes[-10:], []
        return notes


def describe_params(named: Mapping[str, Param]) -> str:
    """One line per Param: name, kind, constraint, description (the LLM's menu)."""
    lines = []
    for name, p in named.items():
        desc = f" — {p.description}" if p.description else ""
        lines.append(f"- {name} ({p.param_kind}; {p.constraint()}){desc}")
    return "\n".join(lines)
