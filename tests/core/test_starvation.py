"""Starvation is impossible: a waiting workload is admitted once capacity frees, even under a
never-ending stream of smaller work that could otherwise keep overtaking it."""

import math

from meson.core import Scheduler
from meson.core.simulator import Simulator, TraceItem

from .helpers import queue, wl

STREAM_END = 300.0


def stream(q: str, every: float = 0.25, cores: float = 1, until: float = STREAM_END) -> list[TraceItem]:
    n = int(until / every)
    return [TraceItem(wl(f"{q}-s{i:05d}", q, cores=cores, created=0.1 + i * every), 1.0) for i in range(n)]


def test_a_big_workload_is_not_starved_by_smaller_ones_overtaking_it():
    queues = [queue("a", g=4, strategy="BestEffortFIFO")]
    trace = [TraceItem(wl("big", "a", cores=4, created=0.5), 1.0), *stream("a")]
    res = Simulator(queues, trace, scheduler=Scheduler(reserve_after=30)).run()
    big = res.records["big"]
    assert big.first_admitted is not None and big.first_admitted <= 0.5 + 30 + 1.0
    assert not res.unfinished


def test_without_the_guard_the_same_stream_would_starve_it():
    # The control experiment for the test above: BestEffortFIFO with no reservation lets the
    # stream overtake the big workload until the stream stops.
    queues = [queue("a", g=4, strategy="BestEffortFIFO")]
    trace = [TraceItem(wl("big", "a", cores=4, created=0.5), 1.0), *stream("a")]
    res = Simulator(queues, trace, scheduler=Scheduler(reserve_after=math.inf)).run()
    assert res.records["big"].first_admitted >= STREAM_END


def test_a_queue_gets_its_guarantee_back_from_a_sibling_that_keeps_borrowing_it():
    # Without preemption: b's demand (4 cores) borrows all of a's idle guarantee, one core at a
    # time. a's 2-core workload is within a's guarantee, so it reserves against further borrowing
    # and gets the capacity as b's borrowed work exits, instead of losing every freed core to b.
    queues = [queue("co"), queue("a", "co", g=2, reclaim_borrowed=False), queue("b", "co", g=2)]
    trace = [*stream("b", every=0.25), TraceItem(wl("a-own", "a", cores=2, created=10.05), 1.0)]
    res = Simulator(queues, trace).run()
    assert res.records["a-own"].first_admitted <= 10.05 + 1.0
    assert not res.unfinished


def test_strict_fifo_head_waits_only_for_running_work_to_finish():
    queues = [queue("a", g=4, strategy="StrictFIFO")]
    trace = [TraceItem(wl(f"r{i}", "a", cores=1, created=0.0), 5.0) for i in range(3)]
    trace += [TraceItem(wl("big", "a", cores=4, created=1.0), 1.0), *stream("a", until=50)]
    res = Simulator(queues, trace).run()
    assert res.records["big"].first_admitted == 5.0  # the moment the running work exits


def test_reclaim_gets_a_guarantee_back_promptly():
    queues = [queue("co"), queue("a", "co", g=4), queue("b", "co", g=4)]
    trace = [TraceItem(wl(f"b{i}", "b", cores=1, created=0.0), 100.0) for i in range(8)]
    trace.append(TraceItem(wl("a0", "a", cores=4, created=10.0), 1.0))
    res = Simulator(queues, trace, eviction_delay=2.0).run()
    assert res.records["a0"].first_admitted == 12.0  # evictions take 2 s, then it is admitted
    assert sum(r.evictions for r in res.records.values()) == 4
