"""The ``agentopt optimize`` config file: which workflow, which data, which optimizer.

The ``llm:`` section is the very same :class:`agentopt.task.LLMSpec` as in task.yaml, so a
model configured once works for both halves. Paths resolve relative to the config file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError

from agentopt.errors import AgentoptError
from agentopt.optim.kinds import OPTIMIZERS
from agentopt.task import LLMSpec, StrictModel

#: The ``optimizer.kind`` choices: the keys of the optimizer table.
OptimizerKind = Literal[tuple(OPTIMIZERS)]  # type: ignore[valid-type]


class ConfigError(AgentoptError):
    """The optimize config is missing, malformed, or names something that does not exist."""


class OptimizerSpec(StrictModel):
    kind: OptimizerKind = "optoprime"
    batch_size: int = Field(4, ge=1, description="Examples per step (pareto: minibatch size).")
    memory: int = Field(5, ge=0, description="optoprime: past steps shown to the LLM.")
    budget_tokens: int = Field(6000, ge=200, description="Token budget for graph renderings in a prompt.")
    merge_every: int = Field(0, ge=0, description="pareto: merge two front members every N steps (0 = never).")
    samples: int = Field(4, ge=1, description="iterative_decoding, best_of_n: candidates sampled (LLM calls) "
                         "per step; batch_size is the verifier's fixed minibatch.")
    objective: str = Field("", description="Extra sentence telling the LLM what 'better' means.")


class OptimizeConfig(StrictModel):
    """One optimization job, e.g. ``tasks/prompt_opt/optimize.yaml``."""

    name: str | None = None
    workflow: Path = Field(..., description="Python file defining the build, entry and metric functions.")
    build: str = Field("build", description="Function returning the Module (the trainable Params).")
    entry: str = Field("run", description="run(module, example[, ctx]) -> output (node or plain value).")
    metric: str = Field("metric", description="metric(output, example) -> score | (score, text) | dict.")
    dataset: Path = Field(..., description="JSONL (or JSON list) of examples used for steps.")
    valset: Path | None = Field(None, description="Validation examples; default: a split of dataset.")
    val_fraction: float = Field(0.5, gt=0, lt=1)
    direction: Literal["maximize", "minimize"] = "maximize"
    failure_score: float = Field(0.0, description="Score of an example whose run raised.")
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    llm: LLMSpec = Field(default_factory=LLMSpec)
    iterations: int = Field(10, ge=0)
    seed: int = 0
    output_dir: Path | None = None
    evolve: dict[str, Any] | None = Field(
        None,
        description="Settings read only by `agentopt evolve CONFIG` (sandbox, search, extra_files, ...); "
        "validated by agentopt.targets.trace_workflow, ignored by `agentopt optimize`.",
    )
    config_file: Path | None = Field(None, exclude=True)

    def display_name(self) -> str:
        return self.name or self.workflow.parent.name or "optimize"

    def resolved_output_dir(self) -> Path:
        return self.output_dir if self.output_dir is not None else Path("runs") / f"optimize-{self.display_name()}"


def load_config(path: str | Path) -> OptimizeConfig:
    """Load and validate a config file; raise :class:`ConfigError` with one line on any problem."""
    cfg_path = Path(path)
    if not cfg_path.is_file():
        raise ConfigError(f"{cfg_path}: config file not found")
    try:
        data = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{cfg_path}: invalid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{cfg_path}: expected a mapping at the top level")
    try:
        cfg = OptimizeConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise ConfigError(f"{cfg_path}: key '{loc}': {first['msg']}") from None
    base = cfg_path.resolve().parent

    def resolve(p: Path | None) -> Path | None:
        if p is None:
            return None
        p = p.expanduser()
        return p if p.is_absolute() else (base / p).resolve()

    cfg.workflow = resolve(cfg.workflow)  # type: ignore[assignment]
    cfg.dataset = resolve(cfg.dataset)  # type: ignore[assignment]
    cfg.valset = resolve(cfg.valset)
    cfg.output_dir = resolve(cfg.output_dir)
    if cfg.llm.cache is not None:
        cfg.llm.cache = resolve(cfg.llm.cache)
    cfg.config_file = cfg_path.resolve()
    for key, p in (("workflow", cfg.workflow), ("dataset", cfg.dataset), ("valset", cfg.valset)):
        if p is not None and not p.is_file():
            raise ConfigError(f"{cfg_path}: key '{key}': file not found: {p}")
    return cfg
