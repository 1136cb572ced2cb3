"""The per-job cgroup pool (agentopt/sandbox/cgroup_pool.py): cgroups made before their job,
removed after it off the job's path, and never a used or occupied one handed to a job."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agentopt.sandbox import cgroups
from agentopt.sandbox.base import SandboxJob
from agentopt.sandbox.cgroup_pool import CgroupPool
from agentopt.sandbox.warm_local import WarmLocalSandbox, warm_unavailable

HERE = Path(__file__).parent
REPO = HERE.parent
MIB = 1 << 20

needs_cgroups = pytest.mark.skipif(
    cgroups.detect().pids_parent is None or cgroups.detect().memory_parent is None,
    reason="no writable pids + memory cgroups here")


@needs_cgroups
def test_pool_never_hands_out_an_occupied_cgroup() -> None:
    pool = CgroupPool(pids_max=16, ready=2)
    sleeper = None
    try:
        first = pool.take(64 * MIB)
        assert first is not None and first.pids() == []
        pool.drain()  # the thread has made the next ones
        occupied = pool._pool[64 * MIB][-1]  # the one take() would hand out next
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        for f in occupied.procs_files:
            f.write_text(str(sleeper.pid))
        assert occupied.pids() == [sleeper.pid]
        second = pool.take(64 * MIB)
        assert second is not None and second is not occupied and second.pids() == []
        assert pool.rejected == 1
        pool.release(first)
        pool.release(second)
        pool.drain()
        assert sleeper.wait(10) != 0  # the rejected cgroup was killed and removed, not handed out
        assert not any(d.exists() for d in occupied.dirs)
    finally:
        if sleeper is not None and sleeper.poll() is None:
            sleeper.kill()
        pool.close()


@needs_cgroups
def test_release_and_close_remove_every_cgroup_and_job_dir(tmp_path: Path) -> None:
    pool = CgroupPool(pids_max=16, ready=2)
    taken = [pool.take(64 * MIB) for _ in range(3)]
    assert all(cg is not None for cg in taken)
    dirs = [d for cg in taken if cg for d in cg.dirs]
    pool.drain()
    pooled = [d for cgs in pool._pool.values() for cg in cgs for d in cg.dirs]
    assert pooled, "the pool keeps fresh cgroups ready"
    job_dir = tmp_path / "job"
    (job_dir / "work").mkdir(parents=True)
    for cg in taken:
        pool.release(cg)
    pool.release(None, job_dir)
    pool.close()
    assert not any(d.exists() for d in dirs + pooled)
    assert not job_dir.exists()
    # After close the pool still works, synchronously, and leaves nothing behind.
    late = pool.take(64 * MIB)
    assert late is not None
    pool.release(late)
    assert not any(d.exists() for d in late.dirs)


@needs_cgroups
def test_cgroups_are_removed_when_the_controller_exits_without_close() -> None:
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from agentopt.sandbox.cgroup_pool import CgroupPool
        pool = CgroupPool(pids_max=16, ready=2)
        cg = pool.take(64 << 20)
        print(" ".join(str(d) for d in cg.dirs), flush=True)
        pool.release(cg)
        # no close(): the interpreter's exit must still remove this one and the pooled ones
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split(), out.stderr
    child_pid = Path(out.stdout.split()[0]).name.split("-")[1]
    s = cgroups.detect()
    left = [d for parent in (s.pids_parent, s.memory_parent) if parent
            for d in parent.iterdir() if d.name.startswith(f"job-{child_pid}-")]
    assert left == []


@pytest.mark.skipif(warm_unavailable() is not None, reason=f"warm local: {warm_unavailable()}")
def test_each_warm_job_gets_a_fresh_cgroup_and_its_own_peak() -> None:
    evaluator = HERE / "hostile" / "eval_direct.py"

    async def go() -> list:
        sb = WarmLocalSandbox()
        try:
            big = await sb.run(SandboxJob(evaluator_path=evaluator, program_path=HERE / "warm" / "hold_memory.py",
                                          timeout_s=20, memory_mb=512,
                                          env={"AGENTOPT_TEST_HOLD_MB": "200"}))
            small = await sb.run(SandboxJob(evaluator_path=evaluator, program_path=HERE / "warm" / "whoami.py",
                                            timeout_s=20, memory_mb=512))
            pool = sb._cgroups
            await asyncio.to_thread(pool.drain)
            return [big, small, pool.handed_out, sb.cold_fallbacks]
        finally:
            await sb.close()

    big, small, handed_out, fallbacks = asyncio.run(go())
    assert big.ok and small.ok and fallbacks == 0, (big, small)
    assert handed_out >= 3  # a job's cgroup + the spare made during each job
    assert big.peak_memory_mb is not None and big.peak_memory_mb >= 200, big
    # A used cgroup is never handed on: the next job's peak does not carry the 200 MiB.
    assert small.peak_memory_mb is not None and small.peak_memory_mb < 100, small


@pytest.mark.skipif(warm_unavailable() is not None, reason=f"warm local: {warm_unavailable()}")
def test_spares_follow_the_jobs_caps_and_leave_nothing_behind() -> None:
    s = cgroups.detect()
    mine = f"job-{os.getpid()}-"

    def job_dirs() -> set[Path]:
        return {d for parent in (s.pids_parent, s.memory_parent) if parent
                for d in parent.iterdir() if d.name.startswith(mine)}

    before = job_dirs()
    evaluator = HERE / "hostile" / "eval_direct.py"

    def job(disk_mb: int) -> SandboxJob:
        return SandboxJob(evaluator_path=evaluator, program_path=HERE / "warm" / "whoami.py", timeout_s=20,
                          max_disk_mb=disk_mb)

    async def go() -> list:
        sb = WarmLocalSandbox()
        try:
            results = []
            spare_used = []
            for disk in (64, 128, 128, 64):
                n = sb.spare_jobs
                results.append(await sb.run(job(disk)))
                spare_used.append(sb.spare_jobs > n)
            return [results, spare_used, sb.cold_fallbacks]
        finally:
            await sb.close()

    results, spare_used, fallbacks = asyncio.run(go())
    assert all(r.ok for r in results) and fallbacks == 0, results
    # The 3rd job finds a spare made for its caps during the 2nd; the 2nd and 4th change caps.
    assert spare_used == [False, False, True, False]
    assert job_dirs() - before == set()
