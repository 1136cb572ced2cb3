"""Guest runner, protocol v1: import an evaluator, call one function, send ONE framed result.

Started by every sandbox backend as ``<python> -I runner.py`` in a private work dir with a
clean environment. Stdlib only; never imports agentopt (the guest may not have it).

Protocol (the host side lives in agentopt/sandbox/protocol.py):
1. Read the whole job JSON line from stdin (then stdin is done): protocol, nonce,
   evaluator_path, program_path, function, lib_dir, timeout_s, memory_mb, and optionally
   tune (options for the constants tuner, ``agentopt_tune.tune``, called instead of
   ``function``; its answer is the tuned source plus counts).
2. Move the ORIGINAL stdout to a private, non-inheritable fd (the result channel) and point
   fd 1 at fd 2, so every print by the evaluator or candidate lands in the captured stderr
   and nothing else can write to the result channel by accident.
3. Import the evaluator from its path and call ``function(program_path)``.
4. Write exactly one frame to the result channel:
   ``b"AGENTOPT1 " + nonce + b" " + len(body) + b"\\n" + body`` with body
   ``{"ok": true, "value": {...}}`` or ``{"ok": false, "error_kind": ..., "error": ...}``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import traceback
from typing import Any

PROTOCOL = 1
MAGIC = b"AGENTOPT1"
_MAX_DEPTH = 100


class _BadResult(Exception):
    """The evaluator returned something that is not a result (not its exception: a bad value)."""


def _exc_line(exc: BaseException) -> str:
    """``ExcType: message (file:line)``: one line naming where the evaluator/candidate failed."""
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


def _jsonable(value: Any, depth: int = 0) -> Any:
    """Make an evaluator's value JSON-serialisable: numpy -> Python, unknown -> str()."""
    if depth > _MAX_DEPTH:
        return str(value)[:10_000]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value  # nan/inf allowed (allow_nan); the host treats them as non-numeric
    if isinstance(value, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, depth + 1) for v in value]
    module = type(value).__module__ or ""
    if module == "numpy" or module.startswith("numpy."):
        try:
            if getattr(value, "ndim", 0) > 0:
                return _jsonable(value.tolist(), depth + 1)
            return _jsonable(value.item(), depth + 1)
        except Exception:  # noqa: BLE001 - fall back to text
            pass
    try:
        return str(value)[:10_000]
    except Exception:  # noqa: BLE001 - a __str__ that raises
        return f"<unprintable {type(value).__name__}>"


def _normalise(result: Any) -> dict[str, Any]:
    """Accept a dict, or an EvaluationResult-like object with ``.metrics`` and ``.artifacts``."""
    if isinstance(result, dict):
        return result
    metrics = getattr(result, "metrics", None)
    if isinstance(metrics, dict):
        out = dict(metrics)
        artifacts = getattr(result, "artifacts", None)
        if artifacts:
            out["artifacts"] = artifacts
        return out
    raise _BadResult(f"evaluator returned {type(result).__name__}, expected a dict")


def _apply_limits(memory_mb: Any, timeout_s: Any) -> None:
    """Defence in depth for backends that cannot set rlimits from outside: only ever lower them."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return

    def lower(which: int, value: int) -> None:
        soft, hard = resource.getrlimit(which)
        new_hard = value if hard == resource.RLIM_INFINITY else min(hard, value)
        new_soft = new_hard if soft == resource.RLIM_INFINITY else min(soft, new_hard)
        try:
            resource.setrlimit(which, (new_soft, new_hard))
        except (ValueError, OSError):
            pass

    if isinstance(memory_mb, int | float) and memory_mb > 0:
        lower(resource.RLIMIT_AS, int(memory_mb) * 1024 * 1024)
    if isinstance(timeout_s, int | float) and timeout_s > 0:
        lower(resource.RLIMIT_CPU, int(math.ceil(timeout_s)) + 5)
    lower(resource.RLIMIT_CORE, 0)


def _make_undumpable() -> None:
    """PR_SET_DUMPABLE=0: a same-uid candidate child can then neither ptrace this process nor
    open /proc/<runner>/fd/* or /proc/<runner>/mem to reach the result channel or the nonce."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except Exception:  # noqa: BLE001 - not Linux / no libc: best effort
        pass


def _write_frame(fd: int, nonce: str, body: dict[str, Any]) -> None:
    try:
        data = json.dumps(body, allow_nan=True, separators=(",", ":")).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        data = json.dumps({"ok": False, "error_kind": "bad_result",
                           "error": f"result not serialisable: {_exc_line(exc)}"}).encode()
    frame = MAGIC + b" " + nonce.encode() + b" " + str(len(data)).encode() + b"\n" + data
    view = memoryview(frame)
    while view:
        view = view[os.write(fd, view):]


def _print_traceback() -> None:
    """The full traceback on stderr: the host keeps its tail per failed candidate, which
    says which line of the evaluator (or the candidate) failed; the frame carries one line."""
    try:
        etype, exc, tb = sys.exc_info()
        # The runner's own frames and importlib's are noise: keep the evaluator's and the candidate's.
        frames = [f for f in traceback.extract_tb(tb)
                  if f.filename != __file__ and not f.filename.startswith("<frozen")]
        lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames),
                 *traceback.format_exception_only(etype, exc)]
        sys.stderr.write("".join(lines))
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - a broken stderr must not cost the result frame
        pass


def _run(job: dict[str, Any], module: Any = None) -> dict[str, Any]:
    """Import the evaluator (unless a warm zygote already did: ``module``) and call it; map every
    failure to an error body."""
    lib_dir = job.get("lib_dir")
    evaluator_path = os.path.abspath(str(job["evaluator_path"]))
    program_path = os.path.abspath(str(job["program_path"]))
    function = str(job.get("function") or "evaluate")
    for path in (os.path.dirname(evaluator_path), lib_dir):
        if path and path not in sys.path:
            sys.path.insert(0, str(path))
    try:
        if module is None:
            name = f"agentopt_evaluator_{os.getpid()}"
            spec = importlib.util.spec_from_file_location(name, evaluator_path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load evaluator {os.path.basename(evaluator_path)}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        tune = job.get("tune")
        if isinstance(tune, dict):  # a constants-tuning job: see evaluators/agentopt_tune.py
            import agentopt_tune

            return {"ok": True, "value": _jsonable(agentopt_tune.tune(module, program_path, tune))}
        func = getattr(module, function, None)
        if not callable(func):
            return {"ok": False, "error_kind": "evaluator_error",
                    "error": f"evaluator {os.path.basename(evaluator_path)} defines no function {function!r}"}
        value = _normalise(func(program_path))
    except MemoryError as exc:
        return {"ok": False, "error_kind": "memory", "error": _exc_line(exc)}
    except RecursionError as exc:
        _print_traceback()
        return {"ok": False, "error_kind": "evaluator_error", "error": _exc_line(exc)}
    except _BadResult as exc:
        return {"ok": False, "error_kind": "bad_result", "error": str(exc)}
    except BaseException as exc:  # noqa: BLE001 - SystemExit/KeyboardInterrupt too: never skip the frame
        _print_traceback()
        return {"ok": False, "error_kind": "evaluator_error", "error": _exc_line(exc)}
    try:
        return {"ok": True, "value": _jsonable(value)}
    except MemoryError as exc:
        return {"ok": False, "error_kind": "memory", "error": _exc_line(exc)}


def main() -> int:
    raw = sys.stdin.buffer.read()
    try:
        job = json.loads(raw)
        if not isinstance(job, dict) or "nonce" not in job:
            raise ValueError("no nonce")
        if job.get("protocol") != PROTOCOL:
            raise ValueError(f"unsupported protocol {job.get('protocol')!r}")
    except (ValueError, KeyError, TypeError) as exc:
        sys.stderr.write(f"runner: bad job: {exc}\n")
        return 3
    del raw
    return serve(job)


def serve(job: dict[str, Any], module: Any = None) -> int:
    """Steps 2-4 of the protocol for a parsed job; the result channel is the current fd 1.

    Also the entry point of warm workers (sandboxes/zygote.py), which fork a job with the
    runner and the evaluator ``module`` already imported.
    """
    nonce = str(job["nonce"])
    _make_undumpable()
    result_fd = os.dup(1)  # non-inheritable by default (PEP 446)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _apply_limits(job.get("memory_mb"), job.get("timeout_s"))
    body = _run(job, module)
    try:
        sys.stderr.flush()
    except Exception:  # noqa: BLE001
        pass
    _write_frame(result_fd, nonce, body)
    os.close(result_fd)
    return 0


if __name__ == "__main__":
    code = main()
    # Skip interpreter shutdown: a non-daemon thread or atexit hook left by the evaluator or
    # candidate must not hold the job open after the result was sent.
    try:
        sys.stderr.flush()
    finally:
        os._exit(code)
