"""Guest side of a traced workflow evolved by ``agentopt evolve``: score one Param assignment.

Runs INSIDE the sandbox (called by ``evaluators/trace_workflow_evaluator.py``), next to a
manifest written on the host by :mod:`agentopt.targets.trace_workflow`. It reads the
candidate's EVOLVE-BLOCKs (never executing the file), applies the values to a freshly
built Module, runs the workflow on every example, calls ``backward`` with each example's
metric feedback and returns ``{"score", "feedback", ...}``. The feedback is what makes the
evolution *graph-aware*: for the worst examples it holds the rendered subgraph the Params
flowed through (calls, values, outputs, feedback, tracebacks), bounded to a token budget so
it fits the evolution prompt.

Values a blind mutator produces are fitted rather than rejected where the intent is clear:
numbers are clamped to their bounds (and rounded for integer Params), numeric choices snap
to the nearest allowed one; the feedback says so. Anything else invalid (wrong type, code
that does not compile or changes the signature) fails the candidate with the reason.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentopt.errors import AgentoptError, BudgetExceeded, LLMError
from agentopt.llm.budget import BudgetLedger
from agentopt.llm.client import LLMClient
from agentopt.optim.config import ConfigError
from agentopt.optim.workflow import Workflow, WorkflowContext, load_examples
from agentopt.targets.param_blocks import CandidateFormatError, parse_candidate
from agentopt.task import LLMSpec
from agentopt.trace.backward import Propagation, backward
from agentopt.trace.errors import InvalidValue
from agentopt.trace.nodes import Param
from agentopt.trace.render import CHARS_PER_TOKEN, render_text, truncate

MANIFEST_NAME = "_agentopt_trace_target.json"
MANIFEST_VERSION = 1


class WorkflowSetupError(AgentoptError, RuntimeError):
    """The workflow itself (not the candidate) cannot run here: every candidate would fail alike."""


@dataclass
class _Scored:
    index: int
    score: float
    raised: bool
    propagation: Propagation


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def fit_value(param: Param, value: Any) -> tuple[Any, str | None]:
    """``value`` moved into ``param``'s constraints when the intent is clear, plus a note saying how."""
    if param.param_kind == "number" and _number(value) and math.isfinite(value):
        fitted: float | int = value
        if param.bounds is not None:
            fitted = min(max(fitted, param.bounds[0]), param.bounds[1])
        if param.integer and fitted != int(fitted):
            fitted = int(round(fitted))
        if param.integer:
            fitted = int(fitted)
        if fitted != value or type(fitted) is not type(value):
            where = f" (bounds [{param.bounds[0]:g}, {param.bounds[1]:g}])" if param.bounds else ""
            return fitted, f"{param.name}: {value!r} -> {fitted!r}{where}"
        return value, None
    if param.param_kind == "choice" and param.choices and _number(value):
        if any(value == c and type(value) is type(c) for c in param.choices):
            return value, None
        numeric = [c for c in param.choices if _number(c)]
        if len(numeric) == len(param.choices):
            nearest = min(numeric, key=lambda c: abs(c - value))
            return nearest, f"{param.name}: {value!r} -> nearest choice {nearest!r}"
    return value, None


def _load_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise WorkflowSetupError(f"cannot read the trace target manifest {path.name}: {err}") from None
    if manifest.get("version") != MANIFEST_VERSION:
        raise WorkflowSetupError(f"{path.name}: manifest version {manifest.get('version')!r} is not "
                                 f"{MANIFEST_VERSION}; reload the config with this agentopt version")
    return manifest


def _client(spec: dict[str, Any] | None) -> Any:
    """The workflow's own LLM (for entries taking ``ctx``); None when the config has no model."""
    if not spec or not spec.get("models"):
        return None

    return LLMClient(LLMSpec.model_validate(spec), ledger=BudgetLedger())


def evaluate_candidate(program_path: str | Path, manifest_path: str | Path) -> dict[str, Any]:
    """Score the Param assignment in ``program_path``; see the module docstring."""
    manifest_file = Path(manifest_path)
    manifest = _load_manifest(manifest_file)
    base = manifest_file.parent
    kinds: dict[str, str] = dict(manifest["params"])
    code = Path(program_path).read_text(encoding="utf-8", errors="replace")
    try:
        values = parse_candidate(code, kinds)
    except CandidateFormatError as err:
        return {"error": str(err), "feedback": f"The candidate could not be read: {err}"}
    try:
        workflow = Workflow(base / manifest["workflow"], manifest["build"], manifest["entry"], manifest["metric"],
                            failure_score=float(manifest["failure_score"]))
        target = workflow.build()
        examples = load_examples(base / manifest["examples"])
    except ConfigError as err:
        raise WorkflowSetupError(str(err)) from None
    if manifest.get("max_examples"):
        examples = examples[: int(manifest["max_examples"])]
    if not examples:
        raise WorkflowSetupError(f"{manifest['examples']}: no examples to score on")
    params = {name: p for name, p in target.named_parameters() if p.trainable}
    if set(params) != set(kinds):
        raise WorkflowSetupError(
            f"the workflow's Params {sorted(params)} differ from those the task was built with {sorted(kinds)}; "
            "load the config again (agentopt evolve CONFIG) to regenerate the candidate")
    notes: list[str] = []
    for name, value in values.items():
        fitted, note = fit_value(params[name], value)
        try:
            params[name].set(fitted)
        except InvalidValue as err:
            return {"error": str(err), "feedback": f"Invalid Param value: {err}"}
        if note:
            notes.append(note)
    client = _client(manifest.get("workflow_llm"))
    ctx = WorkflowContext(client, int(manifest.get("seed", 0)))
    scored: list[_Scored] = []
    for i, example in enumerate(examples):
        try:
            run = workflow.run(target, example, ctx)
        except (LLMError, BudgetExceeded) as err:
            raise WorkflowSetupError(f"the workflow's own LLM call failed inside the sandbox: {err}") from None
        except ConfigError as err:
            raise WorkflowSetupError(str(err)) from None
        prop = backward(run.output, run.feedback, accumulate=False)
        scored.append(_Scored(i, run.score, run.feedback.error is not None, prop))
    mean = sum(s.score for s in scored) / len(scored)
    direction = manifest.get("direction", "maximize")
    result: dict[str, Any] = {
        "score": mean,
        "examples": len(scored),
        "raised": sum(s.raised for s in scored),
        "feedback": render_feedback(scored, mean, direction, notes, tokens=int(manifest.get("feedback_tokens", 900)),
                                    max_examples=int(manifest.get("feedback_examples", 3))),
        "artifacts": {"applied_values": truncate(json.dumps(target.state_dict(), default=repr), 4000)},
    }
    if client is not None:
        ledger = client.ledger
        result.update(workflow_llm_calls=ledger.calls, workflow_llm_tokens=ledger.tokens,
                      workflow_llm_usd=ledger.usd)
    return result


def render_feedback(scored: list[_Scored], mean: float, direction: str, notes: list[str], *, tokens: int,
                    max_examples: int) -> str:
    """Summary line, value adjustments, then the worst examples' rendered subgraphs within ``tokens``."""
    sign = 1.0 if direction == "maximize" else -1.0
    word = "higher" if direction == "maximize" else "lower"
    raised = sum(s.raised for s in scored)
    lines = [f"Mean score {mean:.6g} over {len(scored)} examples ({word} is better)"
             + (f"; {raised} raised an exception." if raised else ".")]
    if notes:
        lines.append("Values adjusted to fit their constraints: " + "; ".join(notes[:10]))
    ordered = sorted(scored, key=lambda s: (sign * s.score, s.index))
    best = sign * max(sign * s.score for s in scored)
    worse = [s for s in ordered if s.score != best]
    shown = (worse or ordered[:1])[: max(max_examples, 0)]
    if shown:
        lines.append("")
        lines.append("Worst examples, each with the computation graph its Params flowed through "
                     "(#Code: calls, #Params: current values, #Outputs, #Feedback):")
    head = "\n".join(lines)
    budget_chars = max(tokens, 100) * CHARS_PER_TOKEN
    per = max((budget_chars - len(head)) // max(len(shown), 1) // CHARS_PER_TOKEN - 20, 60)
    parts = [head]
    for k, s in enumerate(shown):
        prop = s.propagation
        title = f"\n## Example {s.index} (score {s.score:.6g})"
        if k == 0:
            parts.append(f"{title}\n{prop.render(budget_tokens=per)}")
            continue
        # The Params' values are the same for every example: show them once (the program has them too).
        nodes = [n for n in prop.union() if not isinstance(n, Param)]
        body = render_text(nodes, prop.output, prop.feedback, budget_tokens=per)
        parts.append(f"{title} (#Params as in the first example)\n{body}")
    return truncate("\n".join(parts), budget_chars)
