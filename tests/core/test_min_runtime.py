"""Minimum runtime before preemption: a young workload is never a victim; an old enough one is."""

from hypothesis import given
from hypothesis import strategies as st

from meson.core import Scheduler
from tests.core.helpers import cycle, queue, running, wl


def _queues(min_runtime: float = 0.0):
    # "prod" reclaims what "batch" borrowed of its guarantee.
    return [
        queue("root", g=4),
        queue("prod", "root", g=2, limit=4, reclaim_borrowed=True),
        queue("batch", "root", g=2, limit=4, min_runtime=min_runtime),
    ]


def test_a_victim_within_its_minimum_runtime_is_spared_and_the_preemptor_wakes_when_it_is_not() -> None:
    borrowed = [running(wl("b1", "batch", 2), at=0), running(wl("b2", "batch", 2), at=0)]
    d = cycle(_queues(min_runtime=60), [wl("p", "prod", 2, created=10)], borrowed, now=30)
    assert d.preempt == []
    assert d.wake_at == 60
    assert "minimum runtime for 30s" in d.pending["p"].reason


def test_a_victim_past_its_minimum_runtime_is_preempted_with_its_work_lost() -> None:
    borrowed = [running(wl("b1", "batch", 2), at=0), running(wl("b2", "batch", 2), at=5)]
    d = cycle(_queues(min_runtime=60), [wl("p", "prod", 2, created=10)], borrowed, now=61)
    assert [(p.victim_key, p.work_lost) for p in d.preempt] == [("b1", 61)]  # b2 is still protected


def test_a_step_minimum_runtime_protects_it_even_in_a_queue_without_one() -> None:
    borrowed = [running(wl("b1", "batch", 2, min_runtime=120), at=0), running(wl("b2", "batch", 2), at=0)]
    d = cycle(_queues(), [wl("p", "prod", 2, created=10)], borrowed, now=61)
    assert [p.victim_key for p in d.preempt] == ["b2"]


@given(
    st.lists(st.tuples(st.floats(0, 100), st.floats(0, 100), st.integers(0, 3)), min_size=1, max_size=8),
    st.floats(0, 100),
    st.floats(100, 200),
    st.integers(1, 4),
)
def test_minimum_runtime_is_always_honoured(
    admitted: list[tuple[float, float, int]], queue_min: float, now: float, need: int
) -> None:
    queues = [
        queue("root", g=8),
        queue("prod", "root", g=4, limit=8, reclaim_borrowed=True, preempt_within_queue="LowerPriority"),
        queue("batch", "root", g=4, limit=8, min_runtime=queue_min),
    ]
    runs = []
    for i, (at, step_min, prio) in enumerate(admitted):
        q = "batch" if i % 2 == 0 else "prod"
        runs.append(running(wl(f"r{i}", q, 1, prio=prio, min_runtime=step_min), at=at))
    sched = Scheduler(preempt_after=0)
    d = cycle(queues, [wl("p", "prod", need, prio=5, created=0)], runs, now=now, sched=sched)
    by_key = {a.workload.key: a for a in runs}
    for p in d.preempt:
        a = by_key[p.victim_key]
        least = max(a.workload.min_runtime, queue_min if a.queue == "batch" else 0.0)
        assert now - a.admitted_at >= least
        assert p.work_lost == now - a.admitted_at


def test_a_workload_that_may_preempt_after_a_wait_asks_to_be_woken_then() -> None:
    """Preemption waits preempt_after seconds (capacity may free by itself); the cycle that finds it
    blocked before then asks to be woken when it may preempt, or a quiet cluster would run no cycle until
    some other event, and the victims' own ends came first."""
    borrowed = [running(wl("b1", "batch", 2), at=0), running(wl("b2", "batch", 2), at=0)]
    sched = Scheduler(preempt_after=1.0)
    d = cycle(_queues(), [wl("p", "prod", 2, created=10)], borrowed, now=10.2, sched=sched)
    assert d.preempt == [] and d.wake_at == 11.0
    d = cycle(_queues(), [wl("p", "prod", 2, created=10)], borrowed, now=11.0, sched=sched)
    assert [p.victim_key for p in d.preempt] in (["b1"], ["b2"])
