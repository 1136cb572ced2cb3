"""The local sandbox's machine probes, started on a thread while `agentopt evolve` imports.

Why: building the local sandbox first probes the machine (unshare/bwrap trial runs, the guest
interpreter's paths from a ``python -I`` child): ~50-90 ms spent waiting on subprocesses,
which used to sit between the imports and the first evaluation. The probes are cached
(``functools.lru_cache``), so running them on a thread while the main thread imports the
engine (~0.15 s) leaves them done when the sandbox is built. Nothing here decides anything: a
probe that fails is simply run again, and fails the same way, where it always ran.
"""

from __future__ import annotations

import sys
import threading
from typing import Any


def start_sandbox_probes(spec: Any) -> threading.Thread | None:
    """Start the probes for ``spec``'s sandbox when it is the local backend; None otherwise."""
    if getattr(spec.sandbox, "kind", None) != "local":
        return None  # docker and ray probe their own way
    from agentopt.sandbox import cgroups, isolation  # deferred: only for the local backend

    def probe() -> None:
        try:
            isolation.detect()
            isolation.interpreter_paths(sys.executable)  # the local backend's guest interpreter
            cgroups.detect()
        except Exception:  # noqa: BLE001 - not cached: the sandbox runs it again and reports it
            pass

    thread = threading.Thread(target=probe, name="agentopt-sandbox-probes", daemon=True)
    thread.start()
    return thread
