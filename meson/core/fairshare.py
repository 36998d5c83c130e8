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
"""

from __future__ import annotations

from collections.abc import Mapping

from meson.core.quota import QuotaState


def weighted_dominant_share(
    used: Mapping[str, int], guaranteed: Mapping[str, int], pool: Mapping[str, int], weight: float
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


def share_path(state: QuotaState, leaf: str) -> tuple[float, ...]:
    """Shares from just below the top-level queue down to ``leaf``: the hierarchical DRF sort key.

    The top-level queue itself is left out: top-level queues share no pool, so their shares say
    nothing about who should get a slice, and leaving them out keeps keys from going stale.
    """
    tree = state.tree
    path = tree.path[leaf]
    out = []
    for a in reversed(path[:-1]):
        cfg = tree.config[a]
        out.append(weighted_dominant_share(state.used[a], cfg.guaranteed, tree.pool[a], cfg.weight))
    return tuple(out)
