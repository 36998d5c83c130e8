"""Observed node capacity gates admission; impossible pods are reported, not queued forever."""

from .helpers import admitted_keys, cycle, node, queue, wl

QS = [queue("a", g=100)]


def test_admission_respects_free_node_capacity():
    nodes = [node("n1", 8, free=3), node("n2", 8, free=2)]
    d = cycle(QS, [wl(f"w{i}", "a", cores=2, created=i) for i in range(4)], nodes=nodes)
    assert admitted_keys(d) == ["w0", "w1"]  # one 2-core pod per node
    assert d.pending["w2"].reason.startswith("waiting for node capacity: no node has room for a pod of cpu 2")


def test_a_pod_larger_than_every_node_never_fits():
    d = cycle(
        QS, [wl("giant", "a", cores=16), wl("ok", "a", created=1)], nodes=[node("n1", 8), node("n2", 12)]
    )
    assert d.pending["giant"].never_fits
    assert d.pending["giant"].reason == "never fits: a pod needs cpu 16, more than any node can offer"
    assert admitted_keys(d) == ["ok"]


def test_gang_needs_all_pods_placed_at_once_other_workloads_need_one():
    nodes = [node("n1", 8, free=4), node("n2", 8, free=2)]
    gang = wl("gang", "a", cores=2, pods=4, gang=True)
    loose = wl("loose", "a", cores=2, pods=4, created=1)
    d = cycle(QS, [gang, loose], nodes=nodes)
    assert admitted_keys(d) == ["loose"]
    assert d.pending["gang"].reason.startswith("waiting for node capacity: gang of 4 pods")
    # Fragmentation matters: 4 free cores split 3+1 cannot hold two 2-core pods of a gang.
    d = cycle(QS, [wl("g2", "a", cores=2, pods=2, gang=True)], nodes=[node("n1", 8, 3), node("n2", 8, 1)])
    assert d.admit == []


def test_gang_bigger_than_the_whole_cluster_never_fits():
    d = cycle(QS, [wl("gang", "a", cores=4, pods=5, gang=True)], nodes=[node("n1", 8), node("n2", 8)])
    assert d.pending["gang"].never_fits and "the cluster can hold only 4" in d.pending["gang"].reason


def test_no_nodes_observed_means_quota_only_and_empty_means_nothing_fits():
    assert admitted_keys(cycle(QS, [wl("w", "a")], nodes=None)) == ["w"]
    assert cycle(QS, [wl("w", "a")], nodes=[]).pending["w"].never_fits


def test_never_fitting_is_reported_whatever_the_queue_limits():
    from meson.core import NodeCapacity, QueueConfig, Resources, Workload

    gib = 1 << 30
    memory_only = [QueueConfig("m", guaranteed=Resources(memory=64 * gib))]  # cpu is not limited by quota
    size = Resources(cpu=8000, memory=32 * gib, pods=110)
    nodes = [NodeCapacity("n1", size, size), NodeCapacity("n2", size, size)]
    huge = Workload("huge", "m", 0, 0.0, Resources(cpu=10_000_000, memory=gib))
    gang = Workload("gang", "m", 0, 1.0, Resources(cpu=6000, memory=gib), pod_count=3, gang=True)
    fine = Workload("fine", "m", 0, 2.0, Resources(cpu=6000, memory=gib))
    d = cycle(memory_only, [huge, gang, fine], nodes=nodes)
    assert admitted_keys(d) == ["fine"]
    assert d.pending["huge"].never_fits
    assert d.pending["huge"].reason == (
        "never fits: a pod needs cpu 10000, memory 1Gi, more than any node can offer"
    )
    assert d.pending["gang"].never_fits
    assert d.pending["gang"].reason == (
        "never fits: gang of 3 pods needs cpu 6, memory 1Gi each at once, the cluster can hold only 2"
    )
    # Quota counted only memory; the nodes saw the cpu too.
    assert d.queues["m"].usage == Resources(memory=gib)


def test_pod_slots_count_when_nodes_report_them():
    from meson.core import NodeCapacity, Resources

    def slots(name: str, pods: int, free: int) -> NodeCapacity:
        return NodeCapacity(name, Resources(cpu=64_000, pods=pods), Resources(cpu=64_000, pods=free))

    d = cycle(QS, [wl("gang", "a", pods=5, gang=True), wl("one", "a", created=1)], nodes=[slots("n1", 2, 2)])
    assert d.pending["gang"].reason == (
        "never fits: gang of 5 pods needs cpu 1 each at once, the cluster can hold only 2"
    )
    assert admitted_keys(d) == ["one"]
    d = cycle(QS, [wl("w", "a")], nodes=[slots("n1", 110, 0)])
    assert d.pending["w"].reason.startswith("waiting for node capacity: no node has room for a pod of cpu 1")
