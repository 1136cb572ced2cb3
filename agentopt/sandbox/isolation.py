"""Detect which process-isolation layers this machine allows, once per process.

Why probe instead of assume: containers, CI runners and laptops differ (no user namespaces,
no cgroup write access, not root, ``/root`` not traversable by ``nobody``). The local
sandbox asks here what it can use and records what it did use; the CLI compares the two
to warn when a run is weaker than the machine allows.
"""

from __future__ import annotations

import functools
import json
import os
import pwd
import shutil
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

_PROBE_TIMEOUT_S = 10.0
_CGROUP_NAME = "agentopt"


@dataclass(frozen=True)
class IsolationSupport:
    """What the machine offers. ``None`` means the layer is unavailable."""

    is_root: bool
    unshare: str | None  # unshare(1) that can make pid + mount namespaces
    unshare_net: bool  # ...and a network namespace
    bwrap: str | None  # bubblewrap that can start a sandbox
    setpriv: str | None  # for dropping root to nobody (uid, gid, caps, no_new_privs)
    prlimit: str | None  # sets rlimits in the exec chain (no preexec_fn in a threaded host)
    nobody: tuple[int, int] | None  # (uid, gid) of the unprivileged guest user
    pids_cgroup: Path | None  # a directory where per-job pids cgroups can be created

    def layers(self) -> list[str]:
        """Isolation labels the local sandbox can apply here (the JobResult.isolation vocabulary)."""
        out = ["process_group", "clean_env", "private_workdir", "result_pipe"]
        if self.prlimit:
            out += ["rlimit_as", "rlimit_cpu", "rlimit_fsize", "rlimit_core"]
        if self.unshare:
            out += ["pid_namespace", "mount_namespace", "private_tmp", "disk_quota"]
        if self.unshare_net:
            out.append("net_namespace")
        if self.pids_cgroup:
            out.append("pids_cgroup")
        if self.is_root and self.setpriv and self.nobody:
            out += ["uid_nobody", "rlimit_nproc", "readonly_task_files"]
        elif not self.is_root and self.prlimit:
            out.append("rlimit_nproc")
        return out


def _ok(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=_PROBE_TIMEOUT_S).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _pids_cgroup_dir() -> Path | None:
    """A writable pids-cgroup parent (v1 ``pids`` hierarchy or a v2 tree with pids enabled)."""
    candidates = [Path("/sys/fs/cgroup/pids")]
    v2_root = Path("/sys/fs/cgroup")
    try:
        if "pids" in (v2_root / "cgroup.subtree_control").read_text().split():
            candidates.append(v2_root)
    except OSError:
        pass
    for base in candidates:
        if not (base / "cgroup.procs").exists():
            continue
        parent = base / _CGROUP_NAME
        probe = parent / f"probe-{os.getpid()}"
        try:
            parent.mkdir(exist_ok=True)
            if base == v2_root:
                (parent / "cgroup.subtree_control").write_text("+pids")
            probe.mkdir()
            (probe / "pids.max").write_text("8")
            probe.rmdir()
            return parent
        except OSError:
            try:
                probe.rmdir()
            except OSError:
                pass
    return None


@functools.lru_cache(maxsize=1)
def detect() -> IsolationSupport:
    """Probe the machine once (a few ms of subprocesses) and cache the answer."""
    is_root = os.geteuid() == 0
    unshare = shutil.which("unshare")
    bwrap = shutil.which("bwrap")
    probes = {"bwrap": [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/",
                        "--proc", "/proc", "--dev", "/dev", "true"] if bwrap else None}
    if unshare:
        probes["pid"] = [unshare, "--pid", "--fork", "--kill-child", "--mount-proc", "true"]
        probes["net"] = [*probes["pid"][:-1], "--net", "true"]
    # The probes wait on subprocesses: run at once, they cost a run's start-up the slowest one.
    with ThreadPoolExecutor(max_workers=3) as pool:
        ok = dict(zip(probes, pool.map(lambda argv: bool(argv) and _ok(argv), probes.values()), strict=True))
    pid_ok = ok.get("pid", False)
    net_ok = pid_ok and ok.get("net", False)
    bwrap_ok = ok["bwrap"]
    try:
        pw = pwd.getpwnam("nobody")
        nobody: tuple[int, int] | None = (pw.pw_uid, pw.pw_gid)
    except KeyError:
        nobody = None
    return IsolationSupport(
        is_root=is_root,
        unshare=unshare if pid_ok else None,
        unshare_net=net_ok,
        bwrap=bwrap if bwrap_ok else None,
        setpriv=shutil.which("setpriv") if is_root else None,
        prlimit=shutil.which("prlimit"),
        nobody=nobody,
        pids_cgroup=_pids_cgroup_dir() if is_root else None,
    )


@functools.lru_cache(maxsize=8)
def interpreter_paths(python: str) -> tuple[str, ...]:
    """Directories the guest interpreter needs to read: prefixes and existing sys.path entries."""
    code = "import sys,json;print(json.dumps([sys.prefix,sys.base_prefix,sys.exec_prefix]+sys.path))"
    try:
        out = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True,
                             timeout=_PROBE_TIMEOUT_S, check=True).stdout
        paths = [p for p in json.loads(out) if p]
    except (OSError, subprocess.SubprocessError, ValueError):
        paths = []
    real = os.path.realpath(python)
    paths.append(os.path.dirname(real))
    return tuple(sorted({os.path.realpath(p) for p in paths if os.path.exists(p)}))


def first_hidden_ancestor(path: str) -> str | None:
    """The outermost directory on ``path``'s way that 'other' users cannot traverse (no o+x)."""
    parts = Path(path).parts
    current = Path(parts[0])
    for part in parts[1:]:
        try:
            mode = current.stat().st_mode
        except OSError:
            return None
        if not mode & stat.S_IXOTH:
            return str(current)
        current = current / part
    return None


def minimal_roots(paths: list[str]) -> list[str]:
    """Drop paths that lie inside another listed path (binding the outer one covers them)."""
    out: list[str] = []
    for p in sorted(set(paths), key=len):
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in out):
            out.append(p)
    return out
