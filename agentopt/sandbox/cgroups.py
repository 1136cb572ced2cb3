"""Per-job cgroups for the local backend: one pids limit and one memory limit per JOB.

Why cgroups and not only rlimits: ``RLIMIT_AS`` caps each process, so a candidate that forks
four children of 768 MiB under ``memory_mb: 1024`` used 3 GiB of host memory. A memory cgroup
caps the job as a whole, and it counts tmpfs pages (the job's private ``/tmp`` and work dir)
the job writes. The pids cgroup stops fork bombs and is the list of processes to kill.

Both cgroup layouts are handled:
- v2 (unified): one dir ``/sys/fs/cgroup/agentopt/job-*`` with ``pids`` and ``memory`` enabled;
  ``cgroup.kill`` ends every process in it at once.
- v1 (hybrid, as in many containers): a dir in the ``pids`` hierarchy and one in the ``memory``
  hierarchy. The memory dir is created under the cgroup this process already runs in, so the
  job stays inside whatever limit the host put on us.

Names carry the owning controller's pid (``job-<pid>-<token>``), so a later run can remove the
leftovers of a controller that was killed (:func:`clean_stale`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_ROOT = Path("/sys/fs/cgroup")
_NAME = "agentopt"
_STALE_RE = re.compile(r"^(?:job|w)-(\d+)-[0-9a-f]+$")


@dataclass(frozen=True)
class CgroupSupport:
    """Where per-job cgroups can be created; ``None`` = that controller is unavailable."""

    version: int  # 1 or 2 (0: no usable cgroup fs)
    pids_parent: Path | None
    memory_parent: Path | None


def _own_v1_path(controller: str) -> str:
    """This process's cgroup path in a v1 hierarchy ('/' when unknown)."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controller in controllers.split(","):
                return path
    except (OSError, ValueError):
        pass
    return "/"


def _try_parent(parent: Path, probe_files: dict[str, str], enable: str | None = None) -> Path | None:
    """Create ``parent`` (and optionally enable controllers), then prove a child can be limited."""
    probe = parent / f"probe-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        parent.mkdir(exist_ok=True)
        if enable:
            (parent / "cgroup.subtree_control").write_text(enable)
        probe.mkdir()
        for name, value in probe_files.items():
            (probe / name).write_text(value)
        return parent
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()


@functools.lru_cache(maxsize=1)
def detect() -> CgroupSupport:
    """Probe once which per-job controllers this process may create (needs root in practice)."""
    if os.geteuid() != 0:
        return CgroupSupport(0, None, None)
    v1_pids, v1_mem = _ROOT / "pids", _ROOT / "memory"
    if (v1_pids / "cgroup.procs").exists() or (v1_mem / "cgroup.procs").exists():
        pids = _try_parent(v1_pids / _NAME, {"pids.max": "8"}) if (v1_pids / "cgroup.procs").exists() else None
        mem = None
        if (v1_mem / "cgroup.procs").exists():
            own = v1_mem / _own_v1_path("memory").lstrip("/")
            for base in (own, v1_mem):
                mem = _try_parent(base / _NAME, {"memory.limit_in_bytes": str(64 << 20)})
                if mem:
                    break
        return CgroupSupport(1, pids, mem)
    if (_ROOT / "cgroup.controllers").exists():
        try:
            available = set((_ROOT / "cgroup.controllers").read_text().split())
        except OSError:
            available = set()
        wanted = [c for c in ("pids", "memory") if c in available]
        if not wanted:
            return CgroupSupport(2, None, None)
        parent = _ROOT / _NAME
        try:
            (_ROOT / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted))
        except OSError:
            pass
        files = {"pids.max": "8"} if "pids" in wanted else {}
        if "memory" in wanted:
            files["memory.max"] = str(64 << 20)
        ok = _try_parent(parent, files, " ".join(f"+{c}" for c in wanted))
        if ok is None:
            return CgroupSupport(2, None, None)
        return CgroupSupport(2, ok if "pids" in wanted else None, ok if "memory" in wanted else None)
    return CgroupSupport(0, None, None)


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _keyed(path: Path, key: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            k, _, v = line.partition(" ")
            if k == key:
                return int(v)
    except (OSError, ValueError):
        pass
    return None


class JobCgroup:
    """The cgroup dir(s) of one job: create, join (by path), kill everything, read OOM/peak, remove."""

    def __init__(self, support: CgroupSupport, dirs: list[Path], memory_dir: Path | None,
                 pids_dir: Path | None) -> None:
        self.support = support
        self.dirs = dirs
        self.memory_dir = memory_dir
        self.pids_dir = pids_dir

    @classmethod
    def create(cls, *, pids_max: int, memory_bytes: int | None, prefix: str = "job") -> JobCgroup | None:
        """Make the job's cgroups (None when this machine offers neither controller).

        A controller that fails is left out (logged); the job's ``isolation`` list then says so.
        """
        s = detect()
        name = f"{prefix}-{os.getpid()}-{secrets.token_hex(6)}"
        made: list[Path] = []
        mem_dir: Path | None = None
        pids_dir: Path | None = None
        try:
            if s.version == 2 and (s.pids_parent or s.memory_parent):
                parent = s.pids_parent or s.memory_parent
                assert parent is not None
                d = parent / name
                d.mkdir()
                made.append(d)
                if s.pids_parent:
                    _write(d / "pids.max", str(pids_max))
                    pids_dir = d
                if s.memory_parent and memory_bytes:
                    _write(d / "memory.max", str(memory_bytes))
                    with contextlib.suppress(OSError):
                        _write(d / "memory.swap.max", "0")
                    mem_dir = d
            elif s.version == 1:
                if s.pids_parent:
                    d = s.pids_parent / name
                    d.mkdir()
                    made.append(d)
                    _write(d / "pids.max", str(pids_max))
                    pids_dir = d
                if s.memory_parent and memory_bytes:
                    d = s.memory_parent / name
                    d.mkdir()
                    made.append(d)
                    _write(d / "memory.limit_in_bytes", str(memory_bytes))
                    with contextlib.suppress(OSError):  # absent without swap accounting
                        _write(d / "memory.memsw.limit_in_bytes", str(memory_bytes))
                    mem_dir = d
        except OSError as exc:
            log.warning("could not create job cgroup %s: %s", name, exc)
            for d in reversed(made):
                with contextlib.suppress(OSError):
                    d.rmdir()
            return None
        if not made:
            return None
        return cls(s, made, mem_dir, pids_dir)

    @property
    def layers(self) -> list[str]:
        """Isolation labels this cgroup provides (JobResult.isolation vocabulary)."""
        out = []
        if self.pids_dir:
            out.append("pids_cgroup")
        if self.memory_dir:
            out.append("memory_cgroup")
        return out

    @property
    def procs_files(self) -> list[Path]:
        """Files a process writes ``0`` to in order to join (every hierarchy)."""
        return [d / "cgroup.procs" for d in self.dirs]

    def pids(self) -> list[int]:
        """Pids (as this process sees them) of everything in the job."""
        out: set[int] = set()
        for d in self.dirs:
            try:
                out.update(int(x) for x in (d / "cgroup.procs").read_text().split())
            except (OSError, ValueError):
                pass
        return sorted(out)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to every process in the job (SIGKILL uses ``cgroup.kill`` when the kernel has it)."""
        if sig == signal.SIGKILL and self.support.version == 2:
            with contextlib.suppress(OSError):
                _write(self.dirs[0] / "cgroup.kill", "1")
                return
        for p in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, sig)

    def oom_killed(self) -> bool:
        """Did the kernel OOM-kill a process of this job (the job hit its memory cap)?"""
        if self.memory_dir is None:
            return False
        name = "memory.events" if self.support.version == 2 else "memory.oom_control"
        return bool(_keyed(self.memory_dir / name, "oom_kill"))

    def peak_bytes(self) -> int | None:
        """Peak memory of the whole job (processes + tmpfs), where the kernel reports it."""
        if self.memory_dir is None:
            return None
        name = "memory.peak" if self.support.version == 2 else "memory.max_usage_in_bytes"
        return _read_int(self.memory_dir / name)

    def _rmdir_all(self) -> bool:
        """Remove the dirs that can go now (an empty cgroup's rmdir succeeds, an occupied one's
        fails with EBUSY); True when none is left."""
        left = []
        for d in self.dirs:
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                left.append(d)
        self.dirs = left
        return not left

    def _sweep(self) -> bool:
        """Kill what is left and try to remove the dirs once; True when all are gone."""
        self.signal(signal.SIGKILL)
        return self._rmdir_all()

    async def remove(self) -> bool:
        """Kill whatever is left and remove the dirs (retries while the kernel reaps)."""
        for _ in range(250):
            if self._sweep():
                return True
            await asyncio.sleep(0.02)
        log.warning("could not remove job cgroup(s) %s", ", ".join(map(str, self.dirs)))
        return False

    def remove_now(self) -> bool:
        """:meth:`remove` for threads without an event loop (worker shutdown, the cgroup pool).

        A finished job's cgroup is already empty (its pid namespace died with its init), so the
        dirs are removed first and the cgroup is only swept (its member lists read, SIGKILL)
        when that fails: two file reads less per job."""
        if self._rmdir_all():
            return True
        for _ in range(250):
            if self._sweep():
                return True
            time.sleep(0.02)
        log.warning("could not remove job cgroup(s) %s", ", ".join(map(str, self.dirs)))
        return False


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (zombies count as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def clean_stale() -> int:
    """Remove job cgroups whose controller process is gone (killed with -9, power loss...).

    Only dirs named ``job-<pid>-<hex>`` / ``w-<pid>-<hex>`` with a dead ``<pid>`` are touched;
    cgroups of live controllers (other runs on this machine) are left alone. Returns the count.
    """
    s = detect()
    removed = 0
    for parent in {p for p in (s.pids_parent, s.memory_parent) if p is not None}:
        try:
            entries = list(parent.iterdir())
        except OSError:
            continue
        for d in entries:
            m = _STALE_RE.match(d.name)
            if not m or not d.is_dir() or pid_alive(int(m.group(1))):
                continue
            for _ in range(50):
                try:
                    procs = [int(x) for x in (d / "cgroup.procs").read_text().split()]
                except (OSError, ValueError):
                    procs = []
                for p in procs:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(p, signal.SIGKILL)
                try:
                    d.rmdir()
                    removed += 1
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
    return removed
