"""Order within a queue: priority first, then creation time, then key; and queue strategies.

Each leaf queue's pending workloads are sorted once per cycle by ``Workload.order_key``
(-priority, created, key; cached on the workload, and Python's sort is near-linear on the
mostly-sorted lists a live queue produces). A ``QueueCursor`` then walks that list:

* ``StrictFIFO``: the head blocks the queue. Nothing behind it is considered until it is admitted.
* ``BestEffortFIFO``: a head that does not fit is skipped and the next workload is tried, so
  smaller workloads go ahead. To keep that from starving the big one, a head that has waited
  longer than the scheduler's ``reserve_after`` turns the queue strict and reserves its capacity.

Within one cycle capacity only shrinks (admissions add usage; evictions take effect in a later
snapshot), so a workload that did not fit earlier in the cycle cannot fit later in it. That makes a
single forward pass per queue enough: every pending workload is examined at most once per cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter

from meson.core.model import Workload

_order_key = attrgetter("order_key")


def sort_queue(workloads: list[Workload]) -> None:
    workloads.sort(key=_order_key)


@dataclass(slots=True)
class QueueCursor:
    """Where one queue's pass through its pending list has got to in this cycle."""

    name: str
    items: list[Workload]
    strict: bool
    idx: int = 0
    # Once stopped, every workload from ``idx`` on gets ``stop_reason`` (shared) or a
    # "behind N workloads" reason built from it (see ``explain``).
    stopped: bool = False
    stop_reason: str = ""
    stop_is_behind: bool = False
    # A preemptor waiting for its victims is in this queue (it needs its own reason).
    waiting: bool = False
    # Distinct workload shapes in the queue (0 = not counted yet).
    n_shapes: int = 0
    # Shapes (pod request, pod count, gang, preemptible) that already failed this cycle.
    failed: dict[tuple, tuple[str, bool]] = field(default_factory=dict)

    def current(self) -> Workload | None:
        return self.items[self.idx] if self.idx < len(self.items) else None

    def advance(self) -> None:
        self.idx += 1

    def stop(self, reason: str, behind: bool) -> None:
        self.stopped = True
        self.stop_reason = reason
        self.stop_is_behind = behind
