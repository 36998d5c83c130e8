"""Per-queue accounting comes from the core, after the cycle's admissions and preemptions."""

from __future__ import annotations

from meson.core import QueueAccounting, Resources

from .helpers import admitted_keys, cpu, cycle, queue, running, wl


def tree(**kw):
    return [queue("org"), queue("a", "org", g=4, limit=8, **kw), queue("b", "org", g=4, **kw)]


def test_usage_borrowing_and_counts_after_the_cycles_admissions():
    busy = [running(wl(f"ra{i}", "a"), at=i) for i in range(3)] + [running(wl("rb", "b"))]
    d = cycle(tree(), [wl(f"pa{i}", "a", created=i) for i in range(5)], busy)
    # a borrows what b leaves unused: the pool is 8, b uses 1, so a may reach 7.
    assert admitted_keys(d) == ["pa0", "pa1", "pa2", "pa3"]
    assert d.queues == {
        # A pure container's entitlement is its children's guarantees: using them is not borrowing.
        "org": QueueAccounting(pending=1, admitted=8, usage=cpu(8), borrowed=Resources()),
        "a": QueueAccounting(pending=1, admitted=7, usage=cpu(7), borrowed=cpu(3)),
        "b": QueueAccounting(pending=0, admitted=1, usage=cpu(1), borrowed=Resources()),
    }
    assert d.disabled == {}


def test_preemption_victims_no_longer_count():
    # a borrowed 4 of b's guarantee; b wants 3 of it back and may reclaim.
    busy = [running(wl(f"ra{i}", "a"), at=i) for i in range(8)]
    d = cycle(tree(reclaim_borrowed=True), [wl("pb", "b", cores=3), wl("pb-later", "b", created=1)], busy)
    assert d.admit == []  # the preemptor waits for its victims to exit
    victims = sorted(p.victim_key for p in d.preempt)
    assert victims == ["ra5", "ra6", "ra7"]  # the newest admissions go first
    assert d.queues["a"] == QueueAccounting(pending=0, admitted=5, usage=cpu(5), borrowed=cpu(1))
    assert d.queues["b"] == QueueAccounting(pending=2, admitted=0, usage=Resources(), borrowed=Resources())
    assert d.queues["org"] == QueueAccounting(pending=2, admitted=5, usage=cpu(5), borrowed=Resources())


def test_a_parent_with_its_own_guarantee_borrows_only_above_it():
    qs = [queue("cluster", g=10), queue("org", "cluster", g=2), queue("x", "org", g=1)]
    d = cycle(qs, [wl(f"w{i}", "x", created=i) for i in range(5)])
    assert len(d.admit) == 5
    assert d.queues["x"].borrowed == cpu(4)
    assert d.queues["org"].borrowed == cpu(3)  # entitlement max(2, 1) = 2
    assert d.queues["cluster"].borrowed == Resources()
    assert [d.queues[n].admitted for n in ("cluster", "org", "x")] == [5, 5, 5]


def test_a_draining_queue_reports_its_evicted_workloads_gone():
    qs = [queue("org"), queue("a", "org", g=4), queue("b", "org", g=4, stop_policy="HoldAndDrain")]
    busy = [running(wl("ra", "a")), running(wl("rb1", "b")), running(wl("rb2", "b", preemptible=False))]
    d = cycle(qs, [wl("pb", "b")], busy)
    assert [p.victim_key for p in d.preempt] == ["rb1"]
    assert d.queues["b"] == QueueAccounting(pending=1, admitted=1, usage=cpu(1), borrowed=Resources())
    assert d.queues["org"].admitted == 2 and d.queues["org"].usage == cpu(2)
