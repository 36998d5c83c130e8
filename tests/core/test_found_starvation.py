"""A counterexample the property test found by random search (tests/core/test_properties.py, "everything
that can fit finishes"): six workloads of a StrictFIFO queue that borrows, on two 3-CPU nodes, are still
pending when the simulation ends, although none is reported as never fitting. It is present since at least
6bbaecf and not yet understood (a head that keeps being admitted and reclaimed, or a fit check that
misses node fragmentation). Kept as a strict xfail so that the fix turns this test red until the marker
is removed, and the property test itself runs derandomized in CI (tests/core/conftest.py)."""

from __future__ import annotations

import pytest

from meson.core import NodeCapacity, QueueConfig, Resources, Workload
from meson.core.simulator import TraceItem

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


@pytest.mark.xfail(strict=True, reason="starvation found by the property test; see the module docstring")
def test_everything_that_can_fit_finishes_in_the_found_counterexample() -> None:
    checker, res = run(QUEUES, _trace(), _nodes(), None)
    assert set(res.unfinished) <= checker.never, sorted(set(res.unfinished) - checker.never)
