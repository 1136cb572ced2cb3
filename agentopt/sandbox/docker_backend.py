"""Docker sandbox: each evaluation runs the guest runner inside a locked-down container.

Why a container on top of the local process sandbox: it gives a separate root filesystem
(the image), a memory/CPU/pids cgroup, no network, no capabilities and GPU passthrough
(``device_requests``) with one mechanism that works the same on a laptop, a CI runner and a
GPU box.

Layout inside the guest (everything but ``/work`` and ``/dev/shm`` is read-only)::

    /agentopt/runner.py    sandboxes/runner.py           bind mount, ro
    /agentopt/lib          evaluators/ (helper lib dir)  bind mount, ro
    /agentopt/job          program, evaluator, extra files (staged copies), bind mount, ro
    /work                  tmpfs (size = max_disk_mb), the only writable place;
        job/ or job-<n>/   the job's private work dir (cwd, HOME; TMPDIR = job/tmp)

Files go in through **bind mounts**: the engine must see the host's filesystem (a local
engine; a remote ``DOCKER_HOST`` is not supported). ``put_archive`` cannot be used because
Docker refuses to copy into tmpfs mounts and into a read-only root. Each job's files are
staged (copied) on the host into a directory bound at ``/agentopt/job``; a warm container
keeps its binding and gets its directory's *contents* replaced per job.

The runner speaks protocol v1 (:mod:`agentopt.sandbox.protocol`): its one JSON job line goes
to the attached stdin, the demultiplexed stdout carries the result frame, stderr the logs.

Warm workers: with ``warm_workers=N`` up to N containers stay running (PID 1 is a tiny
reaper) and each job is a ``docker exec`` in a fresh work subdir. Afterwards every process
but PID 1 is SIGKILLed and ``/work``, ``/dev/shm``, ``/dev/mqueue`` and SysV IPC are
wiped, then checked; any doubt (timeout, failed cleanup, memory kill) discards the container.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import json
import logging
import os
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentopt.errors import SandboxError
from agentopt.paths import evaluator_lib_dir, guest_dir, runner_path
from agentopt.sandbox.base import JobResult, Sandbox, SandboxJob
from agentopt.sandbox.protocol import build_job_payload, job_result, new_nonce
from agentopt.sandbox.requirements import format_missing, missing_requirements
from agentopt.task import GpuRequest, GpuValue

log = logging.getLogger(__name__)

LABEL = "agentopt"
OWNER_LABEL = "agentopt.owner"
GUEST_RUNNER = "/agentopt/runner.py"
GUEST_LIB = "/agentopt/lib"
GUEST_JOB = "/agentopt/job"
GUEST_WORK = "/work"
NOBODY = "65534:65534"
_BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
}
_MAX_JOBS_PER_WORKER = 200


@functools.cache
def _script(name: str) -> str:
    """A script of ``sandboxes/docker/`` (the guest supervisor, reaper, cleanup; the host launcher).

    Kept as files so they can be read, linted and tested like any other guest code; the text is
    still passed with ``-c``, so nothing inside the container can alter it.
    """
    return (guest_dir("sandboxes") / "docker" / name).read_text(encoding="utf-8")
_KILL_GRACE_S = 10.0
_WAIT_FOR_WARM_S = 5.0


def _first_line(err: BaseException) -> str:
    text = str(getattr(err, "explanation", None) or err).strip()
    return (text.splitlines() or [type(err).__name__])[0][:300]


def _owner_id() -> str:
    """``host:pid:token``: the pid finds dead owners, the token keeps sandboxes of one process apart."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _gpu_key(gpus: GpuValue | GpuRequest) -> str | None:
    """The request as text (container reuse key, messages); None when no GPU is asked for."""
    request = GpuRequest.parse(gpus)
    return str(request) if request.wanted else None


def device_requests(gpus: GpuValue | GpuRequest) -> list[Any] | None:
    """Translate a GPU request (``"all"``, a count, ``"0,1"`` or ``["0", "1"]``) to docker DeviceRequests."""
    from docker.types import DeviceRequest  # deferred: the docker SDK loads only when a container is made

    request = GpuRequest.parse(gpus)
    caps = [["gpu"]]
    if request.all:
        return [DeviceRequest(count=-1, capabilities=caps)]
    if request.count:
        return [DeviceRequest(count=request.count, capabilities=caps)]
    if request.ids:
        return [DeviceRequest(device_ids=list(request.ids), capabilities=caps)]
    return None


# ---------------------------------------------------------------------------------------
# Stream handling: the attach/exec socket carries Docker's multiplexed stdout/stderr frames.
# ---------------------------------------------------------------------------------------


@dataclass
class _Streams:
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    stdout_dropped: int = 0
    stderr_dropped: int = 0
    timed_out: bool = False

    def stderr_text(self) -> str:
        text = self.stderr.decode("utf-8", errors="replace")
        if self.stderr_dropped:
            text += f"\n[... {self.stderr_dropped} more bytes of output discarded]"
        return text


def _frame_complete(buf: bytes | bytearray) -> bool:
    """True once ``buf`` holds a whole ``AGENTOPT1 <nonce> <len>\\n<body>`` frame (or junk)."""
    head, sep, _ = bytes(buf[:256]).partition(b"\n")
    if not sep:
        return len(buf) > 256  # no header line: garbage, the parser will reject it
    parts = head.split(b" ")
    if len(parts) != 3 or not parts[2].isdigit():
        return True
    return len(buf) >= len(head) + 1 + int(parts[2])


def _pump(sock: Any, payload: bytes, deadline: float, out_cap: int, err_cap: int,
          after_frame_s: float) -> _Streams:
    """Write the job line, half-close stdin, demultiplex output until EOF or the deadline.

    Output beyond the caps is read and dropped (a guest blocked on a full pipe would
    otherwise look like a timeout). Once a whole result frame arrived we wait at most
    ``after_frame_s`` for the streams to close: a candidate's background child that keeps
    stderr open must not turn a finished job into a timeout.
    """
    raw = getattr(sock, "_sock", sock)
    streams = _Streams()
    with contextlib.suppress(OSError):
        raw.sendall(payload)
        raw.shutdown(socket.SHUT_WR)
    pending = bytearray()
    frame_deadline: float | None = None
    try:
        while True:
            now = time.monotonic()
            limit = deadline if frame_deadline is None else min(deadline, frame_deadline)
            if now >= limit:
                streams.timed_out = frame_deadline is None or now >= deadline
                break
            raw.settimeout(max(0.01, limit - now))
            try:
                chunk = raw.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            pending += chunk
            while len(pending) >= 8:
                kind, size = struct.unpack(">BxxxL", pending[:8])
                if len(pending) < 8 + size:
                    break
                data = bytes(pending[8:8 + size])
                del pending[:8 + size]
                if kind == 1:
                    room = max(0, out_cap - len(streams.stdout))
                    streams.stdout += data[:room]
                    streams.stdout_dropped += len(data) - min(room, len(data))
                elif kind == 2:
                    room = max(0, err_cap - len(streams.stderr))
                    streams.stderr += data[:room]
                    streams.stderr_dropped += len(data) - min(room, len(data))
            if frame_deadline is None and streams.stdout and _frame_complete(streams.stdout):
                frame_deadline = time.monotonic() + after_frame_s
    finally:
        with contextlib.suppress(OSError):
            raw.close()
        with contextlib.suppress(Exception):
            sock.close()
    return streams


# ---------------------------------------------------------------------------------------
# Warm workers
# ---------------------------------------------------------------------------------------


@dataclass
class _Worker:
    container_id: str
    key: tuple[Any, ...]
    slot: Path
    jobs: int = 0
    oom_kills: int = 0
    cleaning: bool = False  # its job is done; the cleanup exec is running


def _reset_dir(path: Path) -> None:
    """Empty ``path`` but keep its inode: a running container has it bind-mounted."""
    path.mkdir(mode=0o755, exist_ok=True)
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _copy_into(src: Path, dest_dir: Path) -> None:
    target = dest_dir / src.name
    if src.is_dir():
        shutil.copytree(src, target, symlinks=False, dirs_exist_ok=True)
    else:
        shutil.copyfile(src, target)


def _make_readable(root: Path) -> None:
    """The guest user (nobody) must read the staged files through the bind mount."""
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)


def stage_job(job: SandboxJob, slot: Path) -> tuple[str, str]:
    """Copy program, evaluator and extra files into ``slot``; return their guest paths.

    Same layout as the local backend: one read-only directory holding all task files (so an
    evaluator's sibling imports and data files work), and a separate writable work dir.
    """
    _reset_dir(slot)
    placed: dict[str, Path] = {}
    for src in [Path(job.program_path), Path(job.evaluator_path), *map(Path, job.extra_files)]:
        if not src.exists():
            raise SandboxError(f"sandbox input not found: {src}")
        if src.name in placed:
            if placed[src.name].resolve() != src.resolve():
                raise SandboxError(f"two sandbox inputs share the file name {src.name!r}")
            continue
        placed[src.name] = src
        _copy_into(src, slot)
    _make_readable(slot)
    return (f"{GUEST_JOB}/{Path(job.evaluator_path).name}", f"{GUEST_JOB}/{Path(job.program_path).name}")


_LIVE: weakref.WeakSet[DockerSandbox] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    for sandbox in list(_LIVE):
        with contextlib.suppress(Exception):
            sandbox.close_sync()


def cleanup_leftovers(client: Any, *, owner: str | None = None) -> int:
    """Remove ``agentopt=1`` containers whose owning process is gone (or all of ``owner``'s).

    Containers of other live agentopt processes on the same engine are left alone.
    Returns the number removed.
    """
    host = socket.gethostname()
    removed = 0
    for info in client.api.containers(all=True, filters={"label": f"{LABEL}=1"}):
        labels = info.get("Labels") or {}
        who = labels.get(OWNER_LABEL, "")
        if owner is not None:
            stale = who == owner
        else:
            parts = who.rsplit(":", 2)
            stale = (len(parts) == 3 and parts[0] == host and parts[1].isdigit()
                     and not _pid_alive(int(parts[1])))
        if stale:
            with contextlib.suppress(Exception):
                client.api.remove_container(info["Id"], force=True)
                removed += 1
    return removed


def unavailable_reason(image: str, client: Any = None) -> str | None:
    """None when ``image`` can run here, else one line saying why not (for skips and checks)."""
    try:
        import docker
        from docker.errors import DockerException, ImageNotFound
    except ImportError:
        return "the 'docker' Python package is not installed"
    try:
        client = client or docker.from_env(timeout=10)
        client.ping()
    except DockerException as err:
        return f"no Docker engine reachable ({_first_line(err)})"
    try:
        client.images.get(image)
    except ImageNotFound:
        return f"image {image} not built (agentopt sandbox build cpu --offline)"
    except DockerException as err:
        return f"image {image}: {_first_line(err)}"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DockerSandbox(Sandbox):
    """Runs each :class:`SandboxJob` in a container of ``image`` (see the module docstring).

    ``gpus`` is the default GPU request for jobs that set none; ``warm_workers`` keeps that
    many containers running for reuse; ``client`` is a ``docker.DockerClient`` (default:
    ``docker.from_env()``). The engine and image are checked on the first job.
    """

    name = "docker"

    def __init__(
        self,
        image: str,
        *,
        warm_workers: int = 0,
        gpus: GpuValue = None,
        client: Any = None,
        user: str | None = NOBODY,
        pids_limit: int = 256,
        python: str = "python3",
    ) -> None:
        if warm_workers < 0:
            raise SandboxError("warm_workers must be >= 0")
        self.image = image
        self.warm_workers = warm_workers
        self.gpus = gpus
        self.user = user
        self.pids_limit = pids_limit
        self.python = python
        self._client = client
        self._owner = _owner_id()
        self._ready = False
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a worker became idle or went away
        self._idle: list[_Worker] = []
        self._busy: dict[str, _Worker] = {}
        self._creating = 0
        self._cleaning: set[threading.Thread] = set()
        self._stage_root: Path | None = None
        self._gpu_checked = False
        self._requirements_checked: dict[tuple[str, ...], list[str]] = {}
        self._closed = False
        _LIVE.add(self)

    # -- setup -----------------------------------------------------------------------------

    def _ensure_ready(self) -> Any:
        with self._lock:
            if self._closed:
                raise SandboxError("docker sandbox is closed")
            if self._ready:
                return self._client
            try:
                import docker
                from docker.errors import DockerException, ImageNotFound
            except ImportError:  # pragma: no cover - docker is a core dependency
                raise SandboxError("the 'docker' Python package is missing: pip install docker") from None
            try:
                if self._client is None:
                    self._client = docker.from_env()
                self._client.ping()
            except DockerException as err:
                raise SandboxError(
                    f"cannot reach the Docker engine ({_first_line(err)}); start dockerd "
                    "(e.g. .ci/start-docker.sh) or use sandbox.kind: local"
                ) from None
            try:
                self._client.images.get(self.image)
            except ImageNotFound:
                raise SandboxError(
                    f"docker image {self.image!r} not found; build it with "
                    "`agentopt sandbox build cpu --offline` (or docker pull it)"
                ) from None
            except DockerException as err:
                raise SandboxError(f"docker image {self.image!r}: {_first_line(err)}") from None
            removed = cleanup_leftovers(self._client)
            if removed:
                log.info("removed %d leftover agentopt container(s)", removed)
            self._stage_root = Path(tempfile.mkdtemp(prefix="agentopt-docker-"))
            os.chmod(self._stage_root, 0o755)
            self._ready = True
            return self._client

    def _check_gpus(self, gpus: GpuValue) -> None:
        """Fail fast, in one line, when GPUs are requested but the engine cannot pass them."""
        if not GpuRequest.parse(gpus).wanted or self._gpu_checked:
            return
        info = self._client.info()
        runtimes = info.get("Runtimes") or {}
        hook = shutil.which("nvidia-container-runtime-hook") or shutil.which("nvidia-container-toolkit")
        if "nvidia" not in runtimes and hook is None:
            raise SandboxError(
                f"sandbox.gpus={_gpu_key(gpus)} but the Docker engine has no NVIDIA runtime; install "
                "nvidia-container-toolkit and run `nvidia-ctk runtime configure --runtime=docker`"
            )
        self._gpu_checked = True

    # -- container config ------------------------------------------------------------------

    def _container_key(self, job: SandboxJob) -> tuple[Any, ...]:
        gpus = job.gpus if job.gpus is not None else self.gpus
        return (job.memory_mb, job.cpus, _gpu_key(gpus), job.network, job.max_disk_mb)

    def _host_config(self, job: SandboxJob, slot: Path) -> dict[str, Any]:
        client = self._client
        gpus = job.gpus if job.gpus is not None else self.gpus
        mounts = {
            str(runner_path()): {"bind": GUEST_RUNNER, "mode": "ro"},
            str(evaluator_lib_dir()): {"bind": GUEST_LIB, "mode": "ro"},
            str(slot): {"bind": GUEST_JOB, "mode": "ro"},
        }
        return client.api.create_host_config(
            binds=mounts,
            network_mode="bridge" if job.network else "none",
            mem_limit=f"{job.memory_mb}m",
            memswap_limit=f"{job.memory_mb}m",
            nano_cpus=int(job.cpus * 1e9) if job.cpus else None,
            pids_limit=self.pids_limit,
            read_only=True,
            tmpfs={GUEST_WORK: f"rw,exec,nosuid,nodev,size={job.max_disk_mb}m,mode=1777"},
            security_opt=["no-new-privileges"],
            cap_drop=["ALL"],
            ipc_mode="private",
            log_config={"type": "none", "config": {}},
            device_requests=device_requests(gpus),
        )

    def _guest_command(self, job: SandboxJob, workdir: str) -> list[str]:
        return [self.python, "-I", "-c", _script("supervisor.py"), workdir, str(job.max_output_bytes), self.python]

    def _labels(self, mode: str) -> dict[str, str]:
        return {LABEL: "1", OWNER_LABEL: self._owner, "agentopt.mode": mode}

    def _env(self, job: SandboxJob, workdir: str) -> dict[str, str]:
        """Only what the guest needs plus ``job.env`` (nothing from the host's environment)."""
        env = dict(_BASE_ENV)
        env.update({"HOME": workdir, "TMPDIR": f"{workdir}/tmp"})
        env.update(job.env)
        env.setdefault("PYTHONHASHSEED", "0")  # as the local backend: reproducible set/dict order
        return env

    def _isolation(self, job: SandboxJob, warm: bool) -> list[str]:
        out = ["container", "pid_namespace", "mount_namespace", "memory_cgroup", "pids_cgroup",
               "readonly_root", "readonly_task_files", "private_workdir", "private_tmp", "disk_quota",
               "cap_drop_all", "no_new_privileges", "clean_env", "result_pipe", "rlimit_as"]
        if not job.network:
            out.append("net_namespace")
        if job.cpus:
            out.append("cpu_cgroup")
        if self.user and self.user.split(":")[0] not in ("0", "root"):
            out.append("uid_nobody")
        out.append("reused_container" if warm else "fresh_container")
        return out

    def _create_error(self, err: BaseException, gpus: Any) -> SandboxError:
        text = _first_line(err)
        if "device driver" in text or "nvidia" in text.lower():
            return SandboxError(f"sandbox.gpus={_gpu_key(gpus)}: Docker cannot pass GPUs through ({text})")
        return SandboxError(f"docker: {text}")

    # -- public API ------------------------------------------------------------------------

    def available_isolation(self) -> list[str]:
        return self._isolation(SandboxJob(evaluator_path=Path("e"), program_path=Path("p")), warm=False)

    async def run(self, job: SandboxJob) -> JobResult:
        return await asyncio.to_thread(self.run_sync, job)

    async def prewarm(self, job: SandboxJob, count: int | None = None) -> int:
        """Start up to ``count`` (default ``warm_workers``) idle workers shaped for ``job``."""
        return await asyncio.to_thread(self._prewarm_sync, job, count)

    async def close(self) -> None:
        await asyncio.to_thread(self.close_sync)

    def check(self, gpus: GpuValue = None) -> None:
        """Raise a one-line :class:`SandboxError` now if the engine, image or GPU runtime is missing."""
        self._ensure_ready()
        self._check_gpus(gpus if gpus is not None else self.gpus)

    def check_requirements(self, requirements: list[str]) -> None:
        """Raise one line naming the packages the IMAGE's python lacks (checked once per set).

        The probe of :mod:`agentopt.sandbox.requirements` runs in a throwaway container of the
        image, through a tiny host-side launcher that stands in for the guest interpreter.
        """
        key = tuple(sorted(requirements))
        if not key:
            return
        self._ensure_ready()
        with self._lock:
            missing = self._requirements_checked.get(key)
        if missing is None:
            missing = missing_requirements(list(key), python=str(self._image_python()))
            with self._lock:
                self._requirements_checked[key] = missing
        if missing:
            raise SandboxError(f"image {self.image}: {format_missing(missing)} (into the image: "
                               "docker build --build-arg EXTRA_PIP=... -f sandboxes/Dockerfile.cpu sandboxes)")

    def _image_python(self) -> Path:
        assert self._stage_root is not None
        launcher = self._stage_root / "python-in-image"
        if not launcher.exists():
            config = {"image": self.image, "python": self.python, "user": self.user or "",
                      "labels": self._labels("probe")}
            launcher.write_text(f"#!{sys.executable}\n" + _script("launcher.py").replace('"@CONFIG@"', repr(json.dumps(config))))
            launcher.chmod(0o700)
        return launcher

    def run_sync(self, job: SandboxJob) -> JobResult:
        """Blocking :meth:`run` (the docker SDK is synchronous; :meth:`run` calls this in a thread)."""
        self._ensure_ready()
        gpus = job.gpus if job.gpus is not None else self.gpus
        self._check_gpus(gpus)
        if job.requirements:
            self.check_requirements(job.requirements)
        worker = self._acquire(job)
        if worker is None:
            return self._run_cold(job)
        return self._run_warm(job, worker)

    def close_sync(self) -> None:
        """Remove every container this sandbox started and its staging files."""
        with self._lock:
            cleaning = list(self._cleaning)
        for thread in cleaning:
            thread.join(timeout=30)
        with self._lock:
            self._closed = True
            self._changed.notify_all()
            workers = self._idle + list(self._busy.values())
            self._idle, self._busy = [], {}
        client = self._client
        if client is not None and self._ready:
            for worker in workers:
                self._remove(worker.container_id)
            with contextlib.suppress(Exception):
                cleanup_leftovers(client, owner=self._owner)
        if self._stage_root is not None:
            shutil.rmtree(self._stage_root, ignore_errors=True)
        _LIVE.discard(self)

    def container_ids(self) -> list[str]:
        """Containers currently held as warm workers (for tests and diagnostics)."""
        with self._lock:
            return [w.container_id for w in self._idle] + list(self._busy)

    # -- cold path -------------------------------------------------------------------------

    def _new_slot(self) -> Path:
        assert self._stage_root is not None
        slot = self._stage_root / uuid.uuid4().hex[:12]
        slot.mkdir(mode=0o755)
        return slot

    def _remove(self, container_id: str) -> None:
        with contextlib.suppress(Exception):
            self._client.api.remove_container(container_id, force=True)

    def _run_cold(self, job: SandboxJob) -> JobResult:
        from docker.errors import DockerException

        api = self._client.api
        slot = self._new_slot()
        container_id: str | None = None
        gpus = job.gpus if job.gpus is not None else self.gpus
        try:
            evaluator, program = stage_job(job, slot)
            workdir = f"{GUEST_WORK}/job"
            nonce = new_nonce()
            payload = build_job_payload(job, evaluator_path=evaluator, program_path=program,
                                        lib_dir=GUEST_LIB, nonce=nonce)
            try:
                container_id = api.create_container(
                    self.image, self._guest_command(job, workdir),
                    stdin_open=True, user=self.user, environment=self._env(job, workdir),
                    working_dir=GUEST_WORK, labels=self._labels("cold"),
                        host_config=self._host_config(job, slot),
                )["Id"]
                sock = api.attach_socket(container_id, params={"stdin": 1, "stdout": 1, "stderr": 1,
                                                               "stream": 1})
                started = time.monotonic()
                api.start(container_id)
            except DockerException as err:
                raise self._create_error(err, gpus) from None
            streams = _pump(sock, payload, started + job.timeout_s, job.max_result_bytes + 256,
                            job.max_output_bytes + 100, after_frame_s=2.0)
            wall = time.monotonic() - started
            if streams.timed_out:
                with contextlib.suppress(DockerException):
                    api.kill(container_id)
            try:
                status = api.wait(container_id, timeout=_KILL_GRACE_S).get("StatusCode")
            except Exception:  # noqa: BLE001 - still running after the frame: kill it
                with contextlib.suppress(DockerException):
                    api.kill(container_id)
                status = None
            oom = bool(api.inspect_container(container_id).get("State", {}).get("OOMKilled"))
            return job_result(job=job, nonce=nonce, result_bytes=bytes(streams.stdout), returncode=status,
                              timed_out=streams.timed_out, stdout="", stderr=streams.stderr_text(),
                              wall_s=wall, isolation=self._isolation(job, warm=False), oom_killed=oom)
        finally:
            if container_id is not None:
                self._remove(container_id)
            shutil.rmtree(slot, ignore_errors=True)

    # -- warm path -------------------------------------------------------------------------

    def _acquire(self, job: SandboxJob) -> _Worker | None:
        """An idle worker shaped for ``job``, a new one if there is room, else None (go cold)."""
        if self.warm_workers <= 0:
            return None
        key = self._container_key(job)
        evict: _Worker | None = None
        with self._lock:
            for i, worker in enumerate(self._idle):
                if worker.key == key:
                    del self._idle[i]
                    self._busy[worker.container_id] = worker
                    return worker
            total = len(self._idle) + len(self._busy) + self._creating
            if total >= self.warm_workers and any(w.key == key and w.cleaning for w in self._busy.values()):
                # A worker of this shape is being cleaned (~0.1 s; a cold start takes several
                # times that): wait for it rather than going cold.
                deadline = time.monotonic() + _WAIT_FOR_WARM_S
                while not self._closed and time.monotonic() < deadline:
                    self._changed.wait(timeout=deadline - time.monotonic())
                    for i, worker in enumerate(self._idle):
                        if worker.key == key:
                            del self._idle[i]
                            self._busy[worker.container_id] = worker
                            return worker
                    total = len(self._idle) + len(self._busy) + self._creating
                    if total < self.warm_workers:
                        break
            if total >= self.warm_workers:
                if not self._idle:
                    return None
                evict = self._idle.pop(0)  # least recently used shape makes room
            self._creating += 1
        if evict is not None:
            self._remove(evict.container_id)
            shutil.rmtree(evict.slot, ignore_errors=True)
        try:
            worker = self._start_worker(job, key)
        finally:
            with self._lock:
                self._creating -= 1
                self._changed.notify_all()
        with self._lock:
            self._busy[worker.container_id] = worker
        return worker

    def _start_worker(self, job: SandboxJob, key: tuple[Any, ...]) -> _Worker:
        from docker.errors import DockerException

        api = self._client.api
        slot = self._new_slot()
        gpus = job.gpus if job.gpus is not None else self.gpus
        try:
            container_id = api.create_container(
                self.image, [self.python, "-I", "-c", _script("reaper.py")], user=self.user,
                environment=dict(_BASE_ENV), working_dir=GUEST_WORK, labels=self._labels("warm"),
                host_config=self._host_config(job, slot), detach=True,
            )["Id"]
        except DockerException as err:
            shutil.rmtree(slot, ignore_errors=True)
            raise self._create_error(err, gpus) from None
        try:
            api.start(container_id)
        except DockerException as err:
            self._remove(container_id)
            shutil.rmtree(slot, ignore_errors=True)
            raise self._create_error(err, gpus) from None
        return _Worker(container_id=container_id, key=key, slot=slot)

    def _prewarm_sync(self, job: SandboxJob, count: int | None) -> int:
        self._ensure_ready()
        self._check_gpus(job.gpus if job.gpus is not None else self.gpus)
        started: list[_Worker] = []
        for _ in range(count if count is not None else self.warm_workers):
            worker = self._acquire(job)
            if worker is None:
                break
            started.append(worker)
        for worker in started:
            self._release(worker, healthy=True)
        return len(started)

    def _release(self, worker: _Worker, *, healthy: bool) -> None:
        with self._lock:
            worker.cleaning = False
            self._busy.pop(worker.container_id, None)
            keep = healthy and not self._closed and worker.jobs < _MAX_JOBS_PER_WORKER
            if keep:
                self._idle.append(worker)
            self._changed.notify_all()
        if not keep:
            self._remove(worker.container_id)
            shutil.rmtree(worker.slot, ignore_errors=True)

    def _exec_cleanup(self, worker: _Worker) -> tuple[bool, int]:
        """Kill the job's leftovers and wipe writable places; (clean, new OOM kills)."""
        api = self._client.api
        try:
            exec_id = api.exec_create(worker.container_id, [self.python, "-I", "-c", _script("cleanup.py")],
                                      user=self.user or "", environment=dict(_BASE_ENV), workdir="/")["Id"]
            out = api.exec_start(exec_id)
            code = api.exec_inspect(exec_id).get("ExitCode")
            report = json.loads(out.decode().strip().splitlines()[-1])
        except Exception as err:  # noqa: BLE001 - any doubt: the container is discarded
            log.warning("warm worker cleanup failed (%s); discarding container", _first_line(err))
            return False, 0
        oom = int(report.get("oom_kill", 0))
        new_oom, worker.oom_kills = oom - worker.oom_kills, oom
        if code != 0 or report.get("problems"):
            log.warning("warm worker not clean (%s); discarding container", report.get("problems"))
            return False, new_oom
        return True, new_oom

    def _run_warm(self, job: SandboxJob, worker: _Worker) -> JobResult:
        from docker.errors import DockerException

        api = self._client.api
        healthy = released = False
        try:
            evaluator, program = stage_job(job, worker.slot)
            worker.jobs += 1
            workdir = f"{GUEST_WORK}/job-{worker.jobs}"
            nonce = new_nonce()
            payload = build_job_payload(job, evaluator_path=evaluator, program_path=program,
                                        lib_dir=GUEST_LIB, nonce=nonce)
            try:
                exec_id = api.exec_create(
                    worker.container_id, self._guest_command(job, workdir),
                    stdin=True, stdout=True, stderr=True, user=self.user or "",
                    environment=self._env(job, workdir), workdir=GUEST_WORK,
                )["Id"]
                started = time.monotonic()
                sock = api.exec_start(exec_id, socket=True)
            except DockerException as err:
                raise SandboxError(f"docker exec in warm worker failed: {_first_line(err)}") from None
            streams = _pump(sock, payload, started + job.timeout_s, job.max_result_bytes + 256,
                            job.max_output_bytes + 100, after_frame_s=0.5)
            wall = time.monotonic() - started
            returncode: int | None = None
            if not streams.timed_out:
                for _ in range(100):
                    info = api.exec_inspect(exec_id)
                    if not info.get("Running"):
                        returncode = info.get("ExitCode")
                        break
                    time.sleep(0.01)
            common = {"job": job, "nonce": nonce, "result_bytes": bytes(streams.stdout), "returncode": returncode,
                      "timed_out": streams.timed_out, "stdout": "", "stderr": streams.stderr_text(),
                      "wall_s": wall, "isolation": self._isolation(job, warm=True)}
            if streams.timed_out:
                return job_result(**common)
            if streams.stdout:
                # A frame arrived, so the OOM counter cannot change the verdict: answer now and
                # clean the worker in the background (the next job waits only if it needs it).
                background = threading.Thread(target=self._cleanup_and_release, args=(worker,),
                                              name="agentopt-docker-cleanup", daemon=True)
                with self._lock:
                    worker.cleaning = True
                    self._cleaning.add(background)
                background.start()
                released = True
                return job_result(**common)
            clean, new_oom = self._exec_cleanup(worker)
            healthy = clean and new_oom == 0
            return job_result(**common, oom_killed=new_oom > 0)
        finally:
            if not released:
                self._release(worker, healthy=healthy)

    def _cleanup_and_release(self, worker: _Worker) -> None:
        try:
            clean, new_oom = self._exec_cleanup(worker)
            self._release(worker, healthy=clean and new_oom == 0)
        finally:
            with self._lock:
                self._cleaning.discard(threading.current_thread())
