"""LLM layer: one client over litellm for every provider, with retries, cost, cache and budget.

Importing it is cheap: litellm itself is only imported on the first real call (see
:mod:`agentopt.llm.client`).
"""

from agentopt.llm.budget import BudgetLedger
from agentopt.llm.cache import RequestCache
from agentopt.llm.client import LLMCallRecord, LLMClient
from agentopt.llm.redact import redact
from agentopt.llm.retry import RetryPolicy
from agentopt.llm.types import Completion, Message, Usage

__all__ = [
    "BudgetLedger",
    "Completion",
    "LLMCallRecord",
    "LLMClient",
    "Message",
    "RequestCache",
    "RetryPolicy",
    "Usage",
    "redact",
]
