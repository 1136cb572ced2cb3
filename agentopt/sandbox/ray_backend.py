"""Ray sandbox: evaluations become Ray tasks; each task runs the LOCAL process sandbox on its node.

Why this shape: Ray schedules (CPU/GPU/memory requests, many nodes), the local sandbox
isolates (namespaces, rlimits, clean env, result pipe) — one isolation implementation for
every backend. The job's files travel inside the task as a small tar (a remote node does
not share the driver's filesystem) and are unpacked into a private temp dir on the node.

``sandbox.kind: ray`` with ``ray_address: auto`` joins a running cluster; without an
address a local Ray is started on first use (and shut down by :meth:`close`). Ray is
imported lazily: it is the optional extra ``agentopt[ray]``.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import Any

from agentopt.errors import AgentoptError, SandboxError
from agentopt.sandbox.base import JobResult, Sandbox, SandboxJob
from agentopt.sandbox.isolation import detect
from agentopt.sandbox.local import LocalSandbox
from agentopt.task import GpuRequest

log = logging.getLogger(__name__)

_INSTALL_HINT = "pip install 'agentopt[ray]'"
# Extra wall time on top of job.timeout_s before the driver gives up on a task (scheduling,
# worker start-up, unpacking): the local sandbox inside the task enforces the real limit.
_DEFAULT_GRACE_S = 60.0
_MAX_BUNDLE_BYTES = 256 * 1024 * 1024


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SandboxError(f"sandbox.kind 'ray' needs Ray, which is not installed: {_INSTALL_HINT}") from None
    return ray


def unavailable_reason() -> str | None:
    """None when Ray can be imported here, else one line saying why not."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return f"ray is not installed ({_INSTALL_HINT})"
    return None


def pack_inputs(job: SandboxJob) -> bytes:
    """Tar the program, evaluator and extra files (by base name, like the local sandbox)."""
    buf = io.BytesIO()
    seen: dict[str, Path] = {}
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for src in [Path(job.program_path), Path(job.evaluator_path), *map(Path, job.extra_files)]:
            if not src.exists():
                raise SandboxError(f"sandbox input not found: {src}")
            if src.name in seen:
                if seen[src.name].resolve() != src.resolve():
                    raise SandboxError(f"two sandbox inputs share the file name {src.name!r}")
                continue
            seen[src.name] = src
            tar.add(str(src), arcname=src.name, recursive=True)
    data = buf.getvalue()
    if len(data) > _MAX_BUNDLE_BYTES:
        raise SandboxError(f"sandbox inputs are {len(data) >> 20} MB; the ray backend ships at most "
                           f"{_MAX_BUNDLE_BYTES >> 20} MB per job")
    return data


def run_bundle(bundle: bytes, job_json: str, local_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Body of the Ray task (also callable directly): unpack, run LocalSandbox, return JobResult fields."""
    job = SandboxJob.model_validate_json(job_json)
    try:
        import ray

        gpu_ids = [str(g) for g in ray.get_gpu_ids()] if ray.is_initialized() else []
    except Exception:  # noqa: BLE001 - outside a Ray worker
        gpu_ids = []
    with tempfile.TemporaryDirectory(prefix="agentopt-ray-") as tmp:
        inputs = Path(tmp) / "inputs"
        inputs.mkdir()
        with tarfile.open(fileobj=io.BytesIO(bundle), mode="r") as tar:
            tar.extractall(inputs, filter="data")
        env = dict(job.env)
        if gpu_ids:
            env.setdefault("CUDA_VISIBLE_DEVICES", ",".join(gpu_ids))
        job = job.model_copy(update={
            "program_path": inputs / Path(job.program_path).name,
            "evaluator_path": inputs / Path(job.evaluator_path).name,
            "extra_files": [inputs / Path(p).name for p in job.extra_files],
            "env": env,
        })

        async def go() -> JobResult:
            sandbox = LocalSandbox(**local_kwargs)
            try:
                return await sandbox.run(job)
            finally:
                await sandbox.close()

        result = asyncio.run(go())
    result.isolation = [*result.isolation, "ray_task"]
    return result.model_dump()  # python mode: nan/inf metrics survive (JSON mode makes them None)


def _warm_worker() -> bool:
    """Ray task used to warm a worker: unpickling it imports this module (and LocalSandbox)."""
    detect()
    return True


class RaySandbox(Sandbox):
    """Runs each job as a Ray task with ``num_cpus`` / ``num_gpus`` / ``memory`` requests.

    ``address``: None starts a new local Ray (or joins ``$RAY_ADDRESS`` when set;
    ``init_kwargs`` go to ``ray.init``, e.g. ``{"num_cpus": 2}``); ``"auto"`` (a cluster
    started with ``ray start`` on this machine) or ``"ray://host:10001"`` joins a cluster. An already
    initialised Ray in this process is reused and left running. ``local_kwargs`` configure the
    :class:`~agentopt.sandbox.local.LocalSandbox` inside each task.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        init_kwargs: dict[str, Any] | None = None,
        local_kwargs: dict[str, Any] | None = None,
        grace_s: float = _DEFAULT_GRACE_S,
    ) -> None:
        self._ray = _import_ray()
        self.address = address
        self._init_kwargs = dict(init_kwargs or {})
        self._local_kwargs = dict(local_kwargs or {})
        self._grace_s = grace_s
        self._owns_ray = False
        self._remote: Any = None
        self._lock = threading.Lock()

    def _ensure_ray(self) -> Any:
        ray = self._ray
        with self._lock:
            if not ray.is_initialized():
                kwargs = {"include_dashboard": False, "log_to_driver": False, **self._init_kwargs}
                if self.address is not None:
                    kwargs["address"] = self.address
                elif not os.environ.get("RAY_ADDRESS"):
                    kwargs["address"] = "local"  # a new local Ray, even if a `ray start` one runs here
                try:
                    ray.init(**kwargs)
                except Exception as err:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError...
                    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
                    where = f"connect to the Ray cluster at {self.address!r}" if self.address else "start a local Ray"
                    raise SandboxError(f"cannot {where}: {first}") from None
                self._owns_ray = True
            if self._remote is None:
                self._remote = ray.remote(max_retries=0)(run_bundle)
            return self._remote

    def start(self, warm_up: bool = True) -> None:
        """Start/join Ray now (seconds) instead of in the first job; optionally warm the workers.

        The warm-up runs one no-op task per CPU so worker processes exist and have imported
        agentopt and probed isolation; otherwise the first jobs pay for that too.
        """
        self._ensure_ray()
        if warm_up:
            ray = self._ray
            probe = ray.remote(num_cpus=1, max_retries=0)(_warm_worker)
            cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
            ray.get([probe.remote() for _ in range(min(cpus, 8))], timeout=120)

    def available_isolation(self) -> list[str]:
        return [*detect().layers(), "ray_task"]  # what the driver's node offers; others may differ

    async def run(self, job: SandboxJob) -> JobResult:
        remote = await asyncio.to_thread(self._ensure_ray)
        bundle = await asyncio.to_thread(pack_inputs, job)
        options: dict[str, Any] = {"num_cpus": job.cpus or 1, "memory": job.memory_mb * 1024 * 1024}
        # "all" cannot be a Ray request (it depends on the node): one GPU keeps the task
        # schedulable, and Ray sets CUDA_VISIBLE_DEVICES to what it granted.
        gpus = float(GpuRequest.parse(job.gpus).number(all_as=1))
        if gpus:
            options["num_gpus"] = gpus
        ref = remote.options(**options).remote(bundle, job.model_dump_json(), self._local_kwargs)
        ray = self._ray
        try:
            payload = await asyncio.wait_for(asyncio.wrap_future(ref.future()), job.timeout_s + self._grace_s)
        except TimeoutError:
            ray.cancel(ref, force=True)
            return JobResult(ok=False, error_kind="timeout",
                             error=f"ray task did not finish within {job.timeout_s + self._grace_s:g}s "
                                   "(timeout plus scheduling grace); it was cancelled",
                             wall_s=job.timeout_s + self._grace_s, isolation=["ray_task"])
        except asyncio.CancelledError:
            ray.cancel(ref, force=True)
            raise
        except ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, AgentoptError):
                raise SandboxError(str(cause)) from None
            first = (str(cause or err).strip().splitlines() or ["unknown error"])[-1][:300]
            raise SandboxError(f"ray task failed: {first}") from None
        except ray.exceptions.RayError as err:  # worker/node died, object lost: not the candidate's fault
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            return JobResult(ok=False, error_kind="sandbox_error", error=f"ray: {first}", isolation=["ray_task"])
        return JobResult.model_validate(payload)

    async def close(self) -> None:
        if self._owns_ray and self._ray.is_initialized():
            await asyncio.to_thread(self._ray.shutdown)
        self._owns_ray = False
        self._remote = None
