"""Semaphores across workflows, with the real loop on the in-memory API server: never more holders than the
limit, waiters start by priority, and an operator killed during a hand-off loses nothing."""

from __future__ import annotations

from meson.controllers.store import Store
from meson.controllers.sync import resolve_limit
from meson.workflow import LABEL_WORKFLOW
from tests.controllers.builders import chain, queue, steps_by_instance, workflow
from tests.controllers.fake_cluster import FakeCluster, Operator, run, sync
from tests.controllers.test_loop import assert_no_pod_created_twice

NAMES = ("low", "mid", "high")


def contended(cluster: FakeCluster, limit: int = 1) -> None:
    cluster.apply(queue("q", cpu="100"))
    for name, value in zip(NAMES, (10, 20, 30), strict=True):
        cluster.add_priority_class(f"p-{name}", value)
    sem = {"semaphore": {"name": "db", "limit": limit}}
    for name in NAMES:  # created low first: priority, not age, decides
        cluster.apply(
            workflow(name, "q", chain("a", "b"), priorityClassName=f"p-{name}", synchronization=sem)
        )


def holders(cluster: FakeCluster) -> set[str]:
    return {p["metadata"]["labels"][LABEL_WORKFLOW] for p in cluster.pods(queue="q", live=True)}


def finished(cluster: FakeCluster) -> bool:
    return all(cluster.status("workflows", n).get("phase") == "Succeeded" for n in NAMES)


@sync
async def test_a_mutex_runs_the_workflows_one_at_a_time_in_priority_order_and_waiters_say_why() -> None:
    cluster = FakeCluster()
    contended(cluster)
    seen: list[set[str]] = []
    messages: list[str] = []

    def sample() -> None:
        seen.append(holders(cluster))
        for name in NAMES:
            entry = steps_by_instance(cluster.status("workflows", name)).get("a") or {}
            if entry.get("phase") == "Pending" and entry.get("message"):
                messages.append(entry["message"])

    await run(cluster, Operator(cluster), lambda: finished(cluster), each=sample)
    assert max(len(s) for s in seen) == 1, seen
    order = [next(iter(s)) for i, s in enumerate(seen) if s and (i == 0 or s != seen[i - 1])]
    assert order == ["high", "mid", "low"]
    assert "waiting for semaphore db: 1/1 held by high; 1 in line" in messages


@sync
async def test_a_semaphore_of_two_and_an_operator_killed_during_the_hand_off() -> None:
    cluster = FakeCluster()
    contended(cluster, limit=2)
    op = Operator(cluster)
    most = 0

    def sample() -> None:
        nonlocal most
        most = max(most, len(holders(cluster)))

    # Run until the first holder finishes its last step, then kill the operator before it hands over.
    await run(
        cluster, op, lambda: cluster.status("workflows", "high").get("phase") == "Succeeded", each=sample
    )
    await op.crash()
    await run(cluster, Operator(cluster), lambda: finished(cluster), each=sample)
    assert most == 2
    assert_no_pod_created_twice(cluster)
    assert len(cluster.pods(queue="q")) == 6  # each step of each workflow ran once


# --- a limit read from a ConfigMap (configMapKeyRef) --------------------------------------------------------


def from_config_map(cluster: FakeCluster) -> None:
    cluster.apply(queue("q", cpu="100"))
    sem = {"semaphore": {"name": "db", "configMapKeyRef": {"name": "limits", "key": "db"}}}
    for name in ("one", "two"):
        cluster.apply(workflow(name, "q", chain("a", "b"), synchronization=sem))


def messages_of(cluster: FakeCluster, name: str) -> str:
    return (steps_by_instance(cluster.status("workflows", name)).get("a") or {}).get("message") or ""


@sync
async def test_a_missing_or_bad_config_map_limit_holds_the_workflows_back_until_it_is_fixed() -> None:
    cluster = FakeCluster()
    from_config_map(cluster)
    op = Operator(cluster)
    for _ in range(3):
        await op.cycle()
    assert not holders(cluster)
    assert "semaphore db: ConfigMap limits not found (it sets the limit)" in messages_of(cluster, "one")
    assert cluster.status("workflows", "one").get("phase") != "Failed"

    cluster.add("configmaps", "default", {"metadata": {"name": "limits"}, "data": {"other": "3"}})
    for _ in range(3):
        await op.cycle()
    assert not holders(cluster)
    assert "semaphore db: ConfigMap limits has no key db (it sets the limit)" in messages_of(cluster, "two")

    cluster.user_patch("configmaps", "limits", {"data": {"db": "0"}})
    for _ in range(3):
        await op.cycle()
    assert not holders(cluster)
    assert "ConfigMap limits key db is '0', not a positive integer" in messages_of(cluster, "one")

    cluster.user_patch("configmaps", "limits", {"data": {"db": "1"}})
    seen: list[set[str]] = []
    await run(
        cluster,
        op,
        lambda: all(cluster.status("workflows", n).get("phase") == "Succeeded" for n in ("one", "two")),
        each=lambda: seen.append(holders(cluster)),
    )
    assert max(len(s) for s in seen) == 1, seen  # the fixed limit of 1 is kept


@sync
async def test_raising_the_config_map_limit_lets_a_waiter_start_beside_the_holder() -> None:
    cluster = FakeCluster()
    cluster.add("configmaps", "default", {"metadata": {"name": "limits"}, "data": {"db": "1"}})
    from_config_map(cluster)
    op = Operator(cluster)
    for _ in range(3):
        await op.cycle()
    assert len(holders(cluster)) == 1
    waiter = ({"one", "two"} - holders(cluster)).pop()
    assert "waiting for semaphore db: 1/1 held by" in messages_of(cluster, waiter)

    cluster.user_patch("configmaps", "limits", {"data": {"db": " 2\n"}})  # as `kubectl create --from-file`
    for _ in range(3):
        await op.cycle()
    assert holders(cluster) == {"one", "two"}


def test_limit_resolution_reasons() -> None:
    sem = {"name": "db", "configMapKeyRef": {"name": "limits", "key": "db"}}
    ns = "team"
    assert resolve_limit({"name": "db", "limit": 3}, ns, {}) == 3
    assert resolve_limit(sem, ns, {("other", "limits"): {"db": "2"}}) == (
        "semaphore db: ConfigMap limits not found (it sets the limit)"
    )
    assert resolve_limit(sem, ns, {(ns, "limits"): {"db": "2"}}) == 2
    assert resolve_limit(sem, ns, {(ns, "limits"): {"db": "-1"}}).endswith("is '-1', not a positive integer")
    assert resolve_limit(sem, ns, {(ns, "limits"): {"db": "two"}}).endswith(
        "is 'two', not a positive integer"
    )
    assert resolve_limit(sem, ns, {(ns, "limits"): {"db": None}}).endswith(
        "is too long, not a positive integer"
    )


def test_the_view_keeps_only_short_config_map_values_and_ignores_stale_events() -> None:
    store = Store()
    cm = {"metadata": {"namespace": "ns", "name": "limits", "resourceVersion": "5"}, "data": {"db": "2"}}
    store.on_config_map("ADDED", cm | {"data": {"db": "2", "ca.crt": "x" * 2000}})
    assert store.config_maps[("ns", "limits")] == {"db": "2", "ca.crt": None}
    store.on_config_map(
        "MODIFIED", {**cm, "metadata": {**cm["metadata"], "resourceVersion": "4"}, "data": {}}
    )
    assert store.config_maps[("ns", "limits")]["db"] == "2"  # an older version does not roll it back
    store.on_config_map("DELETED", cm)
    assert ("ns", "limits") not in store.config_maps
