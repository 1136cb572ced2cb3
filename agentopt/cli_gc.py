"""The `agentopt` process's garbage-collector policy: off while starting up, the start-up heap
frozen before a run, and no collections on the way out.

Why: start-up imports ~45k objects that live until exit and makes almost no garbage, yet the
collector ran ~100 young collections over them during the imports (~15-25 ms of CPU); each
later full collection re-traverses all of them (one took ~55 ms in a 200-iteration run), and
the interpreter's exit collections spent ~70-100 ms freeing memory the OS takes back anyway.
Frozen objects (``gc.freeze``) are skipped by every collection. Nothing is lost: files, the
database and the LLM cache are closed explicitly, and atexit handlers still run.

Only ``agentopt.cli.main`` (the console script, which owns its process) turns this on; the
Python API and a test's ``CliRunner`` leave the caller's collector alone.
"""

from __future__ import annotations

import gc

_paused = False


def pause_for_start_up() -> None:
    """No automatic collections until :func:`resume` (the console script's first call)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume(*, freeze: bool) -> None:
    """Collect again; with ``freeze``, first move everything alive (the start-up heap) into the
    permanent generation. A no-op unless :func:`pause_for_start_up` paused the collector."""
    global _paused
    if not _paused:
        return
    _paused = False
    if freeze:
        gc.freeze()
    gc.enable()


def leave_heap_to_os() -> None:
    """At exit from the console script: freeze everything, so the interpreter's final
    collections skip it."""
    gc.freeze()
