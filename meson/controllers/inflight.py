"""The loop's writes, run in the background: a cycle decides, records its decisions in the view, and moves on.

A write (a pod create, a status patch, a deletion) may retry with backoff for a long time when the API
server throttles or fails; if the cycle waited for it, one slow write would stall admission in every
queue. Instead each write runs as a task, at most one per object at a time (identified by the caller:
``("Workflow", key)``, ``("delete", namespace, name)``...): a later cycle that wants to write the same
object while its previous write is still running skips it, and recomputes it once that write is done
(every completion wakes the loop). One write per object at a time also keeps status merge patches from
crossing (each is computed against the status before it).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine, Hashable
from typing import Any

from meson.adapters import metrics

log = logging.getLogger("meson.inflight")

Write = tuple[Hashable, Coroutine[Any, Any, Any]]  # (the object it writes, the write)


class Inflight:
    def __init__(self, wake: Callable[[], None]) -> None:
        self._tasks: dict[Hashable, asyncio.Task] = {}
        self._wake = wake

    def __len__(self) -> int:
        return len(self._tasks)

    def busy(self, ident: Hashable) -> bool:
        return ident in self._tasks

    def start(self, ident: Hashable, write: Coroutine[Any, Any, Any]) -> bool:
        """Run ``write`` in the background, unless a write of the same object is still running (then it is
        dropped: the cycle after that one's completion computes it again)."""
        if ident in self._tasks:
            write.close()
            return False
        task = asyncio.get_running_loop().create_task(write)
        self._tasks[ident] = task
        task.add_done_callback(functools.partial(self._done, ident))
        metrics.WRITES_IN_FLIGHT.set(len(self._tasks))
        return True

    def start_all(self, writes: list[Write]) -> int:
        return sum(self.start(ident, write) for ident, write in writes)

    def _done(self, ident: Hashable, task: asyncio.Task) -> None:
        if self._tasks.get(ident) is task:
            del self._tasks[ident]
        metrics.WRITES_IN_FLIGHT.set(len(self._tasks))
        if not task.cancelled() and task.exception() is not None:
            # Writes record their own failures on their object; reaching here is a bug in a write.
            log.error("background write %s failed", ident, exc_info=task.exception())
        self._wake()

    def cancel(self) -> None:
        """Stop waiting for every write (a deposed leader, a stopping process): they are idempotent."""
        for task in self._tasks.values():
            task.cancel()

    async def drain(self) -> None:
        """Wait until no write runs (tests; a clean shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)
