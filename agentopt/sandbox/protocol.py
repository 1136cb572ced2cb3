"""Host side of runner protocol v1, shared by every backend (local, docker, ray).

The guest runner (``sandboxes/runner.py``) receives one JSON line on stdin and answers with
exactly one frame on its original stdout::

    b"AGENTOPT1 " + nonce + b" " + str(len(body)) + b"\\n" + body

The nonce is fresh per job and only ever travels through the runner's stdin pipe, so code
that the runner did not start itself cannot produce a frame the host accepts. Parsing is
strict: anything but exactly one well-formed frame with the right nonce is ``bad_result``.
"""

from __future__ import annotations

import hmac
import json
import secrets
import signal
from typing import Any

from agentopt.sandbox.base import JobResult, SandboxJob

PROTOCOL_VERSION = 1
MAGIC = b"AGENTOPT1"
# Header bytes on top of the body: magic, nonce, length digits, separators.
_HEADER_MAX = 128
GUEST_ERROR_KINDS = frozenset({"evaluator_error", "memory", "bad_result"})


def new_nonce() -> str:
    """A fresh unguessable job nonce (hex, 128 bits)."""
    return secrets.token_hex(16)


def build_job_payload(
    job: SandboxJob,
    *,
    evaluator_path: str,
    program_path: str,
    lib_dir: str,
    nonce: str,
) -> bytes:
    """The single JSON line written to the runner's stdin. Paths are as the GUEST sees them."""
    payload = {
        "protocol": PROTOCOL_VERSION,
        "nonce": nonce,
        "evaluator_path": evaluator_path,
        "program_path": program_path,
        "function": job.function,
        "lib_dir": lib_dir,
        "timeout_s": job.timeout_s,
        "memory_mb": job.memory_mb,
    }
    if job.tune is not None:
        payload["tune"] = job.tune
    return json.dumps(payload).encode() + b"\n"


def parse_result_frame(data: bytes, nonce: str, max_bytes: int) -> tuple[dict[str, Any] | None, str | None]:
    """Return ``(body, None)`` for exactly one valid frame, else ``(None, reason)``.

    ``body`` is ``{"ok": True, "value": dict}`` or ``{"ok": False, "error_kind", "error"}``.
    """
    if not data:
        return None, "no result frame"
    if len(data) > max_bytes + _HEADER_MAX:
        return None, f"result larger than {max_bytes} bytes"
    header, sep, rest = data.partition(b"\n")
    if not sep or len(header) > _HEADER_MAX:
        return None, "malformed result frame header"
    parts = header.split(b" ")
    if len(parts) != 3 or parts[0] != MAGIC:
        return None, "result frame has wrong magic (not written by the runner)"
    if not hmac.compare_digest(parts[1], nonce.encode()):
        return None, "result frame has the wrong nonce (forged)"
    if not parts[2].isdigit() or len(parts[2]) > 12:
        return None, "malformed result frame length"
    size = int(parts[2])
    if size > max_bytes:
        return None, f"result of {size} bytes exceeds the {max_bytes}-byte limit"
    if len(rest) < size:
        return None, "result frame truncated"
    if len(rest) > size:
        extra = rest[size:]
        if MAGIC in extra:
            return None, "more than one result frame"
        return None, "trailing bytes after the result frame"
    try:
        body = json.loads(rest)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None, "result frame body is not JSON"
    return _check_body(body)


def _check_body(body: Any) -> tuple[dict[str, Any] | None, str | None]:
    if not isinstance(body, dict) or not isinstance(body.get("ok"), bool):
        return None, "result frame body has the wrong shape"
    if body["ok"]:
        if not isinstance(body.get("value"), dict):
            return None, "evaluator result is not a dict"
        return {"ok": True, "value": body["value"]}, None
    kind = body.get("error_kind")
    if kind not in GUEST_ERROR_KINDS:
        return None, f"unknown error_kind {str(kind)[:40]!r} in result frame"
    return {"ok": False, "error_kind": kind, "error": " ".join(str(body.get("error", "")).split())[:2000]}, None


def describe_exit(returncode: int | None) -> str:
    """Human text for how a guest ended: ``killed by SIGSEGV`` or ``exit code 3``."""
    if returncode is None:
        return "did not exit"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    if returncode > 128 and returncode - 128 in {s.value for s in signal.Signals}:
        # unshare / shells report a signalled child as 128+N
        return f"killed by {signal.Signals(returncode - 128).name}"
    return f"exit code {returncode}"


def job_result(
    *,
    job: SandboxJob,
    nonce: str,
    result_bytes: bytes,
    returncode: int | None,
    timed_out: bool,
    stdout: str,
    stderr: str,
    wall_s: float,
    isolation: list[str],
    oom_killed: bool = False,
) -> JobResult:
    """Turn what a backend observed into a JobResult; the one mapping all backends share.

    Order matters: a timeout wins (the frame of a killed job is never trusted), then a valid
    frame, then a crash with no frame at all, then a rejected frame (``bad_result``).
    """
    common: dict[str, Any] = {"stdout": stdout, "stderr": stderr, "wall_s": wall_s, "isolation": isolation}
    if timed_out:
        return JobResult(ok=False, error_kind="timeout",
                         error=f"timed out after {job.timeout_s:g}s; the whole process tree was killed",
                         **common)
    body, reason = parse_result_frame(result_bytes, nonce, job.max_result_bytes)
    if body is not None:
        if body["ok"]:
            return JobResult(ok=True, value=body["value"], **common)
        return JobResult(ok=False, error_kind=body["error_kind"], error=body["error"] or "evaluator failed",
                         **common)
    if not result_bytes:
        if oom_killed or "MemoryError" in stderr[-2000:]:
            return JobResult(ok=False, error_kind="memory",
                             error=f"guest ran out of memory (cap {job.memory_mb} MB); {describe_exit(returncode)}",
                             **common)
        return JobResult(ok=False, error_kind="crash",
                         error=f"guest exited without a result ({describe_exit(returncode)})", **common)
    return JobResult(ok=False, error_kind="bad_result", error=f"rejected result: {reason}", **common)
