"""WarmLocalSandbox: every isolation layer of the local backend, per job, without paying for it
from scratch (the guest side is sandboxes/zygote.py; docs/sandbox.md has the design).

A cold local job costs a chain of tool launches (unshare, sh, mount x N, prlimit, setpriv) and a
Python start with the runner's and the evaluator's imports. Here one worker process per distinct
job environment sets up its namespaces once, imports the runner and the task's evaluator once,
and forks each job: the fork creates fresh pid/mount/net namespaces, joins the job's own pids +
memory cgroup, mounts its private tmpfs dirs, sets rlimits, drops to nobody and runs the job.

Discard on doubt: a worker whose control channel breaks, whose job setup fails, or that does not
report a killed job within seconds is killed (its pid namespace takes every job process with it)
and the job is re-run on the cold path once; the next job starts a fresh worker.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Literal

from agentopt.errors import SandboxError
from agentopt.paths import runner_path
from agentopt.sandbox import cgroups
from agentopt.sandbox import isolation as iso
from agentopt.sandbox.base import JobResult, SandboxJob
from agentopt.sandbox.cgroup_pool import CgroupPool
from agentopt.sandbox.local import (
    _DEFAULT_PATH,
    _FRAME_HEADER_MAX,
    _PRIVATE_TMP_DIRS,
    _TERM_GRACE_S,
    IsolationMode,
    LocalSandbox,
    _gpu_env,
)
from agentopt.sandbox.protocol import build_job_payload, job_result, new_nonce

log = logging.getLogger(__name__)

_SETUP_FAILED = 125
_MAX_WORKERS = 4  # distinct job environments kept warm at once
# Pre-made job inits per worker (take the next job's cgroup migration and mounts off its path),
# asked for this many at a time when none is left: the zygote forks them back to back, so the
# copy-on-write faults its own work takes after each fork are paid once per batch.
_SPARES = 2
_START_TIMEOUT_S = 30.0
_DONE_GRACE_S = 5.0


def zygote_path() -> Path:
    """sandboxes/zygote.py next to the runner (the wheel ships both under agentopt/_guest)."""
    return runner_path().parent / "zygote.py"


def warm_unavailable() -> str | None:
    """None when warm workers can apply every local isolation layer here, else the reason."""
    s = iso.detect()
    cg = cgroups.detect()
    if not s.is_root:
        return "warm local workers need root (namespaces, cgroups, the drop to nobody)"
    if not (s.unshare and s.unshare_net):
        return "this machine cannot create pid/mount/net namespaces"
    if not (s.setpriv and s.nobody):
        return "no 'nobody' user to drop the guest to"
    if cg.pids_parent is None or cg.memory_parent is None:
        return "no writable pids and memory cgroups for per-job limits"
    if not zygote_path().exists():
        return f"guest file missing: {zygote_path()}"
    return None


class _Worker:
    """One zygote process and its control socket; replies are matched to jobs by id.

    Loop-independent on purpose (callers may use a new event loop per ``asyncio.run``): the
    process is a plain Popen and a reader thread hands each "done" to the waiting job's loop.
    """

    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket, pool: CgroupPool) -> None:
        self.proc = proc
        self.sock = sock
        self.pool = pool
        self.pending: dict[str, asyncio.Future[int]] = {}
        self.dead: str | None = None
        # Pre-made job inits (forked, cgroup joined, namespaces and private mounts made):
        # (spare id, its cgroup, (memory_mb, disk_mb) it was made for).
        self.spares: list[tuple[str, cgroups.JobCgroup, tuple[int, int]]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_loop, name="agentopt-warm-worker", daemon=True)

    def start_reader(self) -> None:
        self._reader.start()

    def add(self, job_id: str, fut: asyncio.Future[int]) -> None:
        with self._lock:
            if self.dead:
                raise SandboxError(f"warm sandbox worker is gone ({self.dead})")
            self.pending[job_id] = fut

    def forget(self, job_id: str) -> None:
        with self._lock:
            self.pending.pop(job_id, None)

    def _read_loop(self) -> None:
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                msg = json.loads(data)
                if msg.get("op") == "done":
                    with self._lock:
                        fut = self.pending.pop(str(msg.get("id")), None)
                    if fut is not None:
                        _resolve(fut, int(msg.get("status", -1)), None)
        except (OSError, ValueError) as exc:
            if not self.dead:
                log.warning("warm sandbox worker channel failed: %s", exc)
        with self._lock:
            self.dead = self.dead or "worker exited"
            pending, self.pending = self.pending, {}
        for fut in pending.values():
            _resolve(fut, None, SandboxError("warm sandbox worker died"))

    def send(self, obj: dict[str, Any], fds: list[int] | None = None, body: bytes | None = None) -> None:
        """One message: ``obj`` as JSON, then (for a job) a newline and ``body``, which the zygote
        passes on to the job's init without decoding it (see sandboxes/zygote.py)."""
        data = json.dumps(obj).encode()
        if body is not None:
            data += b"\n" + body
        if fds:
            socket.send_fds(self.sock, [data], fds)
        else:
            self.sock.send(data)

    def kill(self) -> None:
        """Kill the worker: the zygote's pid namespace (and every job in it) dies with it."""
        with self._lock:
            self.dead = self.dead or "discarded"
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5.0)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()
        with self._lock:
            spares, self.spares = self.spares, []
        for _sid, cg, _caps in spares:
            self.pool.release(cg)

    def take_spare(self, memory_mb: int, disk_mb: int) -> tuple[str, cgroups.JobCgroup] | None:
        """A ready spare for a job with these memory and disk caps (None: start the job from scratch)."""
        with self._lock:
            for i, (sid, cg, caps) in enumerate(self.spares):
                if caps == (memory_mb, disk_mb):
                    del self.spares[i]
                    return sid, cg
        return None

    def add_spare(self, memory_mb: int, disk_mb: int) -> None:
        """Ask the zygote for a job init that joins a new job cgroup and makes its namespaces ahead of time.

        A spare made for other caps is dropped (its cgroup's removal kills it): runs change caps
        rarely, and a spare that no job can use would hold a cgroup and a process forever.
        """
        for spare in self.reserve_spares(memory_mb, disk_mb):
            try:
                self.send(self.spare_request(spare))
            except OSError:
                self.pool.release(spare[1])
                continue
            self.keep_spare(spare)

    def reserve_spares(self, memory_mb: int, disk_mb: int) -> list[tuple[str, cgroups.JobCgroup, tuple[int, int]]]:
        """Ids and fresh cgroups for the next ``_SPARES`` spares when none is left (else none, nor
        when the worker is gone). The caller asks the zygote for them (:meth:`spare_request`),
        then :meth:`keep_spare`."""
        caps = (memory_mb, disk_mb)
        with self._lock:
            stale = [s for s in self.spares if s[2] != caps]
            self.spares = [s for s in self.spares if s[2] == caps]
            ready = bool(self.dead) or bool(self.spares)
        for _sid, cg, _caps in stale:
            self.pool.release(cg)
        out = []
        for _ in range(0 if ready else _SPARES):
            cg = self.pool.take(memory_mb * 1024 * 1024)
            if cg is None:
                break
            out.append((secrets.token_hex(8), cg, caps))
        return out

    @staticmethod
    def spare_request(spare: tuple[str, cgroups.JobCgroup, tuple[int, int]]) -> dict[str, Any]:
        sid, cg, (_memory_mb, disk_mb) = spare
        return {"op": "spare", "id": sid, "cgroup_procs": [str(p) for p in cg.procs_files], "network": False,
                "disk_mb": disk_mb}

    def keep_spare(self, spare: tuple[str, cgroups.JobCgroup, tuple[int, int]]) -> None:
        with self._lock:
            self.spares.append(spare)


def _resolve(fut: asyncio.Future[int], value: int | None, exc: BaseException | None) -> None:
    """Complete ``fut`` from the reader thread on the loop that owns it (if that loop still runs)."""

    def apply() -> None:
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value if value is not None else -1)

    with contextlib.suppress(RuntimeError):  # the job's loop is closed: nobody waits any more
        fut.get_loop().call_soon_threadsafe(apply)


class WarmLocalSandbox(LocalSandbox):
    """LocalSandbox whose jobs are forked from warm, pre-isolated workers (same layers, ms each)."""

    name = "local"

    def __init__(self, *, isolation: IsolationMode = "auto", python: str | None = None,
                 temp_root: str | None = None, pids_max: int = 128) -> None:
        reason = warm_unavailable()
        if reason:
            raise SandboxError(f"warm local sandbox unavailable: {reason}; set sandbox.warm: false")
        super().__init__(isolation=isolation, python=python, run_as_nobody=True, temp_root=temp_root,
                         pids_max=pids_max)
        if self._mode != "namespaces" or self._drop is None or not self._stage:
            raise SandboxError("warm local sandbox unavailable: needs namespaces and the drop to nobody")
        self._workers: dict[str, _Worker] = {}
        self._starting: dict[str, threading.Lock] = {}
        self._preloaded: dict[str, Path] = {}
        self._retired: list[_Worker] = []
        self._guest_users: dict[tuple[str, int, int], bool] = {}
        self._preload_stats: dict[tuple[tuple[str, int, int], ...], tuple[str, Path]] = {}
        # Job cgroups are made before their job and removed after it by this pool's thread.
        self._cgroups = CgroupPool(pids_max)
        # The (files, work) dirs of every job whose inputs travel in its message: empty mount points
        # here, over which each job mounts tmpfs of its own (jobs run in their own mount namespaces,
        # so they share the paths and nothing else).
        self._inline_dirs = (self._root / "inline" / "files", self._root / "inline" / "work")
        for d in (self._root / "inline", *self._inline_dirs):
            d.mkdir()
            os.chmod(d, 0o755)
        # Jobs that ran cold because a worker was discarded (tests and benchmarks check it is 0).
        self.cold_fallbacks = 0
        self.spare_jobs = 0  # jobs started from a pre-made init (no cgroup migration on their path)
        self.workers_started = 0

    # ------------------------------------------------------------------ workers

    def _worker_key(self, env: dict[str, str]) -> str:
        stable = {k: v for k, v in env.items() if k not in ("HOME", "TMPDIR")}
        return hashlib.sha256(json.dumps(sorted(stable.items())).encode()).hexdigest()[:16]

    async def _get_worker(self, key: str, env: dict[str, str]) -> _Worker:
        lock = self._starting.setdefault(key, threading.Lock())
        # A thread lock (callers may come from different event loops), polled: blocking in
        # to_thread would park every executor thread here while the holder needs one to start
        # the worker (16 concurrent first jobs deadlocked that way).
        while not lock.acquire(blocking=False):
            await asyncio.sleep(0.005)
        try:
            worker = self._workers.get(key)
            if worker is not None and worker.dead is None:
                return worker
            if worker is not None:
                await asyncio.to_thread(worker.kill)
                self._workers.pop(key, None)
            while len(self._workers) >= _MAX_WORKERS:
                old_key = next(iter(self._workers))
                old = self._workers.pop(old_key)
                if not old.pending:
                    await asyncio.to_thread(old.kill)
                else:  # busy: let its jobs finish, it is killed at close()
                    self._retired.append(old)
            worker = await asyncio.to_thread(self._start_worker, env)
            self.workers_started += 1
            self._workers[key] = worker
            return worker
        finally:
            lock.release()

    def _start_worker(self, env: dict[str, str]) -> _Worker:
        host_sock, guest_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        base_env = {k: v for k, v in env.items() if k not in ("HOME", "TMPDIR")}
        base_env["HOME"] = "/"
        log_path = self._root / f"zygote-{secrets.token_hex(4)}.log"
        try:
            with open(log_path, "wb") as log_file:
                proc = subprocess.Popen(
                    [self._python, "-I", str(zygote_path()), str(os.getpid())],
                    stdin=guest_sock.fileno(), stdout=log_file, stderr=log_file,
                    cwd="/", env=base_env, start_new_session=True)
        except OSError as exc:
            host_sock.close()
            raise SandboxError(f"cannot start a warm sandbox worker: {exc}") from exc
        finally:
            guest_sock.close()
        worker = _Worker(proc, host_sock, self._cgroups)
        cfg = {
            "runner": self._runner,
            "lib_dir": self._lib_dir,
            "hidden": self._hidden,
            "expose": _keep_paths(self._expose, str(self._root)),
            "private_tmp": [t for t in _PRIVATE_TMP_DIRS if os.path.isdir(t) and not os.path.islink(t)],
            "drop": list(self._drop) if self._drop else None,
        }
        try:
            worker.send(cfg)
            host_sock.settimeout(_START_TIMEOUT_S)
            data = host_sock.recv(65536)
            host_sock.settimeout(None)
            ready = json.loads(data) if data else {}
        except (OSError, ValueError):
            ready = {}
        if ready.get("op") != "ready":
            worker.kill()
            detail = log_path.read_text(errors="replace").strip().splitlines()[-1:] if log_path.exists() else []
            raise SandboxError(f"warm sandbox worker failed to start{': ' + detail[0] if detail else ''}")
        worker.start_reader()
        return worker

    def _preload_cached(self, job: SandboxJob) -> tuple[tuple[tuple[str, int, int], ...], tuple[str, Path] | None]:
        """The staged preload for inputs whose path, size and mtime are unchanged (no read, no hash)."""
        stats = []
        try:
            for src in (job.evaluator_path, *job.extra_files):
                st = os.stat(src)
                stats.append((str(src), st.st_size, st.st_mtime_ns))
        except OSError:
            return (), None
        key = tuple(stats)
        return key, self._preload_stats.get(key)

    async def _preload(self, job: SandboxJob) -> tuple[str, Path] | None:
        key, hit = self._preload_cached(job)
        if hit is not None:
            return hit
        staged = await asyncio.to_thread(self._preload_dir, job)
        if staged is not None and key:
            self._preload_stats[key] = staged
        return staged

    def _preload_dir(self, job: SandboxJob) -> tuple[str, Path] | None:
        """Stage the evaluator + extra files once per content, for the zygote to import from."""
        h = hashlib.sha256()
        srcs = [Path(job.evaluator_path), *map(Path, job.extra_files)]
        try:
            h.update(srcs[0].read_bytes())
            for src in srcs[1:]:
                st = src.stat()
                h.update(f"{src.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
        except OSError:
            return None
        key = h.hexdigest()[:24]
        if key in self._preloaded:
            return key, self._preloaded[key]
        dest = self._root / f"preload-{key}"
        tmp = Path(tempfile.mkdtemp(prefix="preload-", dir=self._root))
        try:
            for src in srcs:
                if src.is_dir():
                    shutil.copytree(src, tmp / src.name, symlinks=False)
                else:
                    shutil.copyfile(src, tmp / src.name)
            for dirpath, _dirs, files in os.walk(tmp):
                os.chmod(dirpath, 0o755)
                for name in files:
                    os.chmod(os.path.join(dirpath, name), 0o644)
            tmp.rename(dest)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not dest.exists():
                return None
        self._preloaded[key] = dest / srcs[0].name
        return key, self._preloaded[key]

    def _uses_guest_helper(self, evaluator: Path) -> bool:
        """Does the evaluator use agentopt_guest (then each job gets a ready candidate forkserver)?"""
        try:
            st = evaluator.stat()
            key = (str(evaluator), st.st_size, st.st_mtime_ns)
            if key not in self._guest_users:
                self._guest_users[key] = b"agentopt_guest" in evaluator.read_bytes()
            return self._guest_users[key]
        except OSError:
            return False

    # ------------------------------------------------------------------ run

    def _job_env(self, job: SandboxJob, work: Path) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", _DEFAULT_PATH),
            "HOME": str(work),
            "TMPDIR": str(work / "tmp"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            **job.env,
            "PYTHONHASHSEED": job.env.get("PYTHONHASHSEED", "0"),
            **_gpu_env(job.gpus),
        }

    def _limits(self, job: SandboxJob) -> dict[str, Any]:
        cpu = int(-(-job.timeout_s // 1)) + 1
        return {
            "RLIMIT_AS": job.memory_mb * 1024 * 1024,
            "RLIMIT_CPU": [cpu, cpu + 2],
            "RLIMIT_FSIZE": job.max_disk_mb * 1024 * 1024,
            "RLIMIT_CORE": 0,
            "RLIMIT_NPROC": self._pids_max * 4,
        }

    def _layers(self, job: SandboxJob, cg: cgroups.JobCgroup) -> list[str]:
        layers = ["process_group", "clean_env", "private_workdir", "result_pipe", *cg.layers,
                  "pid_namespace", "mount_namespace"]
        if not job.network:
            layers.append("net_namespace")
        layers += ["private_tmp", "disk_quota", "rlimit_as", "rlimit_cpu", "rlimit_fsize", "rlimit_core",
                   "rlimit_nproc", "uid_nobody", "readonly_task_files"]
        return layers

    async def prewarm(self, job: SandboxJob, count: int | None = None) -> int:
        """Start the worker for jobs like ``job``, have it import the evaluator, and ask for a spare
        init, so the first job finds all three ready (a run calls this before its other start-up).
        One worker per job environment, whatever ``count`` says."""
        env = self._job_env(job, self._inline_dirs[1])
        key = self._worker_key(env)
        fresh = key not in self._workers
        worker = await self._get_worker(key, env)
        preload = await self._preload(job)
        if preload is not None:
            worker.send({"op": "preload", "preload_key": preload[0], "preload_path": str(preload[1]), "env": env})
        if not job.network:
            worker.add_spare(job.memory_mb, job.max_disk_mb)
        return int(fresh)

    async def run(self, job: SandboxJob) -> JobResult:
        try:
            return await self._run_warm(job)
        except _Discarded as exc:
            log.warning("warm sandbox worker discarded (%s); running this job cold", exc)
            self.cold_fallbacks += 1
            return await super().run(job)

    async def _run_warm(self, job: SandboxJob) -> JobResult:
        nonce = new_nonce()
        inline = _inline_inputs(job)
        job_dir: Path | None = None
        cg: cgroups.JobCgroup | None = None
        finished = False
        try:
            if inline is not None:  # the job's init writes them into its own tmpfs: no dir here
                files_dir, work = self._inline_dirs
                program, evaluator = files_dir / Path(job.program_path).name, files_dir / Path(job.evaluator_path).name
            else:
                job_dir = Path(tempfile.mkdtemp(prefix="job-", dir=self._root))
                program, evaluator, work = await asyncio.to_thread(self._prepare_dirs, job, job_dir)
            env = self._job_env(job, work)
            key = self._worker_key(env)
            try:
                worker = await self._get_worker(key, env)
            except SandboxError as exc:
                raise _Discarded(str(exc)) from exc
            spare = None if job.network else worker.take_spare(job.memory_mb, job.max_disk_mb)
            self.spare_jobs += spare is not None
            cg = spare[1] if spare else self._cgroups.take(job.memory_mb * 1024 * 1024)
            if cg is None or cg.memory_dir is None or cg.pids_dir is None:
                raise _Discarded("could not create the job's pids + memory cgroup")
            preload = await self._preload(job)
            payload = json.loads(build_job_payload(job, evaluator_path=str(evaluator), program_path=str(program),
                                                   lib_dir=self._lib_dir, nonce=nonce))
            job_id = secrets.token_hex(8)
            head = {"op": "run", "id": job_id, "network": job.network,
                    "forkserver": self._uses_guest_helper(Path(job.evaluator_path)),
                    "spare": spare[0] if spare else None,
                    "preload_key": preload[0] if preload else None,
                    "preload_path": str(preload[1]) if preload else None}
            body = {**head, "job": payload, "work": str(work), "env": env, "disk_mb": job.max_disk_mb,
                    "limits": self._limits(job), "cgroup_procs": [str(p) for p in cg.procs_files]}
            if inline is not None:
                body["files_dir"] = str(program.parent)
                body["files"] = inline
            result = await self._execute_warm(job, worker, head, json.dumps(body).encode(), cg, nonce)
            finished = True
            return result
        finally:
            # A finished job's processes are all gone (its pid namespace is empty); anything
            # else (a cancel, a discarded worker) is killed here and now, before returning.
            if cg is not None and not finished:
                cg.signal(signal.SIGKILL)
            self._cgroups.release(cg, job_dir)  # rmdir + rm -r happen off the job's path

    async def _execute_warm(self, job: SandboxJob, worker: _Worker, msg: dict[str, Any], body: bytes,
                            cg: cgroups.JobCgroup, nonce: str) -> JobResult:
        loop = asyncio.get_running_loop()
        res_r, res_w = os.pipe()
        err_r, err_w = os.pipe()
        st_r, st_w = os.pipe()  # the zygote writes the job's exit status here (no job process holds it)
        done: asyncio.Future[int] = loop.create_future()
        t0 = time.monotonic()
        # The next jobs' inits get ready while this one runs; asked for in this job's message
        # (one message and one wake-up of the zygote per job, not two).
        spares = [] if job.network else worker.reserve_spares(job.memory_mb, job.max_disk_mb)
        if spares:
            msg["next_spares"] = [worker.spare_request(spare) for spare in spares]
        try:
            try:
                worker.add(msg["id"], done)
                worker.send(msg, [res_w, err_w, st_w], body)
                for spare in spares:
                    worker.keep_spare(spare)
                spares = []
            except (OSError, SandboxError) as exc:
                worker.forget(msg["id"])
                await asyncio.to_thread(worker.kill)
                for fd in (res_r, err_r, st_r):
                    os.close(fd)
                raise _Discarded(f"cannot reach the worker: {exc}") from exc
        finally:
            for fd in (res_w, err_w, st_w):
                os.close(fd)
            for spare in spares:  # not sent
                self._cgroups.release(spare[1])
        out_task = asyncio.create_task(_read_fd(res_r, job.max_result_bytes + _FRAME_HEADER_MAX + 1))
        err_task = asyncio.create_task(_read_fd(err_r, job.max_output_bytes))
        exited = asyncio.create_task(_job_status(st_r, done))
        timed_out = False
        status: int | None = None
        try:
            # asyncio.timeout, not wait_for (as in local.py): 3.11's wait_for can drop a Ctrl-C.
            # A cancelled job is killed by the cgroup sweep in _run_warm's finally.
            try:
                async with asyncio.timeout(job.timeout_s):
                    status = await asyncio.shield(exited)
            except TimeoutError:
                timed_out = True
                cg.signal(signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_TERM_GRACE_S):
                        status = await asyncio.shield(exited)
            if status is None:
                cg.signal(signal.SIGKILL)
                with contextlib.suppress(OSError):
                    worker.send({"op": "kill", "id": msg["id"]})
                try:
                    async with asyncio.timeout(_DONE_GRACE_S):
                        status = await asyncio.shield(exited)
                except TimeoutError:
                    await asyncio.to_thread(worker.kill)  # doubt: the job did not die when told
                    status = None
        except SandboxError as exc:  # the worker died under this job
            for t in (out_task, err_task):
                t.cancel()
            raise _Discarded(str(exc)) from exc
        finally:
            exited.cancel()  # a no-op once it has the status
            worker.forget(msg["id"])
        wall = time.monotonic() - t0
        finished, pending = await asyncio.wait([out_task, err_task], timeout=2.0)
        for t in pending:
            t.cancel()
        result_bytes, _ = out_task.result() if out_task in finished else (b"", 0)
        err_bytes, err_total = err_task.result() if err_task in finished else (b"", 0)
        stderr = err_bytes.decode("utf-8", "replace")
        if status == _SETUP_FAILED and not result_bytes and "agentopt-zygote: job setup failed" in stderr:
            await asyncio.to_thread(worker.kill)
            raise _Discarded(stderr.strip().splitlines()[-1][:300])
        if err_total > len(err_bytes):
            stderr += f"\n[... {err_total - len(err_bytes)} more bytes of output discarded]"
        # The OOM counter only decides the error of a job that left no result (one file read less
        # per finished job).
        oom = not result_bytes and not timed_out and cg.oom_killed()
        result = job_result(job=job, nonce=nonce, result_bytes=result_bytes, returncode=status,
                            timed_out=timed_out, stdout="", stderr=stderr, wall_s=wall,
                            isolation=self._layers(job, cg), oom_killed=oom)
        peak = cg.peak_bytes()
        if peak is not None:
            result.peak_memory_mb = round(peak / (1 << 20), 1)
        return result

    async def close(self) -> None:
        workers = [*self._workers.values(), *self._retired]
        self._workers.clear()
        for w in workers:
            await asyncio.to_thread(w.kill)
        await asyncio.to_thread(self._cgroups.close)
        await super().close()


class _Discarded(Exception):
    """The warm path could not run this job fairly; the caller re-runs it cold."""


# Inputs sent inside the job message: base64 makes 64 KiB ~87 KB, and a SOCK_SEQPACKET message
# must fit the socket's send buffer (net.core.wmem_default, 208 KiB on common kernels).
_INLINE_INPUT_BYTES = 64 * 1024


def _inline_inputs(job: SandboxJob) -> dict[str, str] | None:
    """The job's inputs as {file name: base64 content} when they are a few small plain files with
    distinct names (their job's init then writes them into a tmpfs of its own), else None (they
    are copied into a job dir here, which also reports what is wrong with them).

    Why: making, filling and later removing a dir per job on the host cost ~0.5 ms of the
    controller's thread per evaluation (~1.5 ms on a disk file system), on the path every
    iteration takes; in the job's own mount namespace the same files cost a tmpfs mount."""
    out: dict[str, str] = {}
    total = 0
    try:
        for src in (job.program_path, job.evaluator_path, *job.extra_files):
            name = os.path.basename(src)
            with open(src, "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode) or name in out or not name:
                    return None
                data = f.read(_INLINE_INPUT_BYTES + 1 - total)
            total += len(data)
            if total > _INLINE_INPUT_BYTES:
                return None
            out[name] = base64.b64encode(data).decode("ascii")
    except OSError:
        return None
    return out


def _keep_paths(expose: list[str], root: str) -> list[str]:
    return iso.minimal_roots([*expose, root])


async def _job_status(fd: int, reported: asyncio.Future[int]) -> int:
    """The job's exit status: from its status pipe, or (where the zygote could not write that) from
    its report on the control channel, which ``reported`` receives."""
    data, _ = await _read_fd(fd, 32)
    try:
        return int(data)
    except ValueError:
        return await reported


_READS_PER_WAKEUP = 16  # 64 KiB reads per readiness callback before the loop gets a turn


async def _read_fd(fd: int, cap: int) -> tuple[bytes, int]:
    """Read a pipe to EOF on the event loop, keeping at most ``cap`` bytes and counting the rest
    (read and dropped, so a guest printing gigabytes neither blocks on a full pipe nor grows host
    memory; see local._read_capped). Takes ownership of ``fd``.

    A bare readiness callback rather than a StreamReader transport: three pipes per warm job, and
    the transport machinery cost more of the controller's thread than the job's own bytes."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[bytes, int]] = loop.create_future()
    kept = bytearray()
    total = 0

    def on_readable() -> None:
        nonlocal total
        for _ in range(_READS_PER_WAKEUP):
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                return
            except OSError as exc:
                loop.remove_reader(fd)
                if not done.done():
                    done.set_exception(exc)
                return
            if not chunk:
                loop.remove_reader(fd)
                if not done.done():
                    done.set_result((bytes(kept), total))
                return
            total += len(chunk)
            if len(kept) < cap:
                kept.extend(chunk[: cap - len(kept)])

    os.set_blocking(fd, False)
    try:
        loop.add_reader(fd, on_readable)
        return await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def make_local_sandbox(warm: bool | Literal["auto"] = "auto", **kwargs: Any) -> LocalSandbox:
    """The local backend: warm when asked, or on ``auto`` when every isolation layer applies."""
    if warm is False:
        return LocalSandbox(**kwargs)
    reason = warm_unavailable()
    if reason is None:
        return WarmLocalSandbox(**kwargs)
    if warm is True:
        raise SandboxError(f"sandbox.warm: true but {reason}")
    return LocalSandbox(**kwargs)


__all__ = ["WarmLocalSandbox", "make_local_sandbox", "warm_unavailable", "zygote_path"]
