"""task.yaml -> :class:`TaskSpec`: the schema, loading, validation and JSON Schema export.

Every model forbids unknown keys so that a typo fails loudly instead of silently using a
default. Paths are resolved relative to the task file. Loading errors are turned into one
line that names the key and the file (see :func:`load_task`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agentopt.blocks import EVOLVE_END, EVOLVE_START
from agentopt.errors import TaskError


class StrictModel(BaseModel):
    """Base of every user-written config model (task.yaml, optimize configs): a typo in a key
    fails loudly instead of silently using a default, and assignments are validated too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


Direction = Literal["maximize", "minimize"]
#: The name a weighted objective's score goes by (in metrics, prompts and reports).
WEIGHTED_METRIC = "weighted_sum"


class ObjectiveMetric(StrictModel):
    """One objective of a multi-objective run: an evaluator metric and its direction."""

    metric: str = Field(..., min_length=1, description="Key of the evaluator's returned dict.")
    direction: Direction = "maximize"

    @field_validator("metric")
    @classmethod
    def _not_the_failure_key(cls, v: str) -> str:
        """An ``error`` key in a result means the candidate failed, so it cannot be a metric."""
        if v == "error":
            raise ValueError("'error' cannot be an objective: evaluators return 'error' to fail a candidate; "
                             "name the metric e.g. 'rel_error'")
        return v


class Objective(StrictModel):
    """Which evaluator metric(s) to optimize, and in which direction.

    One metric (``{metric, direction}``) is a classic single-score run. Several (a list of
    ``{metric, direction}``, or ``metrics:`` in this mapping) make a multi-objective run: the
    store keeps the Pareto front, and ``metric``/``direction`` then name the *scalar* score
    that ranks programs (best program, patience, ``agentopt ci``): the ``primary`` metric, or
    with ``weights`` the weighted sum (``weighted_sum``, maximized; minimized metrics count
    negatively). That keeps every single-score part of the engine working unchanged.
    """

    metric: str = Field("score", description="Key of the evaluator's returned dict to optimize.")
    direction: Direction = "maximize"
    if_missing: Literal["error", "mean"] = Field(
        "error",
        description="When a result lacks 'metric': error (the candidate fails, naming the keys the evaluator "
        "returned) or mean (OpenEvolve's rule: the mean of the numeric metrics; set for imported OpenEvolve configs).",
    )
    aggregate: Literal["worst", "mean", "min", "max"] = Field(
        "worst",
        description="With several `settings`: combine per-setting scores by the worst one (min when maximizing, "
        "max when minimizing), the mean, or literally min/max.",
    )
    selection: Literal["best", "b4"] = Field(
        "best",
        description="How the final program is chosen: the best score, or 'b4' when the evaluator's tests are "
        "generated (plausible): B4 over the pass matrix of the top programs, each reporting 'passes' "
        "(e.g. \"1101\", one character per test).",
    )
    selection_top: int = Field(20, ge=2, description="b4: how many top-scored programs to choose among.")
    metrics: list[ObjectiveMetric] = Field(
        default_factory=list,
        description="Several objectives (a Pareto front is kept; parents are drawn from it). Each must be in "
        "every evaluator result. Instead of metric/direction.",
    )
    primary: str | None = Field(
        None, description="With metrics: the one that picks the best program (default: the first)."
    )
    weights: dict[str, float] | None = Field(
        None,
        description="With metrics: pick the best program by the weighted sum of the metrics (a minimized metric "
        "counts negatively); instead of primary.",
    )
    reference: dict[str, float] | None = Field(
        None,
        description="With two metrics: the hypervolume reference point, one value per metric (default: the "
        "worst value of each among the run's valid programs).",
    )

    @model_validator(mode="before")
    @classmethod
    def _list_form(cls, data: Any) -> Any:
        # `objective: [{metric: rel_error, direction: minimize}, {metric: ops, direction: minimize}]`
        return {"metrics": data} if isinstance(data, list) else data

    @model_validator(mode="after")
    def _several(self) -> Objective:
        extras = [k for k in ("primary", "weights", "reference") if getattr(self, k) is not None]
        if not self.metrics:
            if "metrics" in self.model_fields_set and "metric" not in self.model_fields_set:  # a dump has both
                raise ValueError("metrics: list at least one {metric, direction}")
            if extras:
                raise ValueError(f"{extras[0]} needs several objectives (metrics: a list of {{metric, direction}})")
            return self
        names = [m.metric for m in self.metrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"metrics: each metric once, repeated: {', '.join(dupes)}")
        if len(names) == 1:  # one listed metric is a plain single-objective run
            if extras:
                raise ValueError(f"{extras[0]} needs at least two metrics")
            self._set_scalar(self.metrics[0].metric, self.metrics[0].direction)
            self.__dict__["metrics"] = []
            return self
        if self.primary is not None and self.weights is not None:
            raise ValueError("give either primary or weights, not both")
        for key in ("weights", "reference"):
            given: dict[str, float] = getattr(self, key) or {}
            unknown = sorted(set(given) - set(names))
            if unknown:
                raise ValueError(f"{key}: unknown metric {unknown[0]!r} (objectives: {', '.join(names)})")
            bad = sorted(k for k, v in given.items() if v != v or v in (float("inf"), float("-inf")))
            if bad:
                raise ValueError(f"{key}.{bad[0]}: must be a finite number")
        if self.weights is not None and not any(self.weights.values()):
            raise ValueError("weights: give at least one non-zero weight")
        if self.weights is not None and WEIGHTED_METRIC in names:
            raise ValueError(f"metrics: '{WEIGHTED_METRIC}' is the weighted score's own name; rename that metric")
        if self.reference is not None and set(self.reference) != set(names):
            missing = sorted(set(names) - set(self.reference))
            raise ValueError(f"reference: give a value for every metric (missing {missing[0]!r})")
        if self.primary is not None and self.primary not in names:
            raise ValueError(f"primary: unknown metric {self.primary!r} (objectives: {', '.join(names)})")
        if self.weights is not None:
            self._set_scalar(WEIGHTED_METRIC, "maximize")
        else:
            first = self.metrics[names.index(self.primary)] if self.primary else self.metrics[0]
            self._set_scalar(first.metric, first.direction)
        return self

    def _set_scalar(self, metric: str, direction: Direction) -> None:
        """Point metric/direction at the scalar score. Writes ``__dict__`` directly: an
        assignment would re-run this validator (validate_assignment). A stored objective
        (the run's meta) carries the derived values back, so equal ones are accepted."""
        for key, value in (("metric", metric), ("direction", direction)):
            if key in self.model_fields_set and getattr(self, key) != value:
                raise ValueError(f"give either {key} or metrics (with primary/weights), not both")
        self.__dict__["metric"] = metric
        self.__dict__["direction"] = direction

    @property
    def is_multi(self) -> bool:
        """True for a run with several objectives (a Pareto front)."""
        return bool(self.metrics)

    @property
    def objectives(self) -> list[ObjectiveMetric]:
        """Every objective: the listed metrics, or the one metric/direction of a single-score run."""
        return list(self.metrics) if self.metrics else [ObjectiveMetric(metric=self.metric, direction=self.direction)]

    def scalarize(self, values: dict[str, float]) -> float:
        """The scalar score of a multi-objective result (``values`` holds every objective):
        the primary metric, or the weighted sum with minimized metrics counted negatively."""
        if self.weights is None:
            return values[self.metric]
        signs = {m.metric: 1.0 if m.direction == "maximize" else -1.0 for m in self.metrics}
        return sum(w * signs[name] * values[name] for name, w in sorted(self.weights.items()))

    def stored(self) -> str:
        """JSON kept in a run's meta: a single-objective run stores exactly what it always did."""
        if not self.is_multi:
            return self.model_dump_json(exclude={"metrics", "primary", "weights", "reference"})
        return self.model_dump_json()

    def same_objectives(self, other: Objective) -> bool:
        """True when ``other`` ranks and fronts programs the same way (what a reopened run needs)."""
        mine = [(m.metric, m.direction) for m in self.objectives]
        theirs = [(m.metric, m.direction) for m in other.objectives]
        return (self.metric, self.direction, mine, self.weights) == (other.metric, other.direction, theirs, other.weights)

    def describe(self) -> str:
        """One line naming what is optimized: ``maximize score`` or ``minimize error, minimize ops (primary error)``."""
        if not self.is_multi:
            return f"{self.direction} {self.metric}"
        listed = ", ".join(f"{m.direction} {m.metric}" for m in self.metrics)
        if self.weights is not None:
            by = "weights " + ", ".join(f"{k}={v:g}" for k, v in sorted(self.weights.items()))
        else:
            by = f"primary {self.metric}"
        return f"{listed} ({by})"

    def better(self, a: float, b: float) -> bool:
        """True when score ``a`` is strictly better than ``b``."""
        return a > b if self.direction == "maximize" else a < b


#: What ``sandbox.gpus`` may hold in YAML: ``all``, a count, ``"0,1"`` or a list of device ids.
GpuValue = str | int | list[str] | None


@dataclass(frozen=True)
class GpuRequest:
    """``sandbox.gpus`` parsed once: all GPUs, the first ``count`` GPUs, or exactly ``ids``.

    Every backend (and the evaluation-slot cap) reads this instead of re-parsing the raw
    value; each translates it to its own mechanism (``CUDA_VISIBLE_DEVICES``, docker
    DeviceRequests, a Ray ``num_gpus``).
    """

    all: bool = False
    count: int = 0
    ids: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: GpuValue | GpuRequest) -> GpuRequest:
        """Accept ``None``/``0``/``[]``/``"none"`` (no GPU), ``"all"``, a count (int or digits),
        ``"0,1"`` (also docker's ``"device=0,1"``) or a list of ids; a parsed request passes through."""
        if isinstance(value, GpuRequest):
            return value
        if value is None:
            return cls()
        if isinstance(value, bool):
            return cls(count=int(value))
        if isinstance(value, int):
            return cls(count=max(0, value))
        if isinstance(value, list):
            return cls(ids=tuple(str(g).strip() for g in value if str(g).strip()))
        text = str(value).strip()
        if text.lower() in ("", "none", "0"):
            return cls()
        if text.lower() == "all":
            return cls(all=True)
        if text.isdigit():
            return cls(count=int(text))
        text = text.removeprefix("device=")
        return cls(ids=tuple(g.strip() for g in text.split(",") if g.strip()))

    @property
    def wanted(self) -> bool:
        """True when any GPU is asked for."""
        return self.all or self.count > 0 or bool(self.ids)

    def number(self, *, all_as: int) -> int:
        """How many GPUs; ``all`` counts as ``all_as`` (what the caller can know about the host)."""
        return all_as if self.all else self.count or len(self.ids)

    def __str__(self) -> str:
        """As a user would write it: ``all``, ``2``, ``0,1`` (``none`` when nothing is asked)."""
        if self.all:
            return "all"
        return ",".join(self.ids) if self.ids else str(self.count) if self.count else "none"


class SandboxSpec(StrictModel):
    kind: Literal["local", "docker", "ray"] = "local"
    # Upper bounds keep absurd values (1e308 s, 1e20 MB) from overflowing timers and rlimits.
    timeout_s: float = Field(
        60.0, gt=0, le=604_800, description="Wall-clock limit per evaluation (whole process tree), at most 7 days."
    )
    memory_mb: int = Field(2048, gt=16, le=16_777_216, description="Address-space / container memory cap (<= 16 TiB).")
    network: bool = Field(False, description="Allow network access inside the sandbox.")
    gpus: GpuValue = Field(None, description="'all', a count, or device ids.")
    cpus: float | None = Field(None, gt=0, le=4096)
    max_disk_mb: int = Field(512, gt=0, le=16_777_216, description="Cap on the work dir's disk use.")
    max_processes: int = Field(
        128,
        ge=8,
        le=16384,
        description="Processes and threads one evaluation may hold at once (pids cgroup; local and docker). "
        "Raise it for evaluators that start many threads, e.g. Numba's CUDA simulator (one per GPU thread).",
    )
    image: str | None = Field(None, description="Docker image (docker backend).")
    warm_workers: int = Field(0, ge=0, description="Docker: containers kept running and reused between jobs.")
    warm: bool | Literal["auto"] = Field(
        "auto",
        description="Local: fork each evaluation from a warm worker that set up its namespaces and imported the "
        "evaluator once (every isolation layer still applies per job). auto = on where all layers apply.",
    )
    ray_address: str | None = Field(None, description="Ray cluster address; None starts a local Ray.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra env vars passed to the guest.")
    requirements: list[str] = Field(default_factory=list, description="Python packages the evaluator needs.")


class ModelSpec(StrictModel):
    name: str = Field(..., description="litellm model name, e.g. 'openai/gpt-4o-mini' or 'local/smollm2'.")
    weight: float = Field(1.0, gt=0)
    api_base: str | None = None
    api_key_env: str | None = Field(
        None, description="Name of the environment variable holding the key (never the key itself)."
    )
    # Prices for models litellm does not know (local servers, custom names), so max_usd works.
    usd_per_million_input_tokens: float | None = Field(
        None, ge=0, description="Price of prompt tokens, USD per million; overrides litellm's price map."
    )
    usd_per_million_output_tokens: float | None = Field(
        None, ge=0, description="Price of completion tokens, USD per million; overrides litellm's price map."
    )

    @property
    def priced(self) -> bool:
        """True when the task itself says what this model costs."""
        return self.usd_per_million_input_tokens is not None or self.usd_per_million_output_tokens is not None


class LLMSpec(StrictModel):
    models: list[ModelSpec] = Field(default_factory=list)
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(4096, gt=0)
    timeout_s: float = Field(120.0, gt=0, le=86_400)
    max_retries: int = Field(4, ge=0)
    concurrency: int = Field(4, ge=1, description="LLM calls in flight at once.")
    selection: Literal["weighted", "bandit"] = Field(
        "weighted",
        description="How each call picks a model: by weight, or a cost-aware UCB bandit that learns "
        "which model yields improvements (its statistics persist across resume).",
    )
    bandit_cost_weight: float = Field(0.5, ge=0, description="How strongly the bandit penalizes expensive models.")
    system_message: str | None = None
    meta_prompts: bool = Field(
        False,
        description="Evolve the system prompt too: an archive of prompt variants (seeded, then proposed by the "
        "LLM from the best ones) chosen per call by a bandit rewarded when the child beats its parent.",
    )
    meta_prompt_interval: int = Field(10, ge=1, description="Ask the LLM for a new prompt variant every N iterations.")
    meta_prompt_max_variants: int = Field(8, ge=2, description="Size of the prompt-variant archive.")
    cache: Path | None = Field(None, description="Request cache file (JSONL); enables offline replay.")
    replay_only: bool = Field(False, description="Serve only from the cache; a miss stops the run with an error.")
    fallback_to_symbolic: bool = Field(
        False,
        description="When the configured models cannot be reached (no key, server down), evolve with the built-in "
        "symbolic mutator instead of failing. Off by default so a CI run never passes without its LLM.",
    )

    @model_validator(mode="before")
    @classmethod
    def _models_shorthand(cls, data: Any) -> Any:
        # Allow `models: ["openai/gpt-4o-mini"]` as well as full mappings.
        if isinstance(data, dict) and isinstance(data.get("models"), list):
            data = dict(data)
            data["models"] = [{"name": m} if isinstance(m, str) else m for m in data["models"]]
        return data


class BudgetSpec(StrictModel):
    max_evaluations: int | None = Field(None, gt=0)
    max_usd: float | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, gt=0)
    max_wall_s: float | None = Field(None, gt=0)
    patience: int | None = Field(None, gt=0, description="Stop after this many iterations without improvement.")


class TuneSpec(StrictModel):
    """Constants tuning: optimize each child's float literals inside its EVOLVE-BLOCKs before
    it is judged, in one sandbox job (see docs/evolve.md, "Constants tuning")."""

    enabled: bool | Literal["auto"] = Field(
        "auto",
        description="auto: on for the offline symbolic mutator when the evaluator defines tune_objective or an "
        "evaluation budget is set, off for LLM children; true/false force it.",
    )
    evaluations: int | None = Field(
        None,
        ge=1,
        description="Objective calls per child (the tuning budget). Default: 1000 when the evaluator defines a "
        "cheap tune_objective, else 40 (each call is then a full evaluation).",
    )
    time_share: float = Field(
        0.8, gt=0, le=0.9, description="Share of sandbox.timeout_s the tuner may spend; the rest is slack."
    )
    scale: float = Field(0.05, gt=0, le=10, description="First simplex step, relative to each literal.")
    max_literals: int = Field(64, ge=1, description="Children with more float literals are not tuned.")
    method: Literal["auto", "nelder_mead", "cma_es"] = Field(
        "auto",
        description="auto: Nelder-Mead for fewer than 12 float literals, CMA-ES from 12 on (a simplex is a good "
        "local polish in a few dimensions; CMA-ES learns correlated moves in tens of them).",
    )
    objective: Literal["auto", "evaluate"] = Field(
        "auto",
        description="auto: the evaluator's cheap tune_objective(program_path) when it defines one, else its "
        "evaluate (or cascade stages); evaluate: always the evaluator's own scoring.",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # `tune: false` / `tune: true` / `tune: 500` (an evaluation budget) as well as a mapping.
        if isinstance(data, bool):
            return {"enabled": data}
        if isinstance(data, int):
            return {"enabled": True, "evaluations": data}
        return data


class SearchSpec(StrictModel):
    iterations: int = Field(100, ge=0, le=1_000_000_000)
    seed: int = 0
    mode: Literal["diff", "rewrite"] = Field("diff", description="SEARCH/REPLACE diffs or full rewrites.")
    mutator: Literal["auto", "llm", "symbolic"] = Field(
        "auto", description="auto: LLM when a model is configured and reachable, else symbolic."
    )
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    parallel_evaluations: int = Field(1, ge=1)
    pipeline_window: int | None = Field(
        None,
        ge=1,
        description="Iterations in flight at once: iteration i samples the store as of iteration i - window "
        "(fixed, so seeded runs reproduce and resume exactly). null: parallel_evaluations + llm.concurrency "
        "(+ 1 for the symbolic mutator); 1 runs strictly one iteration after another.",
    )
    evaluations_per_gpu: int | None = Field(
        1,
        ge=1,
        description="With sandbox.gpus set, evaluations running at once are capped at (number of GPUs) x this; "
        "null lifts the cap (for evaluators that share a GPU safely).",
    )
    population_size: int = Field(1000, ge=1)
    archive_size: int = Field(100, ge=1)
    num_islands: int = Field(1, ge=1)
    migration_interval: int = Field(20, ge=1)
    migration_rate: float = Field(0.1, ge=0, le=1)
    feature_dimensions: list[str] = Field(default_factory=lambda: ["complexity", "diversity"])
    feature_bins: int | dict[str, int] = 10
    exploration_ratio: float = Field(0.2, ge=0, le=1)
    exploitation_ratio: float = Field(0.7, ge=0, le=1)
    elite_selection_ratio: float = Field(0.1, ge=0, le=1)
    parent_top_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Share of parents drawn uniformly from the island's parent_top_k best programs (exploitation: "
        "most children descend from the best few); the rest follow the exploration/exploitation/weighted mix.",
    )
    parent_top_k: int = Field(3, ge=1, description="How many of an island's best programs parent_top_share draws from.")
    num_top_programs: int = Field(3, ge=0)
    num_diverse_programs: int = Field(2, ge=0)
    max_code_length: int = Field(20000, gt=0)
    max_failure_rate: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Stop with an error when more than this fraction of the last failure_window evaluated "
        "candidates failed (a broken setup should not burn the budget); null: never.",
    )
    failure_window: int = Field(20, ge=2, description="Evaluations max_failure_rate looks back over.")
    tune: TuneSpec = Field(default_factory=TuneSpec)
    novelty_threshold: float = Field(
        0.0, ge=0, le=1, description="Reject children whose code distance to an island program is below this (0: off)."
    )
    simplify: bool = Field(
        True,
        description="Ignore dead code when matching children against evaluated programs (equivalence cache); "
        "turn off when the evaluator judges the source itself (counts operations, rejects constructs).",
    )


class CascadeSpec(StrictModel):
    enabled: bool = False
    thresholds: list[float] = Field(default_factory=list, description="Score needed after stage i to run stage i+1.")
    final_evaluate: bool = Field(
        True, description="After the stages, also run evaluate() when the evaluator defines it."
    )
    promote_top: float | list[float | None] | None = Field(
        None,
        description="Promote by rank: after stage i only the best fraction promote_top[i] (one number: every "
        "stage) of the last rank_window candidates that ran stage i goes on. null: threshold only.",
    )
    rank_window: int = Field(50, ge=2, description="How many recent stage results (in iteration order) rank a candidate.")
    rank_warmup: int = Field(
        10, ge=1, description="Promote everyone at a stage until its window holds this many results."
    )

    @field_validator("promote_top")
    @classmethod
    def _fractions(cls, v: float | list[float | None] | None) -> float | list[float | None] | None:
        values = v if isinstance(v, list) else [v]
        for i, f in enumerate(values):
            if f is not None and not 0 < f <= 1:
                where = f"[{i}]" if isinstance(v, list) else ""
                raise ValueError(f"promote_top{where} must be a fraction in (0, 1], got {f:g}")
        return v

    @model_validator(mode="after")
    def _warmup_fits(self) -> CascadeSpec:
        if self.promote_top is not None and not self.enabled:
            raise ValueError("promote_top needs enabled: true (it gates cascade stages)")
        if self.rank_warmup > self.rank_window:
            raise ValueError(f"rank_warmup ({self.rank_warmup}) must not exceed rank_window ({self.rank_window})")
        return self

    def promote_fraction(self, gate: int) -> float | None:
        """The rank fraction applied after stage ``gate`` (1-based), or None (no rank gate)."""
        if self.promote_top is None or isinstance(self.promote_top, float | int):
            return None if self.promote_top is None else float(self.promote_top)
        return self.promote_top[gate - 1] if gate - 1 < len(self.promote_top) else None


class EvalSetting(StrictModel):
    """One evaluation setting (a seed, a size, a dataset): the evaluator runs once per setting."""

    name: str = Field(..., description="Short name; per-setting metrics are reported as '<metric>@<name>'.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables for this setting.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="JSON values the evaluator reads from the AGENTOPT_SETTING env var."
    )

    @field_validator("name")
    @classmethod
    def _simple_name(cls, v: str) -> str:
        if not v or not all(c.isalnum() or c in "_-." for c in v):
            raise ValueError(f"must be a non-empty name of letters, digits, '_', '-' or '.', got {v!r}")
        return v


class TaskSpec(StrictModel):
    """A whole task: what to evolve, how to score it, with which models and limits."""

    name: str | None = None
    description: str = ""
    program: Path = Field(
        ...,
        description="Initial program; evolvable regions marked with EVOLVE-BLOCK markers. A directory (or a list "
        "of files) makes a multi-file candidate: the evaluator then receives a directory holding all its files.",
    )
    program_files: list[Path] = Field(
        default_factory=list,
        description="Files of a multi-file program, relative to the 'program' directory (default: every file in it).",
    )
    evaluator: Path = Field(..., description="Guest evaluator file defining evaluate(program_path) -> dict.")
    extra_files: list[Path] = Field(default_factory=list)
    objective: Objective = Field(default_factory=Objective)
    sandbox: SandboxSpec = Field(default_factory=SandboxSpec)
    llm: LLMSpec = Field(default_factory=LLMSpec)
    search: SearchSpec = Field(default_factory=SearchSpec)
    cascade: CascadeSpec = Field(default_factory=CascadeSpec)
    settings: list[EvalSetting] = Field(
        default_factory=list,
        description="Evaluation settings a candidate must pass (each stage runs once per setting); the score "
        "is combined across them by objective.aggregate.",
    )
    output_dir: Path | None = Field(None, description="Results folder; default runs/<name>.")
    # Set by load_task; not part of the YAML.
    task_file: Path | None = Field(None, exclude=True, json_schema_extra={"hidden": True})
    # Warnings produced while loading (e.g. OpenEvolve keys that agentopt cannot honour); not YAML.
    load_warnings: list[str] = Field(default_factory=list, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _program_list(cls, data: Any) -> Any:
        # `program: [a.py, lib/b.py]` means: the directory holding them, with these files.
        if isinstance(data, dict) and isinstance(data.get("program"), list):
            files = [str(p) for p in data["program"]]
            if not files or not all(isinstance(p, str) and p for p in data["program"]):
                raise ValueError("program: a list must name at least one file")
            if data.get("program_files"):
                raise ValueError("program: give either a list of files or program_files, not both")
            try:
                root = os.path.commonpath([os.path.dirname(os.path.normpath(p)) or "." for p in files])
            except ValueError:
                raise ValueError("program: mix of absolute and relative paths") from None
            data = dict(data)
            data["program"] = root or "."
            data["program_files"] = [os.path.relpath(os.path.normpath(p), root or ".") for p in files]
        return data

    @model_validator(mode="after")
    def _tuning_needs_one_metric(self) -> TaskSpec:
        if self.objective.weights is not None and self.search.tune.enabled is True:
            raise ValueError(
                "search.tune: constants tuning optimizes one metric; with objective.weights use primary instead, "
                "or tune: false"
            )
        return self

    @field_validator("settings")
    @classmethod
    def _unique_settings(cls, v: list[EvalSetting]) -> list[EvalSetting]:
        names = [s.name for s in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"setting names must be unique, repeated: {', '.join(dupes)}")
        return v

    @property
    def multi_file(self) -> bool:
        """True when a candidate is several files (``program`` is a directory)."""
        return bool(self.program_files)

    @field_validator("name")
    @classmethod
    def _name_is_simple(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or "/" in v):
            raise ValueError("must be a non-empty name without '/'")
        return v

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        return (self.program.name if self.multi_file else self.program.parent.name) or "task"

    def resolved_output_dir(self) -> Path:
        if self.output_dir is not None:
            return self.output_dir
        return Path("runs") / self.display_name


def _format_loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "<root>"


def _first_error_line(err: ValidationError, source: Path) -> str:
    first = err.errors()[0]
    loc = _format_loc(first["loc"])
    kind = first["type"]
    if kind == "extra_forbidden":
        msg = f"unknown key '{loc}'"
    elif kind == "missing":
        msg = f"missing required key '{loc}'"
    else:
        # pydantic names Python classes in some messages ("... for <class 'pathlib.Path'>")
        text = re.sub(r"\s*for <class '[\w.]+'>", "", str(first["msg"]))
        msg = f"key '{loc}': {text}"
    more = len(err.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{source}: {msg}{suffix}"


def _resolve(base: Path, p: Path | None) -> Path | None:
    if p is None:
        return None
    p = Path(p).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def task_from_dict(data: Any, task_file: Path) -> TaskSpec:
    """Validate ``data`` (already parsed YAML) and resolve paths relative to ``task_file``."""
    if not isinstance(data, dict):
        raise TaskError(f"{task_file}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        spec = TaskSpec.model_validate(data)
    except ValidationError as err:
        raise TaskError(_first_error_line(err, task_file)) from None
    base = task_file.resolve().parent
    spec.program = _resolve(base, spec.program)  # type: ignore[assignment]
    spec.evaluator = _resolve(base, spec.evaluator)  # type: ignore[assignment]
    spec.extra_files = [_resolve(base, p) for p in spec.extra_files]  # type: ignore[misc]
    if spec.llm.cache is not None:
        spec.llm.cache = _resolve(base, spec.llm.cache)
    if spec.output_dir is not None:
        spec.output_dir = _resolve(base, spec.output_dir)
    spec.task_file = task_file.resolve()
    if spec.program.is_dir():
        _check_program_dir(spec, task_file)
    elif spec.program_files:
        raise TaskError(f"{task_file}: key 'program_files': needs 'program' to be a directory")
    for key, path in [("program", spec.program), ("evaluator", spec.evaluator)]:
        if not (path.is_file() or (key == "program" and spec.multi_file)):
            raise TaskError(f"{task_file}: key '{key}': file not found: {path}")
    for i, path in enumerate(spec.extra_files):
        if not path.exists():
            raise TaskError(f"{task_file}: key 'extra_files.{i}': not found: {path}")
    for path in [spec.program / f for f in spec.program_files] if spec.multi_file else [spec.program]:
        code = path.read_text(encoding="utf-8", errors="replace")
        if code.count(EVOLVE_START) != code.count(EVOLVE_END):
            raise TaskError(f"{path}: unbalanced {EVOLVE_START}/{EVOLVE_END} markers")
    return spec


_SKIP_NAMES = {"__pycache__", "node_modules"}


def _check_program_dir(spec: TaskSpec, task_file: Path) -> None:
    """Fill ``program_files`` for a program directory (every regular file, minus hidden ones,
    caches, the evaluator, extra files and the task file) and check the listed files exist."""
    root = spec.program
    if not spec.program_files:
        skip = {p.resolve() for p in [spec.evaluator, task_file, *spec.extra_files]}
        found: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIP_NAMES)
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if name.startswith(".") or name.endswith((".pyc", ".pyo")) or path.resolve() in skip:
                    continue
                found.append(path.relative_to(root))
        if not found:
            raise TaskError(f"{task_file}: key 'program': directory {root} holds no program files")
        spec.program_files = found
    for i, rel in enumerate(spec.program_files):
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise TaskError(f"{task_file}: key 'program_files.{i}': must be a path inside {root}: {rel}")
        if not (root / rel).is_file():
            raise TaskError(f"{task_file}: key 'program_files.{i}': file not found: {root / rel}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys: YAML keeps the last one silently, so a
    task with two ``search:`` sections would quietly lose the first."""


def _no_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key: the schema rejects it later
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def read_yaml_file(path: Path, *, what: str = "task file") -> Any:
    """Parse a YAML config with one-line errors that name the file: missing, a folder (with the
    file inside it to pass instead), not UTF-8 text, empty, invalid YAML, duplicate keys."""
    path = Path(path)
    if path.is_dir():
        inside = [path / n for n in ("task.yaml", "config.yaml") if (path / n).is_file()]
        hint = f"; pass {inside[0]}" if inside else " (it holds no task.yaml or config.yaml)"
        raise TaskError(f"{path}: is a folder, not a {what}{hint}")
    if not path.is_file():
        raise TaskError(f"{path}: {what} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise TaskError(f"{path}: not a text {what} (invalid UTF-8 at byte {err.start})") from None
    except OSError as err:
        raise TaskError(f"{path}: cannot read the {what}: {err.strerror or err}") from None
    if "\x00" in text:
        raise TaskError(f"{path}: not a text {what} (it contains NUL bytes)")
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise TaskError(f"{path}:{where}: invalid YAML: {problem}") from None
    if data is None:
        raise TaskError(f"{path}: the {what} is empty (see `agentopt init` for a starting point)")
    return data


def read_task_file(path: str | Path) -> tuple[Path, Any]:
    """Parse a YAML task file into plain data; raise :class:`TaskError` with one line on any problem.

    Shared by :func:`load_task` and :func:`agentopt.targets.load_any`, so every task format
    reports a missing file, a folder, binary content, an empty file, broken YAML or duplicate
    keys the same way (:func:`read_yaml_file`). An empty file is an error, never a config with
    every default (that once started a 10000-iteration OpenEvolve run).
    """
    task_file = Path(path)
    return task_file, read_yaml_file(task_file)


def load_task(path: str | Path) -> TaskSpec:
    """Load and validate a native agentopt task.yaml; raise :class:`TaskError` with one line on any problem.

    Other formats (an OpenEvolve ``config.yaml``, an ``agentopt optimize`` config) are
    translated by :func:`agentopt.targets.load_any`, which is what the CLI and
    :func:`agentopt.evolve.api.evolve` call; this module stays at the bottom of the import graph.
    """
    task_file, data = read_task_file(path)
    try:
        return task_from_dict(data, task_file)
    except TaskError as err:
        if isinstance(data, dict) and "program" not in data:
            raise TaskError(f"{err} (OpenEvolve and `agentopt optimize` configs load with agentopt.targets.load_any)") from None
        raise


def json_schema() -> str:
    """JSON Schema of task.yaml, for editor completion (yaml-language-server)."""
    schema = TaskSpec.model_json_schema()
    schema.get("properties", {}).pop("task_file", None)
    schema.get("properties", {}).pop("load_warnings", None)
    # `objective` may also be a bare list of {metric, direction} (several objectives).
    props = schema.get("properties", {})
    if "objective" in props:
        listed = {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/ObjectiveMetric"}}
        props["objective"] = {"anyOf": [{"$ref": "#/$defs/Objective"}, listed], "description": Objective.__doc__.split("\n")[0]}
    schema["title"] = "agentopt task.yaml"
    return json.dumps(schema, indent=2)
