"""Parse an optimizer LLM's reply: one JSON object with ``reasoning`` and ``suggestion``.

Models wrap JSON in prose or code fences, so we look for the first decodable object. Every
failure is a :class:`MalformedReply` whose one-line message is shown to the model on the
next step — a bad reply is feedback, never a crash.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agentopt.errors import AgentoptError

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n(.*?)```", re.DOTALL)


class MalformedReply(AgentoptError):
    """The LLM's reply was not the JSON object the optimizer asked for."""


def _objects(text: str) -> list[Any]:
    found: list[Any] = []
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for chunk in candidates:
        chunk = chunk.strip()
        try:
            found.append(json.loads(chunk))
            continue
        except json.JSONDecodeError:
            pass
        start = chunk.find("{")
        while start != -1:
            try:
                obj, _ = decoder.raw_decode(chunk, start)
                found.append(obj)
                break
            except json.JSONDecodeError:
                start = chunk.find("{", start + 1)
    return found


def parse_suggestion(text: str, *, key: str = "suggestion") -> tuple[dict[str, Any], str]:
    """Return ``(suggestion, reasoning)`` from a reply, or raise :class:`MalformedReply`."""
    if not text or not text.strip():
        raise MalformedReply("the reply was empty; answer with one JSON object")
    objects = [o for o in _objects(text) if isinstance(o, dict)]
    if not objects:
        raise MalformedReply("the reply contained no JSON object; answer with one JSON object only")
    for obj in objects:
        for k in (key, key + "s"):
            if k in obj:
                value = obj[k]
                if not isinstance(value, dict):
                    raise MalformedReply(f"'{k}' must be an object mapping parameter names to new values, "
                                         f"got {type(value).__name__}")
                reasoning = obj.get("reasoning", "")
                return value, reasoning if isinstance(reasoning, str) else json.dumps(reasoning)[:2000]
    keys = sorted(objects[0])[:8]
    raise MalformedReply(f"the JSON object has no '{key}' key (found keys {keys})")
