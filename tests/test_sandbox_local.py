"""LocalSandbox and runner protocol v1: results, failures, limits, env scrubbing, concurrency."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import textwrap
import time
from pathlib import Path

import pytest

from agentopt.errors import SandboxError
from agentopt.sandbox.base import SandboxJob
from agentopt.sandbox.isolation import detect
from agentopt.sandbox.local import LocalSandbox
from agentopt.sandbox.protocol import build_job_payload, parse_result_frame

NS = pytest.mark.skipif(not detect().unshare_net, reason="no pid/net namespaces on this machine")
MODES = [pytest.param("namespaces", marks=NS), "none"]


@pytest.fixture(scope="module", params=MODES)
def sandbox(request: pytest.FixtureRequest):
    sb = LocalSandbox(isolation=request.param)
    yield sb
    asyncio.run(sb.close())


def _write(tmp_path: Path, name: str, code: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return path


def _job(tmp_path: Path, evaluator: str, program: str = "def f():\n    return 2\n", **kw) -> SandboxJob:
    kw.setdefault("timeout_s", 10.0)
    return SandboxJob(evaluator_path=_write(tmp_path, "evaluator.py", evaluator),
                      program_path=_write(tmp_path, "program.py", program), **kw)


def run(sb: LocalSandbox, job: SandboxJob):
    return asyncio.run(sb.run(job))


EVAL_CALLS_F = """
from agentopt_guest import call_candidate
def evaluate(path):
    print("evaluator says hi")
    return {"score": float(call_candidate(path, "f")), "text": "ok"}
"""


def test_normal_result(sandbox: LocalSandbox, tmp_path: Path) -> None:
    r = run(sandbox, _job(tmp_path, EVAL_CALLS_F))
    assert r.ok, r
    assert r.value == {"score": 2.0, "text": "ok"}
    assert "evaluator says hi" in r.stderr and r.stdout == ""
    assert {"process_group", "clean_env", "result_pipe"} <= set(r.isolation)
    if sandbox.mode == "namespaces":
        assert {"pid_namespace", "net_namespace", "uid_nobody"} <= set(r.isolation)
    assert set(r.isolation) <= set(sandbox.available_isolation())


def test_evaluation_result_object_and_stage_function(sandbox: LocalSandbox, tmp_path: Path) -> None:
    code = """
    class EvaluationResult:
        def __init__(self, metrics, artifacts):
            self.metrics, self.artifacts = metrics, artifacts
    def evaluate_stage1(path):
        return EvaluationResult({"score": 0.5}, {"log": "stage one"})
    """
    r = run(sandbox, _job(tmp_path, code, function="evaluate_stage1"))
    assert r.ok and r.value == {"score": 0.5, "artifacts": {"log": "stage one"}}, r
    missing = run(sandbox, _job(tmp_path, code, function="evaluate_stage9"))
    assert missing.error_kind == "evaluator_error" and "evaluate_stage9" in (missing.error or "")


def test_evaluator_raising(sandbox: LocalSandbox, tmp_path: Path) -> None:
    code = "def evaluate(path):\n    raise ValueError('bad candidate output')\n"
    r = run(sandbox, _job(tmp_path, code))
    assert not r.ok and r.error_kind == "evaluator_error"
    assert r.error == "ValueError: bad candidate output (evaluator.py:2)"


def test_timeout_kills_group_and_setsid_grandchild(sandbox: LocalSandbox, tmp_path: Path) -> None:
    marker = f"agentopt-ts-{secrets.token_hex(6)}"
    code = f"""
    import subprocess, sys, time
    def evaluate(path):
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)  # {marker}"],
                         start_new_session=True)
        time.sleep(120)
    """
    t0 = time.monotonic()
    r = run(sandbox, _job(tmp_path, code, timeout_s=1.0))
    assert r.error_kind == "timeout", r
    assert time.monotonic() - t0 < 60.0  # not waiting for the 120 s sleepers (a hang detector, not speed)
    deadline = time.monotonic() + 3.0
    while _cmdline_has(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _cmdline_has(marker), "a setsid'd grandchild survived the timeout"


def _cmdline_has(marker: str) -> bool:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    return True
            except OSError:
                pass
    return False


def test_memory_cap(sandbox: LocalSandbox, tmp_path: Path) -> None:
    code = "def evaluate(path):\n    x = bytearray(2 * 1024**3)\n    return {'score': 1.0}\n"
    r = run(sandbox, _job(tmp_path, code, memory_mb=300))
    assert r.error_kind == "memory", r


def test_env_is_scrubbed(sandbox: LocalSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-" + secrets.token_hex(8)
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    code = """
    import os
    def evaluate(path):
        return {"score": 1.0, "env": sorted(os.environ), "home": os.environ["HOME"],
                "tmp": os.environ["TMPDIR"], "hashseed": os.environ["PYTHONHASHSEED"],
                "extra": os.environ.get("ALLOWED_VAR", "")}
    """
    r = run(sandbox, _job(tmp_path, code, env={"ALLOWED_VAR": "yes"}))
    assert r.ok, r
    assert secret not in r.model_dump_json()
    assert "OPENAI_API_KEY" not in r.value["env"]
    assert set(r.value["env"]) <= {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONHASHSEED", "ALLOWED_VAR", "PWD", "OLDPWD", "CUDA_VISIBLE_DEVICES"}
    assert r.value["extra"] == "yes" and r.value["hashseed"] == "0"
    assert r.value["tmp"].startswith(r.value["home"])


def test_output_cap(sandbox: LocalSandbox, tmp_path: Path) -> None:
    code = "def evaluate(path):\n    print('y' * 3_000_000)\n    return {'score': 1.0}\n"
    r = run(sandbox, _job(tmp_path, code, max_output_bytes=5_000))
    assert r.ok, r
    assert r.stderr.startswith("y" * 100) and len(r.stderr) < 5_200
    assert "more bytes of output discarded" in r.stderr


@NS
def test_no_network(tmp_path: Path) -> None:
    sb = LocalSandbox(isolation="namespaces")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    code = f"""
    import socket
    def evaluate(path):
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=1).close()
            return {{"score": 1.0}}
        except OSError as exc:
            return {{"score": 0.0, "err": type(exc).__name__}}
    """
    try:
        blocked = run(sb, _job(tmp_path, code))
        assert blocked.ok and blocked.value["score"] == 0.0, blocked
        allowed = run(sb, _job(tmp_path, code, network=True))
        assert allowed.ok and allowed.value["score"] == 1.0, allowed
        assert "net_namespace" in blocked.isolation and "net_namespace" not in allowed.isolation
    finally:
        server.close()
        asyncio.run(sb.close())


def test_concurrent_jobs(sandbox: LocalSandbox, tmp_path: Path) -> None:
    jobs = []
    for i in range(6):
        d = tmp_path / f"j{i}"
        d.mkdir()
        code = f"import time\ndef evaluate(path):\n    time.sleep(3.0)\n    return {{'score': {i}.0}}\n"
        jobs.append(_job(d, code))

    async def all_jobs():
        return await asyncio.gather(*(sandbox.run(j) for j in jobs))

    t0 = time.monotonic()
    results = asyncio.run(all_jobs())
    assert [r.value["score"] for r in results] == [float(i) for i in range(6)]
    assert time.monotonic() - t0 < 3.0 * 6 - 4.0  # they overlapped (in series: 18 s of sleeping alone)


def test_missing_input_is_a_sandbox_error(sandbox: LocalSandbox, tmp_path: Path) -> None:
    job = SandboxJob(evaluator_path=tmp_path / "nope.py", program_path=tmp_path / "nope2.py")
    with pytest.raises(SandboxError, match="not found"):
        run(sandbox, job)


# ------------------------------------------------------------------ protocol unit tests


def _frame(nonce: str, body: dict | bytes) -> bytes:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return b"AGENTOPT1 " + nonce.encode() + b" " + str(len(data)).encode() + b"\n" + data


def test_parse_result_frame_accepts_exactly_one_frame() -> None:
    n = "ab" * 16
    good = _frame(n, {"ok": True, "value": {"score": float("nan")}})
    body, reason = parse_result_frame(good, n, 1000)
    assert reason is None and body is not None and body["ok"] is True
    cases = {
        b"": "no result frame",
        good.replace(b"AGENTOPT1", b"AGENTOPT2"): "wrong magic",
        _frame("cd" * 16, {"ok": True, "value": {}}): "wrong nonce",
        good[:-1]: "truncated",
        good + b" ": "trailing bytes",
        good + good: "more than one result frame",
        _frame(n, b"{not json"): "not JSON",
        _frame(n, {"ok": True, "value": [1]}): "not a dict",
        _frame(n, {"ok": False, "error_kind": "timeout", "error": "x"}): "unknown error_kind",
        _frame(n, {"ok": True, "value": {"blob": "x" * 2000}}): "larger than",
    }
    for data, needle in cases.items():
        body, reason = parse_result_frame(data, n, 1000)
        assert body is None and reason and needle in reason, (data[:40], reason)


def test_build_job_payload_is_one_json_line(tmp_path: Path) -> None:
    job = SandboxJob(evaluator_path=tmp_path / "e.py", program_path=tmp_path / "p.py", function="evaluate_stage2")
    data = build_job_payload(job, evaluator_path="/w/e.py", program_path="/w/p.py", lib_dir="/lib", nonce="n1")
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert json.loads(data) == {"protocol": 1, "nonce": "n1", "evaluator_path": "/w/e.py", "program_path": "/w/p.py",
                                "function": "evaluate_stage2", "lib_dir": "/lib", "timeout_s": 60.0, "memory_mb": 2048}


def test_gpu_selection_reaches_the_guest_environment() -> None:
    from agentopt.sandbox.local import _gpu_env

    assert _gpu_env(None) == {"CUDA_VISIBLE_DEVICES": ""}  # no GPU unless asked for
    assert _gpu_env(2) == {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert _gpu_env(["3", "5"]) == {"CUDA_VISIBLE_DEVICES": "3,5"}
    assert _gpu_env("1,2") == {"CUDA_VISIBLE_DEVICES": "1,2"}


def test_gpu_ids_are_visible_to_the_evaluator(tmp_path) -> None:
    import asyncio

    from agentopt.sandbox.base import SandboxJob
    from agentopt.sandbox.local import LocalSandbox

    evaluator = tmp_path / "ev.py"
    evaluator.write_text("import os\n\ndef evaluate(p):\n    return {'score': 1.0, 'cvd': os.environ.get('CUDA_VISIBLE_DEVICES')}\n")
    program = tmp_path / "prog.py"
    program.write_text("x = 1\n")
    sandbox = LocalSandbox()
    try:
        result = asyncio.run(sandbox.run(SandboxJob(evaluator_path=evaluator, program_path=program, gpus=["3"])))
    finally:
        asyncio.run(sandbox.close())
    assert result.ok, result.error
    assert result.value["cvd"] == "3"


@pytest.fixture
def request_cleanup():
    callbacks: list = []
    yield callbacks
    for callback in callbacks:
        callback()


def test_interpreter_under_private_tmp_stays_reachable(tmp_path, request_cleanup) -> None:
    """CI may clone (and make its venv) under /tmp, which the guest gets as a private tmpfs."""
    import asyncio
    import shutil
    import subprocess
    import sys
    import tempfile

    from agentopt.sandbox.base import SandboxJob
    from agentopt.sandbox.local import LocalSandbox

    # Not pytest's tmp_path: /tmp/pytest-of-root is mode 0700, which takes the "hidden dir" path.
    outer = Path(tempfile.mkdtemp(prefix="agentopt-venv-test-", dir="/tmp"))
    outer.chmod(0o755)
    request_cleanup.append(lambda: shutil.rmtree(outer, ignore_errors=True))
    venv = outer / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    evaluator = tmp_path / "ev.py"
    evaluator.write_text("import sys\n\ndef evaluate(p):\n    return {'score': 1.0, 'prefix': sys.prefix}\n")
    program = tmp_path / "prog.py"
    program.write_text("x = 1\n")
    sandbox = LocalSandbox(python=str(venv / "bin" / "python"))
    try:
        result = asyncio.run(sandbox.run(SandboxJob(evaluator_path=evaluator, program_path=program)))
    finally:
        asyncio.run(sandbox.close())
    assert result.ok, (result.error, result.stderr)
    assert result.value["prefix"] == str(venv)
