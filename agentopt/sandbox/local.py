"""LocalSandbox: run the guest runner as a child process with every isolation layer the
machine allows (see agentopt/sandbox/isolation.py and docs/sandbox.md).

Exec chain for one job (layers drop out where unavailable)::

    unshare --pid --fork --kill-child --mount-proc [--net]     new pid/mount(/net) namespaces
      /bin/sh -c <setup>      as root inside: join the job's pids cgroup, private /tmp,
                              tmpfs work dir (disk quota), hide non-traversable dirs
        prlimit --as --cpu --fsize --core --nproc              rlimits, no preexec_fn needed
          setpriv --reuid nobody ... --no-new-privs            drop root, caps and groups
            python -I runner.py                                 protocol v1 (see protocol.py)

The runner is pid 1 of the namespace, so when it exits (or is killed) the kernel kills every
process the job left behind, setsid/double-fork included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from agentopt.errors import SandboxError
from agentopt.paths import evaluator_lib_dir, runner_path
from agentopt.sandbox import cgroups
from agentopt.sandbox import isolation as iso
from agentopt.sandbox.base import JobResult, Sandbox, SandboxJob
from agentopt.sandbox.protocol import build_job_payload, job_result, new_nonce
from agentopt.task import GpuRequest, GpuValue

log = logging.getLogger(__name__)

IsolationMode = Literal["auto", "none", "namespaces", "bwrap"]
_TERM_GRACE_S = 0.3
_FRAME_HEADER_MAX = 128
_STAGE_CANDIDATES = ("/mnt", "/media", "/srv")
_PRIVATE_TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
_ROOT_PREFIX = "agentopt-sandbox-"
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class _Plan:
    """Everything decided for one job before it starts."""

    argv: list[str]
    env: dict[str, str]
    layers: list[str]
    cgroup: cgroups.JobCgroup | None = None
    extra: dict[str, str] = field(default_factory=dict)


class LocalSandbox(Sandbox):
    """Runs guests as local processes; safe to call concurrently from one event loop."""

    name = "local"

    def __init__(
        self,
        *,
        isolation: IsolationMode = "auto",
        python: str | None = None,
        run_as_nobody: bool | Literal["auto"] = "auto",
        temp_root: str | None = None,
        pids_max: int = 128,
    ) -> None:
        self._python = python or sys.executable
        with ThreadPoolExecutor(max_workers=1) as pool:  # both probe with subprocesses: overlap them
            paths = pool.submit(iso.interpreter_paths, self._python)
            self._support = iso.detect()
            paths.result()
        self._pids_max = pids_max
        self._runner = str(runner_path())
        self._lib_dir = str(evaluator_lib_dir())
        s = self._support
        if isolation == "auto":
            isolation = "namespaces" if s.unshare else "none"
        if isolation == "namespaces" and not s.unshare:
            raise SandboxError("namespace isolation requested but unshare(1) cannot create pid namespaces here")
        if isolation == "bwrap":
            # bubblewrap support is detected and reported, but the namespaces path already
            # gives the same layers with tools present on every Linux; refuse rather than pretend.
            raise SandboxError("isolation='bwrap' is not supported by LocalSandbox; use 'namespaces'")
        self._mode: IsolationMode = isolation
        clean_stale_leftovers(temp_root)
        # The owner's pid in the name lets a later run remove what a killed controller left.
        self._root = Path(tempfile.mkdtemp(prefix=f"{_ROOT_PREFIX}{os.getpid()}-", dir=temp_root))
        os.chmod(self._root, 0o755)
        self._stage = self._pick_stage() if self._mode == "namespaces" else None
        self._hidden, self._expose = self._hidden_paths()
        self._drop = self._decide_drop(run_as_nobody)

    # ------------------------------------------------------------------ decisions

    def _pick_stage(self) -> str | None:
        """An existing dir outside every path the guest needs, used as a temporary mount point."""
        needed = [*iso.interpreter_paths(self._python), self._runner, self._lib_dir, str(self._root)]
        for cand in _STAGE_CANDIDATES:
            if not os.path.isdir(cand) or os.path.islink(cand):
                continue
            if any(p == cand or p.startswith(cand + "/") or cand.startswith(p.rstrip("/") + "/") for p in needed):
                continue
            return cand
        return None

    def _hidden_paths(self) -> tuple[list[str], list[str]]:
        """Dirs 'nobody' cannot traverse (to cover with tmpfs) and the needed paths to keep visible.

        Kept: needed paths inside a hidden dir (pyenv under /root) and needed paths under the
        dirs that get a private tmpfs (a checkout or venv under /tmp, as CI clones may be):
        without being bound back, the guest's interpreter or runner would vanish (exit 127).
        """
        needed = [*iso.interpreter_paths(self._python), os.path.dirname(self._runner), self._lib_dir,
                  str(self._root)]
        hidden: list[str] = []
        expose: list[str] = []
        for p in needed:
            anc = iso.first_hidden_ancestor(p)
            if anc:
                hidden.append(anc)
                expose.append(p)
            elif any(p == t or p.startswith(t.rstrip("/") + "/") for t in _real_private_tmp_dirs()):
                expose.append(p)
        return iso.minimal_roots(hidden), iso.minimal_roots(expose)

    def _decide_drop(self, run_as_nobody: bool | Literal["auto"]) -> tuple[int, int] | None:
        s = self._support
        possible = s.is_root and bool(s.setpriv) and s.nobody is not None
        # A non-traversable interpreter dir needs the mount-namespace trick to stay usable.
        if self._hidden and not self._stage:
            possible = False
        if run_as_nobody is True and not possible:
            raise SandboxError("run_as_nobody=True needs root, setpriv(1) and a usable interpreter for 'nobody'")
        if run_as_nobody is False or not possible:
            return None
        return s.nobody

    def available_isolation(self) -> list[str]:
        layers = self._support.layers()
        if cgroups.detect().memory_parent is not None:
            layers.append("memory_cgroup")
        return layers

    @property
    def mode(self) -> str:
        """The isolation mode actually in use ("namespaces" or "none")."""
        return self._mode

    # ------------------------------------------------------------------ job setup

    def _prepare_dirs(self, job: SandboxJob, job_dir: Path) -> tuple[Path, Path, Path]:
        """Copy task files into ``files/`` (read-only to the guest) and create ``work/``."""
        files = job_dir / "files"
        work = job_dir / "work"
        files.mkdir(parents=True)
        work.mkdir()
        (work / "tmp").mkdir()
        placed: dict[str, Path] = {}
        for src in [job.program_path, job.evaluator_path, *job.extra_files]:
            src = Path(src)
            if not src.exists():
                raise SandboxError(f"sandbox input not found: {src}")
            dest = files / src.name
            if src.name in placed and placed[src.name].resolve() != src.resolve():
                raise SandboxError(f"two sandbox inputs share the file name {src.name!r}")
            placed[src.name] = src
            if dest.exists():
                continue
            if src.is_dir():
                shutil.copytree(src, dest, symlinks=False)
            else:
                shutil.copyfile(src, dest)
        for dirpath, _dirnames, filenames in os.walk(files):
            os.chmod(dirpath, 0o755)
            for name in filenames:
                os.chmod(os.path.join(dirpath, name), 0o644)
        os.chmod(job_dir, 0o755)
        if self._drop:
            uid, gid = self._drop
            for p in (work, work / "tmp"):
                os.chown(p, uid, gid)
                os.chmod(p, 0o700)
        return files / Path(job.program_path).name, files / Path(job.evaluator_path).name, work

    def _plan(self, job: SandboxJob, work: Path, cgroup: cgroups.JobCgroup | None) -> _Plan:
        layers = ["process_group", "clean_env", "private_workdir", "result_pipe"]
        env = {
            "PATH": os.environ.get("PATH", _DEFAULT_PATH),
            "HOME": str(work),
            "TMPDIR": str(work / "tmp"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            **job.env,
            "PYTHONHASHSEED": job.env.get("PYTHONHASHSEED", "0"),
            **_gpu_env(job.gpus),
        }
        q = shlex.quote
        script: list[str] = ["set -e"]
        if cgroup is not None:
            script += [f"echo 0 > {q(str(f))}" for f in cgroup.procs_files]
            layers += cgroup.layers
        argv: list[str] = []
        if self._support.setpriv:
            # Dies with the controller (kill -9 included); --kill-child / the pdeathsig re-armed
            # after the uid drop below take the job's pid namespace with it.
            argv = [str(self._support.setpriv), "--pdeathsig=KILL", "--"]
        if self._mode == "namespaces":
            s = self._support
            argv += [str(s.unshare), "--pid", "--fork", "--kill-child", "--mount-proc"]
            layers += ["pid_namespace", "mount_namespace"]
            if not job.network:
                if not s.unshare_net:
                    raise SandboxError("job.network=False but network namespaces are unavailable here")
                argv.append("--net")
                layers.append("net_namespace")
            script += self._mount_script(job, work)
            if self._stage:
                layers += ["private_tmp", "disk_quota"]
        chain: list[str] = []
        s = self._support
        if s.prlimit:
            mem = job.memory_mb * 1024 * 1024
            cpu = int(math.ceil(job.timeout_s)) + 1
            disk = job.max_disk_mb * 1024 * 1024
            chain += [s.prlimit, f"--as={mem}", f"--cpu={cpu}:{cpu + 2}", f"--fsize={disk}", "--core=0"]
            layers += ["rlimit_as", "rlimit_cpu", "rlimit_fsize", "rlimit_core"]
            if self._drop or not s.is_root:
                # The kernel ignores RLIMIT_NPROC for root; it is per-uid, so it is a backstop
                # shared by concurrent jobs (the per-job pids cgroup is the precise limit).
                chain.append(f"--nproc={self._pids_max * 4}")
                layers.append("rlimit_nproc")
            chain.append("--")
        if self._drop:
            uid, gid = self._drop
            chain += [str(s.setpriv), f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                      "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--pdeathsig=KILL", "--"]
            layers += ["uid_nobody", "readonly_task_files"]
        chain += [self._python, "-I", self._runner]
        script.append("exec " + " ".join(q(a) for a in chain))
        argv += ["/bin/sh", "-c", "\n".join(script), "agentopt-guest"]
        return _Plan(argv=argv, env=env, layers=layers, cgroup=cgroup)

    def _mount_script(self, job: SandboxJob, work: Path) -> list[str]:
        """Shell lines (run as root inside the new mount namespace) for private tmp and quotas."""
        if not self._stage:
            return []
        q = shlex.quote
        stage = self._stage
        keep = iso.minimal_roots([*self._expose, str(self._root)])
        # Each line is a fork+exec (~3 ms): batch the mkdirs.
        lines = [f"mount -t tmpfs -o size=1m,mode=0700 agentopt-stage {q(stage)}",
                 "mkdir " + " ".join(q(f"{stage}/{i}") for i in range(len(keep)))]
        for i, path in enumerate(keep):
            lines.append(f"mount --rbind {q(path)} {q(f'{stage}/{i}')}")
        for hidden in self._hidden:
            lines.append(f"mount -t tmpfs -o size=1m,mode=0755 agentopt-hide {q(hidden)}")
        for tmp in _PRIVATE_TMP_DIRS:
            if os.path.isdir(tmp) and not os.path.islink(tmp):
                lines.append(f"mount -t tmpfs -o size={job.max_disk_mb}m,mode=1777 agentopt-tmp {q(tmp)}")
        lines.append("mkdir -p " + " ".join(q(p) for p in keep))
        for i, path in enumerate(keep):
            lines.append(f"mount --move {q(f'{stage}/{i}')} {q(path)}")
        lines.append(f"umount {q(stage)}")
        owner = f",uid={self._drop[0]},gid={self._drop[1]}" if self._drop else ""
        lines += [f"mount -t tmpfs -o size={job.max_disk_mb}m,mode=0700{owner} agentopt-work {q(str(work))}",
                  f"mkdir -m 0700 {q(str(work / 'tmp'))}"]
        if self._drop:
            lines.append(f"chown {self._drop[0]}:{self._drop[1]} {q(str(work / 'tmp'))}")
        lines.append(f"cd {q(str(work))}")  # the cwd still pointed at the dir under the new tmpfs
        return lines

    # ------------------------------------------------------------------ run

    async def run(self, job: SandboxJob) -> JobResult:
        nonce = new_nonce()
        job_dir = Path(tempfile.mkdtemp(prefix="job-", dir=self._root))
        cgroup: cgroups.JobCgroup | None = None
        try:
            program, evaluator, work = await asyncio.to_thread(self._prepare_dirs, job, job_dir)
            cgroup = cgroups.JobCgroup.create(pids_max=self._pids_max, memory_bytes=job.memory_mb * 1024 * 1024)
            plan = self._plan(job, work, cgroup)
            payload = build_job_payload(job, evaluator_path=str(evaluator), program_path=str(program),
                                        lib_dir=self._lib_dir, nonce=nonce)
            return await self._execute(job, plan, work, payload, nonce)
        finally:
            if cgroup is not None:
                await cgroup.remove()
            await asyncio.to_thread(shutil.rmtree, job_dir, True)

    async def _execute(self, job: SandboxJob, plan: _Plan, work: Path, payload: bytes, nonce: str) -> JobResult:
        t0 = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *plan.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, cwd=str(work), env=plan.env, start_new_session=True)
        except OSError as exc:
            raise SandboxError(f"cannot start the local sandbox: {exc}") from exc
        assert proc.stdin and proc.stdout and proc.stderr
        out_task = asyncio.create_task(_read_capped(proc.stdout, job.max_result_bytes + _FRAME_HEADER_MAX + 1))
        err_task = asyncio.create_task(_read_capped(proc.stderr, job.max_output_bytes))
        timed_out = False
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancellation (Ctrl-C)
        # that arrives as the guest exits. The try starts before the job is sent, so a cancel
        # while writing it still kills the guest.
        try:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                proc.stdin.write(payload)
                await proc.stdin.drain()
                proc.stdin.close()
            try:
                async with asyncio.timeout(job.timeout_s):
                    await proc.wait()
            except TimeoutError:
                timed_out = True
                _signal_tree(proc.pid, plan.cgroup, signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_TERM_GRACE_S):
                        await proc.wait()
        finally:
            # Always sweep: nothing the job started may outlive it.
            _signal_tree(proc.pid, plan.cgroup, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await proc.wait()
        wall = time.monotonic() - t0
        done, pending = await asyncio.wait([out_task, err_task], timeout=2.0)
        for task in pending:  # a leaked fd holder outside our reach: stop listening
            task.cancel()
        result_bytes, _ = out_task.result() if out_task in done else (b"", 0)
        err_bytes, err_total = err_task.result() if err_task in done else (b"", 0)
        stderr = err_bytes.decode("utf-8", "replace")
        if err_total > len(err_bytes):
            stderr += f"\n[... {err_total - len(err_bytes)} more bytes of output discarded]"
        oom = plan.cgroup.oom_killed() if plan.cgroup else False
        result = job_result(job=job, nonce=nonce, result_bytes=result_bytes, returncode=proc.returncode,
                            timed_out=timed_out, stdout="", stderr=stderr, wall_s=wall, isolation=plan.layers,
                            oom_killed=oom)
        peak = plan.cgroup.peak_bytes() if plan.cgroup else None
        if peak is not None:
            result.peak_memory_mb = round(peak / (1 << 20), 1)
        return result

    async def close(self) -> None:
        await asyncio.to_thread(shutil.rmtree, self._root, True)


async def _read_capped(stream: asyncio.StreamReader, cap: int) -> tuple[bytes, int]:
    """Read to EOF keeping at most ``cap`` bytes; the rest is read and dropped so a guest
    printing gigabytes neither blocks on a full pipe nor grows host memory."""
    kept = bytearray()
    total = 0
    while True:
        chunk = await stream.read(1 << 16)
        if not chunk:
            return bytes(kept), total
        total += len(chunk)
        room = cap - len(kept)
        if room > 0:
            kept += chunk[:room]


def _ns_init_pids(pid: int) -> list[int]:
    """Children of the unshare process: the namespace's pid 1 as the host sees it."""
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def _signal_tree(pid: int, cgroup: cgroups.JobCgroup | None, sig: int) -> None:
    """Signal the process group, the namespace init (kills the whole pid namespace on SIGKILL)
    and every process in the job's cgroup (catches setsid'd escapees without a namespace)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    for child in _ns_init_pids(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child, sig)
    if cgroup is not None:
        cgroup.signal(sig)


def clean_stale_leftovers(temp_root: str | None = None) -> int:
    """Remove job cgroups and sandbox temp dirs left by controllers that no longer run.

    A controller killed with -9 cannot clean up after itself; the next run (or resume) does.
    Only leftovers whose owner pid (in the name) is dead are touched. Returns how many.
    """
    removed = cgroups.clean_stale()
    base = Path(temp_root or tempfile.gettempdir())
    try:
        entries = list(base.glob(f"{_ROOT_PREFIX}*"))
    except OSError:
        entries = []
    for d in entries:
        owner = d.name[len(_ROOT_PREFIX):].split("-", 1)[0]
        if owner.isdigit() and d.is_dir() and not cgroups.pid_alive(int(owner)):
            shutil.rmtree(d, ignore_errors=True)
            removed += 1
    if removed:
        log.info("removed %d leftovers of earlier sandbox runs", removed)
    return removed


def _gpu_env(gpus: GpuValue | GpuRequest) -> dict[str, str]:
    """CUDA devices the guest may see: none unless the task asks (the factory checked they exist).

    ``"all"`` leaves the visible set as the host has it; a count exposes the first N devices;
    a list exposes exactly those ids.
    """
    request = GpuRequest.parse(gpus)
    if request.all:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        return {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    if request.count:
        return {"CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in range(request.count))}
    return {"CUDA_VISIBLE_DEVICES": ",".join(request.ids)}


def _real_private_tmp_dirs() -> list[str]:
    """The private-tmp dirs as real paths (``/tmp`` may itself be a symlink on some hosts)."""
    return [os.path.realpath(t) for t in _PRIVATE_TMP_DIRS if os.path.isdir(t) and not os.path.islink(t)]

