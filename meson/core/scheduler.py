"""One scheduling cycle: snapshot in, decisions out.

The ``Scheduler`` is a function of the snapshot plus a little state that has to survive between
cycles: token buckets (flow control), preemptors waiting for their victims to exit, and the history
of who preempted whom (to refuse ping-pong). Time comes only from ``snapshot.now``; iteration is
always in a sorted order. Same snapshot sequence, same decisions.

A cycle:

0. Check the queues (see ``queuecheck``): an invalid queue and the queues below it are disabled,
   with a reason; their workloads wait with it, and the rest is scheduled as if they did not exist.
1. Derive usage per queue from the admitted workloads; build the cluster-capacity view.
2. Emit evictions for queues set to ``HoldAndDrain`` (repeated every cycle until the victims are
   gone, so the operator may apply them idempotently).
3. Preemptors whose victims are all gone are admitted first, with the capacity they were promised.
   Those still waiting keep that capacity held, so nobody else takes it in the meantime; their
   victims free it for them alone (``QuotaState.nominate``), so later preemptors evict only what
   they need themselves.
4. Every leaf queue offers its next candidate (see ``ordering``); workloads ahead of it that can
   never fit are settled first, so they neither block the queue nor rank it. Candidates are taken
   from a heap keyed by (borrows?, hierarchical DRF shares if borrowing, -priority, created, key):
   admissions within a queue's guarantee go first by priority; spare capacity goes to the sibling
   with the lowest weighted dominant share (see ``fairshare``). Keys only grow during a cycle, so
   stale heap entries are refreshed lazily.
5. A candidate passes, in order: hold, per-queue cap, token buckets, quota (see ``quota``), node
   capacity (see ``capacity``). A quota failure may trigger preemption (see ``preemption``): the
   victims are evicted and the preemptor is admitted in a *later* cycle, once they are gone from
   the snapshot.
6. Every workload left pending gets a reason and its position in its queue, and every queue its
   accounting after the cycle (``Decisions.queues``).

Policies over time (issue 13): budgets (``budget``) are checked after the rates, before quota; a
``Backfill`` queue's blocked head reserves quota at its earliest feasible time (``backfill``); a
workload within its minimum runtime is never a victim (``preemption``); a parent with a half-life
orders its children by decayed usage (``fairshare``).

Quota sees only the part of a request its queue's tree names (``QueueTree.charged``); node fit and
never-fits see the whole request. Non-preemptible workloads may not borrow: everything lent can
therefore be reclaimed.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter

from meson.core.backfill import earliest_fit
from meson.core.budget import Budget, BudgetBlock, BudgetLedger, BudgetState
from meson.core.capacity import ClusterCapacity
from meson.core.estimate import format_seconds
from meson.core.explain import PendingView
from meson.core.fairshare import DecayedUsage, share_path
from meson.core.flowcontrol import TokenBucket, format_rate
from meson.core.model import (
    Admission,
    AdmittedWorkload,
    BudgetReport,
    Decisions,
    PendingInfo,
    Preemption,
    QueueAccounting,
    Snapshot,
    Workload,
)
from meson.core.ordering import PendingIndex, QueueCursor
from meson.core.preemption import choose_victims
from meson.core.queuecheck import check_queues
from meson.core.quota import QueueTree, QuotaBlock, QuotaState
from meson.core.resources import Resources


@dataclass(frozen=True, slots=True)
class _Nomination:
    """A preemptor waiting for its victims to disappear from the snapshot."""

    queue: str
    victims: frozenset[str]
    since: float


# A workload's estimate is checked against at most this many calendar windows ahead.
_MAX_WINDOWS = 64

# Outcomes of examining one candidate.
# _SKIP_SHAPE: skipped, and any later workload of the same shape in the same queue would fail the
# same way this cycle (capacity only shrinks within a cycle), so it can be settled without a check.
_ADMITTED, _SKIP, _SKIP_SHAPE, _STOP, _STOP_ALL = range(5)


class Scheduler:
    """Stateful across cycles only for flow control and preemption bookkeeping."""

    def __init__(
        self, reserve_after: float = 60.0, preempt_after: float = 0.0, preemption_memory: float = 3600.0
    ) -> None:
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
        self._tree_key: tuple | None = None
        self._tree: QueueTree | None = None
        self._disabled: dict[str, str] = {}
        self._index: PendingIndex | None = None
        self._index_tree: QueueTree | None = None
        # Budget usage (restore it from persisted state with ``budgets.restore``) and decayed usage.
        self.budgets = BudgetLedger()
        self.decayed = DecayedUsage()

    # --- state that lives across cycles -------------------------------------------------------
    def _tree_for(self, snap: Snapshot) -> tuple[QueueTree, dict[str, str]]:
        """The tree of the valid queues and the disabled ones (checked only when the queues change)."""
        key = (tuple(snap.queues), tuple(sorted(snap.disabled.items())))
        if self._tree is None or key != self._tree_key:
            check = check_queues(snap.queues, snap.disabled)
            self._tree = QueueTree(check.valid)
            self._disabled = check.disabled
            self._tree_key = key
        return self._tree, self._disabled

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
        tree, disabled = self._tree_for(snap)
        self._buckets(snap, tree)
        if self._history:
            horizon = snap.now - self.preemption_memory
            self._history = {k: t for k, t in self._history.items() if t >= horizon}
        # Pending workloads grouped by leaf queue and sorted (incrementally, see PendingIndex).
        if self._index is None or self._index_tree is not tree:
            self._index = PendingIndex(tree.leaves)
            self._index_tree = tree
        self._index.update(snap.pending)
        budgets = {n: c.budgets for n, c in tree.config.items() if c.budgets}
        if budgets or self.budgets.states:
            self.budgets.advance(snap.now, budgets, _budget_usage(tree, budgets, snap.admitted))
        if any(c.fair_half_life for c in tree.config.values()) or self.decayed.usage:
            self.decayed.advance(snap.now, tree)
        return _Cycle(self, snap, tree, self._index, disabled).run()

    def restore_budget(self, queue: str, resource: str, state: BudgetState) -> None:
        """Seed a budget's usage from persisted state (after a restart)."""
        self.budgets.restore(queue, resource, state)

    def restore_decayed(self, queue: str, usage: dict[str, float], as_of: float) -> None:
        """Seed a queue's decayed usage from persisted state (after a restart)."""
        self.decayed.restore(queue, usage, as_of)


def _budget_usage(
    tree: QueueTree, budgets: dict[str, tuple[Budget, ...]], admitted: Sequence[AdmittedWorkload]
) -> dict[str, dict[str, float]]:
    """What each budgeted queue's subtree runs now, in its budgets' resources (whole requests: a budget
    counts a resource whether or not a quota names it)."""
    out: dict[str, dict[str, float]] = {
        q: dict.fromkeys((b.resource for b in bs), 0.0) for q, bs in budgets.items()
    }
    for a in admitted:
        if a.queue not in tree.config:
            continue
        for q in tree.path[a.queue]:
            d = out.get(q)
            if d is not None:
                for r in d:
                    d[r] += a.workload.total.get(r, 0)
    return out


class _Cycle:
    """The working state of one cycle; built and thrown away by ``Scheduler.cycle``."""

    def __init__(
        self, sched: Scheduler, snap: Snapshot, tree: QueueTree, index: PendingIndex, disabled: dict[str, str]
    ) -> None:
        self.sched = sched
        self.snap = snap
        self.now = snap.now
        self.tree = tree
        self.index = index
        self.pending_keys = index.by_key
        self.decisions = Decisions(disabled=dict(disabled), now=snap.now)
        self.state = QuotaState(tree)
        self.capacity = ClusterCapacity(snap.nodes)
        self.fixed: dict[str, PendingInfo] = {}  # pending workloads whose queue is not a valid leaf
        # Reason and never-fits flag per examined workload; positions are added at the end.
        self.notes: dict[str, tuple[str, bool]] = {}
        self.waiting: dict[str, str] = {}  # preemptor still waiting for its victims -> reason
        self.in_flight: set[str] = set()  # victims already being evicted
        self.waiting_victims: list[str] = []  # victims of earlier cycles' preemptors, still running
        self.wake: list[float] = []
        self.reason_cache: dict[QuotaBlock, str] = {}
        self.cursors: dict[str, QueueCursor] = {}
        self.stop_all = ""
        self.admitted_keys: set[str] = set()
        self.admitted_by_key: dict[str, AdmittedWorkload] = {}
        self.admitted_by_leaf: dict[str, list[AdmittedWorkload]] = {}
        self.count: dict[str, int] = dict.fromkeys(tree.names, 0)  # admitted per queue (subtree)
        self.stop_by: dict[str, tuple[str, str]] = {}  # leaf -> (queue on hold, its policy)
        self.admitted_now: set[str] = set()  # pending keys that are admitted (now, or already)
        self.admitted_list: list[Workload] = []  # this cycle's admissions
        # Budgets on each leaf's path, and per (queue, resource) what is used or promised in the window.
        self.budget_path: dict[str, list[tuple[str, Budget]]] = {
            leaf: [(q, b) for q in tree.path[leaf] for b in tree.config[q].budgets] for leaf in tree.leaves
        }
        self.committed: dict[tuple[str, str], float] = {}  # used in the current window
        self.commitments: dict[tuple[str, str], list[tuple[float, int]]] = {}
        self.resets: dict[tuple[str, str], float | None] = {}
        # Minimum runtime before preemption per queue: the largest on its path.
        self.min_runtime = {n: max(tree.config[q].min_runtime for q in tree.path[n]) for n in tree.names}
        self.protected: list[float] = []  # when protected would-be victims become preemptible
        self.backfill_head: dict[str, str] = {}  # Backfill leaf -> its head holding a reservation
        self.start_used: dict[str, dict[str, int]] | None = None  # usage at cycle start (decay)

    def run(self) -> Decisions:
        self._charge_admitted()
        self._charge_budgets()
        self._holds()
        if self.sched.decayed.usage:
            self.start_used = {n: dict(v) for n, v in self.state.used.items()}
            self.decisions.decayed = {n: dict(v) for n, v in self.sched.decayed.usage.items()}
        self._explain_misplaced()
        ready = self._nominations()
        self._admit_ready(ready)
        self._pass()
        d = self.decisions
        d.pending = PendingView(
            self.fixed, self.cursors, self.pending_keys, self.notes, self.admitted_now, self.stop_all
        )
        future = [t for t in self.wake if t > self.now]
        d.wake_at = min(future) if future else None
        d.queues = self._accounting()
        if self.committed:
            self._report_budgets()
            # The rate of use until the next cycle: what runs now, this cycle's admissions included
            # (victims still run until they exit).
            now_admitted = [AdmittedWorkload(w, self.now) for w in self.admitted_list]
            budgets = {n: c.budgets for n, c in self.tree.config.items() if c.budgets}
            self.sched.budgets.set_rate(
                _budget_usage(self.tree, budgets, [*self.snap.admitted, *now_admitted])
            )
        if self.start_used is not None:
            self.sched.decayed.set_rate(self.state.used)
        return d

    # --- before the pass ----------------------------------------------------------------------
    def _charge_admitted(self) -> None:
        tree, state, count = self.tree, self.state, self.count
        for a in self.snap.admitted:
            w = a.workload
            self.admitted_keys.add(w.key)
            self.admitted_by_key[w.key] = a
            if w.queue not in tree.config:
                continue  # its queue was deleted or disabled; it keeps running but is nobody's usage
            state.charge(w.queue, tree.charged(w.queue, w.total))
            self.admitted_by_leaf.setdefault(w.queue, []).append(a)
            for q in tree.path[w.queue]:
                count[q] += 1
        for running in self.admitted_by_leaf.values():
            running.sort(key=lambda a: a.workload.key)
        # Pending and admitted at once (the operator's view lagging): usage already covers it.
        leaves = tree.leaves
        self.admitted_now = {
            k for k in self.admitted_keys & self.pending_keys.keys() if self.pending_keys[k].queue in leaves
        }

    def _charge_budgets(self) -> None:
        """Per budget: what it has used in its window, and what running work will still use by its
        estimate (``commitments``: (end, amount), from now); a budget set to evict preempts once it
        is used up."""
        tree, now, ledger = self.tree, self.now, self.sched.budgets
        for n, cfg in tree.config.items():
            for b in cfg.budgets:
                key = (n, b.resource)
                st = ledger.states.get(key)
                self.committed[key] = st.total(b, now) if st is not None else 0.0
                self.commitments[key] = []
                self.resets[key] = b.resets_at(now)
        if not self.committed:
            return
        for leaf, running in self.admitted_by_leaf.items():
            for q, b in self.budget_path.get(leaf, ()):
                key = (q, b.resource)
                for a in running:
                    amount = a.workload.total.get(b.resource, 0)
                    if amount:
                        end = max(a.admitted_at + a.workload.estimate, now)
                        self.commitments[key].append((end, amount))
        for n, cfg in tree.config.items():
            for b in cfg.budgets:
                st = ledger.states.get((n, b.resource))
                if b.evict and st is not None and st.total(b, now) >= b.limit:
                    self._evict_for_budget(n, b)

    def _evict_for_budget(self, queue: str, b: Budget) -> None:
        why = f"budget exhausted: queue {queue} used its {b.resource} budget {b.describe_window()}"
        for leaf in sorted(self.admitted_by_leaf):
            if queue not in self.tree.path[leaf]:
                continue
            for a in self.admitted_by_leaf[leaf]:
                if a.workload.preemptible and a.workload.total.get(b.resource, 0):
                    self.decisions.preempt.append(
                        Preemption(a.workload.key, None, why, self.now - a.admitted_at)
                    )

    def _budget_block(self, w: Workload) -> BudgetBlock | None:
        """The first budget ``w``'s estimated use would overrun, in any window its estimate reaches
        (a calendar window's reset does not let work spill over into the next one unchecked)."""
        now = self.now
        end = now + w.estimate
        for q, b in self.budget_path.get(w.queue, ()):
            amount = w.total.get(b.resource, 0)
            if not amount:
                continue
            key = (q, b.resource)
            commitments = self.commitments[key]
            start, stop, used, later = now, self.resets[key], self.committed[key], False
            for _ in range(_MAX_WINDOWS):
                cut = math.inf if stop is None else stop
                taken = used + sum(a * max(0.0, min(e, cut) - start) for e, a in commitments)
                cost = amount * max(0.0, min(end, cut) - start)
                if taken + cost > b.limit * (1 + 1e-9):
                    return BudgetBlock(q, b, taken, cost, self.resets[key], later)
                if stop is None or end <= stop:
                    break
                start, stop, used, later = stop, b.resets_at(stop), 0.0, True
        return None

    def _charge_budget(self, w: Workload) -> None:
        for q, b in self.budget_path.get(w.queue, ()):
            amount = w.total.get(b.resource, 0)
            if amount:
                self.commitments[(q, b.resource)].append((self.now + w.estimate, amount))

    def _report_budgets(self) -> None:
        now, out = self.now, self.decisions.budgets
        for n, cfg in self.tree.config.items():
            for b in cfg.budgets:
                st = self.sched.budgets.states.get((n, b.resource))
                if st is None:
                    continue
                buckets = tuple(sorted(st.buckets.items()))
                out[(n, b.resource)] = BudgetReport(
                    b, st.total(b, now), b.start(now), b.resets_at(now), now, buckets
                )

    def _holds(self) -> None:
        """Hold / drain apply to a queue's whole subtree; draining evicts its preemptible workloads."""
        tree = self.tree
        for leaf in tree.names:
            for q in tree.path[leaf]:
                policy = tree.config[q].stop_policy
                if policy != "None":
                    self.stop_by[leaf] = (q, policy)
                    break
        for leaf in sorted(self.admitted_by_leaf):
            held = self.stop_by.get(leaf)
            if held is not None and held[1] == "HoldAndDrain":
                for a in self.admitted_by_leaf[leaf]:
                    if a.workload.preemptible:
                        self.decisions.preempt.append(
                            Preemption(
                                a.workload.key,
                                None,
                                f"queue {held[0]} is on hold and draining",
                                self.now - a.admitted_at,
                            )
                        )

    def _explain_misplaced(self) -> None:
        """Reasons for pending workloads whose queue is missing, disabled or not a leaf."""
        tree, disabled, other = self.tree, self.decisions.disabled, self.index.other
        for key in sorted(other):
            q = other[key].queue
            if q in disabled:
                self.fixed[key] = PendingInfo(key, f"queue {q} is disabled: {disabled[q]}", 0, False)
            elif q not in tree.config:
                self.fixed[key] = PendingInfo(key, f"queue {q} does not exist", 0, True)
            else:
                self.fixed[key] = PendingInfo(
                    key, f"queue {q} is a parent queue; submit to one of its leaf queues", 0, True
                )

    def _nominations(self) -> list[Workload]:
        """Preemptors: forget the withdrawn, hold capacity for the waiting; returns the ready ones."""
        nominated, tree = self.sched._nominated, self.tree
        ready: list[Workload] = []
        for key in sorted(nominated):
            nom = nominated[key]
            w = self.pending_keys.get(key)
            if w is None or w.queue != nom.queue or w.queue not in tree.leaves:
                del nominated[key]
                continue
            alive = sorted(v for v in nom.victims if v in self.admitted_keys)
            if alive:
                self.in_flight.update(alive)
                self.waiting_victims.extend(alive)
                self._nominate(w, tree.charged(w.queue, w.total), [self.admitted_by_key[v] for v in alive])
                names = ", ".join(alive[:3]) + (", ..." if len(alive) > 3 else "")
                plural = "s" if len(alive) != 1 else ""
                self.waiting[key] = f"waiting for {len(alive)} preempted workload{plural} to exit ({names})"
            else:
                ready.append(w)
        return ready

    def _nominate(self, w: Workload, need: Resources, victims: Sequence[AdmittedWorkload]) -> None:
        """Hold capacity for ``w`` until ``victims`` exit: they free it for ``w`` only (``QuotaState``)."""
        tree = self.tree
        self.state.nominate(
            w.queue,
            need,
            [(v.queue, tree.charged(v.queue, v.workload.total)) for v in victims if v.queue in tree.config],
        )

    def _admit_ready(self, ready: list[Workload]) -> None:
        """Ready preemptors go first: the capacity was freed for them."""
        for w in sorted(ready, key=lambda w: w.order_key):
            del self.sched._nominated[w.key]
            if self.stop_by.get(w.queue) is None and self._never_fits(w) is None:
                outcome = self._examine(w, None, allow_preempt=False)
                if outcome == _STOP_ALL:
                    self.stop_all = self._throttled_globally()
                    break
                if outcome != _ADMITTED:
                    self.notes.pop(w.key, None)  # examined again in its queue's turn

    def _throttled_globally(self) -> str:
        return f"throttled: global admission rate {format_rate(self.snap.global_rate or 0)}"

    # --- the pass -----------------------------------------------------------------------------
    def _pass(self) -> None:
        """Take candidates from every leaf queue in (guarantee, fair share, order) order."""
        tree, state, cursors = self.tree, self.state, self.cursors
        heap: list[tuple[tuple, int, str]] = []
        seq = 0
        charged = tree.charged
        decayed = self.sched.decayed if self.start_used is not None else None

        def key_for(cur: QueueCursor) -> tuple:
            w = cur.items[cur.idx]
            if state.within_guarantee(cur.name, charged(cur.name, w.total)):
                return (0, (), w.order_key)
            return (1, share_path(state, cur.name, decayed, self.start_used), w.order_key)

        waiting_leaves = {self.pending_keys[k].queue for k in self.waiting}
        for leaf, items in self.index.by_leaf.items():  # sorted by name
            if not items:
                continue
            cur = QueueCursor(
                leaf, items, tree.config[leaf].strategy == "StrictFIFO", waiting=leaf in waiting_leaves
            )
            cursors[leaf] = cur
            held = self.stop_by.get(leaf)
            if held is not None:
                draining = " and draining" if held[1] == "HoldAndDrain" else ""
                cur.stop(f"queue {held[0]} is on hold{draining}", False)
                continue
            if self.stop_all:
                continue
            if self._skip_done(cur):
                heapq.heappush(heap, (key_for(cur), seq, leaf))
                seq += 1

        notes = self.notes
        while heap and not self.stop_all:
            k, _, leaf = heapq.heappop(heap)
            cur = cursors[leaf]
            fresh = key_for(cur)
            if fresh > k:
                heapq.heappush(heap, (fresh, seq, leaf))
                seq += 1
                continue
            w = cur.items[cur.idx]
            outcome = self._examine(w, cur, allow_preempt=True)
            if outcome == _STOP_ALL:
                self.stop_all = self._throttled_globally()
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
            if self._skip_done(cur):
                heapq.heappush(heap, (key_for(cur), seq, leaf))
                seq += 1

    def _skip_done(self, cur: QueueCursor) -> bool:
        """Move past workloads already settled this cycle, or certain to fail like an earlier one
        of the same shape (their reason is filled in lazily); True if one is left."""
        items = cur.items
        failed = cur.failed
        n = len(items)
        if failed and not cur.waiting:
            if cur.n_shapes == 0:
                cur.n_shapes = len(set(map(_shape_of, items)))
            if len(failed) >= cur.n_shapes:
                cur.idx = n  # every shape in this queue has failed: nothing else can fit
                return False
        admitted_now, waiting, notes = self.admitted_now, self.waiting, self.notes
        while cur.idx < n:
            w = items[cur.idx]
            if w.key in admitted_now or (w.shape in failed and w.key not in waiting):
                cur.idx += 1
                continue
            # A workload that never fits is settled here, not as the queue's candidate: its heap key
            # would stand for the queue's, and one that borrows would let borrowers of other queues
            # go ahead of a workload behind it that is within its guarantee.
            never = self._never_fits(w)
            if never is not None:
                notes[w.key] = failed[w.shape] = (never, True)
                cur.idx += 1
                continue
            break
        return cur.idx < n

    def _never_fits(self, w: Workload) -> str | None:
        """A reason if ``w`` can never be admitted: past its queue's ceiling, bigger than the nodes, or
        not preemptible and bigger than its queue's guarantee. It never blocks a queue: it would block
        it forever."""
        leaf = w.queue
        total = self.tree.charged(leaf, w.total)  # what quota counts; nodes see the whole request
        never = self.state.ceiling_block(leaf, total) or self.capacity.never_fits(w)
        if never is None and not w.preemptible:
            g = self.tree.config[leaf].guaranteed
            if not total.fits_in(g):
                never = (
                    f"never fits: not preemptible, so it may only use queue {leaf}'s guarantee "
                    f"({g.describe()}), and it needs {total.describe()}"
                )
        return never

    def _examine(self, w: Workload, cur: QueueCursor | None, allow_preempt: bool) -> int:
        """The gates before quota: a pending preemption, admission caps, rates. Never-fits is settled
        before (``_never_fits``)."""
        leaf = w.queue
        tree = self.tree
        cfg = tree.config[leaf]
        total = tree.charged(leaf, w.total)  # what quota counts; nodes see the whole request
        if w.key in self.waiting:
            self.notes[w.key] = (self.waiting[w.key], False)
            return _STOP if cfg.strategy == "StrictFIFO" else _SKIP
        count = self.count
        for q in tree.path[leaf]:
            cap = tree.config[q].max_admitted
            if cap is not None and count[q] >= cap:
                if cur is not None:
                    cur.stop(f"queue {q} is at its cap of {cap} admitted workloads", False)
                return _STOP
        buckets = self.sched._queue_buckets
        path_buckets = [(q, buckets[q]) for q in tree.path[leaf] if q in buckets] if buckets else []
        for q, bucket in path_buckets:
            if not bucket.can_take(w.pod_count):
                self.wake.append(bucket.ready_at(w.pod_count))
                if cur is not None:
                    cur.stop(f"throttled: queue {q} admission rate {format_rate(bucket.rate)}", False)
                return _STOP
        global_bucket = self.sched._global_bucket
        if global_bucket is not None and not global_bucket.can_take(w.pod_count):
            self.wake.append(global_bucket.ready_at(w.pod_count))
            return _STOP_ALL
        if self.committed:
            block = self._budget_block(w)
            if block is not None:
                self.notes[w.key] = (block.describe(format_seconds(w.estimate)), False)
                b = block.budget
                self.wake.append(block.resets_at if block.resets_at is not None else self.now + b.bucket())
                return _STOP if cfg.strategy == "StrictFIFO" else _SKIP
        outcome = self._quota_and_nodes(w, total, allow_preempt)
        if outcome == _ADMITTED:
            for _, bucket in path_buckets:
                bucket.take(w.pod_count)
            if global_bucket is not None:
                global_bucket.take(w.pod_count)
        return outcome

    def _quota_and_nodes(self, w: Workload, total: Resources, allow_preempt: bool) -> int:
        """Quota (maybe preempting for it), then node capacity, then admit."""
        leaf, state, now = w.queue, self.state, self.now
        cfg = self.tree.config[leaf]
        borrowing = not state.within_guarantee(leaf, total)
        aged = now - w.created >= self.sched.reserve_after
        strict = cfg.strategy == "StrictFIFO"
        if borrowing and not w.preemptible:
            g = cfg.guaranteed
            used = state.used[leaf]
            free = {k: max(g.get(k, 0) - used.get(k, 0), 0) for k in total}
            self.notes[w.key] = (
                f"not preemptible, so it may only use queue {leaf}'s guarantee: needs "
                f"{total.describe()}, {_describe(free)} of it free",
                False,
            )
            return _STOP if strict else _SKIP_SHAPE
        backfill = cfg.strategy == "Backfill"
        block = state.check(leaf, total, borrowing, ends_at=now + w.estimate)
        if block is not None:
            reason = self.reason_cache.get(block)
            if reason is None:
                reason = self.reason_cache[block] = block.describe()
            may_preempt = allow_preempt and (cfg.preempt_within_queue != "Never" or cfg.reclaim_borrowed)
            if may_preempt and now - w.created < self.sched.preempt_after:
                # Not yet: wake when it may (nothing else may happen before, in a quiet cluster).
                self.wake.append(w.created + self.sched.preempt_after)
            elif may_preempt and self._preempt_for(w, total, reason):
                return _STOP if strict else _SKIP
            if self.protected:
                left = format_seconds(min(self.protected) - now)
                reason += f"; would preempt, but the candidates are within their minimum runtime for {left}"
            if backfill:
                self.notes[w.key] = (self._reserve(w, total, borrowing, reason), False)
                return _SKIP
            if not borrowing or aged:
                # Reserve: borrowers may not take what this one is waiting for.
                state.reserve(leaf, total)
            elif not strict:
                self.wake.append(w.created + self.sched.reserve_after)
            self.notes[w.key] = (reason, False)
            return _STOP if strict or aged else _SKIP_SHAPE
        node_reason = self.capacity.blocked(w)
        if node_reason is not None:
            self.notes[w.key] = (node_reason, False)
            if backfill and leaf not in self.backfill_head:
                self.backfill_head[leaf] = w.key
                self.capacity.place(w)  # hold the free room there is: nodes are not reserved in time
                return _SKIP
            if aged:
                self.capacity.place(w)  # hold what free room there is for it
            elif not strict:
                self.wake.append(w.created + self.sched.reserve_after)
            return _STOP if strict or aged else _SKIP_SHAPE
        state.charge(leaf, total)
        self.capacity.place(w)
        for q in self.tree.path[leaf]:
            self.count[q] += 1
        self.decisions.admit.append(Admission(w.key, leaf))
        self.admitted_now.add(w.key)
        self.admitted_list.append(w)
        if self.committed:
            self._charge_budget(w)
        return _ADMITTED

    def _reserve(self, w: Workload, total: Resources, borrowing: bool, reason: str) -> str:
        """A Backfill queue's blocked head reserves quota at its earliest feasible time; the others wait
        behind it unless they end before then or leave its capacity alone (``backfill``)."""
        leaf, now, tree = w.queue, self.now, self.tree
        head = self.backfill_head.get(leaf)
        if head is not None:
            until = self.decisions.reservations.get(head)
            if until is None:
                return reason
            return (
                f"{reason}; capacity is reserved for {head} from {_in(until, now)} and this workload's "
                f"estimate ({format_seconds(w.estimate)}) ends after that"
            )
        root = tree.path[leaf][-1]
        running = [
            (max(a.admitted_at + a.workload.estimate, now), q, tree.charged(q, a.workload.total))
            for q, lst in self.admitted_by_leaf.items()
            if tree.path[q][-1] == root
            for a in lst
            if a.workload.key not in self.in_flight
        ]
        running += [
            (now + x.estimate, x.queue, tree.charged(x.queue, x.total))
            for x in self.admitted_list
            if tree.path[x.queue][-1] == root
        ]
        until, holds = earliest_fit(self.state, leaf, total, borrowing, running, now)
        self.state.holds.append((leaf, until, holds))
        self.backfill_head[leaf] = w.key
        if math.isinf(until):
            return f"{reason}; capacity is reserved for it (no end of running work frees enough)"
        self.decisions.reservations[w.key] = until
        self.wake.append(until)
        when = _in(until, now)
        return f"{reason}; capacity reserved for it from {when} (when running work is expected to end)"

    def _preempt_for(self, w: Workload, total: Resources, reason: str) -> bool:
        """Evict victims so ``w`` fits later (it waits for them, its capacity held); False if none."""
        sched, now = self.sched, self.now

        protected = self.protected
        protected.clear()
        min_runtime = self.min_runtime

        def excluded(a: AdmittedWorkload) -> bool:
            if a.workload.key in self.in_flight or (a.workload.key, w.key) in sched._history:
                return True
            least = max(a.workload.min_runtime, min_runtime.get(a.queue, 0.0))
            if least > 0 and a.admitted_at + least > now:
                protected.append(a.admitted_at + least)  # within its minimum runtime: wake when not
                return True
            return False

        choice = choose_victims(self.state, w, self.admitted_by_leaf, excluded)
        if choice is None:
            if protected:
                self.wake.append(min(protected))
            return False
        protected.clear()
        for victim, why in zip(choice.victims, choice.reasons, strict=True):
            self.decisions.preempt.append(
                Preemption(victim.workload.key, w.key, why, now - victim.admitted_at)
            )
            sched._history[(w.key, victim.workload.key)] = now
            self.in_flight.add(victim.workload.key)
        sched._nominated[w.key] = _Nomination(w.queue, frozenset(v.workload.key for v in choice.victims), now)
        self._nominate(w, total, choice.victims)
        n = len(choice.victims)
        self.notes[w.key] = (f"preempting {n} workload{'s' if n != 1 else ''}: {reason}", False)
        return True

    # --- after the pass -----------------------------------------------------------------------
    def _accounting(self) -> dict[str, QueueAccounting]:
        """Per queue (subtree): pending and admitted counts, usage and borrowing after the cycle:
        this cycle's admissions count, its preemption victims do not."""
        tree, state = self.tree, self.state
        count = dict(self.count)
        running = {a.workload.key: a for lst in self.admitted_by_leaf.values() for a in lst}
        gone: set[str] = set()
        for p in self.decisions.preempt:
            a = running.get(p.victim_key)
            if a is None or p.victim_key in gone:
                continue
            gone.add(p.victim_key)
            state.release(a.queue, tree.charged(a.queue, a.workload.total))  # the pass is over
            for q in tree.path[a.queue]:
                count[q] -= 1
        for key in self.waiting_victims:  # their usage is their preemptors' (counted as admitted)
            a = running.get(key)
            if a is not None and key not in gone:
                gone.add(key)
                state.release(a.queue, tree.charged(a.queue, a.workload.total))
        pending = dict.fromkeys(tree.names, 0)
        for leaf, items in self.index.by_leaf.items():
            for q in tree.path[leaf]:
                pending[q] += len(items)
        for key in self.admitted_now:
            for q in tree.path[self.pending_keys[key].queue]:
                pending[q] -= 1
        out: dict[str, QueueAccounting] = {}
        for n in tree.names:
            usage = Resources(state.used[n])
            borrowed = (usage - tree.entitlement[n]).positive()
            out[n] = QueueAccounting(pending[n], count[n], usage, borrowed)
        return out


_shape_of = attrgetter("shape")


def _in(when: float, now: float) -> str:
    return "now" if when <= now else f"in {format_seconds(when - now)}"


def _describe(vec: dict[str, int]) -> str:
    return Resources(vec).describe()
