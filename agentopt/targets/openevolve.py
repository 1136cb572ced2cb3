"""Translate an OpenEvolve task folder into an agentopt :class:`TaskSpec`.

People who already have OpenEvolve tasks (``config.yaml`` + ``initial_program.py`` +
``evaluator.py``) should get an agentopt run by pointing at the folder, without editing a
file. Every key of the config is accounted for, one by one:

* **mapped** to the agentopt key with the same meaning (the table lives in ``_PLAIN`` and in
  ``docs/migrating-from-openevolve.md``);
* **honoured as is** when its value is what agentopt does anyway (e.g.
  ``evaluator.use_llm_feedback: false``) — nothing to report;
* **ignored with a warning** (``spec.load_warnings``) when dropping it changes logging,
  storage or search details but not what is optimised or how it is scored;
* **refused** with a one-line :class:`TaskError` when ignoring it would change the scores or
  the candidates themselves (LLM feedback mixed into scores, custom prompt templates, other
  LLM providers).

Keys that are absent take *OpenEvolve's* defaults, not agentopt's, so ``agentopt evolve
config.yaml`` runs what ``openevolve-run`` would have run (e.g. 10000 iterations, 5 islands,
seed 42, a 300 s evaluation timeout).

API keys never travel: ``api_key: ${VAR}`` becomes ``api_key_env: VAR``; a literal key is
dropped with a warning that does not repeat it. Warnings and errors never print any value of
a key this module does not understand, since that value could be a secret.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from agentopt.blocks import EVOLVE_START
from agentopt.errors import AgentoptError, TaskError
from agentopt.sandbox.requirements import read_requirements_file
from agentopt.task import TaskSpec, read_yaml_file, task_from_dict

OPENEVOLVE_VERSION = "0.4.0"  # the config schema these tables were written against
DEFAULT_DIFF_PATTERN = r"<<<<<<< SEARCH\n(.*?)=======\n(.*?)>>>>>>> REPLACE"
_ENV_REF = re.compile(r"^\$\{([^}]+)\}$")
_EXTRA_FILES_WARN_BYTES = 100 * 1024 * 1024

# Top-level keys only an OpenEvolve config has (agentopt's task.yaml has none of them).
_OE_ONLY_TOP = {
    "max_iterations", "checkpoint_interval", "log_level", "log_dir", "random_seed", "language",
    "file_suffix", "database", "prompt", "evolution_trace", "diff_based_evolution",
    "max_code_length", "enforce_evolve_blocks", "diff_pattern", "early_stopping_patience",
    "convergence_threshold", "early_stopping_metric", "max_tasks_per_child", "api_base",
}  # fmt: skip
_AGENTOPT_ONLY_TOP = {"program", "search", "sandbox", "objective", "cascade", "extra_files", "output_dir"}
_OE_SECTIONS = ("llm", "prompt", "database", "evaluator", "evolution_trace")

# OpenEvolve key -> (agentopt key, OpenEvolve default written when the key is absent, or None
# when OpenEvolve's default equals agentopt's). A null value means "OpenEvolve's default".
_PLAIN: dict[str, tuple[str, Any]] = {
    "max_iterations": ("search.iterations", 10000),
    "max_code_length": ("search.max_code_length", 10000),
    "early_stopping_patience": ("search.budget.patience", None),
    "database.population_size": ("search.population_size", None),
    "database.archive_size": ("search.archive_size", None),
    "database.num_islands": ("search.num_islands", 5),
    "database.migration_interval": ("search.migration_interval", 50),
    "database.migration_rate": ("search.migration_rate", None),
    "database.feature_dimensions": ("search.feature_dimensions", None),
    "database.feature_bins": ("search.feature_bins", None),
    "database.elite_selection_ratio": ("search.elite_selection_ratio", None),
    "database.exploration_ratio": ("search.exploration_ratio", None),
    "database.exploitation_ratio": ("search.exploitation_ratio", None),
    "prompt.num_top_programs": ("search.num_top_programs", None),
    "prompt.num_diverse_programs": ("search.num_diverse_programs", None),
    "evaluator.timeout": ("sandbox.timeout_s", 300),
    "evaluator.parallel_evaluations": ("search.parallel_evaluations", None),
    "evaluator.memory_limit_mb": ("sandbox.memory_mb", None),
    "evaluator.cpu_limit": ("sandbox.cpus", None),
    "llm.temperature": ("llm.temperature", None),
    "llm.max_tokens": ("llm.max_tokens", None),
    "llm.timeout": ("llm.timeout_s", 60),
    "llm.retries": ("llm.max_retries", 3),
}


@dataclass(frozen=True)
class _Rule:
    """How to treat an OpenEvolve key agentopt has no field for.

    ``exact(value, config)`` is True when that value is what agentopt does anyway (or the key
    has no effect in OpenEvolve with this config), so nothing is lost. Otherwise ``fatal``
    decides between a TaskError and a warning; ``why`` is the reason shown to the user.
    """

    why: str
    fatal: bool = False
    exact: Callable[[Any, dict[str, Any]], bool] = lambda value, cfg: False


def _is(*values: Any) -> Callable[[Any, dict[str, Any]], bool]:
    return lambda value, cfg: any(value == v and type(value) is type(v) for v in values)


def _isnull(value: Any, cfg: dict[str, Any]) -> bool:
    return value is None


def _no_llm_feedback(value: Any, cfg: dict[str, Any]) -> bool:
    return not (cfg.get("evaluator") or {}).get("use_llm_feedback", False)


def _no_embeddings(value: Any, cfg: dict[str, Any]) -> bool:
    return (cfg.get("database") or {}).get("embedding_model") is None


def _no_trace(value: Any, cfg: dict[str, Any]) -> bool:
    return not (cfg.get("evolution_trace") or {}).get("enabled", False)


def _no_changes_mode(value: Any, cfg: dict[str, Any]) -> bool:
    return not (cfg.get("prompt") or {}).get("programs_as_changes_description", False)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _no_patience(value: Any, cfg: dict[str, Any]) -> bool:
    patience = cfg.get("early_stopping_patience")
    return patience is None


_ARTIFACT_STORE = "agentopt stores artifacts in its run database with its own size caps"
_PROMPT_HEURISTIC = "agentopt's prompt builder does not use this labelling heuristic"
_SINGLE_BACKEND = "agentopt calls models through litellm with OpenAI-compatible endpoints only"

_RULES: dict[str, _Rule] = {
    # -- top level ---------------------------------------------------------------------------
    "checkpoint_interval": _Rule("agentopt commits every evaluated program, so any run resumes from its last program"),
    "log_level": _Rule("use agentopt's -v/--quiet options"),
    "log_dir": _Rule("agentopt writes logs into the run folder (output_dir)"),
    "max_tasks_per_child": _Rule("every agentopt evaluation already runs in a fresh sandboxed process"),
    "diff_pattern": _Rule(
        "agentopt's prompts and parser use the standard SEARCH/REPLACE markers", exact=_is(DEFAULT_DIFF_PATTERN)
    ),
    "convergence_threshold": _Rule(
        "agentopt's patience counts any strict improvement as progress", exact=_no_patience
    ),
    "early_stopping_metric": _Rule(
        "agentopt's patience always tracks the objective score",
        exact=lambda v, cfg: _no_patience(v, cfg) or v == "combined_score",
    ),
    # -- llm ---------------------------------------------------------------------------------
    "llm.top_p": _Rule("agentopt sends no top_p; the provider default applies", exact=_isnull),
    "llm.retry_delay": _Rule("agentopt retries with exponential backoff that honours Retry-After"),
    "llm.random_seed": _Rule("agentopt does not send a seed to the model", exact=_isnull),
    "llm.reasoning_effort": _Rule("not supported by agentopt's LLM settings", exact=_isnull),
    "llm.provider": _Rule(_SINGLE_BACKEND, fatal=True, exact=lambda v, cfg: v in (None, "openai")),
    "llm.init_client": _Rule("custom client factories cannot be expressed in a task file", fatal=True, exact=_isnull),
    "llm.manual_mode": _Rule("human-in-the-loop mode is not supported", fatal=True, exact=_is(False)),
    "llm._manual_queue_dir": _Rule("human-in-the-loop mode is not supported", exact=_isnull),
    "llm.max_budget_usd": _Rule("only used by the claude_code provider; use search.budget.max_usd", exact=_isnull),
    "llm.max_ai_credits": _Rule("only used by the copilot_cli provider", exact=_isnull),
    "llm.allow_all_tools": _Rule("only used by the copilot_cli provider", exact=_isnull),
    "llm.evaluator_models": _Rule("LLM feedback is not supported", exact=_no_llm_feedback),
    "llm.name": _Rule("has no effect at the llm level in OpenEvolve either", exact=lambda v, c: True),
    "llm.weight": _Rule("has no effect at the llm level in OpenEvolve either", exact=lambda v, c: True),
    # -- prompt ------------------------------------------------------------------------------
    "prompt.template_dir": _Rule(
        "custom prompt templates would be silently replaced by agentopt's prompt; move the task "
        "instructions into prompt.system_message",
        fatal=True,
        exact=_isnull,
    ),
    "prompt.evaluator_system_message": _Rule("LLM feedback is not supported", exact=_no_llm_feedback),
    "prompt.programs_as_changes_description": _Rule(
        "agentopt always shows programs as code, which changes what the model sees", fatal=True, exact=_is(False)
    ),
    "prompt.system_message_changes_description": _Rule("changes-description mode is not supported",
                                                       exact=_no_changes_mode),
    "prompt.initial_changes_description": _Rule("changes-description mode is not supported",
                                                exact=_no_changes_mode),
    "prompt.use_template_stochasticity": _Rule("agentopt's prompt wording is fixed, for reproducible runs", exact=_is(False)),
    "prompt.template_variations": _Rule("agentopt's prompt wording is fixed, for reproducible runs",
                                        exact=lambda v, c: not v),
    "prompt.use_meta_prompting": _Rule("not implemented in OpenEvolve either", exact=lambda v, c: True),
    "prompt.meta_prompt_weight": _Rule("not implemented in OpenEvolve either", exact=lambda v, c: True),
    "prompt.include_artifacts": _Rule("agentopt always shows evaluator artifacts as feedback", exact=_is(True)),
    "prompt.max_artifact_bytes": _Rule("agentopt caps artifacts and feedback with its own limits"),
    "prompt.artifact_security_filter": _Rule("agentopt redacts secrets from artifacts itself"),
    "prompt.suggest_simplification_after_chars": _Rule(_PROMPT_HEURISTIC),
    "prompt.include_changes_under_chars": _Rule(_PROMPT_HEURISTIC),
    "prompt.concise_implementation_max_lines": _Rule(_PROMPT_HEURISTIC),
    "prompt.comprehensive_implementation_min_lines": _Rule(_PROMPT_HEURISTIC),
    "prompt.diff_summary_max_line_len": _Rule(_PROMPT_HEURISTIC),
    "prompt.diff_summary_max_lines": _Rule(_PROMPT_HEURISTIC),
    "prompt.code_length_threshold": _Rule(_PROMPT_HEURISTIC, exact=_isnull),
    # -- database ----------------------------------------------------------------------------
    "database.db_path": _Rule("agentopt keeps its SQLite database in the run folder (output_dir)", exact=_isnull),
    "database.in_memory": _Rule("agentopt's database is always on disk, committed after every program"),
    "database.log_prompts": _Rule("agentopt always records prompts and replies in its run database"),
    "database.diversity_metric": _Rule("agentopt computes diversity its own way"),
    "database.diversity_reference_size": _Rule("agentopt computes diversity its own way"),
    "database.artifacts_base_path": _Rule(_ARTIFACT_STORE, exact=_isnull),
    "database.artifact_size_threshold": _Rule(_ARTIFACT_STORE),
    "database.cleanup_old_artifacts": _Rule(_ARTIFACT_STORE),
    "database.artifact_retention_days": _Rule(_ARTIFACT_STORE),
    "database.max_snapshot_artifacts": _Rule(_ARTIFACT_STORE),
    "database.novelty_llm": _Rule("LLM novelty judging is not supported", fatal=True, exact=_isnull),
    "database.embedding_model": _Rule(
        "agentopt rejects duplicates by exact and normalised code hashes, not embeddings", exact=_isnull
    ),
    "database.embedding_api_base": _Rule("embedding novelty checks are not supported", exact=_no_embeddings),
    "database.similarity_threshold": _Rule("embedding novelty checks are not supported", exact=_no_embeddings),
    # -- evaluator ---------------------------------------------------------------------------
    "evaluator.max_retries": _Rule(
        "agentopt does not re-run a failing evaluation; a failure is that candidate's result", exact=_is(0)
    ),
    "evaluator.distributed": _Rule("use sandbox.kind: ray for distributed evaluation", exact=_is(False)),
    "evaluator.use_llm_feedback": _Rule(
        "LLM feedback changes the scores and is not supported", fatal=True, exact=_is(False)
    ),
    "evaluator.llm_feedback_weight": _Rule("LLM feedback is not supported", exact=_no_llm_feedback),
    "evaluator.enable_artifacts": _Rule("agentopt always keeps evaluator artifacts", exact=_is(True)),
    "evaluator.max_artifact_storage": _Rule(_ARTIFACT_STORE),
    # -- evolution_trace ---------------------------------------------------------------------
    "evolution_trace.enabled": _Rule(
        "agentopt's run database already records every program, its parent, prompt and reply",
        exact=_is(False),
    ),
}
for _sub in ("format", "include_code", "include_prompts", "output_path", "buffer_size", "compress"):
    _RULES[f"evolution_trace.{_sub}"] = _Rule("evolution traces are not written by agentopt", exact=_no_trace)

# Keys handled by dedicated code below (seeds, models, keys, cascade, modes, messages).
_CUSTOM = {
    "random_seed", "language", "file_suffix", "diff_based_evolution", "enforce_evolve_blocks", "api_base",
    "llm.models", "llm.api_base", "llm.api_key", "llm.system_message", "llm.primary_model",
    "llm.primary_model_weight", "llm.secondary_model", "llm.secondary_model_weight",
    "prompt.system_message", "database.random_seed",
    "evaluator.cascade_evaluation", "evaluator.cascade_thresholds",
}  # fmt: skip

# Per-model keys of OpenEvolve's LLMModelConfig. Shared llm-level values fill the gaps.
_MODEL_KEYS = {
    "api_base", "api_key", "name", "provider", "init_client", "weight", "system_message", "temperature",
    "top_p", "max_tokens", "timeout", "retries", "retry_delay", "random_seed", "reasoning_effort",
    "max_budget_usd", "max_ai_credits", "allow_all_tools", "manual_mode", "_manual_queue_dir",
}  # fmt: skip


@dataclass
class Translation:
    """The agentopt task dict plus where each value came from and what was left behind."""

    data: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)  # agentopt dotted key -> comment
    oe_key: dict[str, str] = field(default_factory=dict)  # agentopt dotted key -> OpenEvolve key
    warnings: list[str] = field(default_factory=list)  # one line each, user-facing
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (OpenEvolve key, why)
    honoured: list[str] = field(default_factory=list)  # keys whose value agentopt reproduces as is


def looks_like_openevolve(task_file: Path, data: dict) -> bool:
    """True for an OpenEvolve ``config.yaml``: OpenEvolve-only top-level keys, an
    ``evaluator:`` mapping (agentopt's is a path), or an ``initial_program.*`` beside a file
    that has no agentopt-only keys."""
    if not isinstance(data, dict):
        return False
    keys = set(data)
    if keys & _OE_ONLY_TOP or isinstance(data.get("evaluator"), dict):
        return True
    llm = data.get("llm")
    if isinstance(llm, dict) and set(llm) & {"primary_model", "api_base", "api_key", "timeout", "retries", "top_p"}:
        return True
    if keys & _AGENTOPT_ONLY_TOP or isinstance(data.get("evaluator"), str):
        return False
    return bool(_initial_program_candidates(Path(task_file).resolve().parent))


def task_from_openevolve(task_file: Path, data: dict) -> TaskSpec:
    """Build a validated :class:`TaskSpec` from an OpenEvolve config and the files beside it.

    Raises :class:`TaskError` (one line) for a key that cannot be ignored without changing
    results, a missing ``initial_program.*``/``evaluator.py``, or a value agentopt rejects
    (named by its OpenEvolve key). ``spec.load_warnings`` lists every key that is ignored.
    """
    task_file = Path(task_file)
    tr = translate(task_file, data)
    _prevalidate(tr, task_file)
    spec = task_from_dict(tr.data, task_file)
    spec.load_warnings = list(tr.warnings)
    return spec


# -- translation -------------------------------------------------------------------------------


def translate(task_file: Path, data: dict) -> Translation:
    """Map every key of ``data`` (an OpenEvolve config) to agentopt, or explain why not."""
    return _Translator(Path(task_file), data).run()


class _Translator:
    def __init__(self, task_file: Path, cfg: dict) -> None:
        self.task_file = task_file
        self.base = task_file.resolve().parent
        self.cfg = cfg
        self.tr = Translation()
        self.done: set[str] = set()
        self.model_sources: set[str] = set()

    # -- bookkeeping -----------------------------------------------------------------------
    def set(self, key: str, value: Any, source: str, oe_key: str | None = None) -> None:
        node = self.tr.data
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
        self.tr.origin[key] = source
        if oe_key is not None:
            self.tr.oe_key[key] = oe_key

    def warn(self, oe_key: str, why: str, *, line: str | None = None) -> None:
        self.tr.warnings.append(
            f"{self.task_file.name}: key '{oe_key}' " + (line or f"is not supported by agentopt; ignored ({why})")
        )
        self.tr.dropped.append((oe_key, why))

    def fail(self, oe_key: str, why: str) -> None:
        raise TaskError(f"{self.task_file}: key '{oe_key}' is not supported by agentopt: {why}")

    def get(self, key: str, default: Any = None) -> Any:
        node: Any = self.cfg
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def has(self, key: str) -> bool:
        sentinel = object()
        return self.get(key, sentinel) is not sentinel

    # -- passes ----------------------------------------------------------------------------
    def run(self) -> Translation:
        for section in _OE_SECTIONS:
            value = self.cfg.get(section)
            if value is not None and not isinstance(value, dict):
                raise TaskError(f"{self.task_file}: key '{section}' must be a mapping, got {type(value).__name__}")
        self.files()
        self.plain()
        self.seed()
        self.modes()
        self.cascade()
        self.llm()
        self.rules()
        self.unknown()
        self.account()
        return self.tr

    def account(self) -> None:
        """Every present key not mapped or dropped is one agentopt reproduces as is: say so."""
        mentioned = set(self.tr.oe_key.values()) | {k for k, _ in self.tr.dropped} | self.model_sources
        for key, _ in _present_keys(self.cfg):
            if key not in mentioned:
                self.tr.honoured.append(key)

    def files(self) -> None:
        program = _find_initial_program(self.base, self.task_file)
        evaluator = self.base / "evaluator.py"
        if not evaluator.is_file():
            raise TaskError(f"{self.task_file}: OpenEvolve task folder has no evaluator.py beside the config")
        self.program, self.evaluator = program, evaluator
        self.set("name", _task_name(self.base), "the folder name")
        self.set("program", program.name, "OpenEvolve's initial program beside the config")
        self.set("evaluator", evaluator.name, "OpenEvolve's evaluator beside the config")
        extra, size = _sibling_files(self.base, {self.task_file.resolve(), program.resolve(), evaluator.resolve()})
        if extra:
            self.set("extra_files", extra, "other files beside the config (the evaluator may read or import them)")
        if size > _EXTRA_FILES_WARN_BYTES:
            self.tr.warnings.append(
                f"{self.task_file.name}: the task folder holds {size // (1024 * 1024)} MiB of other files; each "
                "evaluation copies them (list only what the evaluator needs in task.yaml's extra_files)"
            )
        reqs = self.base / "requirements.txt"
        if reqs.is_file():
            self.set("sandbox.requirements", read_requirements_file(reqs), "requirements.txt beside the config")
        source = evaluator.read_text(encoding="utf-8", errors="replace")
        if "combined_score" in source:
            # OpenEvolve's fitness is combined_score whenever the evaluator returns it.
            self.set("objective.metric", "combined_score", "OpenEvolve's fitness (combined_score)")
        self.set("objective.if_missing", "mean", "OpenEvolve's fitness without combined_score: the metrics' mean")
        self.evaluator_functions = _defined_functions(source)

    def plain(self) -> None:
        for oe_key, (ao_key, oe_default) in _PLAIN.items():
            self.done.add(oe_key)
            if oe_key == "early_stopping_patience" and _number(self.get(oe_key)) and self.get(oe_key) <= 0:
                self.warn(oe_key, "OpenEvolve's event-based stop (patience <= 0: stop when the metric equals "
                                  "convergence_threshold) is not supported; use search.budget")
                continue
            if self.get(oe_key) is not None:
                self.set(ao_key, self.get(oe_key), f"OpenEvolve '{oe_key}'", oe_key)
                continue
            if self.has(oe_key) and oe_key == "llm.temperature":
                self.warn(oe_key, "agentopt always sends a temperature; using 0.7")
            if oe_default is not None:
                self.set(ao_key, oe_default, f"OpenEvolve's default for '{oe_key}'", oe_key)

    def seed(self) -> None:
        self.done.update({"random_seed", "database.random_seed"})
        top = self.get("random_seed", 42)
        if top is not None:
            # OpenEvolve's controller copies random_seed over database.random_seed.
            self.set("search.seed", top, "OpenEvolve 'random_seed'" if self.has("random_seed") else
                     "OpenEvolve's default for 'random_seed'", "random_seed")
            return
        db_seed = self.get("database.random_seed", 42)
        self.set("search.seed", 42 if db_seed is None else db_seed, "OpenEvolve 'database.random_seed'",
                 "database.random_seed")
        self.warn("random_seed", "null makes OpenEvolve partly unseeded; agentopt runs are always seeded "
                                 "(database.random_seed or 42 is used)")

    def modes(self) -> None:
        self.done.update({"diff_based_evolution", "language", "file_suffix", "enforce_evolve_blocks"})
        diff = self.get("diff_based_evolution", True)
        if not isinstance(diff, bool):
            raise TaskError(f"{self.task_file}: key 'diff_based_evolution': must be true or false")
        self.set("search.mode", "diff" if diff else "rewrite",
                 "OpenEvolve 'diff_based_evolution'" if self.has("diff_based_evolution") else
                 "OpenEvolve's default diff_based_evolution: true", "diff_based_evolution")
        suffix = self.program.suffix
        language = self.get("language")
        if language is not None and not (language == "python" and suffix == ".py"):
            self.warn("language", f"agentopt takes the language from the initial program's extension ({suffix})")
        file_suffix = self.get("file_suffix")
        if self.has("file_suffix") and file_suffix != suffix:
            self.warn("file_suffix", f"candidates keep the initial program's extension ({suffix})")
        if self.has("enforce_evolve_blocks") and not self.get("enforce_evolve_blocks"):
            code = self.program.read_text(encoding="utf-8", errors="replace")
            if EVOLVE_START in code:
                self.warn("enforce_evolve_blocks", "agentopt always rejects edits outside EVOLVE-BLOCK regions")

    def cascade(self) -> None:
        self.done.update({"evaluator.cascade_evaluation", "evaluator.cascade_thresholds"})
        wanted = self.get("evaluator.cascade_evaluation", True)
        thresholds = self.get("evaluator.cascade_thresholds", [0.5, 0.75, 0.9])
        has_stages = "evaluate_stage1" in self.evaluator_functions
        # OpenEvolve falls back to evaluate() when the evaluator defines no evaluate_stage1.
        enabled = bool(wanted) and has_stages
        src = "OpenEvolve 'evaluator.cascade_evaluation'" if self.has("evaluator.cascade_evaluation") else \
            "OpenEvolve's default cascade_evaluation: true"
        self.set("cascade.enabled", enabled, src + (" (evaluator has no evaluate_stage1)" if wanted and not has_stages else ""),
                 "evaluator.cascade_evaluation")
        if not enabled and self.has("evaluator.cascade_thresholds"):
            self.tr.dropped.append(("evaluator.cascade_thresholds", "no effect: the cascade is off"))
        if enabled:
            self.set("cascade.thresholds", thresholds,
                     "OpenEvolve 'evaluator.cascade_thresholds'" if self.has("evaluator.cascade_thresholds")
                     else "OpenEvolve's default cascade_thresholds", "evaluator.cascade_thresholds")
            # OpenEvolve's stages are the whole evaluation: it never calls evaluate() after them.
            self.set("cascade.final_evaluate", False, "OpenEvolve never calls evaluate() after its stages",
                     "evaluator.cascade_evaluation")

    def llm(self) -> None:
        self.done.update(k for k in _CUSTOM if k.startswith(("llm.", "prompt.")) or k == "api_base")
        llm = self.cfg.get("llm") or {}
        shared_base = llm.get("api_base", self.cfg.get("api_base"))
        shared_key = llm.get("api_key")
        entries: list[tuple[str, dict[str, Any]]] = []
        raw_models = llm.get("models") or []
        if not isinstance(raw_models, list):
            raise TaskError(f"{self.task_file}: key 'llm.models' must be a list")
        for i, model in enumerate(raw_models):
            if not isinstance(model, dict):
                raise TaskError(f"{self.task_file}: key 'llm.models.{i}' must be a mapping with a 'name'")
            entries.append((f"llm.models.{i}", model))
        # OpenEvolve's backward-compatible primary/secondary model keys append to the list.
        if llm.get("primary_model"):
            entries.append(("llm.primary_model",
                            {"name": llm["primary_model"], "weight": llm.get("primary_model_weight") or 1.0}))
        elif llm.get("primary_model_weight") is not None:
            self.tr.dropped.append(("llm.primary_model_weight", "no primary_model is set"))
        if llm.get("secondary_model"):
            weight = llm.get("secondary_model_weight")
            weight = 0.2 if weight is None else weight
            entries.append(("llm.secondary_model", {"name": llm["secondary_model"], "weight": weight}))
        kept = [(w, m) for w, m in entries if self.model_weight(w, m) > 0]
        models = [self.model(where, model, shared_base, shared_key) for where, model in kept]
        sources = [k for k in ("llm.models", "llm.primary_model", "llm.primary_model_weight", "llm.secondary_model",
                               "llm.secondary_model_weight", "llm.api_base", "api_base", "llm.api_key")
                   if self.has(k) and k not in {d for d, _ in self.tr.dropped}]
        self.model_sources = set(sources)
        if models:
            listed = ", ".join(f"'{k}'" for k in sources)
            self.set("llm.models", models, f"OpenEvolve {listed} (names get litellm's 'openai/' prefix)",
                     sources[0])
        self.per_model_settings(kept, llm)
        if shared_key is not None and not models:
            self.api_key("llm.api_key", shared_key)  # still warn about a literal key nobody uses
        message = self.get("prompt.system_message")
        llm_message = llm.get("system_message")
        if isinstance(message, str) and message != "system_message":
            self.set("llm.system_message", message, "OpenEvolve 'prompt.system_message'", "prompt.system_message")
            if isinstance(llm_message, str) and llm_message not in ("system_message", message):
                self.warn("llm.system_message", "prompt.system_message is the one OpenEvolve sends")
        elif isinstance(llm_message, str) and llm_message != "system_message":
            self.set("llm.system_message", llm_message, "OpenEvolve 'llm.system_message'", "llm.system_message")

    def model_weight(self, where: str, model: dict[str, Any]) -> float:
        """The model's sampling weight; a weight-0 model is dropped (OpenEvolve never samples it)."""
        weight = model.get("weight", 1.0)
        if not isinstance(weight, int | float) or isinstance(weight, bool) or weight < 0:
            raise TaskError(f"{self.task_file}: key '{where}.weight': must be a number >= 0")
        if weight == 0:
            self.tr.dropped.append((where, "weight 0: never sampled"))
        return float(weight)

    def model(self, where: str, model: dict[str, Any], base: Any, key: Any) -> dict[str, Any]:
        for sub in model:
            if sub not in _MODEL_KEYS:
                self.unknown_key(f"{where}.{_printable(sub)}")
        name = model.get("name")
        if not isinstance(name, str) or not name.strip():
            raise TaskError(f"{self.task_file}: key '{where}.name': every model needs a name")
        if model.get("provider") not in (None, "openai"):
            self.fail(f"{where}.provider", _SINGLE_BACKEND)
        if model.get("manual_mode"):
            self.fail(f"{where}.manual_mode", "human-in-the-loop mode is not supported")
        if model.get("init_client") is not None:
            self.fail(f"{where}.init_client", "custom client factories cannot be expressed in a task file")
        out: dict[str, Any] = {"name": litellm_model_name(name), "weight": float(model.get("weight", 1.0))}
        api_base = model.get("api_base", base)
        if api_base is not None:
            out["api_base"] = str(api_base)
        env = self.api_key(f"{where}.api_key" if "api_key" in model else "llm.api_key", model.get("api_key", key))
        if env:
            out["api_key_env"] = env
        elif model.get("api_key", key) is None and api_base is not None:
            out["api_key_env"] = "OPENAI_API_KEY"  # OpenEvolve's rule: no api_key means OPENAI_API_KEY
        for sub in ("top_p", "retry_delay", "random_seed", "reasoning_effort", "max_budget_usd",
                    "max_ai_credits", "allow_all_tools", "_manual_queue_dir"):
            if model.get(sub) is not None:
                self.warn(f"{where}.{sub}", f"per-model {sub} is not supported by agentopt")
        if model.get("system_message") is not None:
            # OpenEvolve passes the prompt's system message explicitly, so this one is unused.
            self.tr.dropped.append((f"{where}.system_message", "unused: OpenEvolve sends prompt.system_message"))
        return out

    def per_model_settings(self, kept: list[tuple[str, dict[str, Any]]], llm: dict[str, Any]) -> None:
        """Per-model temperature/max_tokens/timeout/retries: agentopt has one llm-level value.

        When the llm level does not set it and every model agrees, the value is lifted to the
        llm level (exact); otherwise each differing per-model value is a warning.
        """
        for sub, (ao_key, oe_default) in {
            "temperature": ("llm.temperature", None), "max_tokens": ("llm.max_tokens", None),
            "timeout": ("llm.timeout_s", 60), "retries": ("llm.max_retries", 3),
        }.items():  # fmt: skip
            values = [(w, m[sub]) for w, m in kept if m.get(sub) is not None]
            if not values:
                continue
            if sub not in llm and len(values) == len(kept) and len({repr(v) for _, v in values}) == 1:
                self.set(ao_key, values[0][1], f"OpenEvolve '{values[0][0]}.{sub}' (same for every model)",
                         f"{values[0][0]}.{sub}")
                continue
            shared = llm.get(sub, oe_default)
            for where, value in values:
                if value != shared:
                    self.warn(f"{where}.{sub}", f"agentopt uses one llm-level {sub} for every model")

    def api_key(self, where: str, value: Any) -> str | None:
        """``${VAR}`` -> ``VAR``; a literal key is never copied (and never echoed)."""
        if value is None:
            return None
        match = _ENV_REF.match(value) if isinstance(value, str) else None
        if match:
            return match.group(1)
        if where not in {k for k, _ in self.tr.dropped}:
            how = "write api_key: ${VAR} or export the provider's variable, e.g. OPENAI_API_KEY"
            self.warn(where, f"a literal API key is never copied into agentopt files; {how}",
                      line=f"holds a literal API key; it was not copied ({how})")
        return None

    def rules(self) -> None:
        for key, value in _present_keys(self.cfg):
            rule = _RULES.get(key)
            if rule is None:
                continue
            self.done.add(key)
            if rule.exact(value, self.cfg):
                continue
            if rule.fatal:
                self.fail(key, rule.why)
            self.warn(key, rule.why)

    def unknown(self) -> None:
        for key, _ in _present_keys(self.cfg):
            if key not in self.done and key not in _RULES and key not in _CUSTOM:
                self.unknown_key(key)

    def unknown_key(self, key: str) -> None:
        # OpenEvolve itself ignores keys it does not know, so ignoring them reproduces it.
        # The value is never shown: it could be a secret.
        self.tr.warnings.append(
            f"{self.task_file.name}: key '{key}' is not an OpenEvolve {OPENEVOLVE_VERSION} key; ignored "
            "(OpenEvolve ignores it too)"
        )
        self.tr.dropped.append((key, "not an OpenEvolve key"))


def litellm_model_name(name: str) -> str:
    """OpenEvolve talks to every model through an OpenAI-compatible endpoint, so the litellm
    name is ``openai/<name>``: litellm then uses its OpenAI client against ``api_base`` and
    sends ``<name>`` unchanged (``openai/google/gemini-2.0-flash`` sends ``google/gemini-2.0-flash``)."""
    return f"openai/{name.strip()}"


def _printable(key: Any) -> str:
    """Key names end up in terminal lines and YAML comments: no control characters, bounded."""
    return "".join(c if c.isprintable() else "?" for c in str(key))[:120]


def _present_keys(cfg: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Dotted keys of the config: top-level keys and one level inside each section."""
    for key, value in cfg.items():
        if key in _OE_SECTIONS and isinstance(value, dict):
            for sub, subvalue in value.items():
                yield f"{key}.{_printable(sub)}", subvalue
        elif key not in _OE_SECTIONS:
            yield _printable(key), value


def _prevalidate(tr: Translation, task_file: Path) -> None:
    """Validate before :func:`task_from_dict` so errors name the OpenEvolve key, not ours."""
    try:
        TaskSpec.model_validate(tr.data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        source = max((k for k in tr.oe_key if loc == k or loc.startswith(k + ".")), key=len, default=None)
        name = f"key '{tr.oe_key[source]}' (agentopt '{loc}')" if source else f"agentopt key '{loc}'"
        raise TaskError(f"{task_file}: {name}: {first['msg']}") from None


# -- files ----------------------------------------------------------------------------------------

_SKIP_NAMES = {"__pycache__", "runs", "task.yaml", "requirements.txt", ".git"}


def _initial_program_candidates(base: Path) -> list[Path]:
    return sorted(p for p in base.glob("initial_program.*") if p.is_file() and p.suffix not in (".pyc", ".orig"))


def _find_initial_program(base: Path, task_file: Path) -> Path:
    exact = base / "initial_program.py"
    if exact.is_file():
        return exact
    found = _initial_program_candidates(base)
    if len(found) == 1:
        return found[0]
    if not found:
        raise TaskError(f"{task_file}: OpenEvolve task folder has no initial_program.* beside the config")
    names = ", ".join(p.name for p in found)
    raise TaskError(f"{task_file}: several initial programs beside the config ({names}); keep one")


def _sibling_files(base: Path, used: set[Path]) -> tuple[list[str], int]:
    """Files and folders beside the config that the evaluator may need at run time.

    OpenEvolve runs the evaluator from its own folder, so evaluators import helper modules
    and read data files next to them; agentopt's sandbox copies ``extra_files`` next to the
    program so the same code works. OpenEvolve's outputs and caches are left out.
    """
    names: list[str] = []
    total = 0
    for path in sorted(base.iterdir()):
        if (path.name in _SKIP_NAMES or path.name.startswith((".", "openevolve_output"))
                or path.resolve() in used or path.suffix == ".pyc"):
            continue
        names.append(path.name)
        total += _size(path)
    return names, total


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _defined_functions(source: str) -> set[str]:
    """Top-level function names of the evaluator, read from its AST (it is never imported)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def _task_name(base: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", base.name).strip("-")
    return name or "openevolve-task"


# -- task.yaml writer ------------------------------------------------------------------------------

_ORDER = ["name", "program", "evaluator", "extra_files", "objective", "search", "llm", "sandbox", "cascade"]


def _config_in(oe_dir: Path) -> Path:
    if oe_dir.is_file():
        return oe_dir
    if not oe_dir.is_dir():
        raise TaskError(f"{oe_dir}: no such OpenEvolve task folder")
    config = oe_dir / "config.yaml"
    if config.is_file():
        return config
    found = [p for p in sorted(oe_dir.glob("*.y*ml")) if p.name != "task.yaml" and p.suffix in (".yaml", ".yml")]
    if len(found) == 1:
        return found[0]
    raise TaskError(f"{oe_dir}: expected a config.yaml in the OpenEvolve task folder")


def _load_config(config: Path) -> dict[str, Any]:
    data = read_yaml_file(config, what="OpenEvolve config")  # one-line errors; duplicate keys refused
    if not isinstance(data, dict):
        raise TaskError(f"{config}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def write_task_yaml(oe_dir: Path, *, force: bool = False) -> Path:
    """Write ``DIR/task.yaml``, a commented agentopt task equivalent to ``DIR/config.yaml``.

    Each line's comment names the OpenEvolve key it came from; keys that were dropped are
    listed at the end with the reason. Refuses to overwrite an existing task.yaml unless
    ``force``. The result is validated by loading it back before this returns.
    """
    return _write(Path(oe_dir), force)[0]


def _write(oe_dir: Path, force: bool) -> tuple[Path, Translation]:
    config = _config_in(oe_dir)
    out = config.parent / "task.yaml"
    if out.exists() and not force:
        raise TaskError(f"{out} already exists; pass --force to overwrite it")
    tr = translate(config, _load_config(config))
    _prevalidate(tr, config)
    task_from_dict(tr.data, config)  # files exist, markers balance: never write a broken task
    out.write_text(render_task_yaml(tr, config.name), encoding="utf-8")
    return out, tr


def render_task_yaml(tr: Translation, source_name: str) -> str:
    """YAML text for ``tr.data`` with a comment on every value saying where it came from."""
    lines = [
        f"# agentopt task, translated from OpenEvolve's {source_name} by `agentopt import openevolve`.",
        "# Each value's comment names the OpenEvolve key it came from; absent keys take OpenEvolve's",
        "# defaults. Keys agentopt does not use are listed at the end. See docs/migrating-from-openevolve.md.",
        "",
    ]
    keys = sorted(tr.data, key=lambda k: _ORDER.index(k) if k in _ORDER else len(_ORDER))
    for key in keys:
        lines.extend(_render(key, tr.data[key], key, tr.origin, 0))
    if tr.dropped:
        lines += ["", f"# Not carried over from {source_name}:"]
        lines += [f"#   {key}: {why}" for key, why in tr.dropped]
    if tr.honoured:
        lines += ["", "# Honoured as is (agentopt behaves this way already, or the key has no effect here):"]
        lines += [f"#   {key}" for key in tr.honoured]
    return "\n".join(lines) + "\n"


def _render(key: str, value: Any, path: str, origin: dict[str, str], depth: int) -> list[str]:
    pad = "  " * depth
    note = origin.get(path)
    if isinstance(value, dict) and value and path not in origin:
        out = [f"{pad}{key}:"]
        for sub, subvalue in value.items():
            out.extend(_render(sub, subvalue, f"{path}.{sub}", origin, depth + 1))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = [f"{pad}# from {note}"] if note else []
        out.append(f"{pad}{key}:")
        for item in value:
            block = _dump(item, style_flow=False).splitlines()
            out.append(f"{pad}  - {block[0]}")
            out.extend(f"{pad}    {line}" for line in block[1:])
        return out
    if isinstance(value, str) and "\n" in value:
        text = _dump({key: value}, style_flow=False).rstrip("\n").splitlines()
        return ([f"{pad}# from {note}"] if note else []) + [f"{pad}{line}" for line in text]
    flat = _dump(value, style_flow=True).rstrip("\n").removesuffix("\n...").strip()
    return [f"{pad}{key}: {flat}" + (f"  # from {note}" if note else "")]


class _Dumper(yaml.SafeDumper):
    pass


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_presenter)


def _dump(value: Any, *, style_flow: bool | None) -> str:
    return yaml.dump(value, Dumper=_Dumper, default_flow_style=style_flow, sort_keys=False,
                     allow_unicode=True, width=100_000)


def run_import_cli(oe_dir: Path, force: bool) -> int:
    """``agentopt import openevolve DIR``: write DIR/task.yaml, print its path and warnings."""
    from rich.console import Console

    out, err = Console(highlight=False, markup=False), Console(stderr=True, highlight=False, markup=False)
    try:
        path, tr = _write(Path(oe_dir), force)
    except AgentoptError as exc:
        err.print(f"error: {exc}", soft_wrap=True)
        return exc.exit_code
    for warning in tr.warnings:
        err.print(f"warning: {warning}", soft_wrap=True)
    out.print(f"wrote {path}", soft_wrap=True)
    out.print(f"run it with: agentopt evolve {path}", soft_wrap=True)
    return 0
