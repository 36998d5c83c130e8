"""Exactly enough victims, on random queue trees: a property of every cycle with several preemptors.

The cycle's preemptions are replayed in the order they were decided. Before each preemptor, what
its queues will hold once the victims chosen so far have exited is: the running workloads, minus
those victims, plus the capacity promised to their preemptors, plus everything admitted this cycle
(admissions after it only make room scarcer, so counting them all errs on the safe side), plus, for
borrowing checks, the most any blocked workload could have reserved. If the preemptor would fit with
one of its victims spared, that victim's capacity is needed by no preemptor of this cycle.
"""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from meson.core import (
    AdmittedWorkload,
    QueueConfig,
    QueueTree,
    Resources,
    Scheduler,
    Snapshot,
    validate_queues,
)

from .helpers import wl

Vec = dict[str, int]


@st.composite
def preemption_scenarios(draw):
    queues = [QueueConfig("root", guaranteed=Resources(cpu=draw(st.sampled_from([0, 4, 12])) * 1000))]
    parents = ["root"]
    if draw(st.booleans()):
        lim = draw(st.sampled_from([None, 6, 10]))
        queues.append(QueueConfig("mid", "root", limit=None if lim is None else Resources(cpu=lim * 1000)))
        parents.append("mid")
    for i in range(draw(st.integers(2, 4))):
        g = draw(st.integers(0, 5))
        lim = draw(st.one_of(st.none(), st.integers(g, g + 6)))
        queues.append(
            QueueConfig(
                f"q{i}",
                parent=draw(st.sampled_from(parents)),
                guaranteed=Resources(cpu=g * 1000),
                limit=None if lim is None else Resources(cpu=lim * 1000),
                strategy=draw(st.sampled_from(["StrictFIFO", "BestEffortFIFO"])),
                preempt_within_queue=draw(st.sampled_from(["Never", "LowerPriority", "LowerPriority"])),
                reclaim_borrowed=draw(st.booleans()),
            )
        )
    assume(not validate_queues(queues))  # a parent's limit may fall below its children's guarantees
    tree = QueueTree(queues)
    leaves = sorted(tree.leaves)
    used: dict[str, int] = dict.fromkeys(tree.names, 0)
    running: list[AdmittedWorkload] = []
    for i in range(draw(st.integers(0, 25))):  # fill the tree with whatever fits its caps
        q, cores = draw(st.sampled_from(leaves)), draw(st.integers(1, 3))
        if all(used[a] + cores * 1000 <= (tree.cap[a] or {}).get("cpu", 1 << 60) for a in tree.path[q]):
            for a in tree.path[q]:
                used[a] += cores * 1000
            running.append(
                AdmittedWorkload(
                    wl(
                        f"run{i:02d}",
                        q,
                        cores=cores,
                        prio=draw(st.integers(0, 3)),
                        preemptible=draw(st.integers(0, 6)) > 0,
                    ),
                    float(i),
                )
            )
    waves = []
    for wave in range(2):  # a second cycle sees the first one's preemptors still waiting
        waves.append(
            [
                wl(
                    f"p{wave}{i}",
                    draw(st.sampled_from(leaves)),
                    cores=draw(st.integers(1, 3)),
                    prio=draw(st.integers(2, 9)),
                    created=50.0 + wave * 10 + i,
                )
                for i in range(draw(st.integers(1, 6)))
            ]
        )
    return queues, running, waves


def _add(table: dict[str, Vec], tree: QueueTree, leaf: str, amount: Resources, sign: int = 1) -> None:
    for a in tree.path[leaf]:
        d = table.setdefault(a, {})
        for k, v in tree.charged(leaf, amount).items():
            d[k] = d.get(k, 0) + sign * v


def _fits(tree: QueueTree, occ: dict[str, Vec], guard: dict[str, Vec], leaf: str, need: Resources) -> bool:
    for a in tree.path[leaf]:
        for k, v in tree.charged(leaf, need).items():
            c = (tree.cap[a] or {}).get(k)
            if c is not None and occ.get(a, {}).get(k, 0) + guard.get(a, {}).get(k, 0) + v > c:
                return False
    return True


def check_exactly_enough(tree, snap: Snapshot, d, waiting: dict[str, frozenset[str]]) -> None:
    pending = {w.key: w for w in snap.pending}
    running = {a.key: a for a in snap.admitted}
    occ: dict[str, Vec] = {}
    for a in snap.admitted:
        _add(occ, tree, a.queue, a.total)
    for adm in d.admit:
        _add(occ, tree, pending[adm.key].queue, pending[adm.key].total)
    for key, victims in waiting.items():  # nominations from earlier cycles, still waiting
        if key in pending:
            for v in victims & running.keys():
                _add(occ, tree, running[v].queue, running[v].total, -1)
            _add(occ, tree, pending[key].queue, pending[key].total)
    chosen: dict[str, list[str]] = {}
    for p in d.preempt:
        assert p.preemptor_key is not None
        chosen.setdefault(p.preemptor_key, []).append(p.victim_key)
    admitted = {a.key for a in d.admit}
    guard: dict[str, Vec] = {}
    for key, w in pending.items():
        if key not in admitted and key not in chosen and key not in waiting:
            _add(guard, tree, w.queue, w.total)
    for key, victims in chosen.items():
        w = pending[key]
        assert key not in waiting, key  # a waiting preemptor does not preempt again
        for v in victims:
            _add(occ, tree, running[v].queue, running[v].total, -1)
        for v in victims:
            _add(occ, tree, running[v].queue, running[v].total)
            assert not _fits(tree, occ, guard, w.queue, w.total), (key, victims, v)
            _add(occ, tree, running[v].queue, running[v].total, -1)
        _add(occ, tree, w.queue, w.total)


@given(preemption_scenarios())
def test_no_victim_is_evicted_whose_capacity_no_preemptor_of_the_cycle_needs(scenario):
    queues, running, waves = scenario
    tree = QueueTree(queues)
    sched = Scheduler()
    pending: list = []
    for i, wave in enumerate(waves):
        pending = pending + wave
        waiting = sched.waiting_for_victims
        snap = Snapshot(60.0 + 10 * i, queues, pending, running)
        d = sched.cycle(snap)
        check_exactly_enough(tree, snap, d, waiting)
        evicted = [p.victim_key for p in d.preempt]
        assert len(evicted) == len(set(evicted))
        pending = [w for w in pending if w.key not in {a.key for a in d.admit}]
        running = running + [
            AdmittedWorkload(w, snap.now) for w in snap.pending if w.key in {a.key for a in d.admit}
        ]
