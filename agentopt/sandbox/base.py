"""The sandbox contract shared by every backend (local process, docker, ray).

A host hands a :class:`SandboxJob` to ``await backend.run(job)`` and gets a
:class:`JobResult` back. The guest side (``sandboxes/runner.py``) imports the evaluator,
calls one of its functions and sends exactly one framed JSON message back over a channel
the candidate cannot write to. Nothing from the candidate's files is trusted.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentopt.task import GpuValue

ErrorKind = Literal[
    "timeout",  # wall-clock limit hit; the whole process tree was killed
    "memory",  # memory cap hit (MemoryError or killed by the cap)
    "crash",  # guest died without a result (segfault, os._exit, signal)
    "evaluator_error",  # evaluate() raised; message holds the exception line
    "bad_result",  # result missing, not JSON, too large, wrong shape, or forged
    "sandbox_error",  # the sandbox itself failed (engine missing, bad image)
]


class SandboxJob(BaseModel):
    """One evaluator call to run in isolation."""

    model_config = ConfigDict(extra="forbid")

    evaluator_path: Path
    program_path: Path
    # Name of the evaluator function to call: "evaluate", "evaluate_stage1", "fingerprint", ...
    function: str = "evaluate"
    # Extra files/dirs copied (or mounted read-only) into the work dir next to the program.
    extra_files: list[Path] = Field(default_factory=list)
    timeout_s: float = 60.0
    memory_mb: int = 2048
    network: bool = False
    # None: no GPU. "all", a count, or explicit device ids.
    gpus: GpuValue = None
    cpus: float | None = None
    # Extra environment variables explicitly allowed into the guest (never API keys by default).
    env: dict[str, str] = Field(default_factory=dict)
    max_output_bytes: int = 64_000
    max_result_bytes: int = 4_000_000
    max_disk_mb: int = 512
    # Requirement strings the evaluator needs (e.g. 'numpy>=1.20'), checked before the first evaluation.
    requirements: list[str] = Field(default_factory=list)
    # Constants-tuning options: the guest runs agentopt_tune.tune(evaluator, program, tune)
    # instead of ``function`` (see agentopt/evolve/tuning.py). None: a plain evaluator call.
    tune: dict[str, Any] | None = None


class JobResult(BaseModel):
    """What came back from the guest. ``value`` is the evaluator's returned dict, untouched."""

    model_config = ConfigDict(extra="forbid")

    ok: bool
    value: dict[str, Any] | None = None
    error: str | None = None
    error_kind: ErrorKind | None = None
    stdout: str = ""
    stderr: str = ""
    wall_s: float = 0.0
    # Which protections applied to this run, e.g. ["process_group", "pid_namespace",
    # "net_namespace", "rlimit_as", "clean_env", "private_tmp", "result_pipe"].
    isolation: list[str] = Field(default_factory=list)
    # Peak memory of the whole job (all its processes + its tmpfs), where a memory cgroup measured it.
    peak_memory_mb: float | None = None


class Sandbox(abc.ABC):
    """A place to run guest code. Backends must be safe to call concurrently."""

    name: str = "abstract"

    @abc.abstractmethod
    async def run(self, job: SandboxJob) -> JobResult:
        """Run one job; never raise for candidate misbehaviour, only for sandbox failures."""

    def available_isolation(self) -> list[str]:
        """Protections this backend can apply on this machine (for the weaker-isolation warning)."""
        return []

    async def prewarm(self, job: SandboxJob, count: int | None = None) -> int:
        """Get ready for jobs shaped like ``job`` (start warm workers) before the first one comes,
        so that a run's start-up overlaps it with other work; returns how many were started.
        Default: nothing to start."""
        return 0

    async def close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release workers/containers. Default: nothing to release."""
