"""Host side of constants tuning: run one tuning job in the sandbox, check what came back.

A child's float literals inside its EVOLVE-BLOCKs are tuned by the guest
(``evaluators/agentopt_tune.py``) against the task's own evaluator, inside ONE sandbox job
with the task's limits. The host never imports the candidate; it only reads the job's one
framed answer, and treats the returned source as untrusted text:

* :func:`literal_only_change` accepts it only when the text outside the blocks is
  byte-identical, the comments are the same, and the two programs' syntax trees are equal
  once every numeric literal is masked (a literal may change value and sign, a ``-`` in
  front of a literal may become ``+``, nothing else);
* the stored score is never the tuner's: the controller evaluates the accepted source with
  the normal ``evaluate()`` (and cascade), so the program in the store reproduces its score.

Determinism: the tuner's seed comes from ``(search.seed, iteration)`` and its stopping rule
is an evaluation count, so a seeded run tunes identically every time (unless the time
share of the sandbox timeout cuts a run short, which the child records as ``stopped: time``).
"""

from __future__ import annotations

import ast
import io
import random
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentopt.blocks import BlockError, find_blocks
from agentopt.evaluate import evaluator_functions, job_for, setting_env
from agentopt.sandbox.base import Sandbox, SandboxJob
from agentopt.task import TaskSpec

__all__ = [
    "TuneOutcome",
    "literal_only_change",
    "same_shape",
    "tune_budget",
    "tune_enabled",
    "tune_options",
    "tune_program",
    "tune_seed",
]

_MASK = "\x00agentopt-number"
TUNE_HOOK = "tune_objective"
# Default tuning budgets: a cheap proxy affords a real search; without one every objective
# call is a full evaluation (often a process per call), so only a short polish is affordable.
HOOK_EVALUATIONS = 1000
FULL_EVALUATIONS = 40


@dataclass
class TuneOutcome:
    """What one tuning job gave: the accepted tuned source (or None) and the record for the
    child's ``mutation["tuned"]``."""

    code: str | None
    record: dict[str, Any] = field(default_factory=dict)


def tune_enabled(spec: TaskSpec, proposer: Any) -> bool:
    """``search.tune.enabled``. ``auto`` means on for proposers that ask for it (the offline
    one) when tuning is cheap: the evaluator defines ``tune_objective``, or the task sets an
    evaluation budget. Without either, every tuning call would be a full evaluation (usually a
    process per call), multiplying the cost of each iteration by the budget, and a time-cut
    tuning on a loaded machine would make seeded runs differ: so that is opt-in."""
    tune = spec.search.tune
    if spec.objective.weights is not None:
        return False  # the guest tuner optimizes one returned metric; a weighted sum is none (task.py refuses `true`)
    if tune.enabled == "auto":
        cheap = TUNE_HOOK in evaluator_functions(spec.evaluator) and tune.objective == "auto"
        return bool(proposer.tune_by_default) and (cheap or tune.evaluations is not None)
    return bool(tune.enabled)


def tune_seed(seed: int, iteration: int) -> int:
    """The tuner's seed for ``iteration``: from the run seed and the iteration only, so a resumed
    or repeated run tunes each child exactly as before (independent of the proposer's stream)."""
    return random.Random(f"{seed}:{iteration}:tune").getrandbits(31)


def tune_budget(spec: TaskSpec) -> int:
    """Objective calls per child: ``search.tune.evaluations`` or the default for this evaluator."""
    if spec.search.tune.evaluations:
        return spec.search.tune.evaluations
    hook = TUNE_HOOK in evaluator_functions(spec.evaluator) and spec.search.tune.objective == "auto"
    return HOOK_EVALUATIONS if hook else FULL_EVALUATIONS


def tune_options(spec: TaskSpec, seed: int) -> dict[str, Any]:
    """The guest tuner's options: budgets, objective, and the cascade's stages and thresholds."""
    tune = spec.search.tune
    functions = evaluator_functions(spec.evaluator)
    stages = [f"evaluate_stage{i}" for i in (1, 2, 3) if f"evaluate_stage{i}" in functions]
    if spec.cascade.enabled and stages:
        if "evaluate" in functions and spec.cascade.final_evaluate:
            stages.append("evaluate")
        thresholds = list(spec.cascade.thresholds)
    else:
        stages, thresholds = ["evaluate"], []
    return {
        "seed": seed,
        "evaluations": tune_budget(spec),
        "time_s": spec.sandbox.timeout_s * tune.time_share,
        "scale": tune.scale,
        "max_literals": tune.max_literals,
        "method": tune.method,
        "metric": spec.objective.metric,
        "direction": spec.objective.direction,
        "functions": stages,
        "thresholds": thresholds,
        "use_hook": tune.objective == "auto",
    }


def guest_tool_job(spec: TaskSpec, program_path: Path, tune: dict[str, Any]) -> SandboxJob:
    """The sandbox job that runs the guest tuner (evaluators/agentopt_tune.py) on a candidate:
    the task's evaluation job carrying ``tune`` (constants tuning, or a ``materialize`` request),
    under the first evaluation setting when there are several (one job, not one per setting)."""
    job = job_for(spec, program_path, "evaluate").model_copy(update={"tune": tune})
    if spec.settings:
        job.env.update(setting_env(spec.settings[0]))
    return job


async def tune_program(
    sandbox: Sandbox, spec: TaskSpec, program_path: Path, seed: int, budget_factor: int = 1
) -> TuneOutcome:
    """Run one tuning job on the candidate written at ``program_path``; never raises for
    candidate trouble (a failed or rejected tuning keeps the untuned child). ``budget_factor``
    multiplies the evaluation budget (still within the job's time share)."""
    original = program_path.read_text(encoding="utf-8")
    options = tune_options(spec, seed)
    options["evaluations"] *= max(1, budget_factor)
    result = await sandbox.run(guest_tool_job(spec, program_path, options))
    if not result.ok or result.value is None:
        return TuneOutcome(None, {"evaluations": 0, "before": None, "after": None,
                                  "error": (result.error or "tuning job failed")[:300]})
    value = result.value
    record: dict[str, Any] = {
        "evaluations": _int(value.get("evaluations")),
        "before": _num(value.get("before")),
        "after": _num(value.get("after")),
        "stopped": str(value.get("stopped", ""))[:80],
    }
    if value.get("objective"):
        record["objective"] = str(value["objective"])[:80]
    if value.get("method"):
        record["method"] = str(value["method"])[:20]
    source = value.get("source")
    if source is None:
        return TuneOutcome(None, record)
    if not isinstance(source, str):
        return TuneOutcome(None, {**record, "error": "tuner returned a non-text source"})
    problem = literal_only_change(original, source)
    if problem:
        return TuneOutcome(None, {**record, "error": f"tuned source rejected: {problem}"})
    return TuneOutcome(source, record)


def literal_only_change(old: str, new: str) -> str | None:
    """``None`` when ``new`` differs from ``old`` only in numeric literal values inside the
    EVOLVE-BLOCKs (see the module docstring); else a one-line reason."""
    try:
        old_blocks, new_blocks = find_blocks(old), find_blocks(new)
    except BlockError as err:
        return str(err)
    if len(old_blocks) != len(new_blocks):
        return "the number of EVOLVE-BLOCKs changed"
    if old_blocks and _outside(old, old_blocks) != _outside(new, new_blocks):
        return "text outside the EVOLVE-BLOCKs changed"
    try:
        old_tree, new_tree = ast.parse(old), ast.parse(new)
    except (SyntaxError, ValueError) as err:
        return f"does not parse: {err}"
    if _masked(old_tree) != _masked(new_tree):
        return "code other than numeric literals changed"
    if _comments(old) != _comments(new):
        return "comments changed"
    return None


def same_shape(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` are the same program up to numeric literal values (and
    comments): same text outside the blocks and equal syntax trees with numbers masked."""
    try:
        a_blocks, b_blocks = find_blocks(a), find_blocks(b)
        if len(a_blocks) != len(b_blocks) or _outside(a, a_blocks) != _outside(b, b_blocks):
            return False
        return _masked(ast.parse(a)) == _masked(ast.parse(b))
    except (BlockError, SyntaxError, ValueError):
        return False


def _outside(code: str, blocks: list[Any]) -> list[str]:
    parts, pos = [], 0
    for block in blocks:
        parts.append(code[pos : block.body_start])
        pos = block.body_end
    parts.append(code[pos:])
    return parts


class _Mask(ast.NodeTransformer):
    """Replace numbers (with their signs) by one marker per type; ``a - NUM`` reads as ``a + NUM``."""

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return ast.Constant(value=f"{_MASK}:{type(node.value).__name__}")
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.USub | ast.UAdd) and _masked_const(node.operand):
            return node.operand
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Sub) and _masked_const(node.right):
            node.op = ast.Add()
        return node


def _masked_const(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(_MASK)


def _masked(tree: ast.AST) -> str:
    return ast.dump(_Mask().visit(tree), include_attributes=False)


def _comments(code: str) -> list[str]:
    try:
        return [t.string for t in tokenize.generate_tokens(io.StringIO(code).readline) if t.type == tokenize.COMMENT]
    except (tokenize.TokenError, SyntaxError):
        return ["<untokenizable>"]


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0
