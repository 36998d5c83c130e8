"""Within-queue preemption, reclaim of lent capacity, and the safety rules around them."""

from meson.core import Scheduler, Snapshot

from .helpers import admitted_keys, cpu, cycle, queue, running, wl


def within(**kw):
    return [queue("a", g=4, preempt_within_queue="LowerPriority", **kw)]


def test_higher_priority_evicts_the_fewest_lowest_priority_newest_victims():
    run = [
        running(wl("low-old", "a", cores=2, prio=1), at=0),
        running(wl("low-new", "a", cores=2, prio=1), at=5),
        running(wl("lowest", "a", cores=0.5, prio=0), at=1),
    ]
    qs = [queue("a", g=5, preempt_within_queue="LowerPriority")]
    d = cycle(qs, [wl("urgent", "a", cores=2, prio=10)], run, now=10)
    # 0.5 free; needs 2: evicting "lowest" alone is not enough, so it takes one prio-1 workload
    # (the newest) and spares "lowest", which would not be needed then.
    assert [p.victim_key for p in d.preempt] == ["low-new"]
    assert d.preempt[0].preemptor_key == "urgent" and "higher-priority urgent" in d.preempt[0].reason
    assert d.admit == [] and d.pending["urgent"].reason.startswith("preempting 1 workload")


def test_equal_or_lower_priority_never_preempts_and_non_preemptible_is_never_a_victim():
    run = [running(wl("keep", "a", cores=4, prio=0, preemptible=False))]
    assert cycle(within(), [wl("x", "a", prio=10)], run).preempt == []
    run = [running(wl("peer", "a", cores=4, prio=10))]
    assert cycle(within(), [wl("x", "a", prio=10)], run).preempt == []


def test_policy_never_means_no_within_queue_preemption():
    run = [running(wl("low", "a", cores=4, prio=0))]
    assert cycle([queue("a", g=4)], [wl("x", "a", prio=10)], run).preempt == []


def test_preemptor_waits_for_its_victims_then_is_admitted_first():
    sched = Scheduler()
    qs = within()
    victim = running(wl("low", "a", cores=4, prio=0))
    urgent = wl("urgent", "a", cores=4, prio=10, created=1)
    rival = wl("rival", "a", cores=4, prio=20, created=2)  # arrives while urgent waits
    d1 = sched.cycle(Snapshot(1, qs, [urgent], [victim]))
    assert [p.victim_key for p in d1.preempt] == ["low"] and sched.waiting_for_victims == {"urgent": {"low"}}
    d2 = sched.cycle(Snapshot(2, qs, [urgent, rival], [victim]))  # victim still terminating
    assert d2.admit == [] and d2.preempt == []
    assert d2.pending["urgent"].reason == "waiting for 1 preempted workload to exit (low)"
    d3 = sched.cycle(Snapshot(3, qs, [urgent, rival], []))
    assert admitted_keys(d3) == ["urgent"]  # the capacity was freed for it, not for the newcomer


def reclaim_tree(**kw):
    return [queue("co"), queue("a", "co", g=4, **kw), queue("b", "co", g=4, **kw)]


def test_a_queue_below_its_guarantee_reclaims_what_it_lent():
    borrowed = [running(wl(f"b{i}", "b", cores=2, prio=100), at=i) for i in range(4)]  # b uses 8 of 8
    d = cycle(reclaim_tree(), [wl("mine", "a", cores=3, prio=0)], borrowed, now=10)
    victims = sorted(p.victim_key for p in d.preempt)
    assert victims == ["b2", "b3"]  # newest first, and only what a needs (3 of the 4 lent)
    assert "reclaims guaranteed capacity lent to queue b" in d.preempt[0].reason


def test_reclaim_never_cuts_into_the_lenders_own_guarantee():
    # b borrows 1; a wants 4 of its 4 but only b's borrowed slice may be taken.
    run = [
        running(wl("b-own", "b", cores=4), at=0),
        running(wl("b-extra", "b", cores=1), at=1),
        running(wl("a0", "a", cores=1), at=0),
    ]
    d = cycle(reclaim_tree(), [wl("a-big", "a", cores=3)], run)
    assert [p.victim_key for p in d.preempt] == ["b-extra"]


def test_reclaim_disabled_and_borrowing_preemptor_do_not_reclaim():
    borrowed = [running(wl(f"b{i}", "b", cores=2)) for i in range(4)]
    assert cycle(reclaim_tree(reclaim_borrowed=False), [wl("mine", "a", cores=3)], borrowed).preempt == []
    # a asks for more than its guarantee: it would be borrowing itself, so it cannot reclaim.
    assert cycle(reclaim_tree(), [wl("greedy", "a", cores=5)], borrowed).preempt == []


def test_non_preemptible_workloads_may_not_borrow():
    d = cycle(reclaim_tree(), [wl(f"np{i}", "a", cores=2, created=i, preemptible=False) for i in range(3)])
    assert admitted_keys(d) == ["np0", "np1"]
    assert d.pending["np2"].reason.startswith("not preemptible, so it may only use queue a's guarantee")


def test_no_ping_pong_a_victim_may_not_preempt_its_preemptor_back():
    sched = Scheduler()
    qs = [queue("a", g=2, preempt_within_queue="LowerPriority")]
    x = wl("x", "a", cores=2, prio=5)
    y = wl("y", "a", cores=2, prio=1)
    d = sched.cycle(Snapshot(0, qs, [x], [running(y)]))
    assert [(p.preemptor_key, p.victim_key) for p in d.preempt] == [("x", "y")]
    # Suppose priorities were edited so y now outranks x: y may still not evict x right back.
    y_up = wl("y", "a", cores=2, prio=9)
    d = sched.cycle(Snapshot(1, qs, [y_up], [running(x, at=1)]))
    assert d.preempt == []


def victims_by_preemptor(d) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in d.preempt:
        out.setdefault(p.preemptor_key, []).append(p.victim_key)
    return {k: sorted(v) for k, v in out.items()}


def test_several_preemptors_in_one_cycle_evict_exactly_what_they_need():
    """Victims already chosen free capacity for their preemptor: the next preemptor must not count them
    as still used (it would evict two for one, and the third preemptor would find nothing left)."""
    q = queue("q", g=4, preempt_within_queue="LowerPriority")
    low = [running(wl(f"low-{i}", "q", prio=0), at=float(i)) for i in range(4)]
    high = [wl(f"high-{i}", "q", prio=10, created=10.0 + i) for i in range(3)]
    d = cycle([q], high, low, now=20.0)
    assert victims_by_preemptor(d) == {"high-0": ["low-3"], "high-1": ["low-2"], "high-2": ["low-1"]}
    assert all(d.pending[h.key].reason.startswith("preempting 1 workload:") for h in high)
    assert d.queues["q"].usage == cpu(1)  # low-0: victims are not counted, waiting preemptors not yet


def test_reclaimers_in_one_cycle_take_back_exactly_what_they_lent():
    org = queue("org", g=0, limit=4)
    lender = queue("lender", "org", g=3, limit=4, reclaim_borrowed=True)
    borrower = queue("borrower", "org", g=1, limit=4)
    borrowed = [running(wl(f"b-{i}", "borrower"), at=float(i)) for i in range(4)]
    reclaimers = [wl(f"r-{i}", "lender", created=10.0 + i) for i in range(3)]
    d = cycle([org, lender, borrower], reclaimers, borrowed, now=20.0)
    assert victims_by_preemptor(d) == {"r-0": ["b-3"], "r-1": ["b-2"], "r-2": ["b-1"]}


def test_three_one_cpu_reclaimers_evict_three_workloads_not_six():
    # The reported case: each reclaimer counted the victims of the ones before it as still running,
    # so they took 1, 2 and 3 victims.
    qs = [queue("org"), queue("lender", "org", g=3), queue("borrower", "org", g=3)]
    borrowed = [running(wl(f"b-{i}", "borrower"), at=float(i)) for i in range(6)]
    reclaimers = [wl(f"r-{i}", "lender", created=10.0 + i) for i in range(3)]
    d = cycle(qs, reclaimers, borrowed, now=20.0)
    assert sorted(p.victim_key for p in d.preempt) == ["b-3", "b-4", "b-5"]
    assert set(victims_by_preemptor(d)) == {"r-0", "r-1", "r-2"}
    assert d.queues["borrower"].usage == cpu(3) and d.queues["borrower"].borrowed == cpu(0)


def test_capacity_held_for_a_reclaimer_counts_against_its_queues_guarantee():
    # lender is guaranteed 1 CPU; the rest of org's 10 is shared. Its first workload takes its
    # guarantee back; the second would borrow, and borrowing never justifies a reclaim.
    qs = [queue("org", g=10), queue("lender", "org", g=1), queue("borrower", "org", g=1)]
    borrowed = [running(wl(f"b-{i}", "borrower"), at=float(i)) for i in range(10)]
    d = cycle(qs, [wl("r-0", "lender", created=10.0), wl("r-1", "lender", created=11.0)], borrowed, now=20.0)
    assert victims_by_preemptor(d) == {"r-0": ["b-9"]}
    assert not d.pending["r-1"].reason.startswith("preempting")


def test_within_queue_victims_sized_above_the_need_leave_room_for_the_next_preemptor():
    # A 2-CPU victim frees one CPU more than the first preemptor needs: the second fits in it.
    q = queue("q", g=4, preempt_within_queue="LowerPriority")
    low = [
        running(wl("big", "q", cores=2, prio=0), at=5.0),
        running(wl("small-0", "q", prio=1), at=0.0),
        running(wl("small-1", "q", prio=1), at=1.0),
    ]
    high = [wl(f"high-{i}", "q", prio=10, created=10.0 + i) for i in range(2)]
    d = cycle([q], high, low, now=20.0)
    assert victims_by_preemptor(d) == {"high-0": ["big"]}
    assert [a.key for a in d.admit] == []  # high-1 fits only once big is gone: it waits, evicting nothing
    assert not d.pending["high-1"].reason.startswith("preempting")


def test_a_waiting_preemptors_victims_are_not_counted_twice_in_later_cycles():
    q = queue("q", g=4, preempt_within_queue="LowerPriority")
    sched = Scheduler()
    low = [running(wl(f"low-{i}", "q", prio=0), at=float(i)) for i in range(4)]
    first = cycle([q], [wl("high-0", "q", prio=10, created=10.0)], low, now=20.0, sched=sched)
    assert len(first.preempt) == 1
    # The victim has not exited yet; a second high-priority workload arrives.
    pending = [wl("high-0", "q", prio=10, created=10.0), wl("high-1", "q", prio=10, created=21.0)]
    second = cycle([q], pending, low, now=22.0, sched=sched)
    assert len(second.preempt) == 1, [p.victim_key for p in second.preempt]
