"""Run health: decide when a run must stop loudly instead of burning its budget.

A broken setup (an evaluator with a syntax error, no ``evaluate``, always raising, returning
the wrong type, or a mistyped ``objective.metric``) makes *every* candidate fail. Without
these checks the run spends its whole budget, exits 0 and reports ``best program: None``.
The controller calls :func:`initial_failure` once, after the initial program is evaluated,
and :class:`FailureRate` after each evaluated candidate; both return a reason or None.

Also here: :func:`output_tail`, the capped, terminal-safe tail of what the guest printed,
stored per failed candidate so every failure can be explained after the fact.
"""

from __future__ import annotations

from collections import deque

from agentopt.errors import AgentoptError
from agentopt.textsafe import strip_control

#: Failure kinds that say the evaluator or the setup is broken when even the initial program
#: hits them. ``failed_check`` (the evaluator judged the program wrong), timeouts, memory and
#: crashes can be the initial program's own fault, so they are reported but do not stop the run.
SETUP_FAILURE_KINDS = frozenset({"evaluator_error", "bad_result", "sandbox_error"})
OUTPUT_TAIL_CHARS = 4000


class RunAborted(AgentoptError):
    """The run stopped because its setup is broken; everything computed so far is kept."""

    exit_code = 1


def output_tail(stderr: str, stdout: str = "", limit: int = OUTPUT_TAIL_CHARS) -> str:
    """The last ``limit`` characters of the guest's output, safe to print and to store.

    The runner points the guest's fd 1 at stderr, so the candidate's own prints and the
    evaluator's traceback both land in ``stderr``; ``stdout`` is whatever a backend kept apart.
    Escape sequences and control characters are removed so a terminal cannot be hijacked."""
    text = "\n".join(part for part in (stdout.strip("\n"), stderr.strip("\n")) if part)
    text = strip_control(text).rstrip()
    if len(text) > limit:
        cut = text[-limit:]
        newline = cut.find("\n")
        cut = cut[newline + 1 :] if 0 <= newline < 200 else cut
        text = f"[... {len(text) - len(cut)} earlier characters dropped]\n{cut}"
    return text


def initial_failure(error: str | None, error_kind: str | None, tail: str) -> str | None:
    """Why the run cannot go on when the initial program failed for a setup reason, else None."""
    if error is None or error_kind not in SETUP_FAILURE_KINDS:
        return None
    where = "the sandbox failed" if error_kind == "sandbox_error" else "the evaluator failed"
    hint = "; check it with `agentopt validate --run TASK`"
    last = _last_line(tail)
    shown = f" (last output: {last})" if last and last not in error else ""
    return f"the initial program could not be evaluated, so no candidate can be: {where}: {error}{shown}{hint}"


def _last_line(tail: str) -> str:
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


class FailureRate:
    """A sliding window over the last ``window`` evaluated candidates (cache hits excluded)."""

    def __init__(self, max_rate: float | None, window: int) -> None:
        self.max_rate = max_rate
        self.window = window
        self._recent: deque[bool] = deque(maxlen=window)

    def record(self, failed: bool) -> str | None:
        """Add one outcome; return why the run should stop, or None."""
        self._recent.append(failed)
        if self.max_rate is None or len(self._recent) < self.window:
            return None
        rate = sum(self._recent) / len(self._recent)
        if rate > self.max_rate or (self.max_rate >= 1.0 and rate == 1.0):
            return (
                f"{sum(self._recent)} of the last {len(self._recent)} evaluated candidates failed "
                f"(search.max_failure_rate {self.max_rate:g}); see `agentopt report` for the reasons"
            )
        return None
