"""evaluators/agentopt_guest.py: call_candidate / CandidateProcess run candidates in a child.

The helper is guest code (stdlib only); tests load it from its file like an evaluator would.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agentopt.paths import evaluator_lib_dir

_spec = importlib.util.spec_from_file_location("agentopt_guest", evaluator_lib_dir() / "agentopt_guest.py")
assert _spec and _spec.loader
guest = importlib.util.module_from_spec(_spec)
sys.modules["agentopt_guest"] = guest
_spec.loader.exec_module(guest)
CandidateError = guest.CandidateError

PROGRAM = """
import os, sys, time

def add(a, b=0):
    return a + b
def shapes():
    return {"t": (1, 2), "nan": float("nan"), "inf": float("inf"), "none": None, "s": "x"}
def np_values():
    import numpy as np
    return {"arr": np.arange(3), "scalar": np.float64(1.5), "i": np.int32(7)}
def boom():
    raise ValueError("candidate failed here")
def forever():
    while True:
        pass
def die():
    os._exit(9)
def bad():
    return {1: "int key"}
def obj():
    return object()
def fds():
    return sorted(int(n) for n in os.listdir("/proc/self/fd"))
def stdin_is_devnull():
    return os.path.realpath("/proc/self/fd/0")
def extra_reply():
    os.write(int(sys.argv[3]), b"2\\n{}")  # a second, unasked-for reply on its own pipe
    return 1
def patch_timer():
    time.perf_counter = lambda: 0.0
    return time.perf_counter()
"""


@pytest.fixture
def program(tmp_path: Path) -> str:
    path = tmp_path / "program.py"
    path.write_text(textwrap.dedent(PROGRAM))
    return str(path)


def test_plain_values_round_trip(program: str) -> None:
    assert guest.call_candidate(program, "add", (2, 3)) == 5
    assert guest.call_candidate(program, "add", [2], {"b": 10}) == 12
    out = guest.call_candidate(program, "shapes")
    assert out["t"] == [1, 2] and out["none"] is None and out["s"] == "x"
    assert math.isnan(out["nan"]) and out["inf"] == math.inf


def test_numpy_values_are_converted(program: str) -> None:
    pytest.importorskip("numpy")
    assert guest.call_candidate(program, "np_values") == {"arr": [0, 1, 2], "scalar": 1.5, "i": 7}


@pytest.mark.parametrize(
    ("fn", "kind", "needle"),
    [
        ("boom", "exception", "ValueError: candidate failed here (program.py:"),
        ("forever", "timeout", "exceeded the time limit"),
        ("die", "crash", "exited with code 9"),
        ("bad", "bad_output", "not a str"),
        ("obj", "bad_output", "unsupported type object"),
        ("missing", "exception", "no function 'missing'"),
        ("extra_reply", "bad_output", "id mismatch|extra data"),  # answered before being asked
    ],
)
def test_failures_raise_candidate_error(program: str, fn: str, kind: str, needle: str) -> None:
    with pytest.raises(CandidateError) as info:
        guest.call_candidate(program, fn, timeout=1.0)
    assert info.value.kind == kind, info.value
    assert any(n in info.value.message for n in needle.split("|")), info.value


def test_import_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("x = = 1\n")
    with pytest.raises(CandidateError) as info:
        guest.call_candidate(str(broken), "f")
    assert info.value.kind == "import_error" and "SyntaxError" in info.value.message
    slow = tmp_path / "slow.py"
    slow.write_text("import time\ntime.sleep(30)\n")
    t0 = time.monotonic()
    with pytest.raises(CandidateError) as info:
        guest.call_candidate(str(slow), "f", timeout=0.5)
    # Not a speed claim: without the kill the call would block for the candidate's 30 s import.
    assert info.value.kind == "timeout" and time.monotonic() - t0 < 20


def test_child_sees_no_parent_fds_and_no_stdin(program: str) -> None:
    r, w = os.pipe()
    os.set_inheritable(w, True)  # even an inheritable fd must not reach the candidate
    try:
        fds = guest.call_candidate(program, "fds")
        assert w not in fds and r not in fds
        assert len(fds) <= 6  # 0,1,2, its request/reply pipes, the listdir fd
        assert guest.call_candidate(program, "stdin_is_devnull") == "/dev/null"
    finally:
        os.close(r)
        os.close(w)


def test_candidate_process_keeps_one_child(program: str) -> None:
    with guest.CandidateProcess(program) as proc:
        assert [proc.call("add", i, 1) for i in range(50)] == list(range(1, 51))
        assert proc.call("add", 1, kwargs={"b": 2}) == 3
        assert proc.call("patch_timer") == 0.0
        assert time.perf_counter() > 0.0  # the evaluator's timer is untouched
        with pytest.raises(CandidateError):
            proc.call("boom")
        assert proc.call("add", 4) == 4  # an exception does not kill the child
        with pytest.raises(CandidateError) as info:
            proc.call("forever", timeout=0.3)
        assert info.value.kind == "timeout"
        with pytest.raises(CandidateError) as info:
            proc.call("add", 1)
        assert info.value.kind == "crash" and "previous timeout" in info.value.message


def test_to_plain_rejects_non_plain_arguments(program: str) -> None:
    with pytest.raises(TypeError):
        guest.call_candidate(program, "add", ({1, 2},))


STATEFUL = """
import os
COUNTER = []

def bump():
    COUNTER.append(1)
    return {"n": len(COUNTER), "pid": os.getpid()}
"""


def test_call_candidate_forks_fresh_children_from_one_forkserver(tmp_path: Path) -> None:
    path = tmp_path / "stateful.py"
    path.write_text(STATEFUL)
    outs = [guest.call_candidate(str(path), "bump") for _ in range(4)]
    assert [o["n"] for o in outs] == [1, 1, 1, 1]  # no state survives from one call to the next
    assert len({o["pid"] for o in outs}) == 4
    server = guest._forkserver(start=False)
    assert server is not None and server.proc is not None and server.proc.poll() is None
    first = server.proc.pid
    guest.call_candidate(str(path), "bump")
    assert guest._forkserver(start=False).proc.pid == first  # reused, not one Python per call


def test_forkserver_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "stateful.py"
    path.write_text(STATEFUL)
    monkeypatch.setenv("AGENTOPT_GUEST_FORKSERVER", "0")
    with guest.CandidateProcess(str(path)) as proc:
        assert proc.call("bump")["n"] == 1
        assert proc._proc is not None and proc._pid is None  # a fresh interpreter, our own child


def test_crash_exit_code_is_reported_through_the_forkserver(program: str) -> None:
    with pytest.raises(CandidateError) as info:
        guest.call_candidate(program, "die")
    assert info.value.kind == "crash" and "code 9" in info.value.message


VECTORS = """
def echo(x):
    return x

def grid(n):
    return [i * 0.5 for i in range(n)]
"""


def test_float_vectors_cross_exactly(tmp_path: Path) -> None:
    """Long float lists take the binary path; values (nan, inf, -0.0) and types come back unchanged."""
    path = tmp_path / "vectors.py"
    path.write_text(VECTORS)
    vec = [float(i) / 7 for i in range(5000)] + [float("inf"), -0.0, 1e-308]
    nested = {"a": vec, "ints": list(range(100)), "short": [0.5, 1.5], "mixed": [1.0] * 70 + [2]}
    with guest.CandidateProcess(str(path)) as proc:
        out = proc.call("echo", nested)
        assert out["a"][:-3] == vec[:-3] and out["a"][-3] == float("inf") and str(out["a"][-2]) == "-0.0"
        assert out["ints"] == list(range(100)) and all(type(v) is int for v in out["ints"])
        assert out["mixed"][-1] == 2 and type(out["mixed"][-1]) is int and out["short"] == [0.5, 1.5]
        assert proc.call("grid", 20001) == [i * 0.5 for i in range(20001)]
        nan = proc.call("echo", [float("nan")] * 100)
        assert len(nan) == 100 and all(v != v for v in nan)
    frame = guest._frame({"v": [1.0] * 100})
    header, _, rest = frame.partition(b"\n")
    assert header.count(b",") == 1 and len(rest) > 800  # the vector went as 800 raw bytes
