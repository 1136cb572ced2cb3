"""Check suggested values before any is applied: names, types, bounds, choices, code.

Validation is all-or-nothing per parameter, never per step: valid suggestions are applied
and each invalid one becomes a note (one line) for the next prompt.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentopt.trace.errors import InvalidValue
from agentopt.trace.nodes import Param


def validate_suggestions(
    named: Mapping[str, Param], suggestion: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Split ``suggestion`` into ``(accepted coerced values, rejected name -> reason)``."""
    accepted: dict[str, Any] = {}
    rejected: dict[str, str] = {}
    for name, value in suggestion.items():
        param = named.get(name)
        if param is None:
            rejected[str(name)] = f"unknown parameter '{name}' (known: {', '.join(named)})"
            continue
        if not param.trainable:
            rejected[name] = f"parameter '{name}' is not trainable"
            continue
        try:
            accepted[name] = param.coerce(value)
        except InvalidValue as err:
            rejected[name] = str(err)
    return accepted, rejected


def apply_values(named: Mapping[str, Param], values: Mapping[str, Any]) -> None:
    """Assign already-validated values (coercion again is cheap and keeps the invariant)."""
    for name, value in values.items():
        named[name].set(value)
