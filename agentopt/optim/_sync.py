"""Run coroutines from plain synchronous code (``optimizer.step()`` in a script).

All sync calls share one event loop on a daemon thread instead of calling ``asyncio.run``
each time: the LLM client keeps loop-bound state (a concurrency semaphore, pooled HTTP
connections) that must outlive a single step, and a dedicated thread also works when the
caller is itself inside a running loop (a notebook).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="agentopt-optim-loop", daemon=True)
            thread.start()
            _loop = loop
        return _loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on the shared background loop and return its result.

    Must not be called from the background loop's own thread (that would deadlock); async
    code should ``await`` the coroutine instead, which is why every optimizer has ``astep``.
    """
    loop = _background_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        raise RuntimeError("run_sync() called from the optimizer loop itself; use 'await' instead")
    return asyncio.run_coroutine_threadsafe(coro, loop).result()
