"""Adversarial candidates against every sandbox backend in tests/backends.py.

Each case must end as a failed candidate with a clear reason, or with the correct unforged
score, and the NEXT normal job in the same sandbox must evaluate normally. The guest files
live in tests/hostile/ (candidates plus three evaluators: in-process, raw, and guarded).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentopt.sandbox.base import JobResult, Sandbox, SandboxJob

try:
    from tests.backends import BACKENDS, Backend
except ImportError:  # rootdir-relative imports
    from backends import BACKENDS, Backend  # type: ignore[no-redef]

HOSTILE = Path(__file__).parent / "hostile"
SECRET = "sk-agentopt-test-" + secrets.token_hex(12)


@pytest.fixture(scope="module", params=BACKENDS, ids=lambda b: b.name)
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    backend: Backend = request.param
    try:
        reason = backend.unavailable()
    except Exception as exc:  # a backend module not installed/written yet is "unavailable"
        reason = f"{type(exc).__name__}: {exc}"
    if reason:
        print(f"skipping backend {backend.name}: {reason}")
        pytest.skip(f"backend {backend.name} unavailable: {reason}")
    sb = backend.factory()
    yield sb
    asyncio.run(sb.close())


def _job(candidate: str, evaluator: str = "eval_direct.py", **kw: Any) -> SandboxJob:
    kw.setdefault("timeout_s", 10.0)
    kw.setdefault("memory_mb", 1024)
    return SandboxJob(evaluator_path=HOSTILE / evaluator, program_path=HOSTILE / candidate, **kw)


def _run(sb: Sandbox, job: SandboxJob) -> JobResult:
    result = asyncio.run(sb.run(job))
    assert SECRET not in result.model_dump_json(), "the host secret leaked into a job result"
    return result


def _assert_next_job_ok(sb: Sandbox) -> None:
    for evaluator, score in (("eval_direct.py", 1.0), ("eval_guarded.py", 1.0)):
        r = _run(sb, _job("honest.py", evaluator))
        assert r.ok, r
        assert r.value is not None and r.value["score"] == score


def _marker_processes(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry))
    return found


def _uid_process_count(uid: int, comm: str) -> int:
    """Processes of ``uid`` named ``comm``: the fork bomb names itself, so other processes that
    run as nobody on a shared machine (another sandbox's warm workers) never enter the count."""
    n = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid and Path(f"/proc/{entry}/comm").read_text().strip() == comm:
                    n += 1
            except OSError:
                pass
    return n


@pytest.mark.parametrize(
    ("candidate", "kinds", "timeout_s"),
    [
        ("infinite_loop.py", {"timeout"}, 1.5),
        ("ignore_sigterm.py", {"timeout"}, 1.5),
        ("big_alloc.py", {"memory"}, 10.0),
        ("segfault.py", {"crash"}, 10.0),
        ("os_exit.py", {"crash"}, 10.0),
        # 3.11 keeps Python frames on the heap: the recursion ends at the memory cap (or, on a
        # heavily loaded machine, at the timeout while filling it).
        ("deep_recursion.py", {"crash", "evaluator_error", "memory", "timeout"}, 10.0),
    ],
)
def test_failing_candidates(sandbox: Sandbox, candidate: str, kinds: set[str], timeout_s: float) -> None:
    t0 = time.monotonic()
    r = _run(sandbox, _job(candidate, timeout_s=timeout_s, memory_mb=128 if "recursion" in candidate else 256))
    assert not r.ok and r.error_kind in kinds, r
    assert r.error and "\n" not in r.error
    if r.error_kind == "timeout":
        # A hang detector, not a speed claim (load can add seconds): an unkilled guest never ends.
        assert time.monotonic() - t0 < timeout_s + 60.0, "SIGTERM-ignoring guest was not SIGKILLed"
    if candidate == "segfault.py":
        assert "SIGSEGV" in r.error
    if candidate == "os_exit.py":
        assert "exit code 7" in r.error
    _assert_next_job_ok(sandbox)


def test_fork_bomb_is_bounded(sandbox: Sandbox) -> None:
    before = _uid_process_count(65534, "ao-forkbomb")
    r = _run(sandbox, _job("fork_bomb.py", timeout_s=2.0))
    assert not r.ok and r.error_kind in {"timeout", "crash"}, r
    deadline = time.monotonic() + 5.0
    while _uid_process_count(65534, "ao-forkbomb") > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _uid_process_count(65534, "ao-forkbomb") <= before, "fork bomb processes survived the job"
    _assert_next_job_ok(sandbox)


def test_gigabyte_of_output_is_capped(sandbox: Sandbox) -> None:
    r = _run(sandbox, _job("big_stdout.py", timeout_s=30.0, max_output_bytes=10_000))
    assert r.ok and r.value is not None and r.value["score"] == 1.0, r
    assert len(r.stderr) < 10_000 + 200
    assert "more bytes of output discarded" in r.stderr
    _assert_next_job_ok(sandbox)


def test_network_is_unreachable(sandbox: Sandbox) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    try:
        r = _run(sandbox, _job("network.py", env={"HOSTILE_PORT": str(port)}))
        assert r.ok and r.value is not None and r.value["score"] == 0.0, r
        with pytest.raises(TimeoutError):
            server.accept()
    finally:
        server.close()
    _assert_next_job_ok(sandbox)


def test_secrets_are_unreadable(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    secret_file = tmp_path / "secrets.env"
    secret_file.write_text(f"OPENAI_API_KEY={SECRET}\n")
    secret_file.chmod(0o600)
    env = {"HOSTILE_HOST_PID": str(os.getpid()), "HOSTILE_SECRET_FILE": str(secret_file)}
    r = _run(sandbox, _job("read_secrets.py", env=env))  # _run asserts SECRET is nowhere in r
    assert r.ok and r.value is not None and "found" in r.value, r
    assert "OPENAI_API_KEY" not in r.value["found"]
    _assert_next_job_ok(sandbox)


def test_writes_outside_workdir_fail(sandbox: Sandbox, tmp_path: Path) -> None:
    marker = f"agentopt-marker-{secrets.token_hex(6)}"
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    env = {"HOSTILE_MARKER": marker, "HOSTILE_TASK_DIR": str(task_dir),
           "HOSTILE_HOST_HOME": os.path.expanduser("~")}
    r = _run(sandbox, _job("write_outside.py", env=env))
    assert r.ok and r.value is not None, r
    # The guest may see private tmpfs copies of /tmp etc.; what matters is the host.
    for path in [task_dir / "pwned.txt", HOSTILE / "pwned.txt", Path("/tmp") / marker, Path("/var/tmp") / marker,
                 Path("/dev/shm") / marker, Path(os.path.expanduser("~")) / marker, Path("/root") / marker]:
        assert not path.exists(), f"guest wrote {path} on the host"
    _assert_next_job_ok(sandbox)


@pytest.mark.parametrize("candidate", ["orphans.py", "orphans_then_hang.py"])
def test_orphans_do_not_survive(sandbox: Sandbox, candidate: str) -> None:
    marker = f"agentopt-orphan-{secrets.token_hex(6)}"
    r = _run(sandbox, _job(candidate, extra_files=[HOSTILE / "orphans.py"], timeout_s=3.0,
                           env={"HOSTILE_MARKER": marker}))
    if candidate == "orphans.py":
        assert r.ok, r
    else:
        assert r.error_kind == "timeout", r
    deadline = time.monotonic() + 3.0
    while _marker_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _marker_processes(marker) == [], "setsid/double-forked processes outlived the job"
    _assert_next_job_ok(sandbox)


@pytest.mark.parametrize(
    ("candidate", "evaluator", "kind", "needle"),
    [
        ("huge_result.py", "eval_direct.py", "bad_result", "larger than"),
        ("non_dict_result.py", "eval_raw.py", "bad_result", "expected a dict"),
        ("fake_frames.py", "eval_direct.py", "bad_result", "rejected result"),
    ],
)
def test_bad_results_are_rejected(sandbox: Sandbox, candidate: str, evaluator: str, kind: str, needle: str) -> None:
    r = _run(sandbox, _job(candidate, evaluator, max_result_bytes=1_000_000))
    assert not r.ok and r.error_kind == kind, r
    assert r.error and needle in r.error
    _assert_next_job_ok(sandbox)


def test_forged_frame_on_stdout_is_ignored(sandbox: Sandbox) -> None:
    r = _run(sandbox, _job("forged_stdout.py"))
    assert r.ok and r.value == {"score": 0.0}, r
    assert "AGENTOPT1" in r.stderr  # it went to the captured output, not the result channel
    _assert_next_job_ok(sandbox)


def test_unserialisable_values_are_stringified(sandbox: Sandbox) -> None:
    r = _run(sandbox, _job("odd_values.py"))
    assert r.ok and r.value is not None, r
    assert r.value["obj"] == "weird-object" and r.value["score"] == 0.5
    assert r.value["nan_metric"] != r.value["nan_metric"]  # nan survives as a non-numeric value


@pytest.mark.parametrize("candidate", ["fake_frames.py", "monkeypatch.py"])
def test_guarded_evaluator_scores_are_unforgeable(sandbox: Sandbox, candidate: str) -> None:
    r = _run(sandbox, _job(candidate, "eval_guarded.py"))
    if candidate == "fake_frames.py" and not r.ok:
        # Spraying its own reply pipe only breaks the candidate's own answer.
        assert r.error_kind == "evaluator_error" and r.error and "CandidateError: bad_output" in r.error, r
        _assert_next_job_ok(sandbox)
        return
    assert r.ok and r.value is not None, r
    assert r.value["score"] == 0.0 and r.value["correct"] == 0.0, r
    assert r.value["elapsed_s"] > 0.0  # the evaluator's perf_counter was not patched
    _assert_next_job_ok(sandbox)


def test_slow_import(sandbox: Sandbox) -> None:
    guarded = _run(sandbox, _job("slow_import.py", "eval_guarded.py", env={"HOSTILE_IMPORT_TIMEOUT": "1"}))
    assert not guarded.ok and guarded.error_kind == "evaluator_error", guarded
    assert guarded.error and "CandidateError: timeout" in guarded.error
    direct = _run(sandbox, _job("slow_import.py", timeout_s=1.5))
    assert direct.error_kind == "timeout", direct
    _assert_next_job_ok(sandbox)
