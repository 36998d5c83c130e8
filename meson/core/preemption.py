"""Preemption: choosing a minimal, safe victim set.

Two reasons to evict, mirroring Kueue's ``withinClusterQueue`` and ``reclaimWithinCohort``:

* within a queue (``preempt_within_queue="LowerPriority"``): a workload may evict strictly
  lower-priority workloads of its own queue;
* reclaim (``reclaim_borrowed=True``): a queue whose admission would keep it within its own
  guarantee may evict workloads of queues that are borrowing (using more than their entitlement)
  in the same tree, whatever their priority. Capacity lent is capacity that can be taken back.

Safety rules, each of which a property test checks:

* non-preemptible workloads are never victims (and, in the scheduler, never borrow, so lent
  capacity is always reclaimable);
* a reclaim takes from a queue only while that queue is borrowing, so it takes borrowed capacity,
  not guarantees (workloads are indivisible, so the last victim taken from a queue may leave it
  below its guarantee by less than that victim's size, as in Kueue);
* the victim set is minimal: candidates are taken lowest priority first, newest first, until the
  preemptor fits, then every victim that is not needed after all is put back (highest priority,
  oldest first). Finding the *smallest* possible set is a knapsack problem; this greedy set is
  irreducible (no victim can be spared) and prefers cheap victims;
* exactly enough victims when several workloads preempt in one cycle (or while earlier ones still
  wait): a victim already chosen frees capacity for its own preemptor only and is never counted
  again, and what it frees beyond that preemptor's need is there for the next one, which evicts
  nothing if that covers it (see ``QuotaState``);
* no ping-pong: a workload may not preempt one that has preempted it (the scheduler keeps that
  history), and within-queue preemption needs strictly higher priority, so the "preempts" relation
  has no cycles.

Preemption is for quota only. A shortage of node capacity is left to kube-scheduler's own pod
priority and preemption, which knows which node would actually free up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from meson.core.model import AdmittedWorkload, Workload
from meson.core.quota import QuotaState
from meson.core.resources import Resources


@dataclass(frozen=True, slots=True)
class VictimChoice:
    victims: tuple[AdmittedWorkload, ...]
    reasons: tuple[str, ...]


def _victim_order(a: AdmittedWorkload) -> tuple[int, float, str]:
    # Lowest priority first, then the most recently admitted (least work lost), then key.
    return (a.workload.priority, -a.admitted_at, a.workload.key)


def _borrowing_below(state: QuotaState, queue: str, stop_at: frozenset[str]) -> bool:
    """Is any queue on ``queue``'s path, below the common ancestor with the preemptor, borrowing?"""
    for b in state.tree.path[queue]:
        if b in stop_at:
            return False
        if state.borrowing(b):
            return True
    return False


def choose_victims(
    state: QuotaState,
    preemptor: Workload,
    admitted_by_leaf: Mapping[str, Sequence[AdmittedWorkload]],
    excluded: Callable[[AdmittedWorkload], bool],
) -> VictimChoice | None:
    """A minimal set of admitted workloads whose eviction lets ``preemptor`` fit its quota.

    ``excluded(victim)`` lets the scheduler rule out victims already being evicted and pairs that
    would ping-pong. Fit is judged as it will be once the preemptions in progress are done (see
    ``QuotaState``): a victim already chosen for another preemptor frees capacity only for that one,
    and capacity they free beyond its need is there for this one, so None if the preemptor needs no
    victim at all. Usage in ``state`` is left as it was found.
    """
    tree = state.tree
    leaf = preemptor.queue
    need = tree.charged(leaf, preemptor.total)  # quota counts only what the tree names
    within_guarantee = state.within_guarantee(leaf, need)
    borrowing = not within_guarantee
    if state.check(leaf, need, borrowing, after_evictions=True) is None:
        return None  # the capacity being freed already covers it: wait, evict nothing more
    candidates = _candidates(state, preemptor, admitted_by_leaf, excluded, within_guarantee)
    if not candidates:
        return None
    candidates.sort(key=lambda c: _victim_order(c[0]))

    removed: list[tuple[AdmittedWorkload, str]] = []
    fits = False

    def usage(a: AdmittedWorkload) -> Resources:
        return tree.charged(a.workload.queue, a.workload.total)

    for a, why in candidates:
        q = a.workload.queue
        if q != leaf and not _borrowing_below(state, q, frozenset(tree.path[leaf])):
            continue  # that queue is back within its entitlement: the rest of it is guaranteed
        state.release(q, usage(a))
        removed.append((a, why))
        if state.check(leaf, need, borrowing, after_evictions=True) is None:
            fits = True
            break
    if not fits:
        for a, _ in removed:
            state.charge(a.workload.queue, usage(a))
        return None

    # Put back every victim that turns out not to be needed, most valuable first.
    kept: list[tuple[AdmittedWorkload, str]] = []
    for a, why in reversed(removed):
        state.charge(a.workload.queue, usage(a))
        if state.check(leaf, need, borrowing, after_evictions=True) is None:
            continue  # spared
        state.release(a.workload.queue, usage(a))
        kept.append((a, why))
    for a, _ in kept:
        state.charge(a.workload.queue, usage(a))
    kept.sort(key=lambda c: _victim_order(c[0]))
    return VictimChoice(tuple(a for a, _ in kept), tuple(w for _, w in kept))


def _candidates(
    state: QuotaState,
    preemptor: Workload,
    admitted_by_leaf: Mapping[str, Sequence[AdmittedWorkload]],
    excluded: Callable[[AdmittedWorkload], bool],
    within_guarantee: bool,
) -> list[tuple[AdmittedWorkload, str]]:
    """Every workload the preemptor may evict, with the reason it would be given."""
    tree = state.tree
    leaf = preemptor.queue
    cfg = tree.config[leaf]
    candidates: list[tuple[AdmittedWorkload, str]] = []
    if cfg.preempt_within_queue == "LowerPriority":
        for a in admitted_by_leaf.get(leaf, ()):
            if a.workload.preemptible and a.workload.priority < preemptor.priority and not excluded(a):
                candidates.append(
                    (
                        a,
                        f"preempted by higher-priority {preemptor.key} "
                        f"(priority {preemptor.priority} > {a.workload.priority}) "
                        f"in queue {leaf}",
                    )
                )
    if cfg.reclaim_borrowed and within_guarantee:
        my_path = frozenset(tree.path[leaf])
        root = tree.path[leaf][-1]
        for other, running in admitted_by_leaf.items():
            if other == leaf or other not in tree.path or tree.path[other][-1] != root:
                continue
            if not _borrowing_below(state, other, my_path):
                continue
            for a in running:
                if a.workload.preemptible and not excluded(a):
                    candidates.append(
                        (
                            a,
                            f"queue {leaf} reclaims guaranteed capacity lent to queue "
                            f"{other}, for {preemptor.key}",
                        )
                    )
    return candidates
