"""Docker backend, for real: a running engine and the offline image (.ci/start-docker.sh).

Skips (with the reason printed) when there is no engine or no image. Every guest file is a
small stdlib evaluator written into tmp_path; the candidate is a one-line program.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentopt.errors import SandboxError
from agentopt.sandbox.base import JobResult, SandboxJob
from agentopt.sandbox.docker_backend import LABEL, OWNER_LABEL, DockerSandbox, unavailable_reason

IMAGE = os.environ.get("AGENTOPT_SANDBOX_IMAGE", "agentopt/sandbox-cpu:0.1")
_REASON = unavailable_reason(IMAGE)
if _REASON:
    print(f"skipping docker sandbox tests: {_REASON}")
pytestmark = pytest.mark.skipif(_REASON is not None, reason=f"docker unavailable: {_REASON}")


def _write(path: Path, code: str) -> Path:
    path.write_text(textwrap.dedent(code))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("docker-guest")
    out = {
        "prog": _write(d / "prog.py", "VALUE = 42\n"),
        "basic": _write(d / "ev_basic.py", """
            import os, runpy
            def evaluate(program_path):
                print("evaluator says hi")
                ns = runpy.run_path(program_path)
                return {"score": ns["VALUE"] / 42, "uid": os.getuid(), "cwd": os.getcwd()}
        """),
        "loop": _write(d / "ev_loop.py", """
            def evaluate(program_path):
                while True:
                    pass
        """),
        "alloc": _write(d / "ev_alloc.py", """
            def evaluate(program_path):
                blocks = [bytearray(32 << 20) for _ in range(40)]  # 1.25 GB
                return {"score": float(len(blocks))}
        """),
        "cgroup": _write(d / "ev_cgroup.py", """
            def evaluate(program_path):
                for path in ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"):
                    try:
                        return {"score": 1.0, "limit": int(open(path).read().strip())}
                    except (OSError, ValueError):
                        pass
                return {"score": 0.0}
        """),
        "net": _write(d / "ev_net.py", """
            import os, socket
            def evaluate(program_path):
                ifaces = [l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:]]
                try:
                    socket.create_connection(("10.255.255.1", 80), timeout=1).close()
                    outbound = 1.0
                except OSError:
                    outbound = 0.0
                return {"score": 1.0, "outbound": outbound, "ifaces": ",".join(sorted(ifaces))}
        """),
        "writes": _write(d / "ev_writes.py", """
            import os
            def evaluate(program_path):
                out = {"score": 1.0}
                for i, path in enumerate(["/etc/pwned", "/usr/pwned", "/tmp/pwned", "/agentopt/job/pwned",
                                          "/agentopt/runner.py", program_path]):
                    try:
                        with open(path, "a") as f:
                            f.write("x")
                        out[f"w{i}"] = 1.0
                    except OSError:
                        out[f"w{i}"] = 0.0
                with open("here.txt", "w") as f:
                    f.write("ok")
                out["cwd_write"] = 1.0
                return out
        """),
        "env": _write(d / "ev_env.py", """
            import os
            def evaluate(program_path):
                return {"score": 1.0, "keys": ",".join(sorted(os.environ)),
                        "allowed": os.environ.get("ALLOWED_VAR", "")}
        """),
        # Leaves a setsid'd process, a file in /work, /dev/shm and a SysV segment behind.
        "dirty": _write(d / "ev_dirty.py", """
            import ctypes, os, subprocess
            def evaluate(program_path):
                subprocess.Popen(["sleep", "1000"], start_new_session=True)
                open("/work/leftover", "w").write("x")
                open("/dev/shm/leftover", "w").write("x")
                libc = ctypes.CDLL(None)
                libc.shmget(0x41474f, 4096, 0o1600)  # IPC_CREAT | 0600
                return {"score": 1.0}
        """),
        "probe": _write(d / "ev_probe.py", """
            import os
            def evaluate(program_path):
                procs = []
                for p in os.listdir("/proc"):
                    if p.isdigit():
                        try:
                            procs.append(open(f"/proc/{p}/cmdline", "rb").read().split(b"\\0")[0].decode())
                        except OSError:
                            pass
                shm = len(open("/proc/sysvipc/shm").read().splitlines()) - 1
                return {"score": 1.0, "sleepers": float(sum(c == "sleep" for c in procs)),
                        "work": ",".join(sorted(os.listdir("/work"))),
                        "devshm": float(len(os.listdir("/dev/shm"))), "sysv_shm": float(shm)}
        """),
    }
    for path in out.values():
        path.chmod(0o644)
    return out


@pytest.fixture(scope="module")
def cold() -> Iterator[DockerSandbox]:
    sb = DockerSandbox(IMAGE)
    yield sb
    sb.close_sync()


@pytest.fixture(scope="module")
def warm() -> Iterator[DockerSandbox]:
    sb = DockerSandbox(IMAGE, warm_workers=1)
    yield sb
    sb.close_sync()


def _job(files: dict[str, Path], evaluator: str, **kw: object) -> SandboxJob:
    kw.setdefault("timeout_s", 20.0)
    return SandboxJob(evaluator_path=files[evaluator], program_path=files["prog"], **kw)  # type: ignore[arg-type]


def _run(sb: DockerSandbox, job: SandboxJob) -> JobResult:
    return asyncio.run(sb.run(job))


def _owned_containers(sb: DockerSandbox) -> list[str]:
    client = sb._client  # the sandbox's own engine connection
    return [c["Id"] for c in client.api.containers(all=True, filters={"label": f"{OWNER_LABEL}={sb._owner}"})]


def test_normal_result(cold: DockerSandbox, files: dict[str, Path]) -> None:
    r = _run(cold, _job(files, "basic"))
    assert r.ok, r
    assert r.value == {"score": 1.0, "uid": 65534, "cwd": "/work/job"}
    assert "evaluator says hi" in r.stderr
    assert {"container", "net_namespace", "readonly_root", "uid_nobody", "fresh_container"} <= set(r.isolation)
    assert _owned_containers(cold) == []


def test_timeout_kills_and_removes_container(cold: DockerSandbox, files: dict[str, Path]) -> None:
    t0 = time.monotonic()
    r = _run(cold, _job(files, "loop", timeout_s=1.5))
    assert not r.ok and r.error_kind == "timeout", r
    assert time.monotonic() - t0 < 60.0  # the guest loops forever: a hang detector, not a speed claim
    assert _owned_containers(cold) == [], "timed-out container was left behind"


def test_memory_cap(cold: DockerSandbox, files: dict[str, Path]) -> None:
    r = _run(cold, _job(files, "alloc", memory_mb=256))
    assert not r.ok and r.error_kind == "memory", r
    limit = _run(cold, _job(files, "cgroup", memory_mb=300))
    assert limit.ok and limit.value is not None and limit.value["limit"] == 300 * 1024 * 1024, limit


def test_no_network(cold: DockerSandbox, files: dict[str, Path]) -> None:
    r = _run(cold, _job(files, "net"))
    assert r.ok and r.value is not None, r
    assert r.value["ifaces"] == "lo" and r.value["outbound"] == 0.0


def test_read_only_root_and_task_files(cold: DockerSandbox, files: dict[str, Path]) -> None:
    r = _run(cold, _job(files, "writes"))
    assert r.ok and r.value is not None, r
    assert [r.value[f"w{i}"] for i in range(6)] == [0.0] * 6, r.value
    assert r.value["cwd_write"] == 1.0
    assert files["prog"].read_text() == "VALUE = 42\n"


def test_env_is_scrubbed(cold: DockerSandbox, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-" + secrets.token_hex(8)
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    r = _run(cold, _job(files, "env", env={"ALLOWED_VAR": "yes"}))
    assert r.ok and r.value is not None, r
    assert secret not in r.model_dump_json()
    keys = set(r.value["keys"].split(","))
    assert "OPENAI_API_KEY" not in keys and r.value["allowed"] == "yes"
    assert keys <= {"PATH", "HOME", "TMPDIR", "LANG", "HOSTNAME", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED",
                    "PYTHONHASHSEED", "ALLOWED_VAR"}, keys


def test_warm_worker_is_reused_and_cleaned(warm: DockerSandbox, files: dict[str, Path]) -> None:
    first = _run(warm, _job(files, "dirty"))
    assert first.ok, first
    assert "reused_container" in first.isolation
    workers = warm.container_ids()
    assert len(workers) == 1
    probe = _run(warm, _job(files, "probe"))
    assert probe.ok and probe.value is not None, probe
    assert warm.container_ids() == workers, "the warm container was not reused"
    assert probe.value["sleepers"] == 0.0, "a previous job's process survived"
    assert probe.value["work"] == "job-2", "a previous job's files survived in /work"
    assert probe.value["devshm"] == 0.0 and probe.value["sysv_shm"] == 0.0


def test_warm_worker_discarded_after_timeout(warm: DockerSandbox, files: dict[str, Path]) -> None:
    _run(warm, _job(files, "basic"))
    before = warm.container_ids()
    r = _run(warm, _job(files, "loop", timeout_s=1.0))
    assert r.error_kind == "timeout", r
    assert not set(before) & set(warm.container_ids())
    assert not set(before) & set(_owned_containers(warm)), "timed-out warm container still exists"
    again = _run(warm, _job(files, "basic"))
    assert again.ok, again


def test_concurrent_jobs_share_one_warm_worker(warm: DockerSandbox, files: dict[str, Path]) -> None:
    async def many() -> list[JobResult]:
        return await asyncio.gather(*(warm.run(_job(files, "basic")) for _ in range(3)))

    results = asyncio.run(many())
    assert all(r.ok and r.value is not None and r.value["score"] == 1.0 for r in results), results
    assert len(warm.container_ids()) <= 1  # jobs beyond warm_workers ran in cold containers
    assert len(_owned_containers(warm)) <= 1


def test_close_and_leftovers_are_removed(files: dict[str, Path]) -> None:
    sb = DockerSandbox(IMAGE, warm_workers=1)
    assert _run(sb, _job(files, "basic")).ok
    assert len(_owned_containers(sb)) == 1  # the idle warm worker
    # A container of a dead agentopt process (as after a crash) is found and removed.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    host_owner = sb._owner.rsplit(":", 2)[0]
    stale = sb._client.api.create_container(IMAGE, ["true"], labels={LABEL: "1",
                                            OWNER_LABEL: f"{host_owner}:{dead}:deadbeef"})["Id"]
    sb.close_sync()
    assert _owned_containers(sb) == []
    other = DockerSandbox(IMAGE)
    try:
        other.check()
        ids = [c["Id"] for c in other._client.api.containers(all=True, filters={"label": f"{LABEL}=1"})]
        assert stale not in ids, "leftover container of a dead process was not cleaned"
    finally:
        other.close_sync()
        with contextlib.suppress(Exception):  # only if the assertion above failed
            other._client.api.remove_container(stale, force=True)


def test_gpu_request_fails_fast_without_nvidia_runtime(files: dict[str, Path]) -> None:
    sb = DockerSandbox(IMAGE, gpus="all")
    try:
        sb.check(gpus=None)
    except SandboxError as err:
        assert "NVIDIA" in str(err) and "\n" not in str(err)
        return
    finally:
        sb.close_sync()
    pytest.skip("this engine has an NVIDIA runtime; the no-GPU error path cannot be exercised")


def test_requirements_are_checked_in_the_image(cold: DockerSandbox, files: dict[str, Path]) -> None:
    cold.check_requirements(["numpy>=1.20"])  # the offline image ships numpy
    with pytest.raises(SandboxError, match="agentopt-no-such-package.*pip install"):
        _run(cold, _job(files, "basic", requirements=["numpy", "agentopt-no-such-package>=1"]))


def test_missing_image_is_one_line_error() -> None:
    sb = DockerSandbox("agentopt/does-not-exist:0")
    with pytest.raises(SandboxError, match="not found; build it with"):
        sb.check()


def test_factory_and_build_cache(capsys: pytest.CaptureFixture[str]) -> None:
    from agentopt.sandbox.factory import make_sandbox
    from agentopt.sandbox.images import run_sandbox_build_cli
    from agentopt.task import SandboxSpec

    sb = make_sandbox(SandboxSpec(kind="docker", image=IMAGE))
    assert isinstance(sb, DockerSandbox) and sb.image == IMAGE
    asyncio.run(sb.close())
    t0 = time.monotonic()
    assert run_sandbox_build_cli("cpu", IMAGE, offline=True) == 0
    assert f"{IMAGE}: already present" in capsys.readouterr().out
    assert time.monotonic() - t0 < 60.0  # no rebuild (that takes minutes); not a speed claim
