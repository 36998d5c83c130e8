"""Observed node capacity gates admission; impossible pods are reported, not queued forever."""

from .helpers import admitted_keys, cycle, node, queue, wl

QS = [queue("a", g=100)]


def test_admission_respects_free_node_capacity():
    nodes = [node("n1", 8, free=3), node("n2", 8, free=2)]
    d = cycle(QS, [wl(f"w{i}", "a", cores=2, created=i) for i in range(4)], nodes=nodes)
    assert admitted_keys(d) == ["w0", "w1"]  # one 2-core pod per node
    assert d.pending["w2"].reason.startswith("waiting for node capacity: no node has room for a pod of cpu 2")


def test_a_pod_larger_than_every_node_never_fits():
    d = cycle(QS, [wl("giant", "a", cores=16), wl("ok", "a", created=1)],
              nodes=[node("n1", 8), node("n2", 12)])
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
