"""Ctrl-C for long CLI runs: stop cleanly, always within a bound, never with a traceback.

``asyncio.run`` handles SIGINT with a plain signal handler that runs between any two
bytecodes: the first one cancels the main task, a second one raises KeyboardInterrupt
wherever the interpreter happens to be (inside the event loop's own bookkeeping, or the
cleanup of the first), which prints a traceback or leaves futures that never resolve; and a
cancellation that races with a finishing ``wait_for`` is silently lost on Python 3.11.

Here the signal is taken by the event loop (``loop.add_signal_handler``), so it is handled
between callbacks, never inside one:

* the first Ctrl-C cancels the run, which then stores its summary and exits 130;
* if the run has not ended ``grace_s`` seconds later (a lost cancellation, a stuck cleanup),
  or on a second Ctrl-C, the process exits 130 at once. Every evaluated program was already
  committed to SQLite (durable like a ``kill -9``), so ``agentopt resume`` loses nothing.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
FORCED_EXIT_CODE = 130


def run_interruptible(
    coro: Coroutine[Any, Any, T],
    *,
    grace_s: float = 30.0,
    on_force: Callable[[str], None] | None = None,
) -> T:
    """``asyncio.run(coro)`` where Ctrl-C raises KeyboardInterrupt after a clean stop, or ends
    the process with exit code 130 when a clean stop does not come within ``grace_s``."""

    def force(why: str) -> None:
        if on_force is not None:
            try:
                on_force(why)
            except Exception:  # noqa: BLE001 - nothing may stand between a forced stop and exit
                pass
        os._exit(FORCED_EXIT_CODE)

    presses = 0

    async def guarded() -> T:
        # KeyboardInterrupt raised by the run (its way of saying "stopped on request") is turned
        # into a value here, inside the task: escaping a task, it would tear through the event
        # loop and interrupt the cleanup of every other task.
        try:
            return await coro
        except KeyboardInterrupt:
            raise _Interrupted from None
        except asyncio.CancelledError:
            if presses:
                raise _Interrupted from None
            raise

    async def main() -> T:
        nonlocal presses
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(guarded())

        def on_sigint() -> None:
            nonlocal presses
            presses += 1
            if presses == 1:
                task.cancel()
                loop.call_later(grace_s, force, f"the run did not stop within {grace_s:g}s")
            else:
                force("second Ctrl-C")

        try:
            loop.add_signal_handler(signal.SIGINT, on_sigint)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no POSIX signals
            return await task
        try:
            return await task
        finally:
            if not task.done():  # main() itself was cancelled: let the run clean up, bounded
                task.cancel()
            loop.remove_signal_handler(signal.SIGINT)

    try:
        return asyncio.run(main())
    except _Interrupted:
        raise KeyboardInterrupt from None


class _Interrupted(Exception):
    """The run stopped on Ctrl-C (an ordinary exception while inside the event loop)."""
