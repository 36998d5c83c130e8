from meson.core import NodeCapacity, Resources
from meson.core.simulator import Simulator, TraceItem

from .helpers import queue, wl


def test_workloads_run_for_their_duration_and_free_capacity():
    res = Simulator(
        [queue("a", g=1)],
        [TraceItem(wl("w1", "a", created=0), 2.0), TraceItem(wl("w2", "a", created=0.5), 3.0)],
    ).run()
    assert (res.records["w1"].first_admitted, res.records["w1"].finished) == (0.0, 2.0)
    assert (res.records["w2"].first_admitted, res.records["w2"].finished) == (2.0, 5.0)
    assert res.makespan == 5.0 and res.usage_integral["a"]["cpu"] == 5.0 * 1000


def test_non_gang_pods_run_in_waves_when_the_cluster_is_small():
    nodes = [NodeCapacity("n", Resources(cpu=2000), Resources(cpu=2000))]
    res = Simulator([queue("a", g=10)], [TraceItem(wl("w", "a", pods=3), 1.0)], nodes=nodes).run()
    assert res.records["w"].finished == 2.0  # two pods, then the third
