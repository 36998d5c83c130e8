"""Token buckets, per-queue caps, hold and hold-and-drain."""

from meson.core import Scheduler, Snapshot

from .helpers import admitted_keys, cycle, queue, running, wl


def test_queue_rate_limits_pod_starts_and_says_so():
    qs = [queue("a", g=100, admission_rate=2, admission_burst=4)]
    pending = [wl(f"w{i}", "a", created=i, pods=2) for i in range(6)]
    sched = Scheduler()
    d = sched.cycle(Snapshot(0, qs, pending))
    assert admitted_keys(d) == ["w0", "w1"]  # burst of 4 pods
    assert d.pending["w2"].reason == "throttled: queue a admission rate 2/s"
    assert d.wake_at == 1.0  # 2 tokens needed at 2/s
    d = sched.cycle(Snapshot(1, qs, pending[2:]))
    assert admitted_keys(d) == ["w2"]


def test_gang_larger_than_the_burst_starts_when_the_bucket_is_full():
    qs = [queue("a", g=100, admission_rate=10, admission_burst=5)]
    sched = Scheduler()
    d = sched.cycle(Snapshot(0, qs, [wl("gang", "a", pods=20, gang=True), wl("next", "a", created=1)]))
    assert admitted_keys(d) == ["gang"]  # all 20 pods at once, never split
    d = sched.cycle(Snapshot(1, qs, [wl("next", "a", created=1)]))
    assert d.admit == []  # the bucket is paying off the gang's debt: -15 + 10
    assert admitted_keys(sched.cycle(Snapshot(1.6, qs, [wl("next", "a", created=1)]))) == ["next"]


def test_global_rate_applies_across_queues():
    qs = [queue("a", g=10), queue("b", g=10)]
    pending = [wl(f"{q}{i}", q, created=i) for q in "ab" for i in range(3)]
    d = cycle(qs, pending, global_rate=50, global_burst=3)
    assert len(d.admit) == 3
    assert all(p.reason == "throttled: global admission rate 50/s" for p in d.pending.values())


def test_max_admitted_caps_running_workloads_per_queue():
    qs = [queue("a", g=10, max_admitted=3)]
    d = cycle(qs, [wl(f"w{i}", "a", created=i) for i in range(5)], [running(wl("r", "a"))])
    assert admitted_keys(d) == ["w0", "w1"]
    assert d.pending["w2"].reason == "queue a is at its cap of 3 admitted workloads"


def test_hold_admits_nothing_and_drain_evicts_the_running():
    held = [queue("p", stop_policy="Hold"), queue("a", "p", g=10)]
    d = cycle(held, [wl("w", "a")], [running(wl("r", "a"))])
    assert d.admit == [] and d.preempt == [] and d.pending["w"].reason == "queue p is on hold"

    drain = [queue("a", g=10, stop_policy="HoldAndDrain")]
    d = cycle(drain, [wl("w", "a")], [running(wl("r", "a")), running(wl("keep", "a", preemptible=False))])
    assert [(p.victim_key, p.preemptor_key) for p in d.preempt] == [("r", None)]
    assert d.pending["w"].reason == "queue a is on hold and draining"


def test_a_parent_rate_limits_its_whole_subtree():
    qs = [queue("org", admission_rate=1, admission_burst=2), queue("a", "org", g=10), queue("b", "org", g=10)]
    d = cycle(qs, [wl(f"{q}{i}", q, created=i) for q in "ab" for i in range(3)])
    assert len(d.admit) == 2
    assert {p.reason for p in d.pending.values()} == {"throttled: queue org admission rate 1/s"}
