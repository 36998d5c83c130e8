"""The restart budget's bookkeeping (pure): container restarts counted once, restarts in a sliding window.

Both live in the job's status, bounded: ``podRestarts`` (restart counts already counted, for at most
:data:`MAX_TRACKED_PODS` pods) and ``restartLog`` (restarts per time bucket; at most 61 buckets of
``ceil(window / 60)`` seconds, so the window slides with that granularity).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from meson.stream.types import ReplicaPod

__all__ = ["MAX_TRACKED_PODS", "RestartLog", "container_restarts"]

#: Pods whose restart counts are tracked; restarts of further pods (sorted by name) are not counted.
MAX_TRACKED_PODS = 128


def container_restarts(pods: Sequence[ReplicaPod], known: Mapping[str, Any]) -> tuple[int, dict[str, int]]:
    """New container restarts since the counts in ``known``, and the counts to remember."""
    seen = sorted((p.name, p.restart_count) for p in pods if p.phase != "Gone" and p.restart_count > 0)
    tracked = dict(seen[:MAX_TRACKED_PODS])
    new = 0
    for name, count in tracked.items():
        before = known.get(name)
        new += max(0, count - (before if isinstance(before, int) else 0))
    return new, tracked


class RestartLog:
    """Restarts per bucket of ``ceil(window / 60)`` seconds, pruned to the window."""

    def __init__(self, raw: Any, window: int, now: float) -> None:
        self.width = max(1, math.ceil(window / 60))
        self.window = window
        self.now = now
        self.buckets: dict[int, int] = {}
        for entry in raw if isinstance(raw, list) else ():
            if isinstance(entry, list) and len(entry) == 2 and all(isinstance(x, int) for x in entry):
                self.buckets[entry[0]] = self.buckets.get(entry[0], 0) + max(0, entry[1])
        self._prune()

    def _prune(self) -> None:
        horizon = self.now - self.window
        self.buckets = {s: c for s, c in self.buckets.items() if s + self.width > horizon and c > 0}

    def add(self, count: int) -> None:
        if count <= 0:
            return
        start = math.floor(self.now) - math.floor(self.now) % self.width
        self.buckets[start] = self.buckets.get(start, 0) + count

    def total(self) -> int:
        return sum(self.buckets.values())

    def expires(self) -> float | None:
        """When the oldest bucket leaves the window (the count in the window drops)."""
        return min(self.buckets) + self.width + self.window if self.buckets else None

    def wire(self) -> list[list[int]]:
        return [[s, c] for s, c in sorted(self.buckets.items())]
