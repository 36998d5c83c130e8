"""Weighted Dominant Resource Fairness for spare (borrowed) capacity.

Guarantees are not shared out: a queue within its guarantee is simply owed that capacity. What
siblings compete for is the spare capacity above their guarantees, and the next slice of it goes
to the sibling with the lowest *weighted dominant share* (Ghodsi et al., NSDI 2011; the same rule
as Mesos' allocator):

    share(q) = max over resources r of  max(0, used_r(q) - guaranteed_r(q)) / pool_r(parent)
               divided by weight(q)

With zero guarantees this is exactly weighted DRF. In a tree it is applied level by level: a
candidate's key is the tuple of shares from its top-level queue down to its leaf, compared
lexicographically, so the parent with the lowest share wins first and then its lowest child
(hierarchical DRF, as in Kueue's fair-sharing tournament). Top-level queues share nothing, so
their own share is not part of the key.

Shares only grow within a cycle (admissions only add usage), which lets the scheduler keep
candidates in a heap with lazily refreshed keys instead of re-sorting after every admission.

**Decayed usage** (a parent's ``fair_half_life``): its children are compared by their usage over time
instead of at this instant, each resource's usage integrated with exponential decay,

    D(t) = integral of used(s) * 2^(-(t - s) / half_life) ds,

a constant usage U giving D = U * tau with tau = half_life / ln 2. The share uses D / tau (a usage,
comparable to the instantaneous one) plus this cycle's admissions at full weight (so shares still
only grow within a cycle). The trade-off: a tenant that used the cluster all night yields in the
morning to one that did not, for about a half-life; instantaneous DRF forgets at once, so the night's
heavy user keeps an equal share at 9:00. Decay is fairer over a day; it also makes a newcomer's burst
win over a steady user for a while. The operator persists the decayed usage in the Queue status and
restores it after a restart (``restore``); the time it was down only decays it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from meson.core.quota import QueueTree, QuotaState, Vec


def weighted_dominant_share(
    used: Mapping[str, float], guaranteed: Mapping[str, int], pool: Mapping[str, int], weight: float
) -> float:
    """Weighted dominant share of usage above the guarantee, relative to the shared pool."""
    best = 0.0
    for k, v in used.items():
        over = v - guaranteed.get(k, 0)
        if over > 0:
            t = pool.get(k, 0)
            if t > 0:
                s = over / t
                if s > best:
                    best = s
    return best / weight


class DecayedUsage:
    """Usage integrated with decay, per queue whose parent sets a half-life; lives across cycles."""

    __slots__ = ("at", "rate", "restored", "usage")

    def __init__(self) -> None:
        self.usage: dict[str, dict[str, float]] = {}
        self.rate: dict[str, dict[str, int]] = {}  # used after the last cycle: the rate since
        self.at: float | None = None
        self.restored: dict[str, tuple[dict[str, float], float]] = {}  # queue -> (usage, as of)

    def restore(self, queue: str, usage: Mapping[str, float], as_of: float) -> None:
        """Seed a queue's decayed usage from persisted state (taken up at the next ``advance``)."""
        if queue not in self.usage:
            self.restored[queue] = (dict(usage), as_of)

    def advance(self, now: float, tree: QueueTree) -> None:
        """Decay and add what was used since the last call (exact for usage constant in between)."""
        dt = now - self.at if self.at is not None else 0.0
        kept: dict[str, dict[str, float]] = {}
        for n in tree.names:
            h = half_life(tree, n)
            if h is None:
                continue
            d = self.usage.get(n, {})
            seed = self.restored.pop(n, None)
            if seed is not None and n not in self.usage:
                f = 2 ** (-max(now - seed[1], 0.0) / h)  # the time it was not watched only decays it
                d = {k: v * f for k, v in seed[0].items()}
            elif dt > 0:
                lam = math.log(2) / h
                f = math.exp(-lam * dt)
                rate = self.rate.get(n, {})
                d = {k: d.get(k, 0.0) * f + rate.get(k, 0) * (1 - f) / lam for k in set(d) | set(rate)}
            kept[n] = d
        self.usage = kept
        self.at = now

    def set_rate(self, used: Mapping[str, Vec]) -> None:
        self.rate = {n: dict(v) for n, v in used.items() if n in self.usage}


def half_life(tree: QueueTree, queue: str) -> float | None:
    parent = tree.config[queue].parent
    return tree.config[parent].fair_half_life if parent is not None else None


def share_path(
    state: QuotaState,
    leaf: str,
    decayed: DecayedUsage | None = None,
    start: Mapping[str, Vec] | None = None,
) -> tuple[float, ...]:
    """Shares from just below the top-level queue down to ``leaf``: the hierarchical DRF sort key.

    The top-level queue itself is left out: top-level queues share no pool, so their shares say
    nothing about who should get a slice, and leaving them out keeps keys from going stale. A level
    whose parent decays usage is compared by ``decayed`` usage (``start``: usage at cycle start).
    """
    tree = state.tree
    path = tree.path[leaf]
    out = []
    for a in reversed(path[:-1]):
        cfg = tree.config[a]
        used: Mapping[str, float] = state.used[a]
        if decayed is not None and start is not None:
            h = half_life(tree, a)
            if h is not None:
                tau = h / math.log(2)
                d = decayed.usage.get(a, {})
                s0 = start.get(a, {})
                used = {k: d.get(k, 0.0) / tau + used.get(k, 0) - s0.get(k, 0) for k in set(d) | set(used)}
        out.append(weighted_dominant_share(used, cfg.guaranteed, tree.pool[a], cfg.weight))
    return tuple(out)
