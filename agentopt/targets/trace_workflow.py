"""A traced workflow as an ``agentopt evolve`` target: ``agentopt evolve optimize.yaml``.

The optimize config (the same file ``agentopt optimize`` reads) is translated into a
:class:`~agentopt.task.TaskSpec`, so evolution of Param values shares everything a normal
evolve run has: the program store, resume, budgets, the LLM layer and the sandboxes.

* **Candidate = Param assignment.** The initial program is generated from the workflow's
  ``build()`` Module: one labelled EVOLVE-BLOCK per trainable Param (text as string
  literals, numbers and choices as literals the symbolic mutator can perturb, code Params
  as their function source); see :mod:`agentopt.targets.param_blocks`.
* **Scoring in the sandbox.** The fixed guest evaluator ``evaluators/trace_workflow_evaluator.py``
  imports agentopt there (:mod:`agentopt.targets.trace_guest`), applies the values, runs the
  dataset, calls ``backward`` and returns the mean metric plus graph-aware feedback.
* **Where the generated files live.** ``<config dir>/.agentopt/<name>/`` (``candidate.py`` and
  the manifest), rewritten when the config is loaded and kept afterwards, so ``agentopt
  resume`` finds them. If the config's folder is read-only, ``~/.cache/agentopt/evolve-targets``.
* **LLM calls made by the workflow itself** (an entry taking ``ctx``) happen inside the
  sandbox. That needs ``evolve.sandbox.network: true`` (opt-in), and the workflow's model must
  be keyless (e.g. a local server's ``api_base``): API keys are never passed into a sandbox,
  so a model with ``api_key_env`` is refused at load time with one line.

Evolve-only settings sit in the config's optional ``evolve:`` section (:class:`EvolveSection`),
which ``agentopt optimize`` ignores.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from agentopt.errors import AgentoptError, TaskError
from agentopt.optim.config import load_config
from agentopt.optim.workflow import Workflow
from agentopt.paths import evaluator_lib_dir
from agentopt.targets.param_blocks import BlockSpec, CandidateFormatError, render_candidate
from agentopt.targets.trace_guest import MANIFEST_NAME, MANIFEST_VERSION
from agentopt.task import LLMSpec, SandboxSpec, SearchSpec, StrictModel, TaskSpec, task_from_dict

CANDIDATE_NAME = "candidate.py"
EVALUATOR_NAME = "trace_workflow_evaluator.py"
GENERATED_DIR = ".agentopt"
MAX_SIBLING_BYTES = 64 * 1024 * 1024


class EvolveSection(StrictModel):
    """The optional ``evolve:`` section of an optimize config (read only by ``agentopt evolve``)."""

    sandbox: SandboxSpec = Field(default_factory=SandboxSpec,
                                 description="Where candidates run; network is off unless set true here.")
    search: SearchSpec = Field(default_factory=SearchSpec,
                               description="task.yaml's search section; iterations/seed default to the config's.")
    workflow_llm: LLMSpec | None = Field(
        None, description="Model used by the workflow's own calls (entries taking ctx); default: the config's llm.")
    extra_files: list[Path] | None = Field(
        None, description="Files the workflow needs in the sandbox; default: every file beside the workflow.")
    output_dir: Path | None = Field(None, description="Results folder; default runs/<name>.")
    description: str = Field("", description="Extra task description for the evolution prompt.")
    max_examples: int | None = Field(None, gt=0, description="Score each candidate on the first N examples only.")
    feedback_tokens: int = Field(900, ge=100, description="Token budget of the feedback text per candidate.")
    feedback_examples: int = Field(3, ge=0, description="Worst examples whose graphs the feedback shows.")


def looks_like_optimize_config(path: Path, data: Any) -> bool:
    """True for an ``agentopt optimize`` config: a mapping with ``workflow`` and ``dataset``, no ``program``."""
    return isinstance(data, dict) and "program" not in data and "workflow" in data and "dataset" in data


def _section(path: Path, raw: Any) -> EvolveSection:
    try:
        return EvolveSection.model_validate(raw or {})
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "<root>"
        more = len(err.errors()) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise TaskError(f"{path}: key 'evolve.{loc}': {first['msg']}{suffix}") from None


def _generated_dir(config: Path, name: str) -> Path:
    """``<config dir>/.agentopt/<name>``, or a per-user cache folder when that is not writable."""
    preferred = config.parent / GENERATED_DIR / name
    try:
        preferred.mkdir(parents=True, exist_ok=True)
        if os.access(preferred, os.W_OK):
            return preferred
    except OSError:
        pass
    digest = hashlib.sha256(str(config).encode()).hexdigest()[:10]
    fallback = Path.home() / ".cache" / "agentopt" / "evolve-targets" / f"{name}-{digest}"
    try:
        fallback.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TaskError(f"{config}: cannot create a folder for the generated candidate: {err}") from None
    return fallback


def _write_if_changed(path: Path, text: str) -> None:
    """Atomic write that leaves an identical file untouched (runs sharing the folder see no change)."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _sandbox_files(config: Path, workflow: Path, examples: Path, listed: list[Path] | None) -> list[Path]:
    """Files copied next to the workflow in the sandbox (flat, by name): listed ones or its siblings."""
    if listed is not None:
        base = config.parent
        files = [p if p.is_absolute() else (base / p).resolve() for p in (q.expanduser() for q in listed)]
        for i, p in enumerate(files):
            if not p.exists():
                raise TaskError(f"{config}: key 'evolve.extra_files.{i}': not found: {p}")
    else:
        files = sorted(p for p in workflow.parent.iterdir()
                       if p.is_file() and not p.name.startswith(".") and p.suffix != ".pyc")
        size = sum(p.stat().st_size for p in files)
        if size > MAX_SIBLING_BYTES:
            raise TaskError(f"{config}: the files beside {workflow.name} total {size // 2**20} MiB; list what the "
                            "workflow needs in evolve.extra_files")
    out: list[Path] = []
    by_name: dict[str, Path] = {}
    for p in [workflow, examples, *files]:
        p = p.resolve()
        if p.name in (MANIFEST_NAME, EVALUATOR_NAME):
            raise TaskError(f"{config}: a sandbox file may not be named {p.name} (reserved by agentopt)")
        seen = by_name.get(p.name)
        if seen is None:
            by_name[p.name] = p
            out.append(p)
        elif seen != p:
            raise TaskError(f"{config}: two files the workflow needs share the name {p.name!r} "
                            f"({seen} and {p}); the sandbox places them side by side")
    return out


def _check_workflow_llm(config: Path, entry: str, takes_ctx: bool, sandbox: SandboxSpec, llm: LLMSpec) -> None:
    """Refuse setups where the workflow's own LLM calls would fail or need a key in the sandbox."""
    if not takes_ctx:
        return
    if not sandbox.network:
        raise TaskError(
            f"{config}: the workflow's entry '{entry}' takes ctx, so it calls an LLM from inside the sandbox, "
            "where the network is off; opt in with evolve.sandbox.network: true (see docs/trace.md)")
    for model in llm.models:
        if model.api_key_env:
            raise TaskError(
                f"{config}: the workflow's model {model.name} needs {model.api_key_env}, but API keys are never "
                "passed into the sandbox; give the workflow a keyless endpoint (evolve.workflow_llm with a "
                "local api_base) or use `agentopt optimize` for this workflow")


def _description(cfg: Any, section: EvolveSection, n_params: int) -> str:
    word = "higher" if cfg.direction == "maximize" else "lower"
    parts = [
        f"Improve the {n_params} Param value(s) of the traced workflow '{cfg.display_name()}' "
        f"({cfg.workflow.name}). The program is an assignment of Param values: each EVOLVE-BLOCK sets one "
        "Param (text as a string literal, a number or choice as a literal, a code Param as its function, "
        "which must keep its name and parameters). The comment above each block gives its constraint.",
        f"Each candidate runs the workflow on the examples and is scored by its metric ({word} is better). "
        "The feedback shows the computation graph of the worst examples: the calls the Params flowed "
        "through, the values, the outputs and what the metric said.",
    ]
    if cfg.optimizer.objective:
        parts.append(cfg.optimizer.objective)
    if section.description:
        parts.append(section.description)
    return "\n".join(parts)


def _blocks(config: Path, target: Any) -> list[BlockSpec]:
    blocks = []
    for name, p in target.named_parameters():
        if not p.trainable:
            continue
        comment = f"{name} ({p.param_kind}: {p.constraint()})"
        if p.description:
            comment += f" - {' '.join(p.description.split())}"
        blocks.append(BlockSpec(name=name, kind=p.param_kind, value=p._value, comment=comment))
    if not blocks:
        raise TaskError(f"{config}: build() returned a Module without trainable Params: nothing to evolve")
    return blocks


def task_from_optimize_config(path: Path, data: Any) -> TaskSpec:
    """Translate an optimize config into a TaskSpec (generating the candidate and the manifest)."""
    config = Path(path).resolve()
    try:
        cfg = load_config(config)
        section = _section(config, cfg.evolve)
        workflow = Workflow(cfg.workflow, cfg.build, cfg.entry, cfg.metric, failure_score=cfg.failure_score)
        target = workflow.build()
    except TaskError:
        raise
    except AgentoptError as err:
        raise TaskError(str(err)) from None
    examples = cfg.valset or cfg.dataset
    workflow_llm = (section.workflow_llm or cfg.llm).model_copy(update={"cache": None, "replay_only": False})
    _check_workflow_llm(config, cfg.entry, workflow.takes_ctx, section.sandbox, workflow_llm)
    blocks = _blocks(config, target)
    name = cfg.display_name()
    header = (f"Param assignment for the traced workflow '{name}' ({cfg.workflow.name}), generated by\n"
              f"`agentopt evolve {config.name}`. Each EVOLVE-BLOCK sets one Param; edit only inside the blocks.\n"
              "Numbers are clamped to their bounds and numeric choices snap to the nearest allowed value.")
    try:
        program = render_candidate(blocks, header)
    except CandidateFormatError as err:
        raise TaskError(f"{cfg.workflow}: {err}") from None
    manifest = {
        "version": MANIFEST_VERSION,
        "name": name,
        "workflow": cfg.workflow.name,
        "build": cfg.build,
        "entry": cfg.entry,
        "metric": cfg.metric,
        "examples": examples.name,
        "max_examples": section.max_examples,
        "direction": cfg.direction,
        "failure_score": cfg.failure_score,
        "seed": cfg.seed,
        "params": {b.name: b.kind for b in blocks},
        "feedback_tokens": section.feedback_tokens,
        "feedback_examples": section.feedback_examples,
        "workflow_llm": workflow_llm.model_dump(mode="json") if workflow.takes_ctx else None,
    }
    gen = _generated_dir(config, name)
    _write_if_changed(gen / CANDIDATE_NAME, program)
    _write_if_changed(gen / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    files = _sandbox_files(config, cfg.workflow, examples, section.extra_files)
    search = section.search.model_copy()
    if "iterations" not in section.search.model_fields_set:
        search.iterations = cfg.iterations
    if "seed" not in section.search.model_fields_set:
        search.seed = cfg.seed
    task = {
        "name": name,
        "description": _description(cfg, section, len(blocks)),
        "program": str(gen / CANDIDATE_NAME),
        "evaluator": str(evaluator_lib_dir() / EVALUATOR_NAME),
        "extra_files": [str(gen / MANIFEST_NAME), *map(str, files)],
        "objective": {"metric": "score", "direction": cfg.direction},
        "sandbox": section.sandbox.model_dump(mode="json"),
        "llm": cfg.llm.model_dump(mode="json", exclude_none=True),
        "search": search.model_dump(mode="json"),
    }
    if section.output_dir is not None:
        task["output_dir"] = str(section.output_dir)
    spec = task_from_dict(task, config)
    if not cfg.llm.models and any(b.kind in ("text", "code") for b in blocks):
        spec.load_warnings.append(
            "no llm.models configured: the symbolic mutator only perturbs numbers and makes small edits "
            "to code Params; text Params will not change")
    return spec

