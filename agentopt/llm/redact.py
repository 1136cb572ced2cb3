"""Scrub secrets out of text before it reaches a log line, an exception, a DB row or a report.

Provider SDKs sometimes echo the request's key or Authorization header in their error
messages ("Incorrect API key provided: sk-..."), so every error string from litellm/openai
passes through :func:`redact` before agentopt stores or shows it. Two nets are used because
either alone misses cases: the *values* of secret-looking environment variables (catches keys
of any shape, e.g. a self-hosted server's token) and well-known key *shapes* (catches keys
that never were in our environment, e.g. echoed back from a config file).
"""

from __future__ import annotations

import logging
import os
import re

MASK = "***"

# Env var names that hold secrets. Matched case-insensitively anywhere in the name.
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
# Short values ("1", "false", "auto") of such variables are settings, not secrets
# (TOKENIZERS_PARALLELISM=false); replacing them everywhere would mangle normal text.
_MIN_SECRET_LEN = 8

_KEY_SHAPES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bBearer\s+[A-Za-z0-9._~+/=\-]+", re.IGNORECASE), f"Bearer {MASK}"),
    (re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{8,}"), MASK),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"), MASK),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{20,}"), MASK),
    (re.compile(r"\bhf_[A-Za-z0-9]{20,}"), MASK),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), MASK),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"), MASK),
    # key=value / "api_key": "value" / x-api-key: value
    (
        re.compile(r"""((?:api[_-]?key|x-api-key|x-goog-api-key|access[_-]?token)["']?\s*[:=]\s*["']?)[^\s"',;}]+""",
                   re.IGNORECASE),
        rf"\g<1>{MASK}",
    ),
]


def _secret_env_values() -> list[str]:
    """Current values of secret-named env vars, longest first (so a key containing another wins)."""
    values = {
        value
        for name, value in os.environ.items()
        if _SECRET_NAME.search(name) and len(value) >= _MIN_SECRET_LEN
    }
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    """Return ``text`` with secret env values and common API-key shapes replaced by ``***``.

    Read from the environment on every call (not cached) because keys are often set after
    import (tests, notebooks); the environment is small, so this is cheap.
    """
    if not text:
        return text
    for value in _secret_env_values():
        if value in text:
            text = text.replace(value, MASK)
    for pattern, replacement in _KEY_SHAPES:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Logging filter that rewrites a record's message and traceback through :func:`redact`.

    Attach it to a *logger* (filters on a logger see only records created by that logger,
    not by its children) — agentopt's LLM layer logs through the single ``agentopt.llm``
    logger and attaches this filter to it and to litellm's loggers.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not hide the record
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install_redacting_filter(*logger_names: str) -> None:
    """Attach one :class:`RedactingFilter` to each named logger (idempotent)."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
