"""Per-job cgroups made before their job and removed after it, off the job's path.

Why: creating a job's pids + memory cgroup (two mkdirs and three writes on cgroup v1) and
removing it after the job (kill what is left, two rmdirs, retried while the kernel reaps)
cost about a millisecond of the event loop's thread per warm job, between the controller's
submit and the result, plus a thread hop for the job dir's removal. A warm job's whole budget
is ~15 ms. Here one daemon thread per sandbox keeps a few fresh cgroups ready per memory
limit and removes used cgroups and job dirs in the background.

Why fresh cgroups and not reusing a cleaned one: on cgroup v1 the OOM-kill counter
(``memory.oom_control``) and ``pids.events`` cannot be reset, and a used memory cgroup keeps
the page cache its job charged (a job that read a 500 MB file would hand that charge, and a
peak no lower than it, to the next job). A fresh cgroup starts at zero on every counter, so
``oom_killed`` and ``peak_memory_mb`` stay exact per job. Its creation is cheap (~0.3 ms); it
only has to happen before the job.

Safety: a cgroup is handed out only after reading that it has no process in any of its
hierarchies (a pooled cgroup is never joined before it is handed out, so this only catches a
bug, and the cgroup is then removed instead). Everything still queued, and every pooled
cgroup, is removed by :meth:`CgroupPool.close`, which also runs at interpreter exit; a
controller killed with -9 leaves ``job-<pid>-*`` dirs that the next sandbox removes
(``cgroups.clean_stale``).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import queue
import shutil
import threading
from pathlib import Path

from agentopt.sandbox import cgroups

log = logging.getLogger(__name__)

READY_PER_LIMIT = 2  # fresh cgroups kept per memory limit (one job runs while the next one's spare waits)
_MAX_LIMITS = 4  # distinct memory limits pooled at once (a run uses one or two)


class CgroupPool:
    """Fresh per-job cgroups on demand; used ones (and job dirs) removed by a background thread."""

    def __init__(self, pids_max: int, ready: int = READY_PER_LIMIT) -> None:
        self._pids_max = pids_max
        self._ready = ready
        self._pool: dict[int, list[cgroups.JobCgroup]] = {}
        self._lock = threading.Lock()
        self._todo: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.handed_out = 0  # counters for tests and benchmarks
        self.made_on_path = 0  # take() found no ready cgroup and made one inline
        self.rejected = 0  # pooled cgroups found with a process in them (never handed out)
        atexit.register(self.close)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="agentopt-cgroup-pool", daemon=True)
            self._thread.start()

    def _make(self, memory_bytes: int) -> cgroups.JobCgroup | None:
        return cgroups.JobCgroup.create(pids_max=self._pids_max, memory_bytes=memory_bytes)

    def take(self, memory_bytes: int) -> cgroups.JobCgroup | None:
        """An empty, never-used cgroup with this memory limit (None: the machine offers none)."""
        while True:
            with self._lock:
                ready = self._pool.get(memory_bytes)
                cg = ready.pop() if ready else None
            if cg is None:
                break
            if not cg.pids():
                self.handed_out += 1
                self._queue("fill", memory_bytes)
                return cg
            self.rejected += 1
            log.warning("pooled cgroup %s is not empty; removing it", cg.dirs[0].name)
            self._queue("release", (cg, None))
        cg = self._make(memory_bytes)
        if cg is not None:
            self.made_on_path += 1
            self.handed_out += 1
            self._queue("fill", memory_bytes)
        return cg

    def release(self, cg: cgroups.JobCgroup | None, job_dir: Path | None = None) -> None:
        """Kill whatever is left in ``cg``, then remove it and ``job_dir``, in the background."""
        if cg is not None or job_dir is not None:
            self._queue("release", (cg, job_dir))  # one wake-up of the thread per job

    def _queue(self, op: str, arg: object) -> None:
        if self._closed:  # after close(): do it here and now, nothing may be left behind
            self._do(op, arg)
            return
        self._todo.put((op, arg))
        self._start()

    def _do(self, op: str, arg: object) -> None:
        try:
            if op == "release":
                cg, job_dir = arg  # type: ignore[misc]
                if cg is not None:
                    cg.remove_now()
                if job_dir is not None:
                    shutil.rmtree(str(job_dir), ignore_errors=True)
            elif op == "fill" and not self._closed:
                self._fill(int(arg))  # type: ignore[call-overload]
            elif op == "call":
                assert isinstance(arg, threading.Event)
                arg.set()
        except Exception:  # noqa: BLE001 - one bad cleanup must not stop the thread
            log.exception("cgroup pool: %s failed", op)

    def _fill(self, memory_bytes: int) -> None:
        with self._lock:
            have = len(self._pool.get(memory_bytes, ()))
            if memory_bytes not in self._pool and len(self._pool) >= _MAX_LIMITS:
                return
        for _ in range(self._ready - have):
            cg = self._make(memory_bytes)
            if cg is None:
                return
            with self._lock:
                if not self._closed:
                    self._pool.setdefault(memory_bytes, []).append(cg)
                    continue
            cg.remove_now()  # closed meanwhile: close() no longer sees the pool
            return

    def _loop(self) -> None:
        while True:
            op, arg = self._todo.get()
            if op == "stop":
                return
            self._do(op, arg)

    def drain(self) -> None:
        """Wait until everything queued so far is done (tests, benchmarks)."""
        done = threading.Event()
        self._queue("call", done)
        done.wait(60.0)

    def close(self) -> None:
        """Remove everything: queued cgroups and dirs, then every pooled cgroup. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)
        if self._thread is not None:
            self._todo.put(("stop", None))
            self._thread.join()
        while True:  # whatever the thread did not get to (and everything when it never ran)
            try:
                op, arg = self._todo.get_nowait()
            except queue.Empty:
                break
            self._do(op, arg)
        with self._lock:
            pooled = [cg for cgs in self._pool.values() for cg in cgs]
            self._pool.clear()
        for cg in pooled:
            cg.remove_now()


__all__ = ["READY_PER_LIMIT", "CgroupPool"]
