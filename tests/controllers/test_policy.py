"""Scheduling policy over time (issue 13) through the real loop: budgets are enforced from the Queue's spec,
reported and persisted in its status, and survive an operator restart."""

from __future__ import annotations

from tests.controllers.builders import queue, step, steps_by_instance, workflow
from tests.controllers.fake_cluster import FakeCluster, Operator, run, sync

# 1 cpu for 25 s: two 10-second steps of 1 cpu fit, a third does not.
BUDGET = {"resource": "cpu", "resourceHours": 25 / 3600, "window": "Day", "timeZone": "UTC"}


def one_step(name: str) -> dict:
    return workflow(name, "q", [step("train", cpu="1", duration="10s", expectedDurationSeconds=10)])


def waiting_reason(cluster: FakeCluster, name: str) -> str:
    return (steps_by_instance(cluster.status("workflows", name)).get("train") or {}).get("message", "")


@sync
async def test_a_used_up_budget_holds_the_next_workflow_with_a_reason_and_a_restart_does_not_reset_it() -> (
    None
):
    cluster = FakeCluster()
    cluster.apply(queue("q", cpu=8, budgets=[BUDGET]))
    for name in ("first", "second"):
        cluster.apply(one_step(name))
    op = Operator(cluster)
    await run(cluster, op, lambda: len(cluster.pods(queue="q")) == 2, max_cycles=5)
    await run(cluster, op, lambda: not cluster.pods(queue="q", live=True), max_cycles=20)
    cluster.apply(one_step("third"))
    await run(cluster, op, lambda: "budget" in waiting_reason(cluster, "third"), max_cycles=5)
    reason = waiting_reason(cluster, "third")
    assert "of its 0.006944 cpu core-hours left today" in reason and "estimate of 10s" in reason
    status = cluster.status("queues", "q")["budgets"][0]
    # Persisted at most every 10 s while only the use moves: at least the first step's 10 cpu-seconds.
    assert status["resource"] == "cpu" and status["usedResourceSeconds"] >= 10_000
    assert status["resetsAt"].endswith("T00:00:00Z")

    await op.crash()
    op = Operator(cluster)  # a new process: the use comes back from the Queue's status
    await run(cluster, op, lambda: op.cycles >= 3, max_cycles=5)
    assert cluster.pods(workflow="third") == []
    assert "budget" in waiting_reason(cluster, "third")


@sync
async def test_decayed_usage_is_kept_in_the_queue_status_and_taken_up_after_a_restart() -> None:
    cluster = FakeCluster()
    cluster.apply(queue("pool", cpu=8, fairSharing={"halfLifeSeconds": 3600}))
    for name in ("a", "b"):
        cluster.apply(queue(name, cpu=0, limit=8, parent="pool"))
    cluster.apply(workflow("busy", "a", [step("work", cpu="4", duration="5s")]))
    op = Operator(cluster)
    # Persisted at most every minute while it moves.
    await run(
        cluster,
        op,
        lambda: (cluster.status("queues", "a").get("decayedUsage") or {}).get("cpu", 0) > 0,
        tick=5,
    )
    saved = cluster.status("queues", "a")
    assert saved["decayedAsOf"] > 0 and cluster.status("queues", "b").get("decayedUsage") == {}

    await op.crash()
    op = Operator(cluster)
    await op.cycle()
    restored = op.loop.scheduler.decayed.usage["a"]["cpu"]
    assert 0 < restored <= saved["decayedUsage"]["cpu"]


@sync
async def test_a_preempted_pod_gets_its_termination_grace_period_and_a_young_one_is_spared() -> None:
    cluster = FakeCluster()
    cluster.add_priority_class("low", 10)
    cluster.add_priority_class("high", 1000)
    cluster.apply(queue("q", cpu=2, preemption={"withinQueue": "LowerPriority", "minRuntimeSeconds": 30}))
    cluster.apply(workflow("batch", "q", [step(f"b{i}", cpu="1", duration="3600s") for i in range(2)],
                           priorityClassName="low"))  # fmt: skip
    op = Operator(cluster)
    deletes: list[dict] = []
    core = op.session.clients.core
    plain = core.delete_namespaced_pod

    def recording(name: str, namespace: str, **kwargs: object) -> dict:
        deletes.append({"name": name, **kwargs})
        return plain(name, namespace, **kwargs)

    core.delete_namespaced_pod = recording
    await run(cluster, op, lambda: len(cluster.pods(workflow="batch", live=True)) == 2, max_cycles=5)
    cluster.apply(workflow("hot", "q", [step("now", cpu="1", duration="1s")], priorityClassName="high"))
    await run(cluster, op, lambda: op.cycles >= 10, max_cycles=20)
    assert deletes == []  # within the queue's 30 s minimum runtime: nobody is preempted
    await run(cluster, op, lambda: bool(deletes), max_cycles=40)
    assert len(deletes) == 1 and "grace_period_seconds" not in deletes[0]  # the pod's own grace period
