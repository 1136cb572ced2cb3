"""What every optimizer shares: named Params, an LLM client, notes carried between steps,
``astep`` (async) with a ``step`` sync wrapper, and the :class:`StepResult` it returns."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from agentopt.errors import AgentoptError
from agentopt.llm.client import LLMClient
from agentopt.optim._sync import run_sync
from agentopt.task import LLMSpec
from agentopt.trace.backward import ParamFeedback, Propagation
from agentopt.trace.module import Module
from agentopt.trace.nodes import Param

if TYPE_CHECKING:
    from agentopt.llm.budget import BudgetLedger
    from agentopt.llm.client import LLMClient
    from agentopt.task import LLMSpec


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


class Optimizer(abc.ABC):
    """Base class. Subclasses implement :meth:`astep`; users call ``step()`` from sync code."""

    kind: str = "optimizer"

    def __init__(self, params: ParamsLike) -> None:
        self.named = name_params(params)
        self.names: dict[Param, str] = {p: n for n, p in self.named.items()}
        self.steps = 0
        #: One-line problems with the previous reply (invalid values, bad JSON) for the next prompt.
        self.notes: list[str] = []

    @abc.abstractmethod
    async def astep(self) -> StepResult:
        """Consume pending feedback, propose and apply new values."""

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
