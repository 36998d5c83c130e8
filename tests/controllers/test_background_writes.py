"""Writes off the critical path: admission is recorded in the view first and the API calls run in the
background, so a slow or throttled API server delays only the objects whose writes are slow."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

from meson.controllers.scheduling import STATUS_STRETCH_MAX
from tests.controllers.builders import chain, queue, step, workflow
from tests.controllers.fake_cluster import FakeCluster, Operator, run, sync


def phase(cluster: FakeCluster, name: str, namespace: str = "default") -> str | None:
    return cluster.status("workflows", name, namespace).get("phase")


async def cycle_without_waiting(cluster: FakeCluster, op: Operator) -> None:
    """One cycle as the operator runs it, without waiting for its writes (some never end here)."""
    op.loop.writer.bind(asyncio.get_running_loop())
    cluster.deliver()
    await op.loop.cycle()
    await asyncio.sleep(0.02)  # the writes that can finish do
    cluster.run_pods()
    cluster.clock.advance(1)


def slow_namespace_world() -> FakeCluster:
    """A namespace "slow" with more one-step workflows (24) than the operator has write workers, in its own
    queue, and an empty queue fast-q for the other namespace."""
    cluster = FakeCluster()
    cluster.add("namespaces", None, {"metadata": {"name": "slow"}})
    cluster.apply(queue("slow-q", cpu=100))
    cluster.apply(queue("fast-q", cpu=100))
    for i in range(24):
        cluster.apply(workflow(f"s{i}", "slow-q", chain("a")), namespace="slow")
    return cluster


@sync
async def test_a_namespace_whose_pod_creates_hang_does_not_delay_admission_in_other_queues() -> None:
    cluster = slow_namespace_world()  # none of its hanging creates may starve the other namespace
    cluster.apply(workflow("fast", "fast-q", chain("a", "b", "c")))
    gate = cluster.slow("create", "pods", namespace="slow")
    op = Operator(cluster)
    try:
        for _ in range(15):
            await cycle_without_waiting(cluster, op)
            if phase(cluster, "fast") == "Succeeded":
                break
        # Three steps admitted, created and run one after another while every slow create still hangs.
        assert phase(cluster, "fast") == "Succeeded"
        assert cluster.pods(workflow="s0") == []
        # The slow queue's admissions are held in the view, not forgotten or repeated.
        assert cluster.status("queues", "slow-q").get("admitted") == 24
    finally:
        gate.set()
    await op.settle()
    names = [f"s{i}" for i in range(24)]
    await run(cluster, op, lambda: all(phase(cluster, n, "slow") == "Succeeded" for n in names))
    assert not [pod for pod, n in Counter(cluster.created_pods).items() if n > 1]


@sync
async def test_our_own_status_seen_in_a_watch_event_before_the_write_returns_is_not_someone_elses() -> None:
    cluster = FakeCluster()
    cluster.apply(queue("q"))
    cluster.apply(workflow("w", "q", chain("a", "b", "c", "d")))
    op = Operator(cluster)
    await op.cycle()
    # Status patches land (and are watched) at once, but the operator hears back only later.
    gate = cluster.slow("patch_status", "workflows", response_only=True)
    try:
        for _ in range(6):
            await cycle_without_waiting(cluster, op)
    finally:
        gate.set()
    await op.settle()
    await run(cluster, op, lambda: phase(cluster, "w") == "Succeeded")
    assert ("w", "StatusCorrected") not in cluster.warnings()


@sync
async def test_a_pod_whose_deletion_the_watch_missed_is_forgotten_when_deleting_it_finds_it_gone() -> None:
    # A pod deleted while the operator was listing the world (before its watch started) is never
    # reported deleted: the operator's own deletion then finds it gone, and that must count as deleted.
    cluster = FakeCluster()
    cluster.apply(queue("q"))
    cluster.apply(workflow("w", "q", [step("forever", duration="3600s")]))
    op = Operator(cluster)
    await run(cluster, op, lambda: any(p["status"]["phase"] == "Running" for p in cluster.pods(workflow="w")))
    pod = cluster.pods(workflow="w")[0]["metadata"]["name"]
    cluster.delete_unseen("pods", pod, "default")
    cluster._patch(
        "workflows", "default", "w", {"spec": {"shutdown": "Terminate"}, "metadata": {"generation": 2}}
    )
    await run(cluster, op, lambda: phase(cluster, "w") == "Failed", max_cycles=10)


@sync
async def test_a_namespace_whose_status_writes_hang_does_not_delay_admission_elsewhere() -> None:
    cluster = slow_namespace_world()
    gate = cluster.slow("patch_status", "workflows", namespace="slow")
    op = Operator(cluster)
    try:
        for _ in range(3):
            await cycle_without_waiting(cluster, op)
        # A new workflow elsewhere: its pod-template check and its own status writes queue behind nothing
        # of the slow namespace, so it is admitted, runs and is recorded while those writes still hang.
        cluster.apply(workflow("fast", "fast-q", chain("a", "b")))
        for _ in range(15):
            await cycle_without_waiting(cluster, op)
            if phase(cluster, "fast") == "Succeeded":
                break
        assert phase(cluster, "fast") == "Succeeded"
        assert phase(cluster, "s0", "slow") is None  # never written while the gate is closed
    finally:
        gate.set()
    await op.settle()
    names = [f"s{i}" for i in range(24)]
    await run(cluster, op, lambda: all(phase(cluster, n, "slow") == "Succeeded" for n in names))
    assert not [pod for pod, n in Counter(cluster.created_pods).items() if n > 1]


@sync
async def test_a_status_write_that_waited_for_a_worker_sends_the_newest_status() -> None:
    # 24 workflows in one namespace, whose status writes hang: 8 (the namespace's share of the write
    # workers) are on the wire, 16 wait for a worker while their pods are admitted, run and end.
    cluster = slow_namespace_world()
    names = [f"s{i}" for i in range(24)]
    gate = cluster.slow("patch_status", "workflows", namespace="slow")
    op = Operator(cluster)
    try:
        for _ in range(8):
            await cycle_without_waiting(cluster, op)
        assert all(p["status"]["phase"] == "Succeeded" for p in cluster.pods()), "the pods ran meanwhile"
        assert len(cluster.pods()) == 24
    finally:
        gate.set()
    await op.settle()
    await run(cluster, op, lambda: all(phase(cluster, n, "slow") == "Succeeded" for n in names))
    # The 8 on the wire sent their first status and then the final one; each of the 16 that waited sent
    # only the newest (one write instead of two), and no transition's Event was lost with the write skipped.
    assert cluster.requests[("patch_status", "workflows")] == 8 * 2 + 16
    reasons = Counter(
        (e["involvedObject"]["name"], e["reason"])
        for e in cluster.events
        if e["involvedObject"]["kind"] == "Workflow"
    )
    for n in names:
        assert reasons[(n, "StepSucceeded")] == 1 and reasons[(n, "WorkflowSucceeded")] == 1, n


@sync
async def test_a_pod_deleted_right_after_it_succeeded_still_counts_as_succeeded() -> None:
    # The operator had recorded the step as Running; before it records the success, the pod is deleted
    # (a preemption that crossed the pod's end, the pod garbage collector): its outcome must not be lost.
    cluster = FakeCluster()
    cluster.apply(queue("q"))
    cluster.apply(workflow("w", "q", [step("a", duration="2s")]))
    op = Operator(cluster)
    await run(cluster, op, lambda: phase(cluster, "w") == "Running")
    cluster.clock.advance(5)
    cluster.run_pods()  # the pod succeeds...
    pod = cluster.pods(workflow="w")[0]["metadata"]["name"]
    assert cluster.pods(workflow="w")[0]["status"]["phase"] == "Succeeded"
    cluster.delete("pods", "default", pod)  # ...and is deleted before the operator's next cycle
    await run(cluster, op, lambda: phase(cluster, "w") in ("Succeeded", "Failed"))
    assert phase(cluster, "w") == "Succeeded", cluster.status("workflows", "w")


@sync
async def test_a_workflow_admitted_at_once_is_first_written_running_one_that_waits_still_shown() -> None:
    """Status writes of a workflow that is not finishing are at least status_interval apart (and the first
    one that long after it was seen): 'fast' is admitted in its first cycle, so 'Pending' is never written
    for it; 'blocked' cannot be admitted and says so within the interval; every end is written at once."""
    cluster = FakeCluster()
    cluster.apply(queue("q", cpu="1"))
    cluster.apply(workflow("fast", "q", [step("a", cpu="1", duration="3s")]))
    cluster.clock.advance(1)  # the older one is admitted first
    cluster.apply(workflow("blocked", "q", [step("a", cpu="1", duration="3s")]))
    op = Operator(cluster, status_interval=1.0)
    written: dict[str, list[str]] = {"fast": [], "blocked": []}

    def sample() -> None:
        for name, phases in written.items():
            now = phase(cluster, name)
            if now and (not phases or phases[-1] != now):
                phases.append(now)

    await run(cluster, op, lambda: phase(cluster, "blocked") == "Succeeded", tick=0.25, each=sample)
    assert written["fast"] == ["Running", "Succeeded"]
    assert written["blocked"] == ["Pending", "Running", "Succeeded"]
    # 2 for fast, 3 for blocked (with no interval, fast's Pending and blocked's Pending without its position
    # are written too).
    assert cluster.requests[("patch_status", "workflows")] == 5


@sync
async def test_a_step_shorter_than_the_interval_goes_from_pending_to_succeeded_in_one_write() -> None:
    """A waiting workflow was written Pending long ago; once admitted, its status is not written for
    status_interval, so a step that ends by then is never written Running (one write fewer per workload
    of Kueue's trace, whose pods run 0.2-1 s); a longer one is shown Running an interval after admission."""
    cluster = FakeCluster()
    cluster.apply(queue("q", cpu="1"))
    cluster.apply(workflow("first", "q", [step("a", cpu="1", duration="4s")]))
    cluster.clock.advance(1)
    cluster.apply(workflow("short", "q", [step("a", cpu="1", duration="500ms")]))
    cluster.clock.advance(1)
    cluster.apply(workflow("long", "q", [step("a", cpu="1", duration="3s")]))
    op = Operator(cluster, status_interval=1.0)
    written: dict[str, list[str]] = {"short": [], "long": []}
    running_at: dict[str, float] = {}
    started: dict[str, float] = {}

    def sample() -> None:
        for name, phases in written.items():
            now = phase(cluster, name)
            if now and (not phases or phases[-1] != now):
                phases.append(now)
                if now == "Running":
                    running_at[name] = cluster.clock()
            if cluster.pods(workflow=name) and name not in started:
                started[name] = cluster.clock()

    await run(cluster, op, lambda: phase(cluster, "long") == "Succeeded", tick=0.25, each=sample)
    assert written["short"] == ["Pending", "Succeeded"]
    assert written["long"] == ["Pending", "Running", "Succeeded"]
    assert 0.75 <= running_at["long"] - started["long"] <= 1.5, (running_at, started)


@sync
async def test_a_fan_out_admitting_all_the_time_still_has_its_progress_written() -> None:
    """A step admitted a moment ago defers the status write until its pod shows, but a fan-out that admits
    a new instance every cycle is still written at least every two intervals."""
    cluster = FakeCluster()
    # Two admissions a second, one in every 0.5 s cycle, each pod 1 s.
    cluster.apply(queue("q", cpu="100", admissionRate={"podsPerSecond": 2, "burst": 1}))
    cluster.apply(
        workflow("many", "q", [step("s", cpu="1", duration="1s", foreach={"items": list(range(80))})])
    )
    op = Operator(cluster, status_interval=1.0)
    progress: list[int] = []

    def sample() -> None:
        progress.append(((cluster.status("workflows", "many").get("counts") or {}).get("succeeded")) or 0)

    with contextlib.suppress(AssertionError):  # not meant to finish: 40 s of work, sampled for 10 s
        await run(cluster, op, lambda: False, max_cycles=20, tick=0.5, each=sample)
    assert len(progress) == 20 and progress[-1] >= 5, progress


def test_only_progress_waits_for_the_status_interval() -> None:
    """Progress (phase, steps, counts) may wait; an end, or a record later plans start from (a step's
    result, a restart), is written at once."""
    cluster = FakeCluster()
    op = Operator(cluster, status_interval=1.0)
    key, now = ("default", "w"), cluster.clock()
    written = {"phase": "Running", "steps": [{"name": "a", "phase": "Running"}]}
    op.loop._written_at[key] = now
    progress = {**written, "steps": [{"name": "a", "phase": "Succeeded"}], "progress": "1/2"}
    assert op.loop._write_due(key, progress, written, now) == now + 1.0
    assert op.loop._write_due(key, {**progress, "outputs": {"a": "42"}}, written, now) == now
    assert op.loop._write_due(key, {**written, "restarts": 1}, written, now) == now
    assert op.loop._write_due(key, {**progress, "phase": "Succeeded"}, written, now) == now


def test_progress_is_written_less_often_while_status_writes_queue_up() -> None:
    """While more status writes wait for a worker than there are workers, the API server is the slow part:
    progress waits longer (the interval times the backlog per worker, at most STATUS_STRETCH_MAX times);
    an end is still written at once."""
    cluster = FakeCluster()
    op = Operator(cluster, status_interval=1.0)
    loop, now = op.loop, cluster.clock()
    written = {"phase": "Pending", "steps": [{"name": "a", "phase": "Pending"}]}
    running = {"phase": "Running", "steps": [{"name": "a", "phase": "Running"}]}
    loop._written_at[("default", "w")] = now
    assert loop._write_due(("default", "w"), running, written, now) == now + 1.0
    loop._queued.update({("default", f"q{i}"): None for i in range(3 * loop.workers)})
    assert loop._write_due(("default", "w"), running, written, now) == now + 3.0
    loop._queued.update({("default", f"r{i}"): None for i in range(10 * loop.workers)})
    assert loop._write_due(("default", "w"), running, written, now) == now + STATUS_STRETCH_MAX
    ended = {**running, "phase": "Succeeded"}
    assert loop._write_due(("default", "w"), ended, written, now) == now
