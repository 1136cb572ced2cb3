"""Which LLM failures are worth retrying, and how long to wait before the next attempt.

litellm's and the openai SDK's own retries are switched off so that this is the one place
that decides: one policy across providers, honouring the server's ``Retry-After``, with a
seeded jitter and an injectable ``sleep`` so tests run fast and deterministically.

Retryable: timeouts, connection errors, 408, 409 (lock contention), 429 and every 5xx.
Any other 4xx (bad request, auth, not found, context too long) fails at once: asking again
would give the same answer and burn budget.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

RETRYABLE_STATUS = frozenset({408, 409, 429})


@dataclass
class RetryPolicy:
    """Exponential backoff with jitter; ``Retry-After`` from the server wins (capped)."""

    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    #: A server asking for longer than this is probably a daily quota; waiting helps nobody.
    max_retry_after_s: float = 60.0
    rng: random.Random = field(default_factory=random.Random)
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep

    def backoff(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if retry_after_s is not None and retry_after_s >= 0:
            return min(retry_after_s, self.max_retry_after_s)
        ceiling = min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1)))
        # "Equal jitter": at least half the exponential step, so retries never hammer the server,
        # plus a random half so many workers hitting one 429 don't retry in lock-step.
        return ceiling / 2 + self.rng.random() * ceiling / 2


@dataclass(frozen=True)
class FailureInfo:
    """What a failed attempt tells the retry loop."""

    retryable: bool
    status: int | None
    retry_after_s: float | None
    kind: str  # short label for logs: "timeout", "connection", "http 429", ...


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: a number of seconds or an HTTP date; None if absent/garbled."""
    if value is None:
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _headers_of(exc: BaseException) -> Mapping[str, str]:
    # litellm keeps the provider's headers on ``litellm_response_headers``; openai SDK errors
    # keep them on ``response.headers`` (litellm rewraps ``response`` and drops them).
    for candidate in (getattr(exc, "litellm_response_headers", None), getattr(getattr(exc, "response", None), "headers", None)):
        if candidate:
            try:
                return {str(k).lower(): str(v) for k, v in dict(candidate).items()}
            except (TypeError, ValueError):
                continue
    return {}


def classify(exc: BaseException) -> FailureInfo:
    """Decide from an exception raised by litellm/openai/httpx whether to retry and how long to wait."""
    if isinstance(exc, TimeoutError):
        return FailureInfo(True, None, None, "timeout")
    names = {cls.__name__ for cls in type(exc).__mro__}
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    headers = _headers_of(exc)
    retry_after = parse_retry_after(headers.get("retry-after"))
    if retry_after is None and "retry-after-ms" in headers:
        try:
            retry_after = max(0.0, float(headers["retry-after-ms"]) / 1000)
        except ValueError:
            retry_after = None
    if names & {"Timeout", "APITimeoutError", "TimeoutException", "ReadTimeout", "ConnectTimeout"}:
        return FailureInfo(True, status, retry_after, "timeout")
    if names & {"APIConnectionError", "ConnectError", "ConnectionError", "RemoteProtocolError"} and (
        status is None or status >= 500
    ):
        return FailureInfo(True, status, retry_after, "connection")
    if status is not None:
        retryable = status in RETRYABLE_STATUS or status >= 500
        return FailureInfo(retryable, status, retry_after, f"http {status}")
    # Unknown exception without a status (e.g. a malformed reply the SDK could not parse): not retried,
    # because we cannot tell whether it is transient and retrying a deterministic bug burns budget.
    return FailureInfo(False, None, None, type(exc).__name__)
