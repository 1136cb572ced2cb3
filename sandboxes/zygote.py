"""Warm local sandbox worker: set up isolation once, then fork one fully isolated job per request.

Started by the host (agentopt/sandbox/warm_local.py) as ``<python> -I zygote.py <host pid>`` with
a clean environment, running as root, with a SOCK_SEQPACKET control socket as fd 0. Stdlib only;
never imports agentopt.

Process tree (every arrow is a fork; nothing is exec'd per job)::

    outer      PDEATHSIG=KILL (dies with the host), waits for the zygote
     zygote    pid 1 of the worker pid namespace, own mount namespace; has imported the runner
     |         and the task's evaluator (with its heavy imports) once. PDEATHSIG=KILL from outer.
     |         When it dies the kernel kills every process in its pid namespace, nested ones too.
      init     per job, forked straight into a fresh pid namespace (the zygote unshares it for
               its next child only, then sets its own back), pid 1 there: join the job's cgroups,
               make its mount (and net) namespace, mount /proc and private tmpfs over /tmp,
               /var/tmp, /dev/shm and the work dir, rlimits, drop to nobody (no groups, no
               capabilities, no_new_privs), clean env, then the runner's job code.

Per job the host sends one message: a small JSON header {op: "run", id, spare, preload_key, ...},
a newline, and the job's JSON {job: <runner job>, work, env, limits, ...}, plus three file
descriptors (result pipe, output pipe, status pipe) by SCM_RIGHTS. The zygote reads the header
only and hands the job's bytes on as they are: every object it builds between two forks lands on
pages the next fork shares, and its first write to each costs a copy-on-write fault (decoding the
job here cost ~55 of its ~236 faults per job). The zygote writes the job's exit status to the
status pipe when it has reaped the job's init (by then every process of the job is gone: the
kernel empties a pid namespace before its init is reaped); no job process holds that pipe. Were it gone, the zygote answers {op: "done", id, status} on the control socket instead.
Setup failures exit with code 125 and a message on the job's output; the host then discards this
worker. A *spare* init is forked while a job runs and does the job-independent half of the set-up
(cgroup, namespaces, mounts) before its job exists (see _spare_init); a job's header asks for the
spares of the jobs after it ("next_spares": a list of what an {op: "spare"} message holds),
forked back to back. {op: "preload"} imports a task's evaluator before its first job (the host
sends it while a run is still starting up).
"""

from __future__ import annotations

import binascii
import ctypes
import errno
import gc
import importlib.util
import json
import os
import random
import resource
import select
import signal
import socket
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NAME, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 15, 24, 38
FORKSERVER_FD = 3  # where a job's evaluator finds its candidate forkserver's socket
SETUP_FAILED = 125
_MAX_MSG = 1 << 20

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                       data.encode() if data else None), f"mount {target}")


def _unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def _prctl(option: int, arg: int) -> None:
    _check(_libc.prctl(option, arg, 0, 0, 0), f"prctl {option}")


def _tmpfs(target: str, size_mb: int, mode: str, owner: tuple[int, int] | None = None) -> None:
    opts = f"size={size_mb}m,mode={mode}"
    if owner:
        opts += f",uid={owner[0]},gid={owner[1]}"
    _mount("agentopt-tmp", target, "tmpfs", MS_NOSUID | MS_NODEV, opts)


def _cover(dirs: list[str], keep: list[str], size_mb: int, mode: str) -> None:
    """Mount a fresh tmpfs over each of ``dirs``, binding the ``keep`` paths back into place.

    The kept paths are held open by O_PATH fds across the cover and bound from /proc/self/fd,
    so no staging mount point is needed (the cold path uses mount --move through a stage dir).
    """
    held = []
    for path in keep:
        if any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs):
            held.append((path, os.open(path, os.O_PATH)))
    for d in dirs:
        _tmpfs(d, size_mb, mode)
    for path, fd in held:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "a").close()  # noqa: SIM115 - a mount point for a file bind
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)


def _drop_privileges(uid: int, gid: int) -> None:
    """nobody, no groups, empty bounding set, no_new_privs (what ``setpriv`` does in the cold path)."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    try:
        last = int(open("/proc/sys/kernel/cap_last_cap").read())
    except (OSError, ValueError):
        last = 40
    for cap in range(last + 1):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != errno.EINVAL:
            raise OSError(ctypes.get_errno(), "cannot drop capability bounding set")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getgroups():
        raise OSError("privilege drop did not take effect")


# ------------------------------------------------------------------ per job (in the job's init)


def _enter_job_namespaces(cfg: dict[str, Any], cgroup_procs: list[str], network: bool, disk_mb: int) -> int:
    """In a fresh fork (pid 1 of its own pid namespace): join the job's cgroups, make its mount (and
    net) namespace, its own /proc and fresh tmpfs over /tmp, /var/tmp, /dev/shm. Returns this
    process's pid as the zygote sees it (what the candidate zygote needs to find the namespaces)."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _libc.prctl(PR_SET_NAME, b"ao-job", 0, 0, 0)  # what ps/top/perf show for a job's init
    outer_pid = int(os.readlink("/proc/self"))  # still the zygote's /proc here
    for path in cgroup_procs:
        with open(path, "w") as f:
            f.write("0")
    _unshare(CLONE_NEWNS | (0 if network else CLONE_NEWNET))
    os.setsid()
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _cover(cfg["private_tmp"], cfg["expose"], disk_mb, "1777")
    return outer_pid


def _write_inputs(files_dir: str, files: dict[str, str]) -> None:
    """The job's program, evaluator and extra files (base64), written into a tmpfs of this job's
    own over ``files_dir``: root-owned, 0644, so the job reads them and cannot change them (what
    the host's job dir gives the cold path, without a dir per job on the host)."""
    data = {name: binascii.a2b_base64(text) for name, text in files.items()}
    size_mb = sum(map(len, data.values())) // (1 << 20) + 1
    _tmpfs(files_dir, size_mb, "0755")
    for name, content in data.items():
        if not name or "/" in name or name in (".", ".."):
            raise OSError(f"bad input file name {name!r}")
        fd = os.open(os.path.join(files_dir, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)


def _request_forkserver(cz: socket.socket, msg: dict[str, Any], outer_pid: int, theirs: int, out_fd: int) -> None:
    """Ask the clean candidate zygote for this job's forkserver, inside the job's namespaces (made
    by now); its children print into the job's output pipe like every other job process."""
    request = {key: msg[key] for key in ("cgroup_procs", "work", "limits", "env", "network")}
    request["init_pid"] = outer_pid
    socket.send_fds(cz, [json.dumps(request).encode()], [theirs, out_fd])


def _job_init(msg: dict[str, Any], cfg: dict[str, Any], result_fd: int, out_fd: int, runner: Any,
              module: Any, fs: tuple[int, int] | None, cz: socket.socket | None, *,
              outer_pid: int | None = None, early_error: str | None = None) -> None:
    """Runs as pid 1 of the job's namespaces; never returns.

    ``fs``: (this job's end, the forkserver's end) of the candidate forkserver channel. A spare
    (see _spare_init) made its namespaces before the job came (``outer_pid`` set); ``early_error``
    is how that failed, reported here so the host discards the worker.
    """
    try:
        os.dup2(out_fd, 2)
        if early_error:
            raise OSError(early_error)
        disk = int(msg["disk_mb"])
        if outer_pid is None:
            outer_pid = _enter_job_namespaces(cfg, msg["cgroup_procs"], bool(msg.get("network")), disk)
        drop = cfg.get("drop")
        if msg.get("files") is not None:
            _write_inputs(msg["files_dir"], msg["files"])
        work = msg["work"]
        _tmpfs(work, disk, "0700", tuple(drop) if drop else None)
        os.mkdir(os.path.join(work, "tmp"), 0o700)
        if drop:
            os.chown(os.path.join(work, "tmp"), drop[0], drop[1])
        os.chdir(work)
        fs_fd = None
        if fs is not None and cz is not None:
            _request_forkserver(cz, msg, outer_pid, fs[1], out_fd)
            fs_fd = fs[0]
        lim = msg["limits"]
        for name, value in lim.items():
            which = getattr(resource, name)
            soft = value[0] if isinstance(value, list) else value
            hard = value[1] if isinstance(value, list) else value
            resource.setrlimit(which, (soft, hard))
        os.dup2(result_fd, 1)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        first_closed = 3
        if fs_fd is not None:
            os.dup2(fs_fd, FORKSERVER_FD, inheritable=False)
            first_closed = FORKSERVER_FD + 1
        os.closerange(first_closed, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        if drop:
            _drop_privileges(drop[0], drop[1])
        os.environ.clear()
        os.environ.update(msg["env"])
        if fs_fd is not None:
            os.environ["AGENTOPT_GUEST_FORKSERVER_FD"] = str(FORKSERVER_FD)
        # A fork copies the zygote's RNG states: reseed so unseeded jobs differ as cold starts do.
        random.seed()
        np_random = sys.modules.get("numpy.random")
        if np_random is not None:
            try:
                np_random.seed()
            except Exception:  # noqa: BLE001
                pass
    except BaseException as exc:  # noqa: BLE001 - any setup failure: no job code runs
        try:
            os.write(2, f"agentopt-zygote: job setup failed: {type(exc).__name__}: {exc}\n".encode())
        finally:
            os._exit(SETUP_FAILED)
    os._exit(runner.serve(msg["job"], module))


def _spare_init(chan: socket.socket, spec: dict[str, Any], cfg: dict[str, Any], runner: Any,
                modules: dict[str, Any], cz: socket.socket | None) -> None:
    """pid 1 of a spare's namespaces, forked before its job exists: join the job cgroup, make the
    namespaces and private mounts, then wait for the job (message + result/output fds and the
    forkserver channel's two ends) from the zygote. Never returns.

    Why ahead of time: joining a cgroup (a process migration) waits for an RCU grace period, and
    the fork, the namespaces and the mounts are a few ms more; a spare does them while the job
    before it runs."""
    early_error = None
    outer_pid = 0
    disk_mb = int(spec["disk_mb"])
    try:
        outer_pid = _enter_job_namespaces(cfg, spec["cgroup_procs"], False, disk_mb)
    except BaseException as exc:  # noqa: BLE001 - reported on the job's output once it comes
        early_error = f"{type(exc).__name__}: {exc}"
    try:
        data, fds, _flags, _addr = socket.recv_fds(chan, _MAX_MSG, 4)
    except OSError:
        os._exit(0)
    if not data or len(fds) < 2:
        os._exit(0)  # not used (the zygote closed the channel)
    chan.close()
    # Received fds take the lowest free numbers (0 is free here): move them clear of 0-3 first.
    moved = []
    for i, fd in enumerate(fds):
        moved.append(os.dup2(fd, 1010 + i, inheritable=False))
        os.close(fd)
    msg = json.loads(data)
    if int(msg.get("disk_mb", -1)) != disk_mb or msg.get("network"):
        early_error = early_error or "spare made for another job shape"
    _job_init(msg, cfg, moved[0], moved[1], runner, modules.get(msg.get("preload_key") or ""),
              (moved[2], moved[3]) if len(moved) == 4 else None, cz, outer_pid=outer_pid,
              early_error=early_error)


# ------------------------------------------------------------------ the candidate zygote


def _start_candidate_zygote(control: socket.socket, cfg: dict[str, Any]) -> socket.socket | None:
    """Fork, before any evaluator is imported or any job seen, the process that makes forkservers.

    Why a second zygote: ``call_candidate``'s children must not be forks of the evaluator (they
    could read its module state, e.g. reference answers). This one holds only the stdlib and
    agentopt_guest; each job's forkserver is forked from it and moved into that job.
    """
    try:
        here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    except OSError:
        return None
    pid = os.fork()
    if pid:
        there.close()
        return here
    try:
        control.close()
        here.close()
        sys.path.insert(0, cfg["lib_dir"])
        import agentopt_guest  # noqa: F401 - the forkserver code every job's forkserver runs

        _candidate_zygote(there, cfg)
    finally:
        os._exit(0)


def _enter_job(req: dict[str, Any], cfg: dict[str, Any], fd: int, out_fd: int) -> None:
    """In a fresh fork of the candidate zygote: join the job's namespaces and cgroup, drop to nobody,
    then serve as the job's candidate forkserver. Never returns."""
    code = 1
    try:
        _libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
        pid = int(req["init_pid"])
        kinds = [("pid", CLONE_NEWPID), ("mnt", CLONE_NEWNS)]
        if not req.get("network"):
            kinds.insert(0, ("net", CLONE_NEWNET))
        handles = [(os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY), flag) for name, flag in kinds]
        for procs in req["cgroup_procs"]:
            with open(procs, "w") as f:
                f.write("0")
        for nsfd, flag in handles:
            _check(_libc.setns(nsfd, flag), "setns")
            os.close(nsfd)
        if os.fork():  # setns(pid) applies to children: the forkserver is the job's
            os._exit(0)
        os.setsid()
        os.chdir(req["work"])
        for name, value in req["limits"].items():
            soft = value[0] if isinstance(value, list) else value
            hard = value[1] if isinstance(value, list) else value
            resource.setrlimit(getattr(resource, name), (soft, hard))
        # The received fds may sit on 0-4 (this process closed its stdin): move them clear first.
        fd, out_fd = os.dup2(fd, 1020, inheritable=False), os.dup2(out_fd, 1021, inheritable=False)
        os.dup2(fd, FORKSERVER_FD, inheritable=False)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        null = os.open("/dev/null", os.O_RDWR)
        if null != 0:
            os.dup2(null, 0)
        os.closerange(FORKSERVER_FD + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        drop = cfg.get("drop")
        if drop:
            _drop_privileges(drop[0], drop[1])
        os.environ.clear()
        os.environ.update(req["env"])
        random.seed()
        import agentopt_guest

        code = agentopt_guest._server_main(FORKSERVER_FD)
    except BaseException as exc:  # noqa: BLE001 - the evaluator falls back to its own forkserver
        try:
            os.write(2, f"agentopt-zygote: candidate forkserver setup failed: {exc}\n".encode())
        except OSError:
            pass
    os._exit(code)


def _candidate_zygote(sock: socket.socket, cfg: dict[str, Any]) -> None:
    """Fork one forkserver per request (sent by a job's init with its pid as the zygote sees it)."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, _MAX_MSG, 2)
        except InterruptedError:
            continue
        if not data:
            return
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            continue
        if os.fork() == 0:
            sock.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _enter_job(json.loads(data), cfg, fds[0], fds[1])
        for fd in fds:
            os.close(fd)


# ------------------------------------------------------------------ the zygote


class Zygote:
    """pid 1 of the worker namespace: preload, fork jobs, reap, report."""

    def __init__(self, sock: socket.socket, cfg: dict[str, Any], runner: Any, cz: socket.socket | None) -> None:
        self.sock = sock
        self.cz = cz  # channel to the candidate zygote (None: evaluators start their own)
        self.cfg = cfg
        self.runner = runner
        self.jobs: dict[int, tuple[str, int]] = {}  # job init pid -> (job id, status pipe)
        self.spares: dict[str, tuple[int, socket.socket, frozenset[str]]] = {}  # id -> (pid, channel, preloaded)
        self.modules: dict[str, Any] = {}  # preload key -> evaluator module (None: import per job)
        self.pidns = os.open("/proc/self/ns/pid", os.O_RDONLY)  # to come back to after each job's unshare

    def send(self, obj: dict[str, Any]) -> None:
        self.sock.send(json.dumps(obj).encode())

    def preload(self, key: str, path: str, env: dict[str, str]) -> Any:
        """Import the task's evaluator (and so its heavy imports) once, as nobody where we drop to it."""
        if key in self.modules:
            return self.modules[key]
        module = None
        drop = self.cfg.get("drop")
        saved_env = dict(os.environ)
        try:
            os.environ.update({k: v for k, v in env.items() if k not in ("HOME", "TMPDIR")})
            if drop:
                os.setegid(drop[1])
                os.seteuid(drop[0])
            for p in (os.path.dirname(path), self.cfg["lib_dir"]):
                if p not in sys.path:
                    sys.path.insert(0, p)
            name = f"agentopt_evaluator_{len(self.modules)}"  # unique here (no hashlib: 0.5 MB per fork)
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise ImportError(path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        except BaseException as exc:  # noqa: BLE001 - the job imports it itself and reports the error
            sys.stderr.write(f"agentopt-zygote: preload of {os.path.basename(path)} failed: {exc!r}\n")
            module = None
        finally:
            if drop:
                os.seteuid(0)
                os.setegid(0)
            os.environ.clear()
            os.environ.update(saved_env)
            try:
                sys.stderr.flush()
            except Exception:  # noqa: BLE001
                pass
        self.modules[key] = module
        gc.freeze()  # the evaluator's objects too: see serve()
        return module

    def _fork(self) -> int:
        """fork(); the child drops the zygote's channels (control, spares, status pipes) and its
        SIGCHLD handler."""
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self.sock.close()
            for other in self.spares.values():
                other[1].close()
            for _job, status_fd in self.jobs.values():
                os.close(status_fd)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        return pid

    def _fork_init(self) -> int:
        """fork() a child that is pid 1 of a fresh pid namespace (unshare, fork, then set this
        process's namespace for children back: the next fork must not land in the same one)."""
        _unshare(CLONE_NEWPID)
        try:
            pid = self._fork()
        except BaseException:
            self._restore_pidns()
            raise
        if pid:  # (both are "pid 1" of their namespace: only fork's return value tells them apart)
            self._restore_pidns()
        return pid

    def _restore_pidns(self) -> None:
        _check(_libc.setns(self.pidns, CLONE_NEWPID), "setns back to the worker pid namespace")

    def make_spare(self, msg: dict[str, Any]) -> None:
        """Fork, for a later job, an init that joins the given cgroup and makes its namespaces now."""
        here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = self._fork_init()
        if pid == 0:
            try:
                here.close()
                _spare_init(there, msg, self.cfg, self.runner, dict(self.modules), self.cz)
            finally:
                os._exit(SETUP_FAILED)
        there.close()
        self.spares[str(msg["id"])] = (pid, here, frozenset(self.modules))

    def use_spare(self, head: dict[str, Any], body: bytes, fds: list[int],
                  pair: tuple[socket.socket, socket.socket] | None) -> int:
        """Hand the job to its spare init: its pid, or 0 (spare discarded) when it cannot take it."""
        spare = self.spares.pop(str(head.get("spare")), None) if head.get("spare") else None
        if spare is None:
            return 0
        pid, sock, keys = spare
        usable = not head.get("network") and (not head.get("preload_key") or head["preload_key"] in keys)
        if usable:
            try:
                socket.send_fds(sock, [body], [*fds, *(p.fileno() for p in pair)] if pair else fds)
            except OSError:
                usable = False
        sock.close()
        if not usable:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return 0
        return pid

    def start_job(self, head: dict[str, Any], body: bytes, fds: list[int]) -> None:
        """Start the job: in its spare init, else in a fresh one (which decodes ``body`` itself)."""
        result_fd, out_fd, status_fd = fds
        module = None
        key, path = head.get("preload_key"), head.get("preload_path")
        if key and path:
            module = self.modules[key] if key in self.modules else self.preload(key, path, json.loads(body)["env"])
        pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) if head.get("forkserver") and self.cz else None
        pid = self.use_spare(head, body, [result_fd, out_fd], pair)
        if not pid:
            pid = self._fork_init()
            if pid == 0:
                try:
                    os.close(status_fd)
                    fs = (pair[0].fileno(), pair[1].fileno()) if pair else None
                    _job_init(json.loads(body), self.cfg, result_fd, out_fd, self.runner, module, fs, self.cz)
                finally:
                    os._exit(SETUP_FAILED)
        os.close(result_fd)
        os.close(out_fd)
        if pair:
            pair[0].close()
            pair[1].close()
        self.jobs[pid] = (str(head["id"]), status_fd)

    def reap(self) -> None:
        """Reap exited inits; a job's status goes to its status pipe (the host's event loop reads
        it), or on the control socket when that pipe is gone."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for sid, spare in list(self.spares.items()):
                if spare[0] == pid:  # a spare died before its job came: the job will not use it
                    spare[1].close()
                    del self.spares[sid]
            job = self.jobs.pop(pid, None)
            if job is None:
                continue
            job_id, status_fd = job
            code = os.waitstatus_to_exitcode(status)
            if code < 0:
                code = 128 - code  # like unshare(1): killed by signal N -> 128+N
            try:
                os.write(status_fd, b"%d\n" % code)
            except OSError:
                self.send({"op": "done", "id": job_id, "status": code})
            finally:
                os.close(status_fd)

    def kill(self, job_id: str) -> None:
        for pid, (jid, _fd) in self.jobs.items():
            if jid == job_id:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def serve(self) -> int:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        # Every fork shares the zygote's pages copy-on-write; a collection in a job would touch
        # (and so copy) every object the zygote holds. Frozen objects are never scanned.
        gc.freeze()
        self.send({"op": "ready", "pid": os.getpid()})
        while True:
            ready, _, _ = select.select([self.sock, wake_r], [], [])
            if wake_r in ready:
                os.read(wake_r, 4096)
            self.reap()
            if self.sock not in ready:
                continue
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.sock, _MAX_MSG, 4)
            except InterruptedError:
                continue
            if not data:
                return 0  # host gone: our death kills every job
            head_bytes, _, body = data.partition(b"\n")  # JSON never holds a raw newline
            msg = json.loads(head_bytes)
            if msg.get("op") == "run" and len(fds) == 3 and body:
                self.start_job(msg, body, fds)
                for spare in msg.get("next_spares") or ():
                    self.make_spare(spare)
            elif msg.get("op") == "spare":
                self.make_spare(msg)
            elif msg.get("op") == "preload" and msg.get("preload_key") and msg.get("preload_path"):
                self.preload(msg["preload_key"], msg["preload_path"], msg.get("env") or {})
            elif msg.get("op") == "kill":
                self.kill(str(msg.get("id")))
            else:
                for fd in fds:
                    os.close(fd)


def _load_runner(path: str) -> Any:
    spec = importlib.util.spec_from_file_location("agentopt_runner", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["agentopt_runner"] = module
    spec.loader.exec_module(module)
    return module


def main() -> int:
    host_pid = int(sys.argv[1])
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != host_pid:  # the host died before we armed PDEATHSIG
        return 1
    sock = socket.socket(fileno=0)
    data, _fds, _flags, _addr = socket.recv_fds(sock, _MAX_MSG, 0)
    cfg = json.loads(data)
    _unshare(CLONE_NEWNS | CLONE_NEWPID)
    pid = os.fork()
    if pid:
        sock.close()
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                return min(255, abs(os.waitstatus_to_exitcode(status)))
            except InterruptedError:
                continue
    # The zygote: pid 1 of the worker pid namespace.
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _libc.prctl(PR_SET_NAME, b"ao-zygote", 0, 0, 0)
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if cfg.get("hidden"):
        _cover(cfg["hidden"], cfg["expose"], 1, "0755")
    runner = _load_runner(cfg["runner"])
    cz = _start_candidate_zygote(sock, cfg)
    return Zygote(sock, cfg, runner, cz).serve()


if __name__ == "__main__":
    sys.exit(main())
