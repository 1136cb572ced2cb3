"""A sliding-window scheduler: many iterations in flight, results committed in iteration order.

Why a window rather than batches: with batches every member waits for the slowest one, so the
LLM idles while the last evaluations of a batch run and the sandboxes idle while the next
batch's LLM calls are out (one measured run: 32 calls allowed, 11 in flight on average). Here
the moment iteration ``i`` is committed, iteration ``i + window`` starts; LLM calls and
evaluations of different iterations overlap freely, limited only by their own semaphores.

Why it stays reproducible: iteration ``i`` is *started* (its parent sampled, its prompt built —
everything that reads the store or learned state, see ``start``) exactly when iteration
``i - window`` is committed and before any later commit, and commits happen strictly in
iteration order (a reorder buffer). So what iteration ``i`` sees is "the run as of iteration
``i - window``", whatever order evaluations finish in. This module knows nothing of programs:
the controller supplies the three steps.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

T = TypeVar("T")

#: ``start(i)`` answers: a coroutine to run for iteration i, STOP (start nothing more), or PARKED
#: (iteration i was started only on paper, past the requested iterations: its start record lets a
#: later ``resume -n MORE`` run it exactly as one longer run would have; nothing runs now).
STOP = None


class Parked:
    def __repr__(self) -> str:
        return "PARKED"


PARKED = Parked()


class WindowPipeline(Generic[T]):
    """Runs iterations ``first, first + 1, ...`` with at most ``window`` of them uncommitted.

    * ``start(i)`` is synchronous: it makes every decision of iteration ``i`` that depends on
      the run's state and returns the coroutine that does the slow work (or ``STOP``).
    * ``commit(i, result)`` is synchronous and called in iteration order.
    * ``resumed`` are coroutines for iterations ``first, first + 1, ...`` started before an
      interruption (the controller rebuilt them from their durable start records); they take
      their window places first.
    * ``step()`` (optional) wraps each synchronous step: a commit together with the start it
      triggers, and the first fill of the window. The controller passes its store's ``batch``,
      so commit ``i`` and start record ``i + window`` are one transaction, not two.

    An exception in iteration ``i`` surfaces when ``i`` is next to commit (so every earlier
    iteration is committed first); every other running iteration is then cancelled.
    """

    def __init__(
        self,
        *,
        window: int,
        start: Callable[[int], Awaitable[T] | Parked | None],
        commit: Callable[[int, T], None],
        step: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
    ) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = window
        self._start = start
        self._commit = commit
        self._step = step
        self._tasks: dict[int, asyncio.Task[T]] = {}
        self._stopped = False

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def _launch(self, iteration: int) -> None:
        if self._stopped:
            return
        work = self._start(iteration)
        if work is STOP:
            self._stopped = True
        elif not isinstance(work, Parked):
            self._tasks[iteration] = asyncio.ensure_future(work)

    async def run(self, first: int, resumed: list[Awaitable[T]] | None = None) -> int:
        """Run until ``start`` says STOP and everything started is committed; returns the next
        uncommitted iteration."""
        next_commit = first
        next_start = first
        try:
            for work in resumed or []:
                self._tasks[next_start] = asyncio.ensure_future(work)
                next_start += 1
            with self._step():
                while next_start < next_commit + self.window and not self._stopped:
                    self._launch(next_start)
                    if not self._stopped:
                        next_start += 1
            while next_commit in self._tasks:
                task = self._tasks[next_commit]
                if not task.done():
                    # asyncio.wait, not `await task`: awaiting a task forwards our cancellation
                    # into it, and an iteration that swallows it (Python 3.11's wait_for race)
                    # would then return normally and the run would never stop on Ctrl-C.
                    await asyncio.wait({task})
                result = task.result()
                del self._tasks[next_commit]
                with self._step():
                    self._commit(next_commit, result)
                    next_commit += 1
                    # The window moved by one: start the iteration that samples "as of" next_commit - 1.
                    if next_start < next_commit + self.window and not self._stopped:
                        self._launch(next_start)
                        if not self._stopped:
                            next_start += 1
        finally:
            await self._cancel_all()
        return next_commit

    async def _cancel_all(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
