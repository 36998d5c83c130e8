"""Reservation and backfill: a blocked head keeps its place in time, smaller work fills the gap.

In a ``Backfill`` queue, when the first workload that does not fit its quota (a gang, say) is blocked,
the core works out its *earliest feasible time* ``T``: running work (in the same queue tree) ends at
``admitted_at + estimate`` (now, if it has already run past its estimate), and ``T`` is the first of
those ends by which enough has been freed for the head to fit. It then holds, at every queue on the
head's path, what the head will still lack at ``T``:

    hold(a) = max(0, need - freed_by_T(a))

so that any other admission that leaves room for the holds leaves the head its capacity at ``T``
("does not touch the reserved resources"). A workload whose estimate ends by ``T`` may use held
capacity (it is gone again by then): that is the backfill. With exact estimates the head is therefore
admitted at ``T`` at the latest; when work overruns its estimate nothing is killed, the next cycle
simply computes a later ``T`` (the reservation moves).

Holds bind admissions in the head's own queue and *borrowing* admissions elsewhere in the tree, like
the starvation guard: a sibling queue's own guarantee is never taken by another queue's reservation.
Only quota is reserved this way; a head blocked by node capacity holds the free room it finds now
(``capacity``), since the core does not know which node a running pod will free.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from meson.core.quota import QuotaState, Vec


@dataclass(frozen=True, slots=True)
class Hold:
    """Capacity held for ``key`` (a blocked head of queue ``leaf``) until ``until``; per queue level."""

    key: str
    leaf: str
    until: float
    amounts: Mapping[str, Mapping[str, int]]


def earliest_fit(
    state: QuotaState,
    leaf: str,
    need: Mapping[str, int],
    borrowing: bool,
    running: Iterable[tuple[float, str, Mapping[str, int]]],
    now: float,
) -> tuple[float, dict[str, Vec]]:
    """When ``need`` fits ``leaf`` as ``running`` ((end, leaf, charged usage)) ends, and what to hold
    per queue level until then. ``inf`` (and the whole need held) if it never does. ``state`` is left
    as it was found."""
    tree = state.tree
    path = tree.path[leaf]
    freed: dict[str, Vec] = {a: {} for a in path}
    released: list[tuple[str, Mapping[str, int]]] = []
    when = math.inf
    if state.check(leaf, need, borrowing) is None:
        when = now
    else:
        for end, q, amount in sorted(running, key=lambda r: (r[0], r[1])):
            if q not in tree.config:
                continue
            state.release(q, amount)
            released.append((q, amount))
            for a in tree.path[q]:
                if a in freed:
                    d = freed[a]
                    for k, v in amount.items():
                        d[k] = d.get(k, 0) + v
            if state.check(leaf, need, borrowing) is None:
                when = max(end, now)
                break
    for q, amount in released:
        state.charge(q, amount)
    if math.isinf(when):
        return when, {a: dict(need) for a in path}
    holds: dict[str, Vec] = {}
    for a in path:
        got = freed[a]
        short = {k: v - got.get(k, 0) for k, v in need.items() if v - got.get(k, 0) > 0}
        if short:
            holds[a] = short
    return when, holds
