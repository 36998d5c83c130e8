"""One scheduling cycle: snapshot in, decisions out.

The ``Scheduler`` is a function of the snapshot plus a little state that has to survive between
cycles: token buckets (flow control), preemptors waiting for their victims to exit, and the history
of who preempted whom (to refuse ping-pong). Time comes only from ``snapshot.now``; iteration is
always in a sorted order. Same snapshot sequence, same decisions.

A cycle:

1. Derive usage per queue from the admitted workloads; build the cluster-capacity view.
2. Emit evictions for queues set to ``HoldAndDrain`` (repeated every cycle until the victims are
   gone, so the operator may apply them idempotently).
3. Preemptors whose victims are all gone are admitted first, with the capacity they were promised.
   Those still waiting keep that capacity held, so nobody else takes it in the meantime.
4. Every leaf queue offers its next candidate (see ``ordering``). Candidates are taken from a heap
   keyed by (borrows?, hierarchical DRF shares if borrowing, -priority, created, key): admissions
   within a queue's guarantee go first by priority; spare capacity goes to the sibling with the
   lowest weighted dominant share (see ``fairshare``). Keys only grow during a cycle, so stale heap
   entries are refreshed lazily.
5. A candidate passes, in order: never-fits, hold, per-queue cap, token buckets, quota (see
   ``quota``), node capacity (see ``capacity``). A quota failure may trigger preemption (see
   ``preemption``): the victims are evicted and the preemptor is admitted in a *later* cycle, once
   they are gone from the snapshot.
6. Every workload left pending gets a reason and its position in its queue.

Non-preemptible workloads may not borrow: everything lent can therefore be reclaimed.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter

from meson.core.capacity import ClusterCapacity
from meson.core.explain import PendingView
from meson.core.fairshare import share_path
from meson.core.flowcontrol import TokenBucket, format_rate
from meson.core.model import (
    Admission,
    AdmittedWorkload,
    Decisions,
    PendingInfo,
    Preemption,
    QueueConfig,
    Snapshot,
    Workload,
)
from meson.core.ordering import PendingIndex, QueueCursor
from meson.core.preemption import choose_victims
from meson.core.quota import QueueTree, QuotaBlock, QuotaState
from meson.core.resources import Resources


@dataclass(frozen=True, slots=True)
class _Nomination:
    """A preemptor waiting for its victims to disappear from the snapshot."""

    queue: str
    victims: frozenset[str]
    since: float


# Outcomes of examining one candidate.
# _SKIP_SHAPE: skipped, and any later workload of the same shape in the same queue would fail the
# same way this cycle (capacity only shrinks within a cycle), so it can be settled without a check.
_ADMITTED, _SKIP, _SKIP_SHAPE, _STOP, _STOP_ALL = range(5)


class Scheduler:
    """Stateful across cycles only for flow control and preemption bookkeeping."""

    def __init__(self, reserve_after: float = 60.0, preempt_after: float = 0.0,
                 preemption_memory: float = 3600.0) -> None:
        # reserve_after: seconds a blocked head may be overtaken (BestEffortFIFO) or outbid for
        # borrowed capacity before it reserves what it needs: the anti-starvation guard.
        self.reserve_after = reserve_after
        # preempt_after: seconds a workload waits for capacity to free naturally before it may
        # preempt. Evicting work that would have finished a moment later only wastes it.
        self.preempt_after = preempt_after
        self.preemption_memory = preemption_memory
        self._queue_buckets: dict[str, TokenBucket] = {}
        self._global_bucket: TokenBucket | None = None
        self._nominated: dict[str, _Nomination] = {}
        self._history: dict[tuple[str, str], float] = {}  # (preemptor, victim) -> when
        self._tree_key: tuple[QueueConfig, ...] | None = None
        self._tree: QueueTree | None = None
        self._index: PendingIndex | None = None
        self._index_tree: QueueTree | None = None

    # --- state that lives across cycles -------------------------------------------------------
    def _tree_for(self, queues: Sequence[QueueConfig]) -> QueueTree:
        key = tuple(queues)
        if self._tree is None or key != self._tree_key:
            self._tree = QueueTree(key)
            self._tree_key = key
        return self._tree

    def _buckets(self, snap: Snapshot, tree: QueueTree) -> None:
        now = snap.now
        if snap.global_rate is None:
            self._global_bucket = None
        elif self._global_bucket is None:
            self._global_bucket = TokenBucket.full(snap.global_rate, snap.global_burst, now)
        else:
            self._global_bucket.configure(snap.global_rate, snap.global_burst)
            self._global_bucket.refill(now)
        live: dict[str, TokenBucket] = {}
        for name, cfg in tree.config.items():
            if cfg.admission_rate is None:
                continue
            b = self._queue_buckets.get(name)
            if b is None:
                b = TokenBucket.full(cfg.admission_rate, cfg.admission_burst, now)
            else:
                b.configure(cfg.admission_rate, cfg.admission_burst)
                b.refill(now)
            live[name] = b
        self._queue_buckets = live

    @property
    def waiting_for_victims(self) -> dict[str, frozenset[str]]:
        """Preemptor key → keys of the victims it is waiting for (for status and tests)."""
        return {k: n.victims for k, n in self._nominated.items()}

    # --- the cycle ----------------------------------------------------------------------------
    def cycle(self, snap: Snapshot) -> Decisions:
        now = snap.now
        tree = self._tree_for(snap.queues)
        self._buckets(snap, tree)
        if self._history:
            horizon = now - self.preemption_memory
            self._history = {k: t for k, t in self._history.items() if t >= horizon}

        decisions = Decisions()
        fixed: dict[str, PendingInfo] = {}  # pending workloads whose queue is missing or not a leaf
        state = QuotaState(tree)
        capacity = ClusterCapacity(snap.nodes)

        admitted_keys: set[str] = set()
        admitted_by_leaf: dict[str, list[AdmittedWorkload]] = {}
        count: dict[str, int] = dict.fromkeys(tree.names, 0)
        for a in snap.admitted:
            w = a.workload
            admitted_keys.add(w.key)
            if w.queue not in tree.config:
                continue  # its queue was deleted; it keeps running but is nobody's usage
            state.charge(w.queue, w.total)
            admitted_by_leaf.setdefault(w.queue, []).append(a)
            for q in tree.path[w.queue]:
                count[q] += 1
        for running in admitted_by_leaf.values():
            running.sort(key=lambda a: a.workload.key)

        # Hold / drain apply to a queue's whole subtree.
        stop_by: dict[str, tuple[str, str]] = {}
        for leaf in tree.names:
            for q in tree.path[leaf]:
                policy = tree.config[q].stop_policy
                if policy != "None":
                    stop_by[leaf] = (q, policy)
                    break
        for leaf in sorted(admitted_by_leaf):
            held = stop_by.get(leaf)
            if held is not None and held[1] == "HoldAndDrain":
                for a in admitted_by_leaf[leaf]:
                    if a.workload.preemptible:
                        decisions.preempt.append(Preemption(
                            a.workload.key, None, f"queue {held[0]} is on hold and draining"))

        # Pending workloads grouped by leaf queue and sorted (incrementally, see PendingIndex).
        if self._index is None or self._index_tree is not tree:
            self._index = PendingIndex(tree.leaves)
            self._index_tree = tree
        index = self._index
        index.update(snap.pending)
        by_leaf = index.by_leaf
        pending_keys = index.by_key
        for key in sorted(index.other):
            w = index.other[key]
            if w.queue not in tree.config:
                fixed[key] = PendingInfo(key, f"queue {w.queue} does not exist", 0, True)
            else:
                fixed[key] = PendingInfo(
                    key, f"queue {w.queue} is a parent queue; submit to one of its leaf queues", 0, True)
        # Pending and admitted at once (the operator's view lagging): usage already covers it.
        admitted_now: set[str] = admitted_keys & pending_keys.keys()

        # Preemptors: forget the withdrawn, hold capacity for the waiting, release the ready.
        waiting: dict[str, str] = {}
        # Reason and never-fits flag per examined workload; positions are added at the end.
        notes: dict[str, tuple[str, bool]] = {}
        ready: list[Workload] = []
        in_flight: set[str] = set()
        for key in sorted(self._nominated):
            nom = self._nominated[key]
            w = pending_keys.get(key)
            if w is None or w.queue != nom.queue or w.queue not in tree.leaves:
                del self._nominated[key]
                continue
            alive = sorted(v for v in nom.victims if v in admitted_keys)
            if alive:
                in_flight.update(alive)
                state.hold(w.queue, w.total)
                names = ", ".join(alive[:3]) + (", ..." if len(alive) > 3 else "")
                plural = "s" if len(alive) != 1 else ""
                waiting[key] = f"waiting for {len(alive)} preempted workload{plural} to exit ({names})"
            else:
                ready.append(w)

        # Everything that can stop a candidate, as closures over this cycle's state.
        global_bucket = self._global_bucket
        buckets = self._queue_buckets
        wake: list[float] = []
        reason_cache: dict[QuotaBlock, str] = {}

        def excluded(a: AdmittedWorkload, preemptor: Workload) -> bool:
            return a.workload.key in in_flight or (a.workload.key, preemptor.key) in self._history

        def examine(w: Workload, cur: QueueCursor | None, allow_preempt: bool) -> int:
            leaf = w.queue
            cfg = tree.config[leaf]
            total = w.total
            never = state.ceiling_block(leaf, total) or capacity.never_fits(w)
            if never is None and not w.preemptible and not total.fits_in(cfg.guaranteed):
                never = (f"never fits: not preemptible, so it may only use queue {leaf}'s guarantee "
                         f"({cfg.guaranteed.describe()}), and it needs {total.describe()}")
            if never is not None:
                notes[w.key] = (never, True)
                return _SKIP_SHAPE  # never blocks a queue: it would block it forever
            if w.key in waiting:
                notes[w.key] = (waiting[w.key], False)
                return _STOP if cfg.strategy == "StrictFIFO" else _SKIP
            for q in tree.path[leaf]:
                cap = tree.config[q].max_admitted
                if cap is not None and count[q] >= cap:
                    if cur is not None:
                        cur.stop(f"queue {q} is at its cap of {cap} admitted workloads", False)
                    return _STOP
            path_buckets = [(q, buckets[q]) for q in tree.path[leaf] if q in buckets] if buckets else ()
            for q, bucket in path_buckets:
                if not bucket.can_take(w.pod_count):
                    wake.append(bucket.ready_at(w.pod_count))
                    if cur is not None:
                        cur.stop(f"throttled: queue {q} admission rate {format_rate(bucket.rate)}", False)
                    return _STOP
            if global_bucket is not None and not global_bucket.can_take(w.pod_count):
                wake.append(global_bucket.ready_at(w.pod_count))
                return _STOP_ALL
            borrowing = not state.within_guarantee(leaf, total)
            aged = now - w.created >= self.reserve_after
            strict = cfg.strategy == "StrictFIFO"
            if borrowing and not w.preemptible:
                g = cfg.guaranteed
                used = state.used[leaf]
                free = {k: max(g.get(k, 0) - used.get(k, 0), 0) for k in total}
                notes[w.key] = (f"not preemptible, so it may only use queue {leaf}'s guarantee: needs "
                                f"{total.describe()}, {_describe(free)} of it free", False)
                return _STOP if strict else _SKIP_SHAPE
            block = state.check(leaf, total, borrowing)
            if block is not None:
                reason = reason_cache.get(block)
                if reason is None:
                    reason = reason_cache[block] = block.describe()
                if allow_preempt and now - w.created >= self.preempt_after and (
                        cfg.preempt_within_queue != "Never" or cfg.reclaim_borrowed):
                    choice = choose_victims(state, w, admitted_by_leaf, lambda a: excluded(a, w))
                    if choice is not None:
                        for victim, why in zip(choice.victims, choice.reasons, strict=True):
                            decisions.preempt.append(Preemption(victim.workload.key, w.key, why))
                            self._history[(w.key, victim.workload.key)] = now
                            in_flight.add(victim.workload.key)
                        self._nominated[w.key] = _Nomination(
                            leaf, frozenset(v.workload.key for v in choice.victims), now)
                        state.hold(leaf, total)
                        n = len(choice.victims)
                        notes[w.key] = (f"preempting {n} workload{'s' if n != 1 else ''}: {reason}", False)
                        return _STOP if strict else _SKIP
                if not borrowing or aged:
                    # Reserve: borrowers may not take what this one is waiting for.
                    state.reserve(leaf, total)
                elif not strict:
                    wake.append(w.created + self.reserve_after)
                notes[w.key] = (reason, False)
                return _STOP if strict or aged else _SKIP_SHAPE
            node_reason = capacity.blocked(w)
            if node_reason is not None:
                notes[w.key] = (node_reason, False)
                if aged:
                    capacity.place(w)  # hold what free room there is for it
                elif not strict:
                    wake.append(w.created + self.reserve_after)
                return _STOP if strict or aged else _SKIP_SHAPE
            # Admit.
            state.charge(leaf, total)
            capacity.place(w)
            for _, bucket in path_buckets:
                bucket.take(w.pod_count)
            if global_bucket is not None:
                global_bucket.take(w.pod_count)
            for q in tree.path[leaf]:
                count[q] += 1
            decisions.admit.append(Admission(w.key, leaf))
            admitted_now.add(w.key)
            return _ADMITTED

        stop_all = ""
        # Ready preemptors go first: the capacity was freed for them.
        for w in sorted(ready, key=lambda w: w.order_key):
            del self._nominated[w.key]
            if stop_by.get(w.queue) is None:
                outcome = examine(w, None, allow_preempt=False)
                if outcome == _STOP_ALL:
                    stop_all = f"throttled: global admission rate {format_rate(snap.global_rate or 0)}"
                    break
                if outcome != _ADMITTED:
                    notes.pop(w.key, None)  # examined again below, in its queue's turn

        cursors: dict[str, QueueCursor] = {}
        heap: list[tuple[tuple, int, str]] = []
        seq = 0

        def key_for(cur: QueueCursor) -> tuple:
            w = cur.items[cur.idx]
            if state.within_guarantee(cur.name, w.total):
                return (0, (), w.order_key)
            return (1, share_path(state, cur.name), w.order_key)

        shape_of = attrgetter("shape")

        def skip_done(cur: QueueCursor) -> bool:
            # Move past workloads already settled this cycle, or certain to fail like an earlier
            # one of the same shape (their reason is filled in lazily); True if one is left.
            items = cur.items
            failed = cur.failed
            n = len(items)
            if failed and not cur.waiting:
                if cur.n_shapes == 0:
                    cur.n_shapes = len(set(map(shape_of, items)))
                if len(failed) >= cur.n_shapes:
                    cur.idx = n  # every shape in this queue has failed: nothing else can fit
                    return False
            while cur.idx < n:
                w = items[cur.idx]
                if w.key in admitted_now or (w.shape in failed and w.key not in waiting):
                    cur.idx += 1
                    continue
                break
            return cur.idx < n

        waiting_leaves = {pending_keys[k].queue for k in waiting}
        for leaf, items in by_leaf.items():  # sorted by name
            if not items:
                continue
            cur = QueueCursor(leaf, items, tree.config[leaf].strategy == "StrictFIFO",
                              waiting=leaf in waiting_leaves)
            cursors[leaf] = cur
            held = stop_by.get(leaf)
            if held is not None:
                draining = " and draining" if held[1] == "HoldAndDrain" else ""
                cur.stop(f"queue {held[0]} is on hold{draining}", False)
                continue
            if stop_all:
                continue
            if skip_done(cur):
                heapq.heappush(heap, (key_for(cur), seq, leaf))
                seq += 1

        while heap and not stop_all:
            k, _, leaf = heapq.heappop(heap)
            cur = cursors[leaf]
            fresh = key_for(cur)
            if fresh > k:
                heapq.heappush(heap, (fresh, seq, leaf))
                seq += 1
                continue
            w = cur.items[cur.idx]
            outcome = examine(w, cur, allow_preempt=True)
            if outcome == _STOP_ALL:
                stop_all = f"throttled: global admission rate {format_rate(snap.global_rate or 0)}"
                break
            if outcome == _SKIP_SHAPE:
                cur.failed[w.shape] = notes[w.key]
            elif outcome == _STOP:
                if not cur.stopped:
                    cur.stop(notes[w.key][0] if w.key in notes else "blocked", True)
                elif w.key not in notes:
                    notes[w.key] = (cur.stop_reason, False)
                cur.advance()
                continue
            cur.advance()
            if skip_done(cur):
                heapq.heappush(heap, (key_for(cur), seq, leaf))
                seq += 1

        decisions.pending = PendingView(fixed, cursors, pending_keys, notes, admitted_now, stop_all)
        future = [t for t in wake if t > now]
        decisions.wake_at = min(future) if future else None
        return decisions


def _describe(vec: dict[str, int]) -> str:
    return Resources(vec).describe()
