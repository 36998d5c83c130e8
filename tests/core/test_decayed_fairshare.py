"""Decayed-usage fair sharing: usage over time converges to the weights, and yesterday's heavy user
yields in the morning (instantaneous DRF splits at once)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from meson.core.simulator import Simulator, TraceItem
from tests.core.helpers import queue, wl


def _tree(half_life: float | None, wa: float = 1, wb: float = 1):
    return [
        queue("root", g=10, fair_half_life=half_life),
        queue("a", "root", weight=wa),
        queue("b", "root", weight=wb),
    ]


def _jobs(q: str, start: float, count: int) -> list[TraceItem]:
    # Runtimes of 30-90 s, spread so jobs do not all end together (lockstep would pin the split).
    return [
        TraceItem(wl(f"{q}{start:.0f}-{i:05d}", q, 1, created=start), 30 + (i * 37) % 61)
        for i in range(count)
    ]


def _usage_between(res, trace, q: str, t0: float, t1: float) -> float:
    total = 0.0
    for t in trace:
        r = res.records[t.workload.key]
        if t.workload.queue == q and r.last_admitted is not None and r.finished is not None:
            total += max(0.0, min(r.finished, t1) - max(r.last_admitted, t0))
    return total


@settings(max_examples=6)
@given(st.integers(1, 4), st.integers(1, 4))
def test_decayed_usage_converges_to_the_weights(wa: int, wb: int) -> None:
    # Both always want more than the 10 cores; after the first half-life's worth of history, each
    # one's share of the usage is its share of the weights.
    trace = _jobs("a", 0, 1500) + _jobs("b", 0, 1500)
    res = Simulator(_tree(600, wa=wa, wb=wb), trace).run(until=4500)
    a = _usage_between(res, trace, "a", 1500, 4500)
    b = _usage_between(res, trace, "b", 1500, 4500)
    assert abs(b / (a + b) - wb / (wa + wb)) < 0.03


def test_the_night_s_heavy_user_yields_in_the_morning_with_decay_and_not_without() -> None:
    night = _jobs("a", 0, 3000)  # a alone for two hours, then b arrives; both want everything
    morning = 7200.0
    trace = night + _jobs("b", morning, 1500)
    share = {}
    for label, half_life in (("drf", None), ("decayed", 3600.0)):
        res = Simulator(_tree(half_life), trace).run(until=morning + 3600)
        a = _usage_between(res, trace, "a", morning, morning + 1800)
        b = _usage_between(res, trace, "b", morning, morning + 1800)
        share[label] = b / (a + b)
    assert 0.4 < share["drf"] < 0.6
    assert share["decayed"] > 0.7


def test_decayed_usage_survives_a_restart_and_decays_over_the_gap() -> None:
    from meson.core import Scheduler

    night = _jobs("a", 0, 1200)
    first = Scheduler()
    res_decisions = []
    Simulator(_tree(3600.0), night, scheduler=first, on_cycle=lambda s, d: res_decisions.append(d)).run(
        until=7200
    )
    last = res_decisions[-1]
    saved, at = last.decayed["a"], last.now
    assert saved["cpu"] > 0
    # A new operator process an hour later, restored from the Queue's status: b still goes first.
    second = Scheduler()
    second.restore_decayed("a", saved, at)
    morning = at + 3600
    trace = _jobs("a", morning, 200) + _jobs("b", morning, 200)
    res = Simulator(_tree(3600.0), trace, scheduler=second).run(until=morning + 600)
    b = _usage_between(res, trace, "b", morning, morning + 600)
    a = _usage_between(res, trace, "a", morning, morning + 600)
    assert b / (a + b) > 0.7
    # Unrestored, the two start even.
    fresh = Simulator(_tree(3600.0), trace).run(until=morning + 600)
    b = _usage_between(fresh, trace, "b", morning, morning + 600)
    a = _usage_between(fresh, trace, "a", morning, morning + 600)
    assert b / (a + b) < 0.6
