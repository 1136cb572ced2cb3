"""Guest-side helpers for evaluators: run candidate code in a SEPARATE child process.

Why: an evaluator that ``import``s the candidate shares one interpreter with it, so the
candidate can monkeypatch ``time.perf_counter``, builtins, numpy, or the evaluator's own
comparison function, and can find the sandbox's result channel. With this module the
candidate runs in a child process started with ``close_fds`` and ``stdin=DEVNULL``; the
only thing that comes back is one framed JSON message per call over a pipe created for
that child alone, and only plain values survive it.

Public API (stdlib only; numpy is optional and only converted, never required)::

    call_candidate(program_path, fn, args=(), kwargs=None, *, timeout=10.0) -> Any
    with CandidateProcess(program_path, import_timeout=10.0) as proc:
        t0 = time.perf_counter(); value = proc.call("solve", x, timeout=2.0); dt = ...
    CandidateError(kind, message)   # kind: timeout | crash | exception | bad_output | import_error
    to_plain(value) -> plain JSON-able value (numpy arrays/scalars converted, tuples -> lists)

Values crossing the boundary (arguments and results): None, bool, int, float (nan/inf
allowed), str, list/tuple (-> list), dict with str keys, numpy arrays/scalars (-> tolist()/
item()). Anything else is an error: ``TypeError`` for arguments (an evaluator bug),
``CandidateError("bad_output")`` for results.

This file is also the child's entry point (``python -I agentopt_guest.py --agentopt-child``);
it never imports agentopt and must stay importable with the standard library alone.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import random
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from typing import Any

__all__ = ["CandidateError", "CandidateProcess", "call_candidate", "to_plain"]

CANDIDATE_ERROR_KINDS = ("timeout", "crash", "exception", "bad_output", "import_error")
# A reply larger than this is a bad_output (protects the evaluator's memory).
DEFAULT_MAX_REPLY_BYTES = 64 * 1024 * 1024
_MAX_DEPTH = 200
_CHILD_FLAG = "--agentopt-child"
_SERVER_FLAG = "--agentopt-forkserver"
_HANDED_FD_ENV = "AGENTOPT_GUEST_FORKSERVER_FD"
_SPAWN_TIMEOUT_S = 10.0


class CandidateError(Exception):
    """The candidate failed; ``kind`` says how and ``message`` is one line for feedback."""

    def __init__(self, kind: str, message: str) -> None:
        if kind not in CANDIDATE_ERROR_KINDS:
            kind = "crash"
        self.kind = kind
        self.message = " ".join(str(message).split())[:2000]
        super().__init__(f"{self.kind}: {self.message}")


# ---------------------------------------------------------------- value conversion


def to_plain(value: Any, _depth: int = 0) -> Any:
    """Return ``value`` as plain JSON-able data; raise TypeError for anything else.

    numpy is converted by duck typing on its module name so this never imports numpy.
    """
    if _depth > _MAX_DEPTH:
        raise TypeError("value nested too deeply")
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, list | tuple):
        # Fast path for the common flat vector (20k floats): one C-level type scan, no recursion.
        if _FLAT_TYPES.issuperset(map(type, value)):
            return list(value)
        return [to_plain(v, _depth + 1) for v in value]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"dict key {k!r} is not a str")
            out[k] = to_plain(v, _depth + 1)
        return out
    module = type(value).__module__ or ""
    if module == "numpy" or module.startswith("numpy."):
        if hasattr(value, "ndim") and getattr(value, "ndim", 0) > 0 and hasattr(value, "tolist"):
            return to_plain(value.tolist(), _depth + 1)
        if hasattr(value, "item"):
            return to_plain(value.item(), _depth + 1)
    raise TypeError(f"unsupported type {type(value).__name__}")


_FLAT_TYPES = frozenset({float, int, str, bool, type(None)})


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, allow_nan=True, separators=(",", ":")).encode()


# Long lists of floats (vectors, grids) travel as raw float64 bytes after the JSON body: a JSON
# round trip of 20k floats costs ~10 ms of float formatting and parsing on each side.
_BLOB_KEY = "__agentopt_f64__"
_BLOB_MIN = 64
_MAX_BLOBS = 64
_NEST = 8
_FLOAT_ONLY = frozenset({float})
_MAX_HEADER = 1024


# Builtins bound now: a candidate that patches builtins (len, str...) in its own process must
# still be able to send a well-formed reply (a wrong answer, not a broken channel).
_len, _str, _type, _map, _list, _dict = len, str, type, map, list, dict


def _pack(obj: Any, blobs: list[bytes], depth: int = 0) -> Any:
    """Replace float-only lists (>= _BLOB_MIN long) by placeholders; their bytes go to ``blobs``."""
    kind = _type(obj)
    if kind is _list:
        if _len(obj) >= _BLOB_MIN:
            if _len(blobs) < _MAX_BLOBS and _FLOAT_ONLY.issuperset(_map(_type, obj)):
                blobs.append(array("d", obj).tobytes())
                return {_BLOB_KEY: _len(blobs) - 1}
            return obj
        return [_pack(v, blobs, depth + 1) for v in obj] if depth < _NEST else obj
    if kind is _dict and depth < _NEST:
        return {k: _pack(v, blobs, depth + 1) for k, v in obj.items()}
    return obj


def _unpack(obj: Any, blobs: list[bytes], depth: int = 0) -> Any:
    """Inverse of :func:`_pack` (a bad placeholder raises ValueError)."""
    kind = type(obj)
    if kind is dict:
        if len(obj) == 1 and _BLOB_KEY in obj:
            index = obj[_BLOB_KEY]
            if type(index) is not int or not 0 <= index < len(blobs) or len(blobs[index]) % 8:
                raise ValueError("bad vector placeholder")
            vec = array("d")
            vec.frombytes(blobs[index])
            return vec.tolist()
        return {k: _unpack(v, blobs, depth + 1) for k, v in obj.items()} if depth < _NEST else obj
    if kind is list and len(obj) < _BLOB_MIN and depth < _NEST:
        return [_unpack(v, blobs, depth + 1) for v in obj]
    return obj


def _frame(obj: Any) -> bytes:
    """``<json len>[,<blob len>...]\n<json><blobs>``: one message on a candidate pipe."""
    blobs: list[bytes] = []
    body = _dumps(_pack(obj, blobs))
    header = ",".join([_str(_len(body)), *(_str(_len(b)) for b in blobs)])
    return header.encode() + b"\n" + body + b"".join(blobs)


def _frame_sizes(header: bytes) -> list[int] | None:
    """The part sizes a frame header announces, or None when it is malformed."""
    parts = header.split(b",")
    if len(parts) > 1 + _MAX_BLOBS or not all(p.isdigit() and len(p) <= 12 for p in parts):
        return None
    return [int(p) for p in parts]


def _unframe(sizes: list[int], data: bytes) -> Any:
    """Decode the parts of one frame (``data`` is exactly ``sum(sizes)`` bytes)."""
    body, blobs, at = data[:sizes[0]], [], sizes[0]
    for size in sizes[1:]:
        blobs.append(data[at:at + size])
        at += size
    value = json.loads(body)
    return _unpack(value, blobs) if blobs else value


def _exc_line(exc: BaseException) -> str:
    """``ExcType: message (file:line)`` for the innermost frame: what an LLM needs to fix it."""
    where = ""
    tb = exc.__traceback__
    # Walk to the innermost frame by hand: extract_tb() on a million-frame RecursionError /
    # MemoryError traceback would take seconds and the memory we just ran out of.
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        where = f" ({os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno})"
    msg = " ".join(str(exc).split())[:1000]
    return f"{type(exc).__name__}: {msg}{where}" if msg else f"{type(exc).__name__}{where}"


# ---------------------------------------------------------------- parent side


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class CandidateProcess:
    """One long-lived candidate child for many calls (timing tasks, warm caches).

    Import happens once in ``__enter__`` (bounded by ``import_timeout``). Each ``call``
    sends a request carrying a fresh random id; the reply must echo it, so a candidate
    cannot answer a call before it was made. After a timeout or crash the child is gone
    and further calls raise ``CandidateError("crash")``.
    """

    def __init__(
        self,
        program_path: str,
        *,
        import_timeout: float = 10.0,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
    ) -> None:
        self.program_path = os.path.abspath(program_path)
        self.import_timeout = import_timeout
        self.max_reply_bytes = max_reply_bytes
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None  # a child forked by the forkserver (not our child)
        self._req_w: int | None = None
        self._resp_r: int | None = None
        self._buf = b""
        self._tmpdir: str | None = None
        self._dead: str | None = None

    # -- lifecycle

    def __enter__(self) -> CandidateProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Spawn the child and wait until the candidate module imported (or failed to)."""
        if self._proc is not None or self._pid is not None:
            return
        base = os.environ.get("TMPDIR") or os.getcwd()
        self._tmpdir = tempfile.mkdtemp(prefix="candidate-", dir=base if os.path.isdir(base) else None)
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        server = _forkserver()
        try:
            if server is not None:
                self._pid = server.spawn(self.program_path, req_r, resp_w, self._tmpdir)
            if self._pid is None:
                self._popen(req_r, resp_w)
        finally:
            os.close(req_r)
            os.close(resp_w)
        self._req_w, self._resp_r = req_w, resp_r
        reply = self._read_reply(time.monotonic() + self.import_timeout, "import")
        if not reply.get("ok"):
            kind = reply.get("kind", "import_error")
            self._fail(kind, str(reply.get("error", "import failed")))

    def _popen(self, req_r: int, resp_w: int) -> None:
        """The slow path: a fresh interpreter for this child (no forkserver on this platform)."""
        self._proc = subprocess.Popen(
                [sys.executable, "-I", os.path.abspath(__file__), _CHILD_FLAG,
                 str(req_r), str(resp_w), self.program_path],
                stdin=subprocess.DEVNULL,
                stdout=2,  # candidate prints go to the job's stderr, never to a result channel
                stderr=2,
                close_fds=True,
                pass_fds=(req_r, resp_w),
                cwd=self._tmpdir,
                start_new_session=True,
            )

    def close(self) -> None:
        """Kill the child (and its process group) and remove its scratch directory."""
        proc, self._proc = self._proc, None
        for fd in (self._req_w, self._resp_r):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._req_w = self._resp_r = None
        if proc is not None:
            _kill_group(proc)
        pid, self._pid = self._pid, None
        if pid is not None:
            for kill in (os.killpg, os.kill):  # its own session; the forkserver reaps it
                try:
                    kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    # -- calls

    def call(self, fn: str, *args: Any, timeout: float = 10.0, kwargs: dict[str, Any] | None = None) -> Any:
        """Call ``fn(*args, **kwargs)`` in the child; return its plain result or raise CandidateError."""
        if self._dead:
            raise CandidateError("crash", f"candidate process is not running ({self._dead})")
        if self._proc is None and self._pid is None:
            self.start()
        call_id = secrets.token_hex(8)
        payload = _frame({"id": call_id, "fn": str(fn), "args": to_plain(list(args)),
                          "kwargs": to_plain(dict(kwargs or {}))})
        deadline = time.monotonic() + timeout
        self._write_all(payload, deadline)
        reply = self._read_reply(deadline, f"call to {fn}()")
        if reply.get("id") != call_id:
            self._fail("bad_output", "reply does not answer this call (id mismatch)")
        if reply.get("ok") is True:
            if "value" not in reply:
                self._fail("bad_output", "reply without a value")
            return reply["value"]
        kind = reply.get("kind")
        kind = kind if kind in ("exception", "bad_output") else "bad_output"
        raise CandidateError(kind, str(reply.get("error", "candidate failed")))

    # -- plumbing

    def _fail(self, kind: str, message: str) -> None:
        """Kill the child and raise; a child that misbehaved is never reused."""
        self._dead = f"previous {kind}"
        self.close()
        raise CandidateError(kind, message)

    def _write_all(self, data: bytes, deadline: float) -> None:
        assert self._req_w is not None
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail("timeout", "candidate did not accept its input within the time limit")
            _, ready, _ = select.select([], [self._req_w], [], remaining)
            if not ready:
                continue
            try:
                n = os.write(self._req_w, view[:65536])
            except (BrokenPipeError, OSError):
                self._crashed("before reading its input")
                return
            view = view[n:]

    def _read_reply(self, deadline: float, what: str) -> dict[str, Any]:
        header = self._read_until_newline(deadline, what)
        sizes = _frame_sizes(header)
        if sizes is None:
            self._fail("bad_output", "malformed reply header")
        assert sizes is not None
        size = sum(sizes)
        if size > self.max_reply_bytes:
            self._fail("bad_output", f"reply of {size} bytes exceeds {self.max_reply_bytes}")
        data = self._read_exact(size, deadline, what)
        try:
            reply = _unframe(sizes, data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            self._fail("bad_output", "reply is not valid JSON")
        if not isinstance(reply, dict):
            self._fail("bad_output", "reply is not an object")
        return reply

    def _fill(self, deadline: float, what: str) -> None:
        assert self._resp_r is not None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            self._fail("timeout", f"{what} exceeded the time limit")
        ready, _, _ = select.select([self._resp_r], [], [], remaining)
        if not ready:
            self._fail("timeout", f"{what} exceeded the time limit")
        chunk = os.read(self._resp_r, 1 << 20)
        if not chunk:
            self._crashed(f"during {what}")
        self._buf += chunk

    def _read_until_newline(self, deadline: float, what: str) -> bytes:
        while b"\n" not in self._buf:
            if len(self._buf) > _MAX_HEADER:
                self._fail("bad_output", "malformed reply header")
            self._fill(deadline, what)
        header, _, self._buf = self._buf.partition(b"\n")
        return header

    def _read_exact(self, size: int, deadline: float, what: str) -> bytes:
        while len(self._buf) < size:
            self._fill(deadline, what)
        body, self._buf = self._buf[:size], self._buf[size:]
        if self._buf:
            # Bytes beyond one reply: the candidate is writing unasked-for frames.
            self._fail("bad_output", "unexpected extra data after the reply")
        return body

    def _crashed(self, when: str) -> None:
        proc = self._proc
        code: int | None = None
        server = _forkserver(start=False)
        if self._pid is not None and server is not None:
            code = server.exit_code(self._pid, 2.0)
        elif proc is not None:
            try:
                code = proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                code = None
        if code is None:
            how = "closed its reply channel"
        elif code < 0:
            how = f"was killed by {_signal_name(code)}"
        else:
            how = f"exited with code {code}"
        self._fail("crash", f"candidate process {how} {when}")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's whole session/process group, then reap the child."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except OSError:
        pass
    try:
        proc.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        pass


class _ForkServer:
    """A fresh interpreter started ONCE per evaluator process that forks every candidate child.

    Why: a new Python per call costs tens of ms (more under load: 200 calls could exceed a
    30 s evaluation); a fork of this small, already-started process costs about a millisecond.
    Why not fork the evaluator itself: its memory holds the job's nonce and its fds the
    runner's result channel. This server is exec'd with ``close_fds`` and a clean memory, so
    its forks carry nothing of the evaluator's. It pre-imports the installed modules a
    candidate imports at top level (numpy...), so each child only imports the candidate.
    """

    def __init__(self, adopt_fd: int | None = None) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        if adopt_fd is not None:
            # A warm local sandbox already started this job's forkserver (from a clean process,
            # inside the job's namespaces and cgroup, as nobody) and left its socket on this fd.
            self.sock = socket.socket(fileno=adopt_fd)
            self.sock.settimeout(_SPAWN_TIMEOUT_S)
            if self._recv().get("op") != "ready":
                raise OSError("candidate forkserver did not start")
            return
        here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", os.path.abspath(__file__), _SERVER_FLAG, str(there.fileno())],
                stdin=subprocess.DEVNULL, stdout=2, stderr=2, close_fds=True, pass_fds=(there.fileno(),),
                cwd=tempfile.gettempdir(), start_new_session=True)
        finally:
            there.close()
        self.sock = here
        self.sock.settimeout(_SPAWN_TIMEOUT_S)
        if self._recv().get("op") != "ready":
            raise OSError("candidate forkserver did not start")

    def _recv(self) -> dict[str, Any]:
        data = self.sock.recv(65536)
        if not data:
            raise OSError("candidate forkserver exited")
        return json.loads(data)

    def spawn(self, program_path: str, req_r: int, resp_w: int, cwd: str) -> int | None:
        """Fork a candidate child serving ``program_path`` on the given pipes; None if the server failed."""
        with self.lock:
            try:
                socket.send_fds(self.sock, [_dumps({"op": "spawn", "program": program_path, "cwd": cwd})],
                                [req_r, resp_w])
                reply = self._recv()
            except (OSError, ValueError):
                self.close()
                return None
        pid = reply.get("pid")
        return pid if isinstance(pid, int) and pid > 0 else None

    def exit_code(self, pid: int, timeout: float) -> int | None:
        """How the child ``pid`` ended (negative: killed by that signal); None if unknown."""
        with self.lock:
            try:
                self.sock.send(_dumps({"op": "wait", "pid": pid, "timeout": timeout}))
                code = self._recv().get("code")
            except (OSError, ValueError):
                return None
        return code if isinstance(code, int) else None

    def close(self) -> None:
        global _SERVER
        if _SERVER is self:
            _SERVER = None
        try:
            self.sock.close()
        except OSError:
            pass
        if self.proc is not None:
            _kill_group(self.proc)


_SERVER: _ForkServer | None = None
_SERVER_LOCK = threading.Lock()


def _forkserver(start: bool = True) -> _ForkServer | None:
    """This process's forkserver (started on first use); None where fork is unavailable or disabled.

    ``AGENTOPT_GUEST_FORKSERVER=0`` in the sandbox env forces a fresh interpreter per child.
    """
    global _SERVER
    if not hasattr(os, "fork") or not hasattr(socket, "send_fds") or \
            os.environ.get("AGENTOPT_GUEST_FORKSERVER", "1") == "0":
        return None
    with _SERVER_LOCK:
        if _SERVER is not None and (_SERVER.pid != os.getpid() or
                                    (_SERVER.proc is not None and _SERVER.proc.poll() is not None)):
            _SERVER = None  # inherited across a fork, or died: never share it
        if _SERVER is None and start:
            handed = os.environ.pop(_HANDED_FD_ENV, None)
            if handed and handed.isdigit():
                try:
                    _SERVER = _ForkServer(adopt_fd=int(handed))
                except (OSError, ValueError):
                    _SERVER = None
            if _SERVER is None:
                try:
                    _SERVER = _ForkServer()
                except (OSError, ValueError):
                    _SERVER = None
        return _SERVER


def call_candidate(
    program_path: str,
    fn: str,
    args: tuple[Any, ...] | list[Any] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    timeout: float = 10.0,
) -> Any:
    """Import the candidate in a fresh child, call ``fn(*args, **kwargs)``, return the plain result.

    ``timeout`` bounds import + call together. Raises CandidateError on any failure.
    """
    deadline = time.monotonic() + timeout
    proc = CandidateProcess(program_path, import_timeout=timeout)
    try:
        proc.start()
        remaining = max(0.001, deadline - time.monotonic())
        return proc.call(fn, *args, timeout=remaining, kwargs=kwargs)
    finally:
        proc.close()


# ---------------------------------------------------------------- child side


def _child_main(req_fd: int, resp_fd: int, program_path: str) -> int:
    """Import the candidate, then answer framed requests until the parent closes the pipe."""
    req = os.fdopen(req_fd, "rb", buffering=0)
    resp = os.fdopen(resp_fd, "wb", buffering=0)
    # Bind what the reply path needs BEFORE the candidate is imported, so a candidate that
    # patches builtins/json in its own process does not break its own replies by accident.
    frame, _write = _frame, resp.write

    def send(obj: dict[str, Any]) -> None:
        try:
            data = frame(obj)
        except (TypeError, ValueError, RecursionError) as exc:
            data = frame({"id": obj.get("id"), "ok": False, "kind": "bad_output", "error": _exc_line(exc)})
        _write(data)

    # stdout is a pipe here (block-buffered): line-buffer it so the candidate's prints reach the
    # job's stderr as they happen, and survive into the stored output tail when a call fails.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            pass
    program_dir = os.path.dirname(os.path.abspath(program_path))
    sys.path.insert(0, program_dir)
    try:
        spec = importlib.util.spec_from_file_location("candidate_program", program_path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {os.path.basename(program_path)}")
        module = importlib.util.module_from_spec(spec)
        sys.modules["candidate_program"] = module
        spec.loader.exec_module(module)
    except BaseException as exc:  # noqa: BLE001 - any failure while importing is the candidate's
        send({"ok": False, "kind": "import_error", "error": _exc_line(exc)})
        return 0
    send({"ok": True, "ready": True})

    buf = b""
    while True:
        while b"\n" not in buf:
            chunk = req.read(1 << 20)
            if not chunk:
                return 0
            buf += chunk
        header, _, buf = buf.partition(b"\n")
        sizes = _frame_sizes(header)
        if sizes is None:
            return 1
        size = sum(sizes)
        chunks = [buf]
        have = len(buf)
        while have < size:
            chunk = req.read(1 << 20)
            if not chunk:
                return 0
            chunks.append(chunk)
            have += len(chunk)
        buf = b"".join(chunks)
        data, buf = buf[:size], buf[size:]
        request = _unframe(sizes, data)
        call_id = request.get("id")
        fn_name = request.get("fn", "")
        func = getattr(module, fn_name, None)
        if not callable(func):
            send({"id": call_id, "ok": False, "kind": "exception",
                  "error": f"AttributeError: candidate defines no function {fn_name!r}"})
            continue
        try:
            value = func(*request.get("args", []), **request.get("kwargs", {}))
        except BaseException as exc:  # noqa: BLE001 - report, keep serving
            if isinstance(exc, KeyboardInterrupt):
                raise
            send({"id": call_id, "ok": False, "kind": "exception", "error": _exc_line(exc)})
            continue
        try:
            plain = to_plain(value)
        except (TypeError, RecursionError) as exc:
            send({"id": call_id, "ok": False, "kind": "bad_output",
                  "error": f"{fn_name}() returned a non-plain value: {exc}"})
            continue
        send({"id": call_id, "ok": True, "value": plain})


def _preload_imports(program_path: str, done: set[str]) -> None:
    """Import the installed top-level modules the candidate imports (never the candidate's own files).

    Runs in the forkserver, whose sys.path (``-I``) has no program dir: only installed code can load.
    """
    try:
        with open(program_path, "rb") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return
    names = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module.split(".")[0])
    for name in names:
        if name in done or name in sys.modules:
            continue
        done.add(name)
        try:
            if importlib.util.find_spec(name) is not None:
                importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - the child imports it again and reports the error
            pass


def _server_main(sock_fd: int) -> int:
    """The forkserver: fork one candidate child per request; reap children; report exit codes."""
    sock = socket.socket(fileno=sock_fd)
    exited: dict[int, int] = {}
    preloaded: set[str] = set()

    def reap() -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            exited[pid] = os.waitstatus_to_exitcode(status)

    sock.send(_dumps({"op": "ready"}))
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, 2)
        except InterruptedError:
            continue
        if not data:
            return 0
        reap()
        msg = json.loads(data)
        if msg.get("op") == "spawn" and len(fds) == 2:
            _preload_imports(msg["program"], preloaded)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                try:
                    sock.close()
                    os.setsid()
                    os.chdir(msg["cwd"])
                    high = (os.dup2(fds[0], 1020), os.dup2(fds[1], 1021))  # clear of 3 and 4
                    req, resp = os.dup2(high[0], 3), os.dup2(high[1], 4)
                    os.closerange(5, 1 << 16)
                    random.seed()
                    sys.argv = [os.path.abspath(__file__), _CHILD_FLAG, str(req), str(resp), msg["program"]]
                    code = _child_main(req, resp, msg["program"])
                except BaseException:  # noqa: BLE001
                    code = 1
                for stream in (sys.stdout, sys.stderr):  # os._exit skips the flush a normal exit does
                    try:
                        stream.flush()
                    except Exception:  # noqa: BLE001
                        pass
                os._exit(code or 0)
            for fd in fds:
                os.close(fd)
            sock.send(_dumps({"op": "spawned", "pid": pid}))
        elif msg.get("op") == "wait":
            pid, deadline = int(msg["pid"]), time.monotonic() + float(msg.get("timeout", 2.0))
            while pid not in exited and time.monotonic() < deadline:
                time.sleep(0.002)
                reap()
            sock.send(_dumps({"op": "status", "code": exited.pop(pid, None)}))
        else:
            for fd in fds:
                os.close(fd)


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == _SERVER_FLAG:
    sys.exit(_server_main(int(sys.argv[2])))

if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == _CHILD_FLAG:
    sys.exit(_child_main(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
