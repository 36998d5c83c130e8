"""Hierarchical quotas: guarantees, limits, and borrowing between siblings.

Model (the rules every other module relies on):

* Queues form a forest. Workloads are submitted to leaf queues; a queue's usage is the sum of the
  admitted workloads in its subtree.
* A queue's *entitlement* ``E(q)`` is what its subtree is owed: its own ``guaranteed`` for a leaf,
  and for a parent the component-wise max of its own guarantee and the sum of its children's
  entitlements. A pure container (no guarantee of its own) therefore pools exactly what its
  children are guaranteed, like a Kueue cohort; a parent that declares a guarantee (say, the whole
  cluster) also pools the part not carved out for any child.
* Borrowing: a queue may use more than its guarantee as long as every queue on its path stays
  within its ``limit`` and the top-level queue stays within its entitlement. What a queue borrows
  is therefore exactly what its siblings (or cousins) guaranteed-but-unused, and no admission can
  push any queue past its limit: that check is the only way in.
* Reclaim: a queue whose admission keeps it within its own guarantee may take lent capacity back
  (see ``preemption``). Lending is safe because only preemptible workloads may borrow.

Top-level queues do not share with each other: each is its own pool, as separate Kueue cohorts are.

What is counted: only the resources a tree names a quota for (any of its queues lists them); a
request's other resources are not limited by quota at all ("not listed = not limited"), though
node fit still needs them (see ``capacity``). Within a tree, a queue's limit caps the resources it
lists (see ``QueueConfig.listed``) and the top-level queue caps every named one at its pool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from meson.core.model import QueueConfig
from meson.core.queuecheck import validate_queues
from meson.core.resources import ZERO, Resources, format_quantity

# Mutable per-queue vectors used inside one cycle (dicts are much cheaper to update than
# rebuilding immutable Resources on every admission).
Vec = dict[str, int]


@dataclass(frozen=True, slots=True)
class QuotaBlock:
    """The first constraint a request hits: which queue, which resource, how much is left."""

    queue: str
    resource: str
    need: int
    free: int
    cap: int
    kind: str  # "limit" (a queue's limit) or "pool" (a top-level queue's entitlement)

    def describe(self) -> str:
        r = self.resource
        what = "limit" if self.kind == "limit" else "guaranteed pool"
        return (
            f"needs {r} {format_quantity(r, self.need)}, queue {self.queue} has "
            f"{format_quantity(r, max(self.free, 0))} free of {what} {format_quantity(r, self.cap)}"
        )


class QueueTree:
    """Immutable, precomputed view of a valid queue forest (rebuilt only when the queues change).

    Only the resources a tree names (``named``, see ``QueueConfig.quota_names``) are counted in
    it: ``charged`` strips the rest from a request before any quota arithmetic.
    """

    __slots__ = (
        "_charged",
        "cap",
        "ceiling",
        "children",
        "config",
        "entitlement",
        "guaranteed_raw",
        "leaves",
        "named",
        "names",
        "path",
        "pool",
        "rank",
    )

    def __init__(self, queues: Sequence[QueueConfig]) -> None:
        errors = validate_queues(queues)
        if errors:  # the scheduler builds trees of valid queues only (see ``queuecheck``)
            raise ValueError("; ".join(errors))
        self.config: dict[str, QueueConfig] = {q.name: q for q in sorted(queues, key=lambda q: q.name)}
        self.names: list[str] = list(self.config)
        self.rank: dict[str, int] = {n: i for i, n in enumerate(self.names)}
        self.children: dict[str, list[str]] = {n: [] for n in self.names}
        for q in self.config.values():
            if q.parent is not None:
                self.children[q.parent].append(q.name)
        self.leaves: frozenset[str] = frozenset(n for n, c in self.children.items() if not c)

        # path[q] = (q, parent, ..., root): the queues whose limits an admission to q must respect.
        self.path: dict[str, tuple[str, ...]] = {}
        for n in self.names:
            p: list[str] = []
            cur: str | None = n
            while cur is not None:
                p.append(cur)
                cur = self.config[cur].parent
            self.path[n] = tuple(p)

        # named[q]: the resources q's whole tree names a quota for; nothing else is counted in it.
        by_root: dict[str, frozenset[str]] = {}
        for n, q in self.config.items():
            root = self.path[n][-1]
            by_root[root] = by_root.get(root, frozenset()) | q.quota_names
        self.named: dict[str, frozenset[str]] = {n: by_root[self.path[n][-1]] for n in self.names}
        self._charged: dict[tuple[str, Resources], Resources] = {}

        self.entitlement: dict[str, Resources] = {}
        for n in sorted(self.names, key=lambda n: -len(self.path[n])):  # deepest first
            kids = self.children[n]
            own = self.config[n].guaranteed
            if kids:
                pooled = ZERO
                for c in kids:
                    pooled = pooled + self.entitlement[c]
                own = own.max(pooled)
            self.entitlement[n] = own

        # cap[q]: hard ceiling on q's subtree usage, for the resources capped at q's level (None:
        # none). A limit caps what its queue lists; a top-level queue also caps every resource its
        # tree names at its entitlement (top-level queues share nothing). Zeros are kept: "0 allowed".
        self.cap: dict[str, dict[str, int] | None] = {n: self._cap(n) for n in self.names}

        # pool[q]: the capacity q competes for with its siblings (its parent's entitlement).
        self.pool: dict[str, Resources] = {
            n: self.entitlement[q.parent if q.parent is not None else n] for n, q in self.config.items()
        }

        # ceiling[q]: the most a single workload in q could ever get (min of caps along the path).
        self.ceiling: dict[str, dict[str, int]] = {}
        for n in self.names:
            c: dict[str, int] = {}
            for a in self.path[n]:
                for k, v in (self.cap[a] or {}).items():
                    c[k] = min(c.get(k, v), v)
            self.ceiling[n] = c

        # Plain-dict view for the hot loops (no method call per lookup).
        self.guaranteed_raw: dict[str, dict[str, int]] = {
            n: q.guaranteed.as_dict() for n, q in self.config.items()
        }

    def _cap(self, name: str) -> dict[str, int] | None:
        q = self.config[name]
        limit = q.limit
        capped: dict[str, int] = {}
        if limit is not None:
            for k in q.listed if q.listed is not None else self.named[name]:
                capped[k] = limit.get(k, 0)
        elif q.parent is not None:
            return None
        if q.parent is None:
            pool = self.entitlement[name]
            for k in self.named[name]:
                capped[k] = min(capped.get(k, pool.get(k, 0)), pool.get(k, 0))
        return capped

    def charged(self, queue: str, amount: Resources) -> Resources:
        """The part of ``amount`` that ``queue``'s tree counts: the resources it names a quota for."""
        key = (self.path[queue][-1], amount)
        got = self._charged.get(key)
        if got is None:
            named = self.named[queue]
            if all(k in named for k in amount):
                got = amount
            else:
                got = Resources({k: v for k, v in amount.items() if k in named})
            self._charged[key] = got
        return got

    def is_pool(self, queue: str, resource: str, cap: int) -> bool:
        """Is a top-level ``queue``'s cap of ``cap`` on ``resource`` its pool rather than its limit?"""
        q = self.config[queue]
        if q.parent is not None:
            return False
        if q.limit is None or (q.listed is not None and resource not in q.listed):
            return True
        return q.limit.get(resource, 0) > cap

    def __contains__(self, name: object) -> bool:
        return name in self.config


class QuotaState:
    """Usage and reservations per queue during one cycle, with the admission check.

    A preemption in progress (``nominate``) is a preemptor waiting for its victims to exit. The
    victims still run, so they stay in ``used``; they are also counted in ``evicting``, and the
    preemptor's need in ``promised``. Two views follow:

    * now (``check``): an admission must leave room for every waiting preemptor to enter once its
      victims are gone, so per preemption a queue counts the larger of the victims' usage under it
      and the preemptor's need; ``held`` is the part of the need that the victims' usage does not
      already cover. Counting both would make the next preemptor evict more than it needs;
    * once the victims have exited (``check(..., after_evictions=True)``, used to choose victims):
      ``used - evicting + promised``. A preemptor that would fit then needs no victim of its own,
      and victims already chosen are never counted again.

    ``guard`` is capacity reserved by blocked workloads (a queue reclaiming its guarantee, or a head
    that has waited too long); only *borrowing* admissions must leave room for it, so one queue's
    reservation never eats into another queue's guarantee.

    ``holds`` are backfill reservations (see ``backfill``): (leaf, until, per-level amounts). They bind
    admissions in that leaf and borrowing admissions elsewhere, except a workload that ends by
    ``until`` (``check(..., ends_at=...)``).

    ``used``, ``held`` and ``guard`` only grow during the pass (fair-share keys rely on it).
    """

    __slots__ = ("evicting", "guard", "held", "holds", "promised", "tree", "used")

    def __init__(self, tree: QueueTree) -> None:
        self.tree = tree
        self.used: dict[str, Vec] = {n: {} for n in tree.names}
        self.held: dict[str, Vec] = {}
        self.promised: dict[str, Vec] = {}
        self.evicting: dict[str, Vec] = {}
        self.guard: dict[str, Vec] = {}
        self.holds: list[tuple[str, float, Mapping[str, Mapping[str, int]]]] = []

    def _add(self, table: dict[str, Vec], leaf: str, amount: Mapping[str, int], sign: int) -> None:
        for a in self.tree.path[leaf]:
            d = table.get(a)
            if d is None:
                d = table[a] = {}
            for k, v in amount.items():
                d[k] = d.get(k, 0) + sign * v

    def charge(self, leaf: str, amount: Mapping[str, int]) -> None:
        self._add(self.used, leaf, amount, 1)

    def release(self, leaf: str, amount: Mapping[str, int]) -> None:
        self._add(self.used, leaf, amount, -1)

    def nominate(
        self, leaf: str, need: Mapping[str, int], victims: Sequence[tuple[str, Mapping[str, int]]]
    ) -> None:
        """A preemptor of ``leaf`` needing ``need`` waits for ``victims`` ((leaf, usage) pairs, still
        running and still in ``used``) to exit."""
        freed: dict[str, Vec] = {}
        for q, amount in victims:
            self._add(self.evicting, q, amount, 1)
            self._add(freed, q, amount, 1)
        self._add(self.promised, leaf, need, 1)
        for a in self.tree.path[leaf]:
            covered = freed.get(a, {})
            d = self.held.setdefault(a, {})
            for k, v in need.items():
                extra = v - covered.get(k, 0)
                if extra > 0:
                    d[k] = d.get(k, 0) + extra

    def reserve(self, leaf: str, amount: Mapping[str, int]) -> None:
        self._add(self.guard, leaf, amount, 1)

    def within_guarantee(self, leaf: str, amount: Mapping[str, int]) -> bool:
        """Would ``amount`` keep the leaf within its own guarantee (i.e. not borrow)? What is held
        for the leaf's waiting preemptors counts: they will use that guarantee."""
        used = self.used[leaf]
        h = self.held.get(leaf) if self.held else None
        g = self.tree.guaranteed_raw[leaf]
        for k, v in amount.items():
            taken = used.get(k, 0)
            if h:
                taken += h.get(k, 0)
            if taken + v > g.get(k, 0):
                return False
        return True

    def borrowing(self, queue: str) -> bool:
        """Once the preemptions in progress are done, will the queue's subtree use more than it is
        entitled to on some resource?"""
        e = self.tree.entitlement[queue]
        used = self.used[queue]
        if self.evicting or self.promised:
            used = dict(used)
            for k, v in self.evicting.get(queue, {}).items():
                used[k] = used.get(k, 0) - v
            for k, v in self.promised.get(queue, {}).items():
                used[k] = used.get(k, 0) + v
        return any(v > e.get(k, 0) for k, v in used.items())

    def check(
        self,
        leaf: str,
        amount: Mapping[str, int],
        borrowing: bool,
        after_evictions: bool = False,
        ends_at: float | None = None,
    ) -> QuotaBlock | None:
        """None if ``amount`` can be admitted to ``leaf`` now (or, ``after_evictions``, once the
        preemptions in progress are done), else the first constraint it hits. ``ends_at``: when the
        workload is expected to end (a backfill hold it ends before does not bind it)."""
        tree = self.tree
        held = self.promised if after_evictions else self.held
        gone = self.evicting if after_evictions else {}
        guard = self.guard
        if self.holds:
            guard = self._with_holds(leaf, borrowing, ends_at)
            borrowing = True
        caps = tree.cap
        for a in tree.path[leaf]:
            cap = caps[a]
            if not cap:
                continue
            used = self.used[a]
            h = held.get(a)
            e = gone.get(a)
            g = guard.get(a) if borrowing else None
            for k, v in amount.items():
                c = cap.get(k)
                if c is None:
                    continue  # not capped at this level
                taken = used.get(k, 0)
                if h:
                    taken += h.get(k, 0)
                if e:
                    taken -= e.get(k, 0)
                if g:
                    taken += g.get(k, 0)
                if taken + v > c:
                    kind = "pool" if tree.is_pool(a, k, c) else "limit"
                    return QuotaBlock(a, k, v, c - taken, c, kind)
        return None

    def _with_holds(self, leaf: str, borrowing: bool, ends_at: float | None) -> dict[str, Vec]:
        """The guard (if borrowing) plus every backfill hold that binds this admission."""
        out: dict[str, Vec] = {a: dict(v) for a, v in self.guard.items()} if borrowing else {}
        for owner, until, amounts in self.holds:
            if ends_at is not None and ends_at <= until:
                continue  # it ends before the reserved time: backfill
            if owner != leaf and not borrowing:
                continue  # a reservation never takes another queue's guarantee
            for a, vec in amounts.items():
                d = out.setdefault(a, {})
                for k, v in vec.items():
                    d[k] = d.get(k, 0) + v
        return out

    def ceiling_block(self, leaf: str, amount: Mapping[str, int]) -> str | None:
        """A reason if ``amount`` exceeds what the leaf could get even with the whole tree idle."""
        ceiling = self.tree.ceiling[leaf]
        for k, v in amount.items():
            c = ceiling.get(k, 0)
            if v > c:
                if c == 0:
                    return f"queue {leaf} has no quota for {k}"
                return (
                    f"needs {k} {format_quantity(k, v)}, more than queue {leaf} can ever get "
                    f"({format_quantity(k, c)})"
                )
        return None
