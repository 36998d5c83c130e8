"""Semaphores across workflows, with the real loop on the in-memory API server: never more holders than the
limit, waiters start by priority, and an operator killed during a hand-off loses nothing."""

from __future__ import annotations

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
