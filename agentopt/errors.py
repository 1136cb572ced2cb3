"""Errors a user can cause. Each carries a one-line message meant for the terminal.

The CLI catches :class:`AgentoptError` and prints ``error: <message>`` with exit code 2,
so raising one of these is how any module reports bad input without a traceback.
"""

from __future__ import annotations


class AgentoptError(Exception):
    """Base class: a problem the user can fix (bad config, missing file, unreachable model)."""

    exit_code: int = 2

    def __init__(self, message: str) -> None:
        # Keep it to one line: multi-line text breaks the CLI's one-line contract.
        super().__init__(" ".join(str(message).split()))


class TaskError(AgentoptError):
    """task.yaml is malformed, names a missing file, or has an unknown key."""


class LLMError(AgentoptError):
    """The LLM provider could not be reached or answered with an error after retries."""


class BudgetExceeded(AgentoptError):
    """A budget (USD, tokens, evaluations, wall time) would be exceeded by the next call."""


class SandboxError(AgentoptError):
    """The sandbox itself (not the candidate) could not run: missing engine, bad image, no GPU."""
