"""Reservation and backfill: the blocked head keeps its time, smaller work fills the gap around it."""

from hypothesis import given, settings
from hypothesis import strategies as st

from meson.core import Scheduler
from meson.core.simulator import Simulator, TraceItem
from tests.core.helpers import cycle, queue, running, wl


def _q(limit: float, strategy: str = "Backfill"):
    return [queue("root", g=limit), queue("q", "root", g=limit, limit=limit, strategy=strategy)]


def test_small_work_that_ends_before_the_reservation_backfills_and_longer_work_waits() -> None:
    busy = [running(wl("r1", "q", 6, estimate=100), at=0)]
    pending = [
        wl("gang", "q", 8, created=1, pods=1, gang=True),
        wl("short", "q", 1, created=2, estimate=50),
        wl("long", "q", 1, created=3, estimate=500),
    ]
    d = cycle(_q(8), pending, busy, now=10)
    assert [a.key for a in d.admit] == ["short"]
    assert d.reservations == {"gang": 100}
    assert "capacity reserved for it from in 1m30s" in d.pending["gang"].reason
    assert "capacity is reserved for gang from in 1m30s" in d.pending["long"].reason
    assert d.wake_at == 100


def test_work_that_leaves_the_reserved_capacity_alone_is_admitted_whatever_its_estimate() -> None:
    # Limit 10: at 100 r1 frees 6 and the gang needs 8 of 10, so 2 may run past it.
    busy = [running(wl("r1", "q", 6, estimate=100), at=0)]
    pending = [wl("gang", "q", 8, created=1)] + [
        wl(f"long{i}", "q", 1, created=2 + i, estimate=1e4) for i in range(3)
    ]
    d = cycle(_q(10), pending, busy, now=10)
    assert [a.key for a in d.admit] == ["long0", "long1"]


def test_an_overrunning_job_is_not_killed_and_the_reservation_moves() -> None:
    busy = [running(wl("r1", "q", 6, estimate=100), at=0)]
    sched = Scheduler()
    d = cycle(_q(8), [wl("gang", "q", 8, created=1)], busy, now=10, sched=sched)
    assert d.reservations == {"gang": 100}
    d = cycle(
        _q(8),
        [wl("gang", "q", 8, created=1), wl("short", "q", 1, created=2, estimate=5)],
        busy,
        now=150,
        sched=sched,
    )
    assert d.preempt == []
    # r1 overran: it may end any moment, so nothing may run into the reservation.
    assert d.reservations == {"gang": 150} and d.admit == []


def test_strict_fifo_would_idle_and_best_effort_would_overtake_the_head() -> None:
    busy = [running(wl("r1", "q", 6, estimate=100), at=0)]
    pending = [wl("gang", "q", 8, created=1), wl("short", "q", 1, created=2, estimate=50)]
    assert cycle(_q(8, "StrictFIFO"), pending, busy, now=10).admit == []
    assert [a.key for a in cycle(_q(8, "Backfill"), pending, busy, now=10).admit] == ["short"]


jobs = st.lists(st.tuples(st.floats(0, 500), st.integers(1, 8), st.floats(1, 200)), min_size=1, max_size=25)


@settings(max_examples=60)
@given(jobs)
def test_backfill_never_delays_a_reservation_and_nobody_starves(trace_spec) -> None:
    trace = [
        TraceItem(wl(f"j{i:02d}", "q", size, created=at, estimate=dur), dur)
        for i, (at, size, dur) in enumerate(trace_spec)
    ]
    first: dict[str, float] = {}

    def seen(snap, d) -> None:
        for key, until in d.reservations.items():
            first.setdefault(key, until)

    res = Simulator(_q(8), trace, on_cycle=seen).run()
    assert res.unfinished == []
    for key, until in first.items():
        assert res.records[key].first_admitted <= until + 1e-6, key


def _utilisation(res, capacity: float) -> float:
    return res.usage_integral["q"].get("cpu", 0) / (capacity * 1000 * res.makespan)


def test_backfill_uses_the_queue_better_than_strict_fifo_and_serves_the_gang_before_best_effort() -> None:
    # A gang of 8 behind running work, in a stream of small jobs that keeps the queue busy.
    trace = [TraceItem(wl("warm", "q", 4, created=0, estimate=100), 100)]
    trace.append(TraceItem(wl("gang", "q", 8, created=1, estimate=50), 50))
    trace += [TraceItem(wl(f"s{i:03d}", "q", 2, created=2 + i * 5, estimate=30), 30) for i in range(60)]
    results = {
        s: Simulator(_q(8, s), trace, scheduler=Scheduler(reserve_after=600)).run()
        for s in ("StrictFIFO", "BestEffortFIFO", "Backfill")
    }
    util = {s: _utilisation(r, 8) for s, r in results.items()}
    gang_wait = {s: r.records["gang"].first_admitted - 1 for s, r in results.items()}
    assert util["Backfill"] > util["StrictFIFO"]
    assert gang_wait["Backfill"] == gang_wait["StrictFIFO"] == 99  # at its reservation: when warm ends
    assert gang_wait["BestEffortFIFO"] > gang_wait["Backfill"]  # overtaken until its guard kicks in
