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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from meson.core.model import QueueConfig
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
        return (f"needs {r} {format_quantity(r, self.need)}, queue {self.queue} has "
                f"{format_quantity(r, max(self.free, 0))} free of {what} {format_quantity(r, self.cap)}")


class QueueTree:
    """Immutable, precomputed view of the queue forest (rebuilt only when the queues change)."""

    __slots__ = ("cap", "cap_raw", "ceiling", "children", "config", "entitlement", "guaranteed_raw", "leaves",
                 "names", "path", "pool", "rank")

    def __init__(self, queues: Sequence[QueueConfig]) -> None:
        errors = validate_queues(queues)
        if errors:
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

        # cap[q]: hard ceiling on q's subtree usage (None = unlimited at this level).
        self.cap: dict[str, Resources | None] = {}
        for n, q in self.config.items():
            cap = q.limit
            if q.parent is None:
                cap = self.entitlement[n] if cap is None else cap.min(self.entitlement[n])
            self.cap[n] = cap

        # pool[q]: the capacity q competes for with its siblings (its parent's entitlement).
        self.pool: dict[str, Resources] = {
            n: self.entitlement[q.parent if q.parent is not None else n] for n, q in self.config.items()
        }

        # ceiling[q]: the most a single workload in q could ever get (min of caps along the path).
        self.ceiling: dict[str, Resources] = {}
        for n in self.names:
            c: Resources | None = None
            for a in self.path[n]:
                cap = self.cap[a]
                if cap is not None:
                    c = cap if c is None else c.min(cap)
            self.ceiling[n] = c if c is not None else ZERO

        # Plain-dict views for the hot loops (no method call per lookup).
        self.cap_raw: dict[str, dict[str, int] | None] = {
            n: (None if c is None else c.as_dict()) for n, c in self.cap.items()}
        self.guaranteed_raw: dict[str, dict[str, int]] = {
            n: q.guaranteed.as_dict() for n, q in self.config.items()}

    def __contains__(self, name: object) -> bool:
        return name in self.config


def validate_queues(queues: Iterable[QueueConfig]) -> list[str]:
    """Configuration errors the operator should surface on the Queue objects (empty = valid)."""
    errors: list[str] = []
    by_name: dict[str, QueueConfig] = {}
    for q in queues:
        if q.name in by_name:
            errors.append(f"duplicate queue {q.name}")
        by_name[q.name] = q
    for q in by_name.values():
        if q.parent is not None and q.parent not in by_name:
            errors.append(f"queue {q.name}: parent {q.parent} does not exist")
    for q in by_name.values():
        seen = {q.name}
        cur = q.parent
        while cur is not None and cur in by_name:
            if cur in seen:
                errors.append(f"queue {q.name}: parent chain has a cycle")
                break
            seen.add(cur)
            cur = by_name[cur].parent
    if errors:
        return errors
    # A limit below the children's pooled guarantees would make those guarantees unkeepable.
    tree_children: dict[str, list[str]] = {n: [] for n in by_name}
    for q in by_name.values():
        if q.parent is not None:
            tree_children[q.parent].append(q.name)
    ent: dict[str, Resources] = {}

    def entitlement(n: str) -> Resources:
        if n not in ent:
            pooled = ZERO
            for c in tree_children[n]:
                pooled = pooled + entitlement(c)
            ent[n] = by_name[n].guaranteed.max(pooled) if tree_children[n] else by_name[n].guaranteed
        return ent[n]

    for n in sorted(by_name):
        lim = by_name[n].limit
        if lim is not None and not entitlement(n).fits_in(lim):
            errors.append(f"queue {n}: limit {lim.describe()} is below the guarantees it must honour "
                          f"({entitlement(n).describe()})")
    return errors


class QuotaState:
    """Usage and reservations per queue during one cycle, with the admission check.

    ``held`` is capacity promised to preemptors waiting for their victims to exit; every admission
    must leave room for it. ``guard`` is capacity reserved by blocked workloads (a queue reclaiming
    its guarantee, or a head that has waited too long); only *borrowing* admissions must leave room
    for it, so one queue's reservation never eats into another queue's guarantee.
    """

    __slots__ = ("guard", "held", "tree", "used")

    def __init__(self, tree: QueueTree) -> None:
        self.tree = tree
        self.used: dict[str, Vec] = {n: {} for n in tree.names}
        self.held: dict[str, Vec] = {}
        self.guard: dict[str, Vec] = {}

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

    def hold(self, leaf: str, amount: Mapping[str, int]) -> None:
        self._add(self.held, leaf, amount, 1)

    def reserve(self, leaf: str, amount: Mapping[str, int]) -> None:
        self._add(self.guard, leaf, amount, 1)

    def within_guarantee(self, leaf: str, amount: Mapping[str, int]) -> bool:
        """Would ``amount`` keep the leaf within its own guarantee (i.e. not borrow)?"""
        used = self.used[leaf]
        g = self.tree.guaranteed_raw[leaf]
        for k, v in amount.items():  # noqa: SIM110 - hot path, a plain loop is faster than all()
            if used.get(k, 0) + v > g.get(k, 0):
                return False
        return True

    def borrowing(self, queue: str) -> bool:
        """Is the queue's subtree using more than it is entitled to on some resource?"""
        e = self.tree.entitlement[queue]
        return any(v > e.get(k, 0) for k, v in self.used[queue].items())

    def check(self, leaf: str, amount: Mapping[str, int], borrowing: bool) -> QuotaBlock | None:
        """None if ``amount`` can be admitted to ``leaf`` now, else the first constraint it hits."""
        tree = self.tree
        held = self.held
        guard = self.guard
        cap_raw = tree.cap_raw
        for a in tree.path[leaf]:
            cap = cap_raw[a]
            if cap is None:
                continue
            used = self.used[a]
            h = held.get(a)
            g = guard.get(a) if borrowing else None
            for k, v in amount.items():
                c = cap.get(k, 0)
                taken = used.get(k, 0)
                if h:
                    taken += h.get(k, 0)
                if g:
                    taken += g.get(k, 0)
                if taken + v > c:
                    kind = "pool" if tree.config[a].parent is None and (
                        tree.config[a].limit is None or tree.config[a].limit.get(k, 0) > c) else "limit"
                    return QuotaBlock(a, k, v, c - taken, c, kind)
        return None

    def ceiling_block(self, leaf: str, amount: Mapping[str, int]) -> str | None:
        """A reason if ``amount`` exceeds what the leaf could get even with the whole tree idle."""
        ceiling = self.tree.ceiling[leaf]
        for k, v in amount.items():
            c = ceiling.get(k, 0)
            if v > c:
                if c == 0:
                    return f"queue {leaf} has no quota for {k}"
                return (f"needs {k} {format_quantity(k, v)}, more than queue {leaf} can ever get "
                        f"({format_quantity(k, c)})")
        return None
