"""One ledger of LLM spend (USD, tokens, calls) shared by every client in a run.

The ledger is checked *before* each call so a run stops cleanly at its budget instead of
discovering the overrun afterwards. It is guarded by a plain ``threading.Lock`` so it is safe
both from asyncio tasks and from worker threads (trace optimizers may call from threads).
Concurrent in-flight calls can each pass the check, so a run may exceed a limit by at most
``llm.concurrency`` calls' worth — the price of not serialising calls.

Cached (replayed) completions are recorded too, at their originally recorded cost: that
makes a replayed run stop at exactly the same point as the run it replays.
"""

from __future__ import annotations

import threading
from typing import Any

from agentopt.errors import BudgetExceeded
from agentopt.llm.types import Completion


class BudgetLedger:
    """Running totals and optional limits; ``snapshot``/``restore`` carry them across a resume."""

    def __init__(
        self, *, max_usd: float | None = None, max_tokens: int | None = None, max_calls: int | None = None
    ) -> None:
        self.max_usd = max_usd
        self.max_tokens = max_tokens
        self.max_calls = max_calls
        self._lock = threading.Lock()
        self._usd = 0.0
        self._tokens = 0
        self._calls = 0
        self._cached_calls = 0

    @property
    def usd(self) -> float:
        with self._lock:
            return self._usd

    @property
    def tokens(self) -> int:
        with self._lock:
            return self._tokens

    @property
    def calls(self) -> int:
        with self._lock:
            return self._calls

    @property
    def cached_calls(self) -> int:
        with self._lock:
            return self._cached_calls

    def check_before_call(self, estimated_tokens: int = 0) -> None:
        """Raise :class:`BudgetExceeded` if the next call (of about ``estimated_tokens``) would overrun."""
        with self._lock:
            if self.max_usd is not None and self._usd >= self.max_usd:
                raise BudgetExceeded(f"LLM budget of ${self.max_usd:.4f} reached (spent ${self._usd:.4f})")
            if self.max_tokens is not None and self._tokens + max(0, estimated_tokens) > self.max_tokens:
                raise BudgetExceeded(
                    f"LLM token budget of {self.max_tokens} reached (used {self._tokens}, "
                    f"next call needs about {estimated_tokens})"
                )
            if self.max_calls is not None and self._calls >= self.max_calls:
                raise BudgetExceeded(f"LLM call budget of {self.max_calls} reached (made {self._calls})")

    def record(self, completion: Completion) -> None:
        """Add one finished call's cost and tokens."""
        with self._lock:
            self._usd += max(0.0, completion.cost_usd)
            self._tokens += completion.usage.total_tokens
            self._calls += 1
            if completion.cached:
                self._cached_calls += 1

    def snapshot(self) -> dict[str, Any]:
        """Totals as a JSON-able dict (limits are config, not state, so they are not included)."""
        with self._lock:
            return {
                "usd": self._usd,
                "tokens": self._tokens,
                "calls": self._calls,
                "cached_calls": self._cached_calls,
            }

    def restore(self, d: dict[str, Any]) -> None:
        """Reload totals written by :meth:`snapshot` (resume continues the same budget)."""
        with self._lock:
            self._usd = float(d.get("usd", 0.0))
            self._tokens = int(d.get("tokens", 0))
            self._calls = int(d.get("calls", 0))
            self._cached_calls = int(d.get("cached_calls", 0))
