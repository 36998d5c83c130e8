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

from meson.core.model import Workload


def sort_queue(workloads: list[Workload]) -> None:
    workloads.sort(key=_order_key)


def _order_key(w: Workload) -> tuple[int, float, str]:
    return w.order_key


@dataclass(slots=True)
class QueueCursor:
    """Where one queue's pass through its pending list has got to in this cycle."""

    name: str
    items: list[Workload]
    strict: bool
    idx: int = 0
    # Once stopped, every workload from ``idx`` on gets ``stop_reason`` (shared) or a
    # "behind N workloads" reason built from it.
    stopped: bool = False
    stop_reason: str = ""
    stop_is_behind: bool = False
    examined: dict[str, str] = field(default_factory=dict)

    def current(self) -> Workload | None:
        return self.items[self.idx] if self.idx < len(self.items) else None

    def advance(self) -> None:
        self.idx += 1

    def stop(self, reason: str, behind: bool) -> None:
        self.stopped = True
        self.stop_reason = reason
        self.stop_is_behind = behind


def behind_reason(ahead: int, higher: int, queue: str, head_reason: str) -> str:
    """Reason for a workload that was not examined because its queue stopped in front of it."""
    if higher == ahead:
        who = f"{ahead} higher-priority workload{'s' if ahead != 1 else ''}"
    else:
        who = f"{ahead} workload{'s' if ahead != 1 else ''}"
    return f"behind {who} in queue {queue}; first blocked: {head_reason}"
