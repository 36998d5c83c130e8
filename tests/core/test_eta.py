"""Predicted admission times: the simulator run forward from a snapshot with the same scheduler."""

from __future__ import annotations

import dataclasses
import random

import pytest

from meson.core import AdmittedWorkload, QueueConfig, Resources, Scheduler, Snapshot, Workload
from meson.core.eta import predict
from meson.core.simulator import Simulator, TraceItem

CPU = 1000


def w(key: str, cpu: int, created: float, estimate: float, queue: str = "a", priority: int = 0) -> Workload:
    return Workload(key, queue, priority, created, Resources(cpu=cpu * CPU), estimate=estimate)


QUEUES = [QueueConfig("a", guaranteed=Resources(cpu=2 * CPU), limit=Resources(cpu=2 * CPU))]


def test_pending_work_starts_as_running_work_ends_at_its_estimate():
    snap = Snapshot(
        now=30.0,
        queues=QUEUES,
        pending=[w("first", 1, 10, 50), w("second", 2, 20, 10)],
        admitted=[AdmittedWorkload(w("running", 2, 0, 100), 0.0)],
    )
    p = predict(snap)
    # "running" ends at 100; "first" (1 CPU) starts then and ends at 150; "second" needs both CPUs.
    assert p.at == {"first": 100.0, "second": 150.0} and p.complete


def test_work_past_its_estimate_is_taken_to_end_soon():
    snap = Snapshot(now=500.0, queues=QUEUES, pending=[w("next", 2, 400, 10)],
                    admitted=[AdmittedWorkload(w("late", 2, 0, 100), 0.0)])  # fmt: skip
    assert predict(snap, min_left=5).at == {"next": 505.0}


def test_higher_priority_goes_first():
    snap = Snapshot(
        now=0.0,
        queues=QUEUES,
        pending=[w("low", 2, 0, 10, priority=1), w("high", 2, 1, 10, priority=100)],
        admitted=[AdmittedWorkload(w("running", 2, 0, 5), 0.0)],
    )
    assert predict(snap).at == {"high": 5.0, "low": 15.0}


def test_with_exact_estimates_and_nothing_arriving_later_the_prediction_is_what_happens():
    """The prediction replays the same policy: from any snapshot of a run whose arrivals are all in,
    every pending workload is predicted to start exactly when it did. (Without preemption and
    reservations: those depend on the scheduler's memory of earlier cycles, which a fresh one lacks.)"""
    rng = random.Random(3)
    queues = [
        QueueConfig("root"),
        *(
            QueueConfig(q, parent="root", guaranteed=Resources(cpu=4 * CPU), limit=Resources(cpu=8 * CPU),
                        reclaim_borrowed=False)
            for q in ("a", "b", "c")
        ),
    ]  # fmt: skip
    trace = []
    for i in range(120):
        d = rng.choice([5.0, 20.0, 60.0])
        wl = w(f"w{i}", rng.choice([1, 2, 4]), rng.uniform(0, 10), d, rng.choice("abc"), rng.choice([0, 5]))
        trace.append(TraceItem(wl, d))
    snapshots: list[Snapshot] = []
    stateless = lambda: Scheduler(reserve_after=1e9)  # noqa: E731
    sim = Simulator(
        queues,
        trace,
        scheduler=stateless(),
        on_cycle=lambda s, d: snapshots.append(s) if 11 <= s.now <= 60 else None,
    )
    actual = sim.run().records
    assert len(snapshots) > 3
    checked = 0
    for snap in snapshots[:: max(1, len(snapshots) // 5)]:
        p = predict(snap, cpu_budget=30, scheduler=stateless)
        assert p.complete
        for key, at in p.at.items():
            assert at == pytest.approx(actual[key].first_admitted, abs=1e-6), key
            checked += 1
    assert checked > 20


def test_the_cpu_budget_bounds_the_prediction():
    snap = Snapshot(
        now=0.0,
        queues=QUEUES,
        pending=[w(f"p{i}", 1, 0, 10) for i in range(50)],
        admitted=[AdmittedWorkload(w("running", 2, 0, 5), 0.0)],
    )
    p = predict(snap, cpu_budget=0.0)
    assert not p.complete and p.at == {}
    assert predict(snap, cpu_budget=10).complete


def test_the_snapshot_is_left_as_it_was():
    snap = Snapshot(now=1.0, queues=QUEUES, pending=[w("x", 1, 0, 5)], admitted=[])
    before = dataclasses.replace(snap)
    predict(snap)
    assert snap == before


def test_a_fresh_scheduler_with_the_operators_tuning():
    made = []

    def factory() -> Scheduler:
        made.append(Scheduler(preempt_after=3.0))
        return made[-1]

    predict(Snapshot(now=0.0, queues=QUEUES, pending=[w("x", 1, 0, 5)]), scheduler=factory)
    assert len(made) == 1


def test_the_board_predicts_again_only_after_its_interval():
    from meson.core.eta import EtaBoard

    refreshed: list[float] = []
    board = EtaBoard(interval=30.0, on_refresh=lambda s, p: refreshed.append(s.now))
    running = [AdmittedWorkload(w("running", 2, 0, 100), 0.0)]
    first = Snapshot(now=10.0, queues=QUEUES, pending=[w("a", 2, 5, 10)], admitted=running)
    assert board.seen(first) is first
    assert board.at("a") == 100.0 and board.at("unknown") is None
    board.seen(
        Snapshot(now=20.0, queues=QUEUES, pending=[w("a", 2, 5, 10), w("b", 2, 15, 10)], admitted=running)
    )
    assert board.at("b") is None and refreshed == [10.0]  # within the interval: the old prediction
    board.seen(
        Snapshot(now=40.0, queues=QUEUES, pending=[w("a", 2, 5, 10), w("b", 2, 15, 10)], admitted=running)
    )
    assert (board.at("a"), board.at("b")) == (100.0, 110.0) and refreshed == [10.0, 40.0]
