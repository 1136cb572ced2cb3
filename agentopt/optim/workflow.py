"""Load a user's workflow file and run it on one example, turning every outcome into feedback.

The workflow file defines three functions named in the config: ``build() -> Module``,
``run(module, example[, ctx])`` and ``metric(output, example)``. A run that raises is a
scored failure with its traceback as feedback, except for LLM infrastructure errors
(unreachable model, budget): those stop the whole optimization with one line, because
scoring them as failures would silently optimize against an outage.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from agentopt.errors import BudgetExceeded, LLMError
from agentopt.optim._sync import run_sync
from agentopt.optim.config import ConfigError
from agentopt.trace.errors import InvalidValue, TraceError
from agentopt.trace.feedback import Feedback
from agentopt.trace.graph import ancestors
from agentopt.trace.module import Module
from agentopt.trace.nodes import Node

if TYPE_CHECKING:
    from agentopt.llm.client import LLMClient


class WorkflowContext:
    """Passed as ``ctx`` to entry functions that accept it: the run's LLM, usable synchronously."""

    def __init__(self, llm: LLMClient | None, seed: int = 0) -> None:
        self.llm = llm
        self.seed = seed

    def complete(self, messages: str | list[dict[str, str]], **kwargs: Any) -> str:
        """Ask the configured model; ``messages`` may be a plain user prompt."""
        if self.llm is None:
            raise LLMError("this workflow calls an LLM but no model is configured (llm.models is empty)")
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        return run_sync(self.llm.complete(messages, **kwargs)).text


@dataclass
class ExampleRun:
    """One example's outcome: the output node (or a stand-in), its value and the feedback."""

    output: Node
    value: Any
    feedback: Feedback
    traced: bool

    @property
    def score(self) -> float:
        assert self.feedback.score is not None
        return self.feedback.score


def load_examples(path: Path) -> list[Any]:
    """JSONL (one example per line) or a JSON list."""
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            data = json.loads(text)
            if not isinstance(data, list):
                raise ConfigError(f"{path}: expected a JSON list of examples")
            return data
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}") from None


def import_file(path: Path) -> ModuleType:
    """Import a Python file under a unique name (re-importing gives fresh Params each run)."""
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"agentopt_workflow_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: cannot import this file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    folder = str(path.parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the user's file failed at import: one line, not a traceback
        sys.modules.pop(name, None)
        raise ConfigError(f"{path}: import failed: {type(err).__name__}: {err}") from None
    finally:
        if added:
            sys.path.remove(folder)
    return module


class Workflow:
    """The build/entry/metric functions of one workflow file."""

    def __init__(self, path: Path, build: str, entry: str, metric: str, *, failure_score: float) -> None:
        self.path = path
        self.module = import_file(path)
        self.build_fn = self._get(build, "build")
        self.entry_fn = self._get(entry, "entry")
        self.metric_fn = self._get(metric, "metric")
        self.failure_score = failure_score
        try:
            self.takes_ctx = len(inspect.signature(self.entry_fn).parameters) >= 3
        except (TypeError, ValueError):
            self.takes_ctx = False

    def _get(self, name: str, key: str) -> Any:
        fn = getattr(self.module, name, None)
        if not callable(fn):
            raise ConfigError(f"{self.path}: no function '{name}' (config key '{key}')")
        return fn

    def build(self) -> Module:
        target = self.build_fn()
        if not isinstance(target, Module):
            raise ConfigError(f"{self.path}: build() must return an agentopt.trace.Module, "
                              f"got {type(target).__name__}")
        return target

    def _score(self, value: Any, example: Any) -> Feedback:
        raw = self.metric_fn(value, example)
        if isinstance(raw, tuple) and len(raw) == 2:
            raw = {"score": raw[0], "text": raw[1]}
        try:
            fb = Feedback.of(raw)
        except InvalidValue as err:
            raise ConfigError(f"{self.path}: metric returned an unusable value: {err}") from None
        if fb.score is None:
            raise ConfigError(f"{self.path}: metric must return a score (number, (score, text) or dict with 'score')")
        return fb

    def run(self, target: Module, example: Any, ctx: WorkflowContext) -> ExampleRun:
        """Run the entry on one example and score it. Params not reached by the output's graph
        are linked through a stand-in output node so score-only optimizers still see them."""
        params = tuple(target.parameters())
        try:
            out = self.entry_fn(target, example, ctx) if self.takes_ctx else self.entry_fn(target, example)
        except TraceError as err:
            if isinstance(err.exception, LLMError | BudgetExceeded):
                raise err.exception from None
            fb = Feedback(score=self.failure_score, text=str(err), error=err.node.traceback)
            return ExampleRun(err.node, err.exception, fb, True)
        except (LLMError, BudgetExceeded):
            raise
        except Exception as err:
            fb = Feedback.of(err)
            fb = Feedback(score=self.failure_score, text=fb.text, error=fb.error)
            return ExampleRun(Node(err, "output", params), err, fb, False)
        if isinstance(out, Node):
            value = out._value
            fb = self._score(value, example)
            reached = {id(n) for n in ancestors(out)}
            if any(id(p) in reached for p in params):
                return ExampleRun(out, value, fb, True)
            return ExampleRun(Node(value, "output", (out, *params)), value, fb, True)
        fb = self._score(out, example)
        return ExampleRun(Node(out, "output", params), out, fb, False)
