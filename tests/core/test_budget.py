"""Time-window budgets: windows in a time zone, accounting, enforcement at admission, restarts."""

from datetime import datetime
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from meson.core import QueueConfig, Resources, Scheduler, Snapshot, Workload
from meson.core.budget import Budget, BudgetState, hours
from meson.core.simulator import Simulator, TraceItem

GPU = "nvidia.com/gpu"
HOUR = 3600.0
PARIS = ZoneInfo("Europe/Paris")


def ts(*args: int, tz: ZoneInfo = PARIS) -> float:
    return datetime(*args, tzinfo=tz).timestamp()


def gpu_job(key: str, created: float, gpus: int = 1, est: float = HOUR, q: str = "research") -> Workload:
    return Workload(key, q, 0, created, Resources({GPU: gpus}), estimate=est)


def research(budget: Budget, **kw) -> list[QueueConfig]:
    return [QueueConfig("research", guaranteed=Resources({GPU: 8}), budgets=(budget,), **kw)]


def test_a_week_starts_on_monday_midnight_in_its_time_zone_across_daylight_saving() -> None:
    week = Budget(GPU, 1, "Week", "Europe/Paris")
    # Sunday 27 Oct 2024 is the day Paris goes back to winter time.
    assert week.start(ts(2024, 10, 27, 12)) == ts(2024, 10, 21)
    assert week.resets_at(ts(2024, 10, 27, 12)) == ts(2024, 10, 28)
    day = Budget(GPU, 1, "Day", "Europe/Paris")
    assert day.resets_at(ts(2024, 10, 27, 1)) - day.start(ts(2024, 10, 27, 1)) == 25 * HOUR


def test_an_exhausted_budget_makes_the_next_workload_wait_with_a_reason_naming_it_and_its_reset() -> None:
    monday = ts(2026, 11, 23, 9)
    b = Budget(GPU, 10 * HOUR, "Week", "Europe/Paris")
    sched = Scheduler()
    # 8 GPUs for an hour: 8 of 10 GPU-hours; then a 4-GPU hour would make 12.
    first = [gpu_job(f"a{i}", monday) for i in range(8)]
    d = sched.cycle(Snapshot(monday, research(b), first))
    assert len(d.admit) == 8
    later = monday + HOUR
    d = sched.cycle(Snapshot(later, research(b), [gpu_job("big", later, gpus=4)]))
    assert d.admit == []
    reason = d.pending["big"].reason
    assert "budget: queue research has 2 of its 10 nvidia.com/gpu-hours left this week" in reason
    assert "resets 2026-11-30 00:00 CET" in reason
    assert d.wake_at == ts(2026, 11, 30)
    assert d.budgets[("research", GPU)].used == 8 * HOUR
    # Two GPUs for an hour still fit.
    d = sched.cycle(Snapshot(later, research(b), [gpu_job("small", later, gpus=2)]))
    assert [a.key for a in d.admit] == ["small"]


def test_running_work_counts_to_its_estimate_and_is_not_stopped_when_the_budget_is_used_up() -> None:
    t0 = ts(2026, 11, 23, 9)
    b = Budget(GPU, 2 * HOUR, "Day", "Europe/Paris")
    sched = Scheduler()
    d = sched.cycle(Snapshot(t0, research(b), [gpu_job("a", t0, est=2 * HOUR)]))
    assert [a.key for a in d.admit] == ["a"]
    a = d.admit
    # Half an hour later "a" still needs 1.5 GPU-hours by its estimate: nothing else fits.
    from meson.core import AdmittedWorkload

    running = [AdmittedWorkload(gpu_job("a", t0, est=2 * HOUR), t0)]
    d = sched.cycle(Snapshot(t0 + 1800, research(b), [gpu_job("b", t0, est=600)], running))
    assert d.admit == [] and d.preempt == [] and a
    # It overruns: 3 hours later it still runs and is not preempted; usage is what it really used.
    d = sched.cycle(Snapshot(t0 + 3 * HOUR, research(b), [], running))
    assert d.preempt == []
    assert d.budgets[("research", GPU)].used == 3 * HOUR


def test_a_budget_set_to_evict_preempts_its_running_work_once_used_up() -> None:
    from meson.core import AdmittedWorkload

    t0 = ts(2026, 11, 23, 9)
    b = Budget(GPU, HOUR, "Day", "Europe/Paris", evict=True)
    sched = Scheduler()
    running = [AdmittedWorkload(gpu_job("a", t0), t0)]
    sched.cycle(Snapshot(t0, research(b), [], running))
    d = sched.cycle(Snapshot(t0 + HOUR, research(b), [], running))
    assert [(p.victim_key, p.work_lost) for p in d.preempt] == [("a", HOUR)]
    assert "budget exhausted" in d.preempt[0].reason


def test_usage_survives_a_restart_through_the_persisted_state() -> None:
    from meson.core import AdmittedWorkload

    t0 = ts(2026, 11, 23, 9)
    b = Budget(GPU, 10 * HOUR, "Week", "Europe/Paris")
    first = Scheduler()
    running = [AdmittedWorkload(gpu_job("a", t0, gpus=4), t0)]
    first.cycle(Snapshot(t0, research(b), [], running))
    report = first.cycle(Snapshot(t0 + HOUR, research(b), [], [])).budgets[("research", GPU)]
    assert report.used == 4 * HOUR
    second = Scheduler()  # a new operator process, restored from the Queue's status
    second.restore_budget("research", GPU, BudgetState(report.window_start, report.used, report.as_of))
    d = second.cycle(Snapshot(t0 + 2 * HOUR, research(b), [gpu_job("b", t0, gpus=8)]))
    assert d.admit == [] and "has 6 of its 10" in d.pending["b"].reason


def test_the_window_reset_frees_the_budget() -> None:
    from meson.core import AdmittedWorkload

    sunday = ts(2026, 11, 29, 22)
    b = Budget(GPU, 2 * HOUR, "Week", "Europe/Paris")
    sched = Scheduler()
    running = [AdmittedWorkload(gpu_job("a", sunday, gpus=2), sunday)]
    sched.cycle(Snapshot(sunday, research(b), [], running))
    d = sched.cycle(Snapshot(sunday + HOUR, research(b), [gpu_job("b", sunday)], []))
    assert d.admit == []
    d = sched.cycle(Snapshot(ts(2026, 11, 30, 0, 0, 1), research(b), [gpu_job("b", sunday)], []))
    assert [a.key for a in d.admit] == ["b"]


def test_hours_reads_in_the_resource_units() -> None:
    assert hours("cpu", 1000 * 2 * HOUR) == "2"
    assert hours("memory", (1 << 30) * 1.5 * HOUR) == "1.5"
    assert hours(GPU, 12.25 * HOUR) == "12.25"


def _window_usage(records, trace, start: float, end: float, sim_end: float) -> float:
    total = 0.0
    for t in trace:
        r = records[t.workload.key]
        if r.last_admitted is None:
            continue
        stop = r.finished if r.finished is not None else sim_end
        total += t.workload.total.get(GPU, 0) * max(0.0, min(stop, end) - max(r.last_admitted, start))
    return total


@settings(max_examples=40)
@given(
    st.lists(st.tuples(st.floats(0, 3 * 86400), st.integers(1, 4), st.floats(60, 6 * HOUR)), max_size=30),
    st.sampled_from(["Day", "Sliding"]),
    st.floats(1, 40),
)
def test_admissions_never_exceed_a_budget_with_exact_estimates(jobs, window, limit_hours) -> None:
    b = Budget(GPU, limit_hours * HOUR, window, "Asia/Kolkata", sliding_seconds=86400.0)
    base = ts(2026, 11, 23, 0, tz=ZoneInfo("Asia/Kolkata"))
    trace = [
        TraceItem(gpu_job(f"j{i}", base + at, gpus=g, est=dur), dur) for i, (at, g, dur) in enumerate(jobs)
    ]
    res = Simulator(research(b), trace).run(until=base + 6 * 86400)
    end = base + 6 * 86400
    if window == "Day":
        for day in range(6):
            s = base + day * 86400
            assert _window_usage(res.records, trace, s, s + 86400, end) <= b.limit * (1 + 1e-6)
    else:
        ends = {base + i * 1800 for i in range(int(6 * 86400 / 1800))}
        for t in sorted(ends):
            assert _window_usage(res.records, trace, t - 86400, t, end) <= b.limit * (1 + 1e-6) + 1e-3
