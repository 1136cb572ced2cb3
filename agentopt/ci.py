"""CI mode: gate a pipeline on "no regression against the committed baseline".

`agentopt ci task.yaml --baseline baseline.json` evaluates the task's current program
``repeats`` times in the sandbox (or first runs a bounded search with ``--budget`` and
evaluates the best program found), then compares the scores with the baseline's samples.

Noisy metrics (timings, sampled LLM outputs) need more than "new < old": we bootstrap the
difference of means (seeded, so the verdict is reproducible) and call it a regression only
when the whole confidence interval lies below ``-tolerance``. Deterministic metrics collapse
to an exact comparison with the same rule.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Literal
from xml.etree import ElementTree as ET

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from agentopt import __version__
from agentopt.errors import AgentoptError
from agentopt.evaluate import evaluate_program
from agentopt.sandbox.factory import make_sandbox
from agentopt.task import Direction, TaskSpec

Verdict = Literal["pass", "improved", "regression", "failed"]


class Baseline(BaseModel):
    """What `--update-baseline` writes and later runs compare with (commit this file)."""

    task: str
    metric: str
    direction: Literal["maximize", "minimize"]
    samples: list[float] = Field(min_length=1)
    program_sha256: str = ""
    agentopt_version: str = ""
    created_at: float = 0.0

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples))


class Comparison(BaseModel):
    verdict: Verdict
    reason: str
    current_mean: float | None = None
    baseline_mean: float | None = None
    delta: float | None = None  # signed so that positive means better
    ci_low: float | None = None
    ci_high: float | None = None
    tolerance: float = 0.0
    samples: list[float] = Field(default_factory=list)


def bootstrap_delta_ci(
    current: list[float], baseline: list[float], *, confidence: float = 0.95, resamples: int = 4000, seed: int = 0
) -> tuple[float, float, float]:
    """Return (delta, low, high) for mean(current) - mean(baseline) by percentile bootstrap."""
    cur = np.asarray(current, dtype=float)
    base = np.asarray(baseline, dtype=float)
    delta = float(cur.mean() - base.mean())
    if cur.size == 1 and base.size == 1:
        return delta, delta, delta
    rng = np.random.default_rng(seed)
    cur_means = rng.choice(cur, size=(resamples, cur.size), replace=True).mean(axis=1)
    base_means = rng.choice(base, size=(resamples, base.size), replace=True).mean(axis=1)
    diffs = cur_means - base_means
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(diffs, [alpha, 1.0 - alpha])
    return delta, float(low), float(high)


def compare(
    samples: list[float],
    baseline: Baseline,
    *,
    tolerance: float = 0.0,
    rel_tolerance: float = 0.0,
    confidence: float = 0.95,
) -> Comparison:
    """Regression only when the whole confidence interval is worse than the tolerance."""
    sign = 1.0 if baseline.direction == "maximize" else -1.0
    tol = max(tolerance, rel_tolerance * abs(baseline.mean))
    delta, low, high = bootstrap_delta_ci(samples, baseline.samples, confidence=confidence)
    # Orient so that positive is better for both directions.
    d, lo, hi = sign * delta, min(sign * low, sign * high), max(sign * low, sign * high)
    current_mean = float(np.mean(samples))
    pct = f"{int(confidence * 100)}%"
    detail = (
        f"{baseline.metric} {current_mean:.6g} vs baseline {baseline.mean:.6g} "
        f"(better by {d:+.4g}, {pct} CI [{lo:+.4g}, {hi:+.4g}], tolerance {tol:.4g}, n={len(samples)})"
    )
    if hi < -tol:
        verdict: Verdict = "regression"
    elif lo > tol:
        verdict = "improved"
    else:
        verdict = "pass"
    return Comparison(
        verdict=verdict,
        reason=detail,
        current_mean=current_mean,
        baseline_mean=baseline.mean,
        delta=d,
        ci_low=lo,
        ci_high=hi,
        tolerance=tol,
        samples=samples,
    )


def load_baseline(path: Path) -> Baseline:
    if not path.is_file():
        raise AgentoptError(f"{path}: baseline not found; create it with `agentopt ci TASK --baseline {path} --update-baseline`")
    try:
        return Baseline.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise AgentoptError(f"{path}: invalid baseline: {loc}: {first['msg']}") from None


def gated_metric(spec: TaskSpec, metric: str | None) -> tuple[str, Direction]:
    """The metric ``--metric`` names and its direction: by default the task's score (its metric,
    or with several objectives the primary one or the weighted sum); else one of the objectives."""
    objective = spec.objective
    if metric is None or metric == objective.metric:
        return objective.metric, objective.direction
    for entry in objective.objectives:
        if entry.metric == metric:
            return entry.metric, entry.direction
    names = ", ".join(dict.fromkeys([objective.metric, *(m.metric for m in objective.objectives)]))
    raise AgentoptError(f"--metric {metric!r}: not an objective of this task (choose from: {names})")


def write_baseline(
    path: Path, spec: TaskSpec, samples: list[float], program: Path, gated: tuple[str, Direction] | None = None
) -> Baseline:
    metric, direction = gated or (spec.objective.metric, spec.objective.direction)
    baseline = Baseline(
        task=spec.display_name,
        metric=metric,
        direction=direction,
        samples=samples,
        program_sha256=hashlib.sha256(program.read_bytes()).hexdigest(),
        agentopt_version=__version__,
        created_at=round(time.time(), 3),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(baseline.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return baseline


async def sample_scores(
    spec: TaskSpec, program: Path, repeats: int, metric: str | None = None
) -> tuple[list[float], str | None]:
    """Evaluate ``program`` ``repeats`` times in the task's sandbox. Returns (scores, first error).
    ``metric``: sample that objective's value instead of the score (``--metric``)."""
    sandbox = make_sandbox(spec.sandbox)
    scores: list[float] = []
    try:
        for _ in range(repeats):
            result = await evaluate_program(sandbox, spec, program)
            if result.error is not None or result.score is None:
                return scores, result.error or "no score"
            value = result.score if metric is None or metric == spec.objective.metric else result.metrics.get(metric)
            if value is None:
                return scores, f"the result has no '{metric}'"
            scores.append(float(value))
    finally:
        await sandbox.close()
    return scores, None


def github_summary_markdown(task: str, comparison: Comparison) -> str:
    icon = {"pass": "✅", "improved": "🚀", "regression": "❌", "failed": "❌"}[comparison.verdict]
    rows = [
        ("verdict", f"{icon} {comparison.verdict}"),
        ("current mean", _fmt(comparison.current_mean)),
        ("baseline mean", _fmt(comparison.baseline_mean)),
        ("better by", _fmt(comparison.delta)),
        ("confidence interval", f"[{_fmt(comparison.ci_low)}, {_fmt(comparison.ci_high)}]"),
        ("tolerance", _fmt(comparison.tolerance)),
        ("samples", ", ".join(f"{s:.6g}" for s in comparison.samples) or "—"),
    ]
    body = "\n".join(f"| {k} | {v} |" for k, v in rows)
    reason = comparison.reason.replace("|", "\\|")
    return f"### agentopt ci: {task}\n\n| | |\n|---|---|\n{body}\n\n{reason}\n"


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.6g}"


def junit_xml(task: str, comparison: Comparison, elapsed_s: float) -> str:
    failed = comparison.verdict in ("regression", "failed")
    suite = ET.Element(
        "testsuite", name="agentopt-ci", tests="1", failures=str(int(failed)), errors="0", time=f"{elapsed_s:.3f}"
    )
    case = ET.SubElement(suite, "testcase", classname="agentopt.ci", name=task, time=f"{elapsed_s:.3f}")
    if failed:
        failure = ET.SubElement(case, "failure", message=comparison.reason[:500], type=comparison.verdict)
        failure.text = comparison.reason
    out = ET.SubElement(case, "system-out")
    out.text = json.dumps(comparison.model_dump(), indent=2)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)


def run_ci(
    spec: TaskSpec,
    *,
    baseline_path: Path,
    repeats: int = 3,
    tolerance: float = 0.0,
    rel_tolerance: float = 0.0,
    confidence: float = 0.95,
    budget: int | None = None,
    output: Path | None = None,
    update_baseline: bool = False,
    junit: Path | None = None,
    metric: str | None = None,
) -> tuple[int, str]:
    """Run the gate. Returns (exit code, one-line verdict). 0 pass/improved, 1 regression/failure.
    ``metric`` gates on one objective of a multi-objective task (default: the task's score)."""
    if repeats < 1:
        raise AgentoptError("--repeats must be at least 1")
    gated = gated_metric(spec, metric)
    started = time.monotonic()
    program = spec.program
    if budget is not None:
        from agentopt.evolve.api import evolve  # deferred: engine only for --budget

        run_dir = output or Path("runs") / f"ci-{spec.display_name}"
        summary = evolve(spec, iterations=budget, output_dir=run_dir)
        if summary.best_program_path:
            program = Path(summary.best_program_path)
    baseline = None if update_baseline else load_baseline(baseline_path)
    samples, error = asyncio.run(sample_scores(spec, program, repeats, gated[0]))
    if update_baseline:
        if error is not None:
            return 1, f"ci: cannot write a baseline: the program failed: {error}"
        written = write_baseline(baseline_path, spec, samples, program, gated)
        return 0, f"ci: baseline written to {baseline_path} ({written.metric} mean {written.mean:.6g}, n={len(samples)})"
    assert baseline is not None
    if (baseline.metric, baseline.direction) != gated:
        raise AgentoptError(
            f"{baseline_path}: baseline is for {baseline.direction} {baseline.metric}, "
            f"the task optimizes {gated[1]} {gated[0]}; update the baseline"
        )
    if error is not None:
        comparison = Comparison(verdict="failed", reason=f"the program failed evaluation: {error}", samples=samples,
                                baseline_mean=baseline.mean)
    else:
        comparison = compare(
            samples, baseline, tolerance=tolerance, rel_tolerance=rel_tolerance, confidence=confidence
        )
    elapsed = time.monotonic() - started
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        with open(summary_file, "a", encoding="utf-8") as fh:
            fh.write(github_summary_markdown(spec.display_name, comparison))
    if junit is not None:
        junit.parent.mkdir(parents=True, exist_ok=True)
        junit.write_text(junit_xml(spec.display_name, comparison, elapsed), encoding="utf-8")
    code = 1 if comparison.verdict in ("regression", "failed") else 0
    label = {"pass": "PASS", "improved": "PASS (improved)", "regression": "REGRESSION", "failed": "FAILED"}
    return code, f"ci: {label[comparison.verdict]}: {comparison.reason}"
