"""Priority first; StrictFIFO blocks behind its head; BestEffortFIFO lets smaller work through."""

from meson.core import Scheduler

from .helpers import admitted_keys, cycle, queue, wl


def test_higher_priority_goes_first_then_oldest():
    qs = [queue("a", g=2)]
    d = cycle(
        qs,
        [
            wl("old-low", "a", prio=0, created=0),
            wl("new-high", "a", prio=9, created=5),
            wl("old-high", "a", prio=9, created=1),
        ],
    )
    assert admitted_keys(d) == ["old-high", "new-high"]
    assert d.pending["old-low"].position == 1


def test_strict_fifo_blocks_behind_the_head():
    qs = [queue("a", g=4, strategy="StrictFIFO")]
    d = cycle(qs, [wl("big", "a", cores=5, created=0), wl("small", "a", cores=1, created=1)], [])
    # big can never fit: it must not block the queue forever
    assert d.pending["big"].never_fits and admitted_keys(d) == ["small"]

    smalls = [wl(f"s{i}", "a", created=1 + i) for i in range(3)]
    d = cycle(qs, [wl("big", "a", cores=3, prio=5, created=0), *smalls], [_run("r", "a", 2)])
    assert admitted_keys(d) == []
    assert d.pending["big"].reason == "needs cpu 3, queue a has 2 free of guaranteed pool 4"
    assert d.pending["s2"].position == 4
    assert d.pending["s2"].reason.startswith("behind 3 workloads in queue a")
    assert d.pending["s0"].reason.startswith("behind 1 higher-priority workload in queue a")


def test_best_effort_lets_smaller_workloads_that_fit_go_ahead():
    qs = [queue("a", g=4, strategy="BestEffortFIFO")]
    d = cycle(
        qs,
        [wl("big", "a", cores=3, created=0), wl("s0", "a", created=1), wl("s1", "a", created=2)],
        [_run("r", "a", 2)],
    )
    assert admitted_keys(d) == ["s0", "s1"]
    assert d.pending["big"].position == 1


def test_best_effort_head_that_waited_too_long_reserves_its_capacity():
    qs = [queue("a", g=4, strategy="BestEffortFIFO")]
    pending = [wl("big", "a", cores=3, created=0), wl("s0", "a", created=50)]
    sched = Scheduler(reserve_after=60)
    assert admitted_keys(cycle(qs, pending, [_run("r", "a", 2)], now=59, sched=sched)) == ["s0"]
    d = cycle(qs, pending, [_run("r", "a", 2)], now=61, sched=Scheduler(reserve_after=60))
    assert admitted_keys(d) == []
    assert d.pending["s0"].reason.startswith("behind 1 workload")


def test_within_guarantee_admissions_go_before_borrowing_ones():
    qs = [queue("co"), queue("a", "co", g=2), queue("b", "co", g=2)]
    # a is already at its guarantee; b is empty. b's workload is newer but not borrowing.
    d = cycle(
        qs,
        [wl("a-borrow", "a", cores=2, prio=100, created=0), wl("b-own", "b", cores=2, created=5)],
        [_run("a0", "a", 2)],
    )
    assert admitted_keys(d) == ["b-own"]


def test_same_snapshot_gives_the_same_decisions():
    qs = [queue("co"), queue("a", "co", g=3), queue("b", "co", g=3, weight=2)]
    pending = [wl(f"{q}{i}", q, cores=1 + i % 3, prio=i % 4, created=i) for q in "ab" for i in range(12)]
    d1, d2 = cycle(qs, pending), cycle(qs, list(reversed(pending)))
    assert d1.admit == d2.admit and dict(d1.pending) == dict(d2.pending)


def _run(key, q, cores):
    from .helpers import running

    return running(wl(key, q, cores=cores))
