"""Old import paths kept for one release after a module moved (ground floor: stdlib only).

A shim module calls :func:`alias_moved_module` so the old name *is* the new module (same
objects, private names included), and importing it warns once with the new path.
"""

from __future__ import annotations

import sys
import warnings
from types import ModuleType

#: The release that deletes the shims listed in docs/architecture.md.
REMOVAL = "agentopt 0.2"


def alias_moved_module(old: str, new: ModuleType) -> None:
    """Make ``import old`` return ``new`` and warn (DeprecationWarning) that ``old`` moved."""
    warnings.warn(
        f"{old} moved to {new.__name__}; the old import path goes away in {REMOVAL}",
        DeprecationWarning,
        stacklevel=3,
    )
    sys.modules[old] = new
