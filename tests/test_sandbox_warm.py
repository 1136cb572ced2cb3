"""Warm local workers (agentopt/sandbox/warm_local.py + sandboxes/zygote.py), per-job memory
cgroups and the no-orphans guarantees of the local backend (cold and warm).

The hostile suite (tests/test_hostile.py) runs against ``local-warm`` too; this file covers
what it does not: that jobs really run warm, the per-JOB memory cap, and kill -9 of the
controller.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agentopt.sandbox import cgroups
from agentopt.sandbox.base import Sandbox, SandboxJob
from agentopt.sandbox.local import LocalSandbox
from agentopt.sandbox.warm_local import _SPARES, WarmLocalSandbox, make_local_sandbox, warm_unavailable

HERE = Path(__file__).parent
WARM = HERE / "warm"
EVAL = HERE / "hostile" / "eval_direct.py"
REPO = HERE.parent

needs_warm = pytest.mark.skipif(warm_unavailable() is not None, reason=f"warm local: {warm_unavailable()}")
needs_memcg = pytest.mark.skipif(cgroups.detect().memory_parent is None, reason="no writable memory cgroup here")


def _job(candidate: str, **kw: object) -> SandboxJob:
    kw.setdefault("timeout_s", 20.0)
    return SandboxJob(evaluator_path=EVAL, program_path=WARM / candidate, **kw)  # type: ignore[arg-type]


def _marker_pids(marker: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    out.append(int(entry))
            except OSError:
                pass
    return out


@needs_warm
def test_jobs_run_warm_with_every_layer() -> None:
    async def go() -> list:
        sb = WarmLocalSandbox()
        try:
            results = [await sb.run(_job("whoami.py")) for _ in range(3)]
            return [results, sb.cold_fallbacks, sb.workers_started, sb.available_isolation(), sb.spare_jobs]
        finally:
            await sb.close()

    results, fallbacks, started, available, spare_jobs = asyncio.run(go())
    assert fallbacks == 0 and started == 1
    assert spare_jobs == 2  # jobs 2 and 3 start from the init made ready during the job before
    for r in results:
        assert r.ok, r
        assert r.value["pid"] == 1 and r.value["uid"] == 65534  # own pid namespace, dropped to nobody
        assert set(available) <= set(r.isolation), set(available) - set(r.isolation)
        assert r.peak_memory_mb is not None
    assert len({r.value["rand"] for r in results}) == 3  # each fork reseeds; no shared RNG stream
    # Each job's work dir and input files are its own (a tmpfs each, in its own mount namespace):
    # nothing an earlier job wrote shows, and the inputs cannot be changed.
    assert all(r.value["fresh_workdir"] == 1.0 and r.value["inputs_writable"] == 0.0 for r in results)


@needs_warm
def test_prewarm_readies_worker_evaluator_and_spare_for_the_first_job() -> None:
    """What a run does while its LLM client starts: the first job then starts from a spare init
    of an already running worker that has imported the evaluator (no second worker, no cold job)."""

    async def go() -> list:
        sb = WarmLocalSandbox()
        try:
            started = await sb.prewarm(_job("whoami.py"), count=1)
            again = await sb.prewarm(_job("whoami.py"))  # the same environment: nothing new
            worker = next(iter(sb._workers.values()))
            spares_before = len(worker.spares)
            result = await sb.run(_job("whoami.py"))
            return [started, again, spares_before, result, sb.spare_jobs, sb.workers_started, sb.cold_fallbacks,
                    sorted(sb._preloaded)]
        finally:
            await sb.close()

    started, again, spares_before, result, spare_jobs, workers, fallbacks, preloaded = asyncio.run(go())
    assert (started, again, workers, fallbacks) == (1, 0, 1, 0)
    assert spares_before == _SPARES and spare_jobs == 1
    assert len(preloaded) == 1
    assert result.ok, result
    assert result.value["pid"] == 1 and result.value["uid"] == 65534


def test_make_local_sandbox_respects_the_setting() -> None:
    cold = make_local_sandbox(warm=False)
    assert type(cold) is LocalSandbox
    asyncio.run(cold.close())
    auto = make_local_sandbox(warm="auto")
    assert isinstance(auto, WarmLocalSandbox) == (warm_unavailable() is None)
    asyncio.run(auto.close())


def _backends() -> list[tuple[str, Callable[[], Sandbox]]]:
    return [("cold", lambda: LocalSandbox(isolation="namespaces")), ("warm", WarmLocalSandbox)]


@needs_memcg
@pytest.mark.parametrize("kind", ["cold", "warm"])
def test_memory_cap_covers_the_whole_job(kind: str) -> None:
    if kind == "warm" and warm_unavailable():
        pytest.skip(str(warm_unavailable()))
    make = dict(_backends())[kind]

    async def go() -> list:
        sb = make()
        try:
            hogs = await sb.run(_job("fork_hogs.py", memory_mb=1024))
            shm = await sb.run(_job("fill_tmpfs.py", memory_mb=512, max_disk_mb=2048))
            return [hogs, shm]
        finally:
            await sb.close()

    hogs, shm = asyncio.run(go())
    # 4 x 768 MiB fit under a per-process cap; the per-job cap holds the job to ~1 GiB.
    assert "memory_cgroup" in hogs.isolation
    assert hogs.peak_memory_mb is not None and hogs.peak_memory_mb <= 1024 * 1.05, hogs
    assert not hogs.ok or hogs.value["score"] < 4, hogs
    # tmpfs pages count: 900 MiB in /dev/shm cannot fit under 512 MiB.
    assert shm.peak_memory_mb is not None and shm.peak_memory_mb <= 512 * 1.05, shm
    assert not (shm.ok and shm.value["score"] == 1.0), shm


CONTROLLER = """
import asyncio, os, sys
sys.path.insert(0, {repo!r})
from agentopt.sandbox.base import SandboxJob
from agentopt.sandbox.local import LocalSandbox
from agentopt.sandbox.warm_local import WarmLocalSandbox

async def main():
    root = sys.argv[2]
    sb = WarmLocalSandbox(temp_root=root) if sys.argv[1] == "warm" else LocalSandbox(isolation="namespaces", temp_root=root)
    print(sb._root, flush=True)
    job = SandboxJob(evaluator_path={ev!r}, program_path={prog!r}, timeout_s=30, env={{"HOSTILE_MARKER": os.environ["CONTROLLER_MARKER"]}})
    await sb.run(job)

asyncio.run(main())
"""


@pytest.mark.parametrize("kind", ["cold", "warm"])
def test_kill_9_of_the_controller_leaves_nothing(kind: str, tmp_path: Path) -> None:
    if kind == "warm" and warm_unavailable():
        pytest.skip(str(warm_unavailable()))
    if kind == "cold" and LocalSandbox().mode != "namespaces":
        pytest.skip("cold local needs namespaces for this guarantee")
    marker = f"agentopt-orphan-{secrets.token_hex(6)}"
    script = tmp_path / "controller.py"
    script.write_text(textwrap.dedent(CONTROLLER).format(repo=str(REPO), ev=str(EVAL), prog=str(WARM / "sleeper.py")))
    # The marker travels in the env, so only the job's processes carry it in their cmdline.
    # A temp root of its own: other test runs on this machine clean leftovers of dead controllers
    # in the default one, and might take this one's before the assertions below look.
    temp_root = tempfile.mkdtemp(prefix="agentopt-kill9-")
    os.chmod(temp_root, 0o755)
    proc = subprocess.Popen([sys.executable, str(script), kind, temp_root], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "CONTROLLER_MARKER": marker})
    assert proc.stdout is not None
    roots = [Path(p) for p in proc.stdout.readline().split()]
    deadline = time.monotonic() + 30.0
    while not _marker_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _marker_pids(marker), "the job never started"
    owner = proc.pid
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10.0
    while _marker_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _marker_pids(marker) == [], "the in-flight job outlived its controller"
    # Leftovers of the dead controller: its temp dir and job cgroups; the next sandbox removes them.
    assert all(root.exists() for root in roots)
    LocalSandbox(isolation="none", temp_root=temp_root)
    assert not any(root.exists() for root in roots)
    shutil.rmtree(temp_root, ignore_errors=True)
    s = cgroups.detect()
    for parent in {p for p in (s.pids_parent, s.memory_parent) if p}:
        assert not list(parent.glob(f"job-{owner}-*")), f"stale cgroup of pid {owner} in {parent}"


@needs_warm
def test_candidate_forkserver_is_handed_to_the_job() -> None:
    """With a warm worker the evaluator's call_candidate forks from a forkserver the worker started
    inside the job (no interpreter start per job), and every call still gets a fresh child."""

    async def go() -> list:
        sb = WarmLocalSandbox()
        try:
            job = SandboxJob(evaluator_path=WARM / "eval_forkserver.py", program_path=WARM / "whoami.py",
                             timeout_s=30)
            return [await sb.run(job), await sb.run(job)]
        finally:
            await sb.close()

    for r in asyncio.run(go()):
        assert r.ok, r
        assert r.value["handed"] == 1.0 and r.value["my_pid"] == 1.0
        assert r.value["distinct_children"] == 5.0 and r.value["one_child"] == 1.0
        assert r.value["child_uid"] == 65534.0
        assert "whoami-output" in r.stderr  # the children print into the job's output, nowhere else


@needs_warm
def test_many_concurrent_first_jobs_share_one_worker() -> None:
    """More first jobs at once than the default thread pool has threads: one worker starts, all
    jobs run warm (waiting for the starter must not occupy the threads it needs)."""
    n = (os.cpu_count() or 1) + 8

    async def go() -> list:
        sb = WarmLocalSandbox()
        try:
            results = await asyncio.wait_for(asyncio.gather(*(sb.run(_job("whoami.py")) for _ in range(n))), 120)
            return [results, sb.cold_fallbacks, sb.workers_started]
        finally:
            await sb.close()

    results, fallbacks, started = asyncio.run(go())
    assert all(r.ok and r.value["pid"] == 1 for r in results), results
    assert fallbacks == 0 and started == 1


@needs_warm
def test_large_inputs_still_run_warm_from_a_host_dir(tmp_path: Path) -> None:
    """Inputs too big to travel in the job message (a 200 KB extra file) are copied into a job dir
    on the host as before; the job still runs warm and reads them."""
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(200_000))
    program = tmp_path / "reads_blob.py"
    program.write_text("import os\n\ndef run():\n    here = os.path.dirname(os.path.abspath(__file__))\n"
                       "    return {'score': float(os.path.getsize(os.path.join(here, 'blob.bin')))}\n")

    async def go() -> list:
        sb = WarmLocalSandbox()
        try:
            job = SandboxJob(evaluator_path=EVAL, program_path=program, extra_files=[blob], timeout_s=20)
            return [[await sb.run(job) for _ in range(2)], sb.cold_fallbacks]
        finally:
            await sb.close()

    results, fallbacks = asyncio.run(go())
    assert fallbacks == 0
    for r in results:
        assert r.ok and r.value["score"] == 200_000.0, r
