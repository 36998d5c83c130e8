"""A counterexample the property test found by random search (tests/core/test_properties.py, "everything
that can fit finishes"), kept as a regression test: six workloads of StrictFIFO queues that borrow, on two
3-CPU nodes, were still pending after 20,000 cycles, none of them reported as never fitting.

The cause: a queue was offered to the cycle's heap under the key of its head even when that head could
never fit. Queue r0.q0's heads (w12, w14, w23) never fit and the last two borrow, so r0.q0 was ranked as
a borrower and lost, on priority, to the borrowers of r0.q3 and r0.q1 (w05, w25, 6 CPU each); only then
did the cycle reach w03, which is within r0.q0's guarantee and should have gone first. The pool was taken
by then, so w03 preempted the borrower for quota, while the other borrower, admitted in the same cycle,
took the freed node room (2-CPU pods on 3-CPU nodes). w03, 3 CPU in one pod, then found no node with room,
its victim was admitted again, and the next cycle repeated the same with the two borrowers swapped:
evictions forever and nobody finished (w01 and w07, w09 of r0.q3 waited behind w05). Never-fitting
workloads are now settled before their queue is ranked, so a queue competes with the workload it can
actually admit.
"""

from __future__ import annotations

from meson.core import NodeCapacity, QueueConfig, Resources, Workload
from meson.core.simulator import TraceItem

from .helpers import admitted_keys, cycle, node, queue, wl
from .test_properties import run

GI = 1 << 30


def _queue(
    name: str, parent: str | None, cpu: int | None, limit: int | None, weight: float, **kw
) -> QueueConfig:
    guaranteed = Resources({"cpu": cpu, "memory": cpu * GI // 1000}) if cpu else Resources({})
    cap = Resources({"cpu": limit, "memory": limit * GI // 1000}) if limit else None
    return QueueConfig(name=name, parent=parent, guaranteed=guaranteed, limit=cap, weight=weight, **kw)


QUEUES = [
    _queue("r0", None, None, None, 1.0, admission_burst=1, strategy="BestEffortFIFO"),
    _queue("r0.q0", "r0", 5000, None, 1.0, admission_burst=3, strategy="StrictFIFO"),
    _queue(
        "r0.q1", "r0", 3000, 7000, 2.0, admission_burst=3, strategy="StrictFIFO",
        preempt_within_queue="LowerPriority",
    ),
    _queue("r0.q2", "r0", 5000, None, 3.0, admission_burst=3, strategy="StrictFIFO"),
    _queue(
        "r0.q3", "r0", None, None, 2.0, admission_burst=3, strategy="StrictFIFO",
        preempt_within_queue="LowerPriority", reclaim_borrowed=False,
    ),
]  # fmt: skip

# key, queue, priority, created, cpu per pod, pods, gang, preemptible, duration
TRACE = [
    ("w00", "q1", 2, 7.0, 1000, 1, False, True, 0.5), ("w01", "q3", 1, 18.5, 2000, 3, False, False, 0.5),
    ("w02", "q2", 2, 6.0, 2000, 2, True, True, 3.5), ("w03", "q0", 0, 20.0, 3000, 1, True, False, 1.0),
    ("w04", "q1", 0, 14.0, 3000, 3, True, True, 0.5), ("w05", "q3", 3, 20.0, 2000, 3, False, True, 2.5),
    ("w06", "q2", 3, 3.5, 1000, 3, False, True, 4.5), ("w07", "q3", 2, 20.0, 2000, 2, True, True, 1.5),
    ("w08", "q3", 3, 12.5, 1000, 1, False, False, 5.0), ("w09", "q3", 2, 16.0, 3000, 2, False, True, 2.0),
    ("w10", "q2", 1, 0.0, 1000, 3, True, True, 4.0), ("w11", "q1", 3, 2.0, 2000, 1, True, True, 2.0),
    ("w12", "q0", 3, 0.0, 4000, 1, True, False, 3.0), ("w13", "q2", 3, 5.0, 3000, 3, True, True, 4.0),
    ("w14", "q0", 3, 4.5, 4000, 3, True, True, 3.5), ("w15", "q2", 0, 12.0, 3000, 3, False, True, 2.0),
    ("w16", "q1", 0, 8.0, 3000, 3, True, True, 2.0), ("w17", "q3", 1, 6.0, 2000, 3, True, True, 4.0),
    ("w18", "q0", 3, 15.5, 1000, 3, True, False, 5.0), ("w19", "q2", 3, 4.0, 4000, 1, False, True, 0.5),
    ("w20", "q1", 0, 1.5, 1000, 1, True, True, 1.0), ("w21", "q3", 3, 19.0, 3000, 3, True, False, 4.0),
    ("w22", "q1", 0, 18.5, 4000, 3, False, True, 3.5), ("w23", "q0", 0, 4.5, 2000, 3, False, False, 3.0),
    ("w24", "q1", 1, 13.0, 1000, 1, False, True, 3.5), ("w25", "q1", 3, 17.0, 2000, 3, False, True, 5.0),
    ("w26", "q2", 3, 1.5, 4000, 3, False, True, 3.5), ("w27", "q1", 0, 6.5, 1000, 2, False, True, 2.5),
    ("w28", "q0", 3, 9.0, 3000, 1, True, False, 2.0), ("w29", "q2", 3, 12.0, 4000, 2, True, True, 2.0),
]  # fmt: skip


def _trace() -> list[TraceItem]:
    return [
        TraceItem(
            Workload(
                key=key, queue=f"r0.{queue}", priority=priority, created=created,
                pod_request=Resources({"cpu": cpu, "pods": 1}), pod_count=pods, gang=gang,
                preemptible=preemptible,
            ),
            duration,
        )
        for key, queue, priority, created, cpu, pods, gang, preemptible, duration in TRACE
    ]  # fmt: skip


def _nodes() -> list[NodeCapacity]:
    node = Resources({"cpu": 3000, "memory": 64 * GI})
    return [NodeCapacity(name, node, node) for name in ("n0", "n1")]


def test_everything_that_can_fit_finishes_in_the_found_counterexample() -> None:
    checker, res = run(QUEUES, _trace(), _nodes(), None)
    assert set(res.unfinished) <= checker.never, sorted(set(res.unfinished) - checker.never)
    # w03 goes first, within its queue's guarantee: nothing has to be evicted (it was an endless loop).
    assert res.preemptions == []
    assert res.records["w03"].first_admitted == 26.0


def test_a_never_fitting_head_does_not_rank_its_queue_behind_borrowers() -> None:
    # Queue a's head can never be placed (a 6-core pod, 4-core nodes) and would borrow; behind it,
    # a-own is within a's guarantee. It goes before b's borrower, however high that one's priority.
    queues = [queue("co"), queue("a", "co", g=4, strategy="StrictFIFO"), queue("b", "co", g=2)]
    pending = [
        wl("huge", "a", cores=6, prio=5),
        wl("a-own", "a", cores=4, prio=0, created=1.0),
        wl("b-borrow", "b", cores=4, prio=9),
    ]
    d = cycle(queues, pending, nodes=[node("n0", 4), node("n1", 4)])
    assert admitted_keys(d) == ["a-own"]
    assert d.pending["huge"].never_fits
    assert not d.pending["b-borrow"].never_fits
    assert d.preempt == []
