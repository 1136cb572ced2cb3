"""LLM layer: one client over litellm for every provider, with retries, cost, cache and budget.

Names are exported lazily (PEP 562) so ``import agentopt.llm`` stays cheap; litellm itself is
only imported on the first real call.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Message": "agentopt.llm.types",
    "Usage": "agentopt.llm.types",
    "Completion": "agentopt.llm.types",
    "LLMClient": "agentopt.llm.client",
    "LLMCallRecord": "agentopt.llm.client",
    "BudgetLedger": "agentopt.llm.budget",
    "RequestCache": "agentopt.llm.cache",
    "RetryPolicy": "agentopt.llm.retry",
    "redact": "agentopt.llm.redact",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'agentopt.llm' has no attribute {name!r}")
