"""Guarantees, limits and borrowing in a queue tree."""

import pytest

from meson.core import QueueConfig, QueueTree, Resources, Workload, validate_queues

from .helpers import admitted_keys, cpu, cycle, queue, running, wl


def cohort(limit_a: float | None = 6, **kw):
    return [queue("co"), queue("a", "co", g=4, limit=limit_a, **kw), queue("b", "co", g=4, **kw)]


def test_entitlement_of_a_container_is_the_sum_of_its_childrens_guarantees():
    tree = QueueTree([*cohort(), queue("org", g=20), queue("x", "org", g=5), queue("y", "org", g=5)])
    assert tree.entitlement["co"] == cpu(8)
    assert tree.entitlement["org"] == cpu(20)  # a declared guarantee above its children pools the rest


def test_a_queue_borrows_what_its_sibling_leaves_unused_up_to_its_limit():
    d = cycle(cohort(), [wl(f"w{i}", "a", created=i) for i in range(10)])
    assert admitted_keys(d) == [f"w{i}" for i in range(6)]  # guarantee 4 + 2 borrowed = limit 6
    assert d.pending["w6"].reason == "needs cpu 1, queue a has 0 free of limit 6"


def test_without_a_limit_a_queue_borrows_up_to_the_parents_pool():
    d = cycle(cohort(limit_a=None), [wl(f"w{i}", "a", created=i) for i in range(10)])
    assert len(d.admit) == 8
    assert d.pending["w8"].reason == "needs cpu 1, queue co has 0 free of guaranteed pool 8"


def test_parent_limit_caps_the_whole_subtree():
    qs = [
        queue("cluster", g=40),
        queue("org", "cluster", limit=10),
        queue("x", "org", g=3),
        queue("y", "org", g=3),
        queue("other", "cluster", g=4),
    ]
    d = cycle(qs, [wl(f"{q}{i}", q, created=i) for q in "xy" for i in range(8)])
    assert len(d.admit) == 10
    assert "queue org has 0 free of limit 10" in d.pending["x7"].reason


def test_top_level_queues_do_not_share():
    qs = [queue("solo", g=2, limit=10), queue("other", g=50)]
    d = cycle(qs, [wl(f"w{i}", "solo", created=i) for i in range(5)])
    assert len(d.admit) == 2


def test_usage_of_running_workloads_counts():
    qs = cohort()
    busy = [running(wl(f"r{i}", "b", cores=1)) for i in range(4)]
    d = cycle(qs, [wl(f"w{i}", "a", created=i) for i in range(10)], busy)
    assert len(d.admit) == 4  # b uses its own guarantee, nothing left to borrow


def test_a_workload_bigger_than_the_queue_could_ever_get_never_fits():
    gpu = Workload("gpu", "a", 0, 1.0, Resources({"nvidia.com/gpu": 1}))
    # Queue a lists a gpu quota of 0 ("listed": a zero amount is still a quota).
    a = queue("a", "co", g=4, limit=6, listed={"cpu", "nvidia.com/gpu"})
    qs = [queue("co"), a, queue("b", "co", g=4)]
    d = cycle(qs, [wl("huge", "a", cores=7), gpu])
    assert d.pending["huge"].never_fits and "can ever get" in d.pending["huge"].reason
    assert d.pending["gpu"].never_fits
    assert d.pending["gpu"].reason == "queue a has no quota for nvidia.com/gpu"


def test_a_resource_no_queue_of_the_tree_names_is_not_limited_by_quota():
    gpu = Workload("gpu", "a", 0, 1.0, Resources({"nvidia.com/gpu": 1}))
    d = cycle(cohort(), [gpu])
    assert admitted_keys(d) == ["gpu"]
    assert d.queues["a"].usage == Resources()  # nothing the tree counts


def test_workloads_naming_missing_or_parent_queues_are_explained():
    d = cycle(cohort(), [wl("lost", "nope"), wl("parent", "co")])
    assert d.pending["lost"].reason == "queue nope does not exist"
    assert "parent queue" in d.pending["parent"].reason


def test_invalid_trees_are_rejected_with_reasons():
    assert validate_queues([queue("a", "missing")]) == ["queue a: parent missing does not exist"]
    assert "cycle" in validate_queues([queue("a", "b"), queue("b", "a")])[0]
    errs = validate_queues([queue("p", limit=3), queue("c1", "p", g=2), queue("c2", "p", g=2)])
    assert errs and "below the guarantees" in errs[0]
    with pytest.raises(ValueError):
        QueueConfig("bad", guaranteed=cpu(2), limit=cpu(1))
