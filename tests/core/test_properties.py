"""Invariants on random queue trees and workload streams, driven through the simulator.

Every cycle of every run is checked: no queue past its limit, gangs all-or-nothing on the observed
nodes, non-preemptible workloads never evicted, every pending workload explained. Across the run:
no preemption cycles, every workload that can ever fit finishes (no starvation), and the same
input gives the same decisions.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from meson.core import AdmittedWorkload, NodeCapacity, QueueConfig, QueueTree, Resources, Scheduler, Snapshot
from meson.core.simulator import Simulator, TraceItem

from .helpers import wl

GIB = 1 << 30


@st.composite
def queue_trees(draw) -> list[QueueConfig]:
    queues: list[QueueConfig] = []
    for r in range(draw(st.integers(1, 2))):
        root = f"r{r}"
        own = draw(st.sampled_from([0, 0, 12]))
        queues.append(QueueConfig(root, guaranteed=Resources(cpu=own * 1000, memory=own * GIB)))
        parents = [root]
        if draw(st.booleans()):
            mid = f"{root}.m"
            queues.append(QueueConfig(mid, parent=root, weight=draw(st.sampled_from([1.0, 2.0]))))
            parents.append(mid)
        for i in range(draw(st.integers(2, 4))):
            g = draw(st.integers(0, 6))
            lim = draw(st.one_of(st.none(), st.integers(g, g + 8)))
            queues.append(
                QueueConfig(
                    f"{root}.q{i}",
                    parent=draw(st.sampled_from(parents)),
                    guaranteed=Resources(cpu=g * 1000, memory=g * GIB),
                    limit=None if lim is None else Resources(cpu=lim * 1000, memory=lim * GIB),
                    weight=draw(st.sampled_from([1.0, 2.0, 3.0])),
                    strategy=draw(st.sampled_from(["StrictFIFO", "BestEffortFIFO"])),
                    preempt_within_queue=draw(st.sampled_from(["Never", "LowerPriority"])),
                    reclaim_borrowed=draw(st.booleans()),
                    max_admitted=draw(st.sampled_from([None, None, 2])),
                    admission_rate=draw(st.sampled_from([None, None, 2.0])),
                    admission_burst=3,
                )
            )
    return queues


@st.composite
def scenarios(draw):
    queues = draw(queue_trees())
    tree = QueueTree(queues)
    leaves = sorted(tree.leaves)
    trace = []
    for i in range(draw(st.integers(1, 30))):
        cores = draw(st.integers(1, 4))
        w = wl(
            f"w{i:02d}",
            draw(st.sampled_from(leaves)),
            cores=cores,
            prio=draw(st.integers(0, 3)),
            created=draw(st.integers(0, 40)) / 2,
            pods=draw(st.integers(1, 3)),
            gang=draw(st.booleans()),
            preemptible=draw(st.integers(0, 5)) > 0,
        )
        trace.append(TraceItem(w, draw(st.integers(1, 10)) / 2))
    nodes = None
    if draw(st.booleans()):
        sizes = draw(st.lists(st.integers(2, 16), min_size=1, max_size=3))
        slots = draw(st.sampled_from([0, 3, 110]))  # pod slots per node; 0: not reported
        nodes = [
            NodeCapacity(
                f"n{i}",
                Resources(cpu=c * 1000, memory=64 * GIB, pods=slots),
                Resources(cpu=c * 1000, memory=64 * GIB, pods=slots),
            )
            for i, c in enumerate(sizes)
        ]
    return queues, trace, nodes, draw(st.sampled_from([None, 5.0]))


class Checker:
    """Checks each cycle's decisions against the snapshot it was given."""

    def __init__(self, queues: list[QueueConfig]) -> None:
        self.tree = QueueTree(queues)
        self.edges: set[tuple[str, str]] = set()
        self.never: set[str] = set()
        self.log: list[tuple] = []

    def __call__(self, snap: Snapshot, d) -> None:
        tree = self.tree
        pending = {w.key: w for w in snap.pending}
        running = {a.key: a for a in snap.admitted}
        self.log.append((snap.now, tuple(d.admit), tuple(d.preempt)))
        admitted_now = [pending[a.key] for a in d.admit]  # KeyError = admitted something not pending
        assert len({w.key for w in admitted_now}) == len(admitted_now)

        # 1. No queue past its limit (or a top-level queue past its pool), in what quota counts.
        used: dict[str, Resources] = {q: Resources() for q in tree.names}
        for w in [a.workload for a in snap.admitted] + admitted_now:
            for q in tree.path[w.queue]:
                used[q] = used[q] + tree.charged(q, w.total)
        for q in tree.names:
            cap = tree.cap[q] or {}
            assert all(used[q][k] <= c for k, c in cap.items()), (q, used[q], cap)

        # 2. Gangs all-or-nothing on the observed free capacity; others at least one pod.
        if snap.nodes is not None:
            free = [dict(n.free.items()) for n in sorted(snap.nodes, key=lambda n: n.name)]
            slots = any("pods" in n.allocatable for n in snap.nodes)  # counted only if reported
            for w in admitted_now:
                left = w.pod_count
                req = {k: v for k, v in w.pod_request.items() if slots or k != "pods"}
                for f in free:
                    while left and all(f.get(k, 0) >= v for k, v in req.items()):
                        for k, v in req.items():
                            f[k] -= v
                        left -= 1
                assert left == 0 if w.gang else left < w.pod_count, w

        # 3. Victims: running, preemptible, never the preemptor itself.
        for p in d.preempt:
            victim = running[p.victim_key].workload
            assert victim.preemptible and p.preemptor_key != p.victim_key and p.reason
            if p.preemptor_key is not None:
                self.edges.add((p.preemptor_key, p.victim_key))

        # 4. Every pending workload explained, positions 1..n within each queue.
        positions: dict[str, list[int]] = {}
        for key, w in pending.items():
            if key in {a.key for a in d.admit}:
                continue
            info = d.pending[key]
            assert info.reason
            if info.never_fits:
                self.never.add(key)
            if w.queue in tree.leaves:
                positions.setdefault(w.queue, []).append(info.position)
        for ps in positions.values():
            assert sorted(ps) == list(range(1, len(ps) + 1))


def run(queues, trace, nodes, global_rate) -> tuple[Checker, object]:
    checker = Checker(queues)
    res = Simulator(
        queues,
        trace,
        scheduler=Scheduler(reserve_after=10.0),
        nodes=nodes,
        global_rate=global_rate,
        global_burst=4,
        on_cycle=checker,
    ).run(max_cycles=20_000)
    return checker, res


def acyclic(edges: set[tuple[str, str]]) -> bool:
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}

    def visit(n: str) -> bool:
        state[n] = 1
        for m in graph.get(n, ()):
            if state.get(m) == 1 or (m not in state and not visit(m)):
                return False
        state[n] = 2
        return True

    return all(visit(n) for n in list(graph) if n not in state)


@given(scenarios())
def test_invariants_hold_on_every_cycle_and_everything_that_can_fit_finishes(scenario):
    queues, trace, nodes, global_rate = scenario
    checker, res = run(queues, trace, nodes, global_rate)
    assert acyclic(checker.edges), checker.edges
    # No starvation: a workload either finishes or was reported as never fitting.
    assert set(res.unfinished) <= checker.never, (res.unfinished, checker.never)


@given(scenarios())
def test_same_inputs_same_decisions(scenario):
    first, _ = run(*scenario)
    second, _ = run(*scenario)
    assert first.log == second.log


@st.composite
def lending_states(draw):
    """A cohort where siblings borrow everything they can, and one queue wants its guarantee back."""
    n = draw(st.integers(2, 4))
    gs = [draw(st.integers(1, 6)) for _ in range(n)]
    queues = [QueueConfig("co")] + [
        QueueConfig(
            f"q{i}",
            "co",
            guaranteed=Resources(cpu=g * 1000),
            reclaim_borrowed=True,
            preempt_within_queue=draw(st.sampled_from(["Never", "LowerPriority"])),
        )
        for i, g in enumerate(gs)
    ]
    pool = sum(gs)
    running: list[AdmittedWorkload] = []
    used = 0
    k = 0
    while used < pool:  # fill the pool from the other queues, in random sizes and priorities
        q = draw(st.integers(1, n - 1))
        size = min(draw(st.integers(1, 3)), pool - used)
        w = wl(f"b{k}", f"q{q}", cores=size, prio=draw(st.integers(0, 9)))
        running.append(AdmittedWorkload(w, float(k)))
        used += size
        k += 1
    want = draw(st.integers(1, gs[0]))
    return queues, running, wl("mine", "q0", cores=want, prio=draw(st.integers(0, 9)), created=100.0)


@given(lending_states())
def test_guaranteed_capacity_is_always_reclaimable(state):
    queues, running, mine = state
    sched = Scheduler()
    d = sched.cycle(Snapshot(100.0, queues, [mine], running))
    if d.admit:
        return
    victims = {p.victim_key for p in d.preempt}
    assert victims, d.pending["mine"]
    # Only borrowed capacity is taken: a victim is taken from a queue only while that queue is
    # borrowing, so it ends below its guarantee by less than one (indivisible) victim.
    after = [a for a in running if a.key not in victims]
    for q in queues[1:]:
        g = q.guaranteed["cpu"]
        before_q = sum(a.total["cpu"] for a in running if a.queue == q.name)
        after_q = sum(a.total["cpu"] for a in after if a.queue == q.name)
        taken = [a.total["cpu"] for a in running if a.queue == q.name and a.key in victims]
        assert after_q >= min(before_q, g) or after_q + max(taken) > g, q.name
    d2 = sched.cycle(Snapshot(101.0, queues, [mine], after))
    assert [a.key for a in d2.admit] == ["mine"]
