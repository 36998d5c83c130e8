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

from bisect import insort
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter

from meson.core.model import Workload

_order_key = attrgetter("order_key")


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


class PendingIndex:
    """Per-leaf sorted pending lists, kept across cycles and updated by difference.

    A live cluster's pending set changes a little between cycles, so re-grouping and re-sorting
    everything each cycle is wasted work. The index remembers the workload *objects* it saw (the
    snapshot's values are immutable) and applies only the additions and removals. Lists handed out
    are never mutated afterwards (a changed queue gets a new list), so decisions from an earlier
    cycle stay valid.
    """

    __slots__ = ("_ids", "_objs", "by_key", "by_leaf", "other")

    def __init__(self, leaves: frozenset[str]) -> None:
        self._ids: set[int] = set()
        self._objs: dict[int, Workload] = {}  # holds them, so their ids cannot be reused
        self.by_leaf: dict[str, list[Workload]] = {leaf: [] for leaf in sorted(leaves)}
        self.by_key: dict[str, Workload] = {}
        self.other: dict[str, Workload] = {}  # pending workloads whose queue is not a leaf

    def update(self, pending: Sequence[Workload]) -> None:
        ids = list(map(id, pending))
        now_ids = set(ids)
        removed = self._ids - now_ids
        added = now_ids - self._ids
        objs, by_leaf, by_key, other = self._objs, self.by_leaf, self.by_key, self.other
        gone: dict[str, int] = {}  # leaf -> how many of its workloads left
        for i in removed:
            w = objs.pop(i)
            if by_key.get(w.key) is w:
                del by_key[w.key]
            if w.queue in by_leaf:
                gone[w.queue] = gone.get(w.queue, 0) + 1
            elif other.get(w.key) is w:
                del other[w.key]
        for leaf, n in gone.items():
            # Admitted workloads come from the front of their queue, so scan only until all the
            # removed ones are found and keep the rest of the list as one slice.
            lst = by_leaf[leaf]
            kept: list[Workload] = []
            j = 0
            while n:
                w = lst[j]
                if id(w) in removed:
                    n -= 1
                else:
                    kept.append(w)
                j += 1
            by_leaf[leaf] = kept + lst[j:]
        if added:
            fresh: dict[str, list[Workload]] = {}
            # New workloads are usually at the end of the snapshot (arrival order): look there first.
            need = len(added)
            found: list[Workload] = []
            for w in reversed(pending):
                if id(w) in added:
                    found.append(w)
                    need -= 1
                    if not need:
                        break
            for w in found:
                i = id(w)
                objs[i] = w
                by_key[w.key] = w
                if w.queue in by_leaf:
                    fresh.setdefault(w.queue, []).append(w)
                else:
                    other[w.key] = w
            for leaf, new in fresh.items():
                old = by_leaf[leaf]
                if len(new) * 8 < len(old):
                    merged = old.copy()  # never mutate a list an earlier cycle handed out
                    for w in new:
                        insort(merged, w, key=_order_key)
                else:
                    merged = old + new
                    merged.sort(key=_order_key)  # near-linear: a sorted run plus a tail
                by_leaf[leaf] = merged
        self._ids = now_ids
