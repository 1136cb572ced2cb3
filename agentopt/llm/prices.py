"""USD cost of a call on the fast OpenAI-compatible path, from litellm's own price map.

Cost accounting must not depend on the transport: a model litellm can price (``openai/gpt-4o-mini``
behind a proxy ``api_base``) costs the same on either path, and one it cannot price (a local
server, a mock) costs 0.0 on both. Deciding "is this model priced?" must not import litellm
(3.7 s of CPU on a 2-core machine), so the price map JSON that ships inside the litellm package
(the one litellm itself reads offline, ``LITELLM_LOCAL_MODEL_COST_MAP``) is read directly, once;
only a priced model imports litellm, to compute the price with litellm's own ``cost_per_token``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import threading
from pathlib import Path

from agentopt.llm.types import Usage

log = logging.getLogger("agentopt.llm")

_MAP_FILE = "model_prices_and_context_window_backup.json"
_names: frozenset[str] | None = None
_lock = threading.Lock()


def _load_names() -> frozenset[str]:
    """Model names in litellm's bundled price map (empty when litellm is not installed)."""
    global _names
    with _lock:
        if _names is None:
            names: frozenset[str] = frozenset()
            spec = importlib.util.find_spec("litellm")  # locates the package without importing it
            if spec is not None and spec.origin:
                path = Path(spec.origin).parent / _MAP_FILE
                try:
                    names = frozenset(json.loads(path.read_text(encoding="utf-8")))
                except (OSError, ValueError) as err:
                    log.warning("cannot read litellm's price map %s (%s); fast-path calls cost 0", path, err)
            _names = names
    return _names


def is_priced(model_name: str) -> bool:
    """True when litellm's price map knows ``model_name`` (as given or without its provider prefix)."""
    names = _load_names()
    if model_name in names:
        return True
    return "/" in model_name and model_name.split("/", 1)[1] in names


def _cost_sync(model_name: str, usage: Usage) -> float:
    from agentopt.llm.client import _import_litellm  # deferred: client imports this module (cycle)

    litellm = _import_litellm()
    try:
        prompt, completion = litellm.cost_per_token(
            model=model_name, prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens
        )
    except Exception:  # noqa: BLE001 - litellm raises many types for unknown models; same as its own path
        return 0.0
    return float(prompt or 0.0) + float(completion or 0.0)


async def fast_cost(model_name: str, usage: Usage) -> float:
    """The call's price in USD; 0.0 for a model litellm cannot price (local servers)."""
    if _names is None:
        await asyncio.to_thread(_load_names)
    if not is_priced(model_name):
        return 0.0
    return await asyncio.to_thread(_cost_sync, model_name, usage)
