"""Weighted DRF for spare capacity: the paper's example, weights, and its properties."""

from hypothesis import given
from hypothesis import strategies as st

from meson.core import AdmittedWorkload, QueueConfig, Resources, Scheduler, Snapshot, Workload
from meson.core.fairshare import weighted_dominant_share

GIB = 1 << 30


def drf_cycle(
    pool: Resources, demands: dict[str, Resources], weights: dict[str, float] | None = None, count: int = 60
) -> dict[str, int]:
    """Sibling queues with no guarantee of their own compete for a parent's pool; tasks per queue."""
    weights = weights or {}
    qs = [QueueConfig("parent", guaranteed=pool)]
    qs += [QueueConfig(q, parent="parent", weight=weights.get(q, 1.0)) for q in demands]
    pending = [Workload(f"{q}-{i}", q, 0, float(i), d) for q, d in demands.items() for i in range(count)]
    d = Scheduler().cycle(Snapshot(0.0, qs, pending))
    tasks = dict.fromkeys(demands, 0)
    for a in d.admit:
        tasks[a.queue] += 1
    return tasks


def test_the_drf_papers_example():
    # Ghodsi et al. 2011, section 4: 9 CPUs, 18 GB; A's tasks need <1 CPU, 4 GB>, B's <3 CPU, 1 GB>.
    tasks = drf_cycle(
        Resources(cpu=9000, memory=18 * GIB),
        {"a": Resources(cpu=1000, memory=4 * GIB), "b": Resources(cpu=3000, memory=1 * GIB)},
    )
    assert tasks == {"a": 3, "b": 2}  # both end with a dominant share of 2/3


def test_weights_split_spare_capacity_proportionally():
    one = Resources(cpu=1000)
    tasks = drf_cycle(Resources(cpu=12_000), {"a": one, "b": one}, {"a": 2.0, "b": 1.0})
    assert tasks == {"a": 8, "b": 4}


def test_spare_capacity_is_shared_above_guarantees():
    # a and b are each guaranteed 2; the 6 nobody is guaranteed is split evenly.
    qs = [
        QueueConfig("p", guaranteed=Resources(cpu=10_000)),
        QueueConfig("a", "p", guaranteed=Resources(cpu=2000)),
        QueueConfig("b", "p", guaranteed=Resources(cpu=2000)),
    ]
    pending = [Workload(f"{q}-{i}", q, 0, float(i), Resources(cpu=1000)) for q in "ab" for i in range(20)]
    d = Scheduler().cycle(Snapshot(0.0, qs, pending))
    assert sum(a.queue == "a" for a in d.admit) == 5 and sum(a.queue == "b" for a in d.admit) == 5


demand = st.builds(
    lambda c, m: Resources(cpu=c * 100, memory=m * GIB // 4), st.integers(1, 40), st.integers(1, 40)
)


@given(
    pool_cpu=st.integers(20, 200),
    pool_mem=st.integers(20, 200),
    demands=st.lists(demand, min_size=2, max_size=5),
    weights=st.lists(st.sampled_from([1.0, 2.0, 3.0]), min_size=5, max_size=5),
)
def test_sharing_incentive(pool_cpu, pool_mem, demands, weights):
    """Each queue's dominant share is at least its weighted 1/n of the pool, less one task per queue.

    Why: when queue i is first refused, some resource is nearly exhausted, and every other queue j got
    its last task while its weighted share was at most i's; summing over queues bounds i's share below.
    """
    pool = Resources(cpu=pool_cpu * 1000, memory=pool_mem * GIB)
    names = [f"q{i}" for i in range(len(demands))]
    w = dict(zip(names, weights, strict=False))
    dem = dict(zip(names, demands, strict=True))
    tasks = drf_cycle(pool, dem, w, count=400)
    total_w = sum(w.values())
    slack = sum(d.dominant_share(pool) for d in dem.values())
    for q in names:
        if tasks[q] == 400:
            continue  # it got everything it asked for
        share = (dem[q] * tasks[q]).dominant_share(pool)
        assert share >= w[q] / total_w * (1 - slack) - 1e-9, (q, tasks)


@given(
    demands=st.lists(demand, min_size=2, max_size=4),
    weights=st.lists(st.sampled_from([1.0, 2.0]), min_size=4, max_size=4),
    pool_cpu=st.integers(10, 60),
    pool_mem=st.integers(10, 60),
)
def test_each_slice_goes_to_the_lowest_weighted_share_that_can_use_it(demands, weights, pool_cpu, pool_mem):
    """The DRF choice rule, step by step: one admission per cycle (global burst 1).

    Under equal weights this is what makes the allocation envy-free up to one task: nobody is ever
    given a slice while a queue with a lower share could have used it.
    """
    pool = Resources(cpu=pool_cpu * 1000, memory=pool_mem * GIB)
    names = [f"q{i}" for i in range(len(demands))]
    qs = [QueueConfig("parent", guaranteed=pool)]
    qs += [QueueConfig(q, "parent", weight=wt) for q, wt in zip(names, weights, strict=False)]
    weight = {q.name: q.weight for q in qs}
    pending = {
        q: [Workload(f"{q}-{i}", q, 0, float(i), d) for i in range(60)]
        for q, d in zip(names, demands, strict=True)
    }
    dem = dict(zip(names, demands, strict=True))  # what quota counts (pod_request also has pods: 1)
    used = {q: Resources() for q in names}
    running: list[AdmittedWorkload] = []
    sched = Scheduler()
    for step in range(200):
        snap = Snapshot(
            float(step),
            qs,
            [w for ws in pending.values() for w in ws],
            running,
            global_rate=1.0,
            global_burst=1,
        )
        d = sched.cycle(snap)
        if not d.admit:
            break
        (adm,) = d.admit
        total = sum(used.values(), Resources())
        fits = [q for q in names if pending[q] and (total + dem[q]).fits_in(pool)]
        share = {q: weighted_dominant_share(used[q], {}, pool, weight[q]) for q in fits}
        assert share[adm.queue] == min(share.values())
        w = pending[adm.queue].pop(0)
        used[adm.queue] = used[adm.queue] + dem[adm.queue]
        running.append(AdmittedWorkload(w, float(step)))
