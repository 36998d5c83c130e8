"""The replicas of one cycle (pure): which slot needs a pod, which pod goes, within the rollout bounds.

Slots ``0..replicas-1`` each want one available pod of the target revision. A rollout (Deployment-like)
counts pods, not slots: ``total`` (live pods, also those being deleted, plus pending requests) stays within
``replicas + maxSurge``, and an old pod is deleted only when it is unavailable or the available pods stay at
least ``replicas - maxUnavailable`` without it. Surge pods are ordinary pending requests (admission decides
when they are created); the lowest slots roll first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from meson.stream.types import DeleteReason, ReplicaPod
from meson.workflow.types import LIVE_POD_PHASES

__all__ = ["Bounds", "SlotPlan", "bounds", "plan_slots"]


@dataclass(frozen=True, slots=True)
class Bounds:
    replicas: int
    surge: int
    unavailable: int


def _absolute(value: int | str, replicas: int, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    share = int(value.rstrip("%")) * replicas / 100
    return math.ceil(share) if round_up else math.floor(share)


def bounds(replicas: int, max_surge: int | str, max_unavailable: int | str) -> Bounds:
    """Deployment's arithmetic: surge rounds up, unavailable rounds down; never both 0 (then surge is 1)."""
    surge = _absolute(max_surge, replicas, True)
    unavailable = _absolute(max_unavailable, replicas, False)
    if surge == 0 and unavailable == 0:
        surge = 1
    return Bounds(replicas, surge, unavailable)


def is_live(pod: ReplicaPod) -> bool:
    return pod.phase in LIVE_POD_PHASES


@dataclass(slots=True)
class SlotPlan:
    """The outcome: slots to request (slot -> run), pods to delete, and the counts for the status."""

    requests: dict[int, int] = field(default_factory=dict)
    deletes: dict[str, DeleteReason] = field(default_factory=dict)
    available: int = 0
    complete: bool = False


def plan_slots(
    pods: Sequence[ReplicaPod],
    target: str,
    b: Bounds,
    available: Mapping[str, bool],
    next_run: Mapping[int, int],
    backing_off: set[int],
) -> SlotPlan:
    """``available``: pod name -> available; ``next_run``: the run a new pod of each slot gets;
    ``backing_off``: slots whose replacement waits for its backoff."""
    out = SlotPlan()
    live = [p for p in pods if is_live(p)]
    by_slot: dict[int, list[ReplicaPod]] = {}
    for pod in live:
        by_slot.setdefault(pod.slot, []).append(pod)
    for pod in live:
        if pod.slot >= b.replicas and not pod.deleting:
            out.deletes[pod.name] = "ScaledDown"
        elif not pod.deleting:
            twins = [q for q in by_slot[pod.slot] if q.revision == pod.revision and q.run > pod.run]
            if twins:
                out.deletes[pod.name] = "Orphaned"
    total = len(live)
    avail = sum(1 for p in live if available.get(p.name) and p.name not in out.deletes)

    def deletable(pod: ReplicaPod) -> bool:
        return not available.get(pod.name) or avail - 1 >= b.replicas - b.unavailable

    for slot in range(b.replicas):
        mine = [p for p in by_slot.get(slot, []) if p.name not in out.deletes]
        if not mine and slot not in backing_off:
            out.requests[slot] = next_run[slot]
            total += 1
    rolling = []
    for slot in range(b.replicas):
        mine = [p for p in by_slot.get(slot, []) if p.name not in out.deletes and not p.deleting]
        new = [p for p in mine if p.revision == target]
        old = [p for p in mine if p.revision != target]
        if not old:
            continue
        if new and all(available.get(p.name) for p in new):
            for pod in old:
                if deletable(pod):
                    out.deletes[pod.name] = "Rollout"
                    avail -= bool(available.get(pod.name))
        elif not new and not any(p.deleting and p.revision == target for p in by_slot.get(slot, [])):
            rolling.append((slot, old))
        elif new:
            for pod in old:  # the slot's new pod is coming: an unavailable old one serves nothing
                if not available.get(pod.name):
                    out.deletes[pod.name] = "Rollout"
    for slot, old in rolling:
        if total < b.replicas + b.surge:
            out.requests[slot] = next_run[slot]
            total += 1
        elif all(deletable(p) for p in old):
            for pod in old:
                out.deletes[pod.name] = "Rollout"
                avail -= bool(available.get(pod.name))
    out.available = avail
    out.complete = (
        not out.requests
        and all(
            [p.revision for p in by_slot.get(slot, []) if p.name not in out.deletes] == [target]
            and all(available.get(p.name) for p in by_slot[slot])
            for slot in range(b.replicas)
        )
        and not any(p.slot >= b.replicas for p in live)
    )
    return out
