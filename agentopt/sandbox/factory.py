"""``task.yaml``'s ``sandbox:`` section -> a ready :class:`Sandbox` backend.

Checks that can fail are done HERE, before the first candidate: a missing engine, image or
GPU would otherwise show up as every candidate failing, which looks like bad candidates.
"""

from __future__ import annotations

import glob
import shutil
import subprocess

from agentopt.errors import SandboxError
from agentopt.sandbox.base import Sandbox
from agentopt.task import GpuRequest, SandboxSpec


def local_gpu_problem() -> str | None:
    """None when this machine has a usable NVIDIA GPU, else a one-line reason."""
    devices = glob.glob("/dev/nvidia[0-9]*")
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            proc = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=15, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"nvidia-smi failed ({type(err).__name__})"
        if proc.returncode == 0 and "GPU" in proc.stdout:
            return None
        last = (proc.stderr.strip() or proc.stdout.strip() or f"exit code {proc.returncode}").splitlines()[-1]
        return f"nvidia-smi finds no GPU ({last[:200]})"
    if devices:
        return None
    return "no NVIDIA GPU here (no /dev/nvidia* devices, nvidia-smi not found)"


def make_sandbox(spec: SandboxSpec) -> Sandbox:
    """Build the backend named by ``spec.kind`` (local, docker, ray) and fail fast if it cannot run.

    ``spec.image`` defaults to the offline-buildable CPU image, or the CUDA image when
    ``gpus`` is set. ``warm_workers`` is read from the spec when the schema has it.
    """
    gpus = GpuRequest.parse(spec.gpus)
    wants_gpu = gpus.wanted
    if spec.kind == "local":
        if wants_gpu:
            problem = local_gpu_problem()
            if problem:
                raise SandboxError(f"sandbox.gpus={gpus}: {problem}; remove 'gpus' or run on a GPU host")
        from agentopt.sandbox.warm_local import make_local_sandbox  # deferred: only the backend asked for

        warm = getattr(spec, "warm", "auto")
        if warm == "auto" and wants_gpu:
            warm = False  # a CUDA context does not survive fork(): GPU tasks start each job fresh
        return make_local_sandbox(warm=warm, pids_max=spec.max_processes)
    if spec.kind == "docker":
        from agentopt.sandbox.docker_backend import DockerSandbox  # deferred: load only the backend asked for
        from agentopt.sandbox.images import default_tag  # deferred: docker only

        image = spec.image or default_tag("cuda" if wants_gpu else "cpu")
        warm = int(getattr(spec, "warm_workers", 0) or 0)
        sandbox = DockerSandbox(
            image, warm_workers=warm, gpus=spec.gpus if wants_gpu else None, pids_limit=max(spec.max_processes, 256)
        )
        sandbox.check(gpus=spec.gpus if wants_gpu else None)
        return sandbox
    if spec.kind == "ray":
        from agentopt.sandbox.ray_backend import RaySandbox  # deferred: load only the backend asked for

        return RaySandbox(address=spec.ray_address, local_kwargs={"pids_max": spec.max_processes})
    raise SandboxError(f"unknown sandbox.kind {spec.kind!r}: use local, docker or ray")
