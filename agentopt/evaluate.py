"""Evaluation: turn a guest evaluator's returned dict into an :class:`EvalResult`,
and run cascade stages through a sandbox backend.

The host trusts only what the guest runner sent over its result channel; numeric
metrics are validated here (finite floats), everything else becomes feedback/artifacts.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agentopt.sandbox.base import JobResult, Sandbox, SandboxJob
from agentopt.task import WEIGHTED_METRIC, Direction, EvalSetting, Objective, TaskSpec

RESERVED_KEYS = {"score", "combined_score", "feedback", "artifacts", "error"}
FINGERPRINT_FUNCTION = "fingerprint"


class EvalResult(BaseModel):
    """The scored outcome of one candidate. ``error`` set means the candidate failed."""

    metrics: dict[str, float] = Field(default_factory=dict)
    score: float | None = None
    feedback: str = ""
    artifacts: dict[str, str] = Field(default_factory=dict)
    error: str | None = None
    error_kind: str | None = None
    stage: int = 0  # highest cascade stage reached (0 = single-stage evaluate())
    wall_s: float = 0.0
    isolation: list[str] = Field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    # One record per cascade stage that ran: stage, function, score, wall_s, outcome
    # (passed | stopped | failed | final). The funnel ranks and the summary counts from these.
    stages: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and self.score is not None


def _as_number(value: Any) -> float | None:
    """A finite float, or None. Never raises: a candidate controls these values, and an int
    too large for a float (``10**400``) must become a recorded artifact, not a crashed run."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        try:
            f = float(value)
        except (OverflowError, ValueError):
            return None
        return f if math.isfinite(f) else None
    return None


def _short_repr(value: Any) -> str:
    """``repr`` that cannot fail or explode: huge ints exceed Python's int-to-str digit limit."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 10_000:
        return f"<integer of about {int(value.bit_length() * 0.30103)} digits>"
    try:
        return repr(value)[:10_000]
    except (ValueError, OverflowError):
        return f"<unprintable {type(value).__name__}>"


def _returned_names(metrics: dict[str, float], artifacts: dict[str, str]) -> str:
    names = sorted(set(metrics) | set(artifacts))
    shown = ", ".join(repr(n) for n in names[:12]) + (", ..." if len(names) > 12 else "")
    return shown or "nothing"


def score_of(
    metrics: dict[str, float],
    metric: str,
    *,
    if_missing: str = "error",
    mean_of: list[str] | None = None,
) -> float | None:
    """The objective value of one result: ``metric``; for ``score`` objectives also OpenEvolve's
    ``combined_score``; with ``if_missing: mean`` (imported OpenEvolve configs) the mean of the
    metrics named in ``mean_of`` — never silently otherwise, so a mistyped metric fails."""
    score = metrics.get(metric)
    if score is None and metric == "score":
        score = metrics.get("combined_score")
    if score is None and if_missing == "mean":
        averaged = [metrics[k] for k in (mean_of if mean_of is not None else list(metrics)) if k in metrics]
        score = sum(averaged) / len(averaged) if averaged else None
    return score


def result_from_value(
    value: dict[str, Any],
    metric: str = "score",
    *,
    exclude_from_mean: tuple[str, ...] = (),
    if_missing: str = "error",
    key_name: str = "objective.metric",
) -> EvalResult:
    """Map an evaluator's dict to an EvalResult.

    Score: the objective ``metric`` key when present; for ``score`` objectives, OpenEvolve's
    ``combined_score``. With ``if_missing="mean"`` (set for imported OpenEvolve configs) the
    mean of the numeric metrics, as OpenEvolve does (booleans such as ``timeout: True`` and
    MAP-Elites feature dimensions left out); otherwise a missing metric fails the candidate
    with the names the evaluator did return. A boolean objective value is never a score.
    A numeric ``error`` is a metric; a non-empty string ``error`` marks the candidate failed.
    """
    metrics: dict[str, float] = {}
    artifacts: dict[str, str] = {}
    for key, raw in value.items():
        if key in ("feedback", "artifacts"):
            continue
        if key == "error" and not isinstance(raw, int | float):
            continue
        num = _as_number(raw)
        if num is not None:
            metrics[str(key)] = num
        elif isinstance(raw, int | float) and not isinstance(raw, bool):
            artifacts[str(key)] = _short_repr(raw)  # nan / inf / too large: recorded, never a score
        else:
            artifacts[str(key)] = raw[:10_000] if isinstance(raw, str) else _short_repr(raw)
    raw_artifacts = value.get("artifacts")
    if isinstance(raw_artifacts, dict):
        for k, v in raw_artifacts.items():
            artifacts[str(k)] = v[:10_000] if isinstance(v, str) else _short_repr(v)
    feedback = value.get("feedback") or ""
    if not isinstance(feedback, str):
        feedback = str(feedback)
    error = value.get("error")
    error = error if isinstance(error, str) and error.strip() else None
    if error:
        return EvalResult(metrics=metrics, feedback=feedback, artifacts=artifacts, error=error[:2000],
                          error_kind="failed_check")
    objective_raw = value.get(metric, value.get("combined_score") if metric == "score" else None)
    if isinstance(objective_raw, bool):
        return EvalResult(metrics=metrics, feedback=feedback, artifacts=artifacts, error_kind="bad_result",
                          error=f"evaluator returned a boolean for '{metric}' ({objective_raw}); return a number")
    mean_of = [k for k in metrics if not isinstance(value.get(k), bool) and k not in exclude_from_mean]
    score = score_of(metrics, metric, if_missing=if_missing, mean_of=mean_of)
    if score is None:
        if metric in value or (metric == "score" and "combined_score" in value):
            why = f"evaluator returned a non-finite or non-numeric '{metric}'"
        else:
            why = f"evaluator returned no '{metric}' ({key_name}); it returned: {_returned_names(metrics, artifacts)}"
        return EvalResult(metrics=metrics, feedback=feedback, artifacts=artifacts, error=why, error_kind="bad_result")
    return EvalResult(metrics=metrics, score=score, feedback=feedback[:20_000], artifacts=artifacts)


def score_objectives(
    result: EvalResult, objective: Objective, raw: dict[str, Any], *, exclude_from_mean: tuple[str, ...] = ()
) -> EvalResult:
    """Several objectives: every listed metric must be in ``result`` (``if_missing`` applies to
    each: an error naming it, or OpenEvolve's mean), and the score becomes the scalar that
    ranks programs (the primary metric, or the weighted sum, kept as ``weighted_sum``). A
    failed or single-objective result passes through unchanged."""
    if result.error is not None or not objective.is_multi:
        return result
    mean_of = [k for k in result.metrics if not isinstance(raw.get(k), bool) and k not in exclude_from_mean]
    values: dict[str, float] = {}
    for name in (m.metric for m in objective.metrics):
        if isinstance(raw.get(name), bool):
            why = f"evaluator returned a boolean for '{name}' ({raw[name]}); return a number"
            return result.model_copy(update={"score": None, "error": why, "error_kind": "bad_result"})
        value = score_of(result.metrics, name, if_missing=objective.if_missing, mean_of=mean_of)
        if value is None:
            if name in raw:
                why = f"evaluator returned a non-finite or non-numeric '{name}'"
            else:
                returned = _returned_names(result.metrics, result.artifacts)
                why = f"evaluator returned no '{name}' (objective.metrics); it returned: {returned}"
            return result.model_copy(update={"score": None, "error": why, "error_kind": "bad_result"})
        values[name] = value
    score = objective.scalarize(values)
    extra = {WEIGHTED_METRIC: score} if objective.weights is not None else {}
    return result.model_copy(update={"metrics": {**result.metrics, **values, **extra}, "score": score})


def evaluator_functions(evaluator_path: Path) -> set[str]:
    """Top-level function names the evaluator defines, read from its AST (never imported).

    Cached per (path, size, mtime): the controller asks for every candidate, and re-parsing
    the evaluator each time is measurable framework overhead; an edited file is re-read."""
    try:
        st = Path(evaluator_path).stat()
    except OSError:
        return set()
    return set(_functions_cached(str(evaluator_path), st.st_size, st.st_mtime_ns))


@lru_cache(maxsize=32)
def _functions_cached(path: str, _size: int, _mtime_ns: int) -> frozenset[str]:
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8", errors="replace"))
    except (SyntaxError, ValueError, OSError):
        return frozenset()
    return frozenset(n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef))


def has_fingerprint(spec: TaskSpec) -> bool:
    """True when the evaluator defines the optional ``fingerprint(program_path)`` hook."""
    return FINGERPRINT_FUNCTION in evaluator_functions(spec.evaluator)


def fingerprint_hash(value: Any) -> str:
    """SHA-256 of the canonical JSON of a fingerprint (sorted keys, no whitespace), so equal
    outputs hash equally whatever order the guest built its dict in."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True, ensure_ascii=False)
    return hashlib.sha256(("fp1:" + canonical).encode("utf-8", "surrogatepass")).hexdigest()


async def fingerprint_program(sandbox: Sandbox, spec: TaskSpec, program_path: Path) -> tuple[str | None, str | None]:
    """Run the evaluator's ``fingerprint(program_path)`` hook: ``(hash, None)`` or ``(None, why)``.

    The hook runs the candidate on fixed probe inputs and returns the outputs as a dict (the
    runner protocol carries dicts; put a list under a key, e.g. ``{"outputs": [...]}``). Two candidates with the same fingerprint are treated as
    functionally equivalent, so the second reuses the first one's stored result. A failing
    hook is not a failed candidate: the caller simply evaluates it in full.
    """
    result = await sandbox.run(job_for(spec, program_path, FINGERPRINT_FUNCTION))
    if not result.ok or result.value is None:
        return None, result.error or "fingerprint failed"
    return fingerprint_hash(result.value), None


def job_for(spec: TaskSpec, program_path: Path, function: str) -> SandboxJob:
    sb = spec.sandbox
    return SandboxJob(
        evaluator_path=spec.evaluator,
        program_path=program_path,
        function=function,
        extra_files=list(spec.extra_files),
        timeout_s=sb.timeout_s,
        memory_mb=sb.memory_mb,
        network=sb.network,
        gpus=sb.gpus,
        cpus=sb.cpus,
        env=dict(sb.env),
        max_disk_mb=sb.max_disk_mb,
        requirements=list(sb.requirements),
    )


def _from_job(job_result: JobResult, objective: Objective, stage: int, exclude: tuple[str, ...] = ()) -> EvalResult:
    if not job_result.ok or job_result.value is None:
        return EvalResult(
            error=job_result.error or "evaluation failed",
            error_kind=job_result.error_kind or "crash",
            stage=stage,
            wall_s=job_result.wall_s,
            isolation=job_result.isolation,
            stdout=job_result.stdout,
            stderr=job_result.stderr,
        )
    # Several objectives: read the result as for the first one, then check and scalarize them all.
    metric = objective.metrics[0].metric if objective.is_multi else objective.metric
    value = job_result.value
    key_name = "objective.metrics" if objective.is_multi else "objective.metric"
    result = result_from_value(value, metric, exclude_from_mean=exclude, if_missing=objective.if_missing, key_name=key_name)
    result = score_objectives(result, objective, value, exclude_from_mean=exclude)
    return result.model_copy(
        update={
            "stage": stage,
            "wall_s": job_result.wall_s,
            "isolation": job_result.isolation,
            "stdout": job_result.stdout,
            "stderr": job_result.stderr,
        }
    )


SETTING_ENV = "AGENTOPT_SETTING"


def setting_env(setting: EvalSetting) -> dict[str, str]:
    """Environment for one setting's job: its ``env`` plus ``AGENTOPT_SETTING``, the JSON of
    ``{"name": ..., **params}``, so an evaluator stays a plain ``evaluate(program_path)``."""
    payload = json.dumps({"name": setting.name, **setting.params}, sort_keys=True)
    return {**setting.env, SETTING_ENV: payload}


def aggregate_scores(scores: Sequence[float], objective: Objective, direction: Direction | None = None) -> float:
    """Combine per-setting scores as ``objective.aggregate`` says (``worst`` follows the
    direction: the objective's, or ``direction`` for one metric of several)."""
    how = objective.aggregate
    if how == "worst":
        how = "min" if (direction or objective.direction) == "maximize" else "max"
    if how == "mean":
        return sum(scores) / len(scores)
    return min(scores) if how == "min" else max(scores)


def combine_settings(per_setting: Sequence[tuple[str, EvalResult]], objective: Objective) -> EvalResult:
    """One result from a stage run under every setting.

    Metrics: each setting's as ``<metric>@<setting>``; unsuffixed, the mean over settings of
    each metric they all report (so feature dimensions keep working), except the objective
    metric, which holds the aggregated score. Feedback is prefixed per setting and ends with
    a per-setting score line. A failure under any setting fails the candidate, naming it."""
    metrics: dict[str, float] = {}
    feedback: list[str] = []
    artifacts: dict[str, str] = {}
    for name, result in per_setting:
        metrics.update({f"{k}@{name}": v for k, v in result.metrics.items()})
        if result.score is not None:
            metrics[f"{objective.metric}@{name}"] = result.score
        if result.feedback:
            feedback.append(f"[setting {name}] {result.feedback}")
        artifacts.update({f"{k}@{name}": v for k, v in result.artifacts.items()})
    shared = set.intersection(*(set(r.metrics) for _, r in per_setting))
    for key in sorted(shared):
        metrics[key] = sum(r.metrics[key] for _, r in per_setting) / len(per_setting)
    last_name, last = per_setting[-1]
    common = {
        "stage": last.stage,
        "wall_s": sum(r.wall_s for _, r in per_setting),
        "isolation": last.isolation,
        "stdout": last.stdout,
        "stderr": last.stderr,
        "artifacts": artifacts,
    }
    if last.error is not None:
        feedback.append(f"failed under setting {last_name!r}: {last.error}")
        return EvalResult(metrics=metrics, feedback="\n".join(feedback), error=f"setting {last_name!r}: {last.error}",
                          error_kind=last.error_kind, **common)
    scores = [r.score for _, r in per_setting if r.score is not None]
    score = aggregate_scores(scores, objective)
    if objective.is_multi:  # each objective aggregated in its own direction, then scalarized
        values = {m.metric: aggregate_scores([r.metrics[m.metric] for _, r in per_setting], objective, m.direction)
                  for m in objective.metrics}
        metrics.update(values)
        score = objective.scalarize(values)
    metrics[objective.metric] = score
    listed = ", ".join(f"{n} {r.score:.6g}" for n, r in per_setting)
    feedback.append(f"per-setting {objective.metric}: {listed}; {objective.aggregate} = {score:.6g}")
    return EvalResult(metrics=metrics, score=score, feedback="\n".join(feedback), **common)


def _gate(spec: TaskSpec, index: int, score: float, rank_limits: Sequence[float | None] | None) -> str | None:
    """Why a candidate with stage-``index`` ``score`` does not go on (None: it is promoted).

    Two gates, both must hold: the fixed ``cascade.thresholds[index-1]`` and, with
    ``cascade.promote_top``, the rank cutoff the caller computed from recent stage results
    (``rank_limits[index-1]``; None there means everyone is promoted)."""
    thresholds = spec.cascade.thresholds
    maximize = spec.objective.direction == "maximize"
    if index - 1 < len(thresholds):
        limit = thresholds[index - 1]
        if not (score >= limit if maximize else score <= limit):
            return f"score {score:.6g} did not reach {limit:g}"
    if rank_limits is not None and index - 1 < len(rank_limits):
        cutoff = rank_limits[index - 1]
        if cutoff is not None and not (score >= cutoff if maximize else score <= cutoff):
            fraction = spec.cascade.promote_fraction(index)
            top = f"top {fraction:.0%}" if fraction is not None else "rank cutoff"
            return f"score {score:.6g} is not in the {top} of recent candidates (cutoff {cutoff:.6g})"
    return None


async def _run_function(
    sandbox: Sandbox, spec: TaskSpec, program_path: Path, function: str, stage: int, exclude: tuple[str, ...]
) -> tuple[EvalResult, dict[str, Any]]:
    """Run one evaluator function: once, or once per `settings` entry (see :func:`combine_settings`).

    Returns the result and the evaluator's raw dict (``{}`` under settings, whose combined
    result always holds the objective metric)."""
    if not spec.settings:
        job_result = await sandbox.run(job_for(spec, program_path, function))
        return _from_job(job_result, spec.objective, stage, exclude), job_result.value or {}
    per_setting: list[tuple[str, EvalResult]] = []
    for setting in spec.settings:
        job = job_for(spec, program_path, function)
        job.env.update(setting_env(setting))
        result = _from_job(await sandbox.run(job), spec.objective, stage, exclude)
        per_setting.append((setting.name, result))
        if result.error is not None:
            break  # every setting must pass: the first failure decides
    return combine_settings(per_setting, spec.objective), {}


async def evaluate_program(
    sandbox: Sandbox, spec: TaskSpec, program_path: Path, *, rank_limits: Sequence[float | None] | None = None
) -> EvalResult:
    """Evaluate one program, running cascade stages when the task enables them.

    With a cascade, ``evaluate_stage1`` runs first; stage ``i+1`` runs only when stage ``i``'s
    score passes its gate: ``thresholds[i]`` (a missing threshold means "passes when it did not
    fail") and, for rank promotion, ``rank_limits[i]`` (computed by the caller from recent
    candidates, see :mod:`agentopt.evolve.funnel`). The final result merges the metrics of
    every stage that ran; its score is the last stage's objective value, or with
    ``objective.if_missing: mean`` and no objective key in any stage, the mean over the merged
    metrics of all stages (OpenEvolve's rule for cascades); ``stages`` records each stage.
    """
    metric = spec.objective.metric
    if_missing = spec.objective.if_missing
    exclude = tuple(spec.search.feature_dimensions)
    functions = evaluator_functions(spec.evaluator)
    stages = [f"evaluate_stage{i}" for i in (1, 2, 3) if f"evaluate_stage{i}" in functions]
    if not spec.cascade.enabled or not stages:
        return (await _run_function(sandbox, spec, program_path, "evaluate", 0, exclude))[0]
    # A final full `evaluate` runs after the stages when the evaluator defines it (unless the
    # task says the stages are the whole evaluation, as OpenEvolve's cascade does).
    if "evaluate" in functions and spec.cascade.final_evaluate:
        stages.append("evaluate")
    merged: dict[str, float] = {}
    feedback: list[str] = []
    records: list[dict[str, Any]] = []
    result = EvalResult(error="no stage ran", error_kind="bad_result")
    wall = 0.0
    mean_keys: dict[str, None] = {}  # numeric, non-boolean metrics of every stage (OpenEvolve's mean)
    for index, function in enumerate(stages, start=1):
        result, value = await _run_function(sandbox, spec, program_path, function, index, exclude)
        wall += result.wall_s
        merged.update(result.metrics)
        for key, raw in value.items():
            if key in result.metrics and not isinstance(raw, bool) and key not in exclude:
                mean_keys[key] = None
        if result.feedback:
            feedback.append(result.feedback)
        record: dict[str, Any] = {"stage": index, "function": function, "score": result.score,
                                  "wall_s": result.wall_s, "outcome": "final"}
        records.append(record)
        if result.error is not None:
            record.update(outcome="failed", score=None)
            break
        if index < len(stages) and result.score is not None:
            why = _gate(spec, index, result.score, rank_limits)
            if why is not None:
                record["outcome"] = "stopped"
                feedback.append(f"stopped after stage {index}: {why}")
                break
            record["outcome"] = "passed"
    update: dict[str, Any] = {"metrics": merged, "feedback": "\n".join(feedback), "wall_s": wall, "stages": records}
    if result.error is None and if_missing == "mean" and not spec.objective.is_multi:
        update["score"] = score_of(merged, metric, if_missing="mean", mean_of=list(mean_keys))
    return result.model_copy(update=update)
