"""The incremental cycle: a workflow is planned again only when its inputs moved, and a reused plan is
the plan a from-scratch cycle would make (the fake operator runs with ``verify_incremental``, which
re-plans every reused plan and fails on any difference; here on random histories)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meson.controllers.scheduling import POSITIONS_REFRESH
from tests.controllers.builders import queue, step, workflow
from tests.controllers.fake_cluster import FakeCluster, Operator, run, sync


def phase(cluster: FakeCluster, name: str) -> str | None:
    return cluster.status("workflows", name).get("phase")


@sync
async def test_a_cycle_replans_only_the_workflows_whose_pods_changed() -> None:
    cluster = FakeCluster(nodes=4)
    cluster.apply(queue("q", cpu=1000))
    for i in range(60):
        cluster.apply(workflow(f"long-{i}", "q", [step("a", duration="3600s")]))
    cluster.apply(workflow("short", "q", [step("a", duration="3s"), step("b", deps=["a"], duration="3600s")]))
    op = Operator(cluster)
    await run(cluster, op, lambda: len(cluster.pods(live=True)) == 61, tick=0.5)

    for _ in range(3):  # settle: every status written and seen back
        await op.cycle()
    before = op.loop.replans
    await op.cycle()
    assert op.loop.replans == before, "nothing changed, yet workflows were planned again"

    # A pod event that changes nothing the engine sees (a condition, an annotation) replans nothing.
    pod = cluster.pods(workflow="long-0")[0]["metadata"]["name"]
    conditions = [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]
    cluster._patch(
        "pods",
        "default",
        pod,
        {"metadata": {"annotations": {"x": "y"}}, "status": {"conditions": conditions}},
    )
    await op.cycle()
    assert op.loop.replans == before, "a pod event that changes no observation replanned its workflow"

    cluster.clock.advance(5)
    cluster.run_pods()  # only "short"'s step ends
    before = op.loop.replans
    await op.cycle()
    assert op.loop.replans - before == 1, "one workflow's pod ended: one workflow is planned again"
    await run(cluster, op, lambda: len(cluster.pods(workflow="short")) == 2)
    assert phase(cluster, "short") == "Running"


# --- random histories ----------------------------------------------------------------------------------
ACTIONS = st.sampled_from(["cycle", "pods", "tick", "submit", "delete", "restart", "lag", "error"])


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[dict], list[str]]:
    flows = []
    for i in range(draw(st.integers(1, 5))):
        n = draw(st.integers(1, 4))
        steps = []
        for j in range(n):
            deps = [f"s{j - 1}"] if j and draw(st.booleans()) else None
            extra = {}
            if draw(st.booleans()):
                extra["foreach"] = {"items": list(range(draw(st.integers(2, 4))))}
            if draw(st.integers(0, 3)) == 0:
                extra["retryPolicy"] = {"limit": 1, "backoff": {"initialSeconds": 1}}
            steps.append(
                step(
                    f"s{j}",
                    deps=deps,
                    duration=f"{draw(st.integers(1, 4))}s",
                    exit_code=1 if draw(st.integers(0, 4)) == 0 else None,
                    **extra,
                )
            )
        flows.append(workflow(f"w{i}", draw(st.sampled_from(["q1", "q2"])), steps))
    return flows, draw(st.lists(ACTIONS, min_size=5, max_size=40))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_incremental_cycles_match_from_scratch_plans_on_random_histories(
    history: tuple[list[dict], list[str]],
) -> None:
    flows, actions = history
    asyncio.run(asyncio.wait_for(_replay(flows, actions), timeout=60))


async def _replay(flows: list[dict], actions: list[str]) -> None:
    cluster = FakeCluster(nodes=2, node_cpu="2")
    cluster.apply(queue("q1", cpu=1))
    cluster.apply(queue("q2", cpu=2))
    waiting = list(flows)
    submitted: list[str] = []
    cluster.apply(waiting.pop(0))
    submitted.append(flows[0]["metadata"]["name"])
    op = Operator(cluster)
    for action in actions:
        if action == "cycle":
            await op.cycle()
        elif action == "pods":
            cluster.run_pods()
        elif action == "tick":
            cluster.clock.advance(1.5)
        elif action == "submit" and waiting:
            wf = waiting.pop(0)
            cluster.apply(wf)
            submitted.append(wf["metadata"]["name"])
        elif action == "delete" and len(submitted) > 1:
            cluster.delete("workflows", "default", submitted.pop())
        elif action == "restart":
            await op.crash()
            op = Operator(cluster)
        elif action == "lag":
            cluster.watch_lag = 1 - cluster.watch_lag
        elif action == "error":
            cluster.inject("create", "pods", 500, times=1)
    cluster.watch_lag = 0
    for wf in waiting:
        cluster.apply(wf)
        submitted.append(wf["metadata"]["name"])
    await run(
        cluster,
        op,
        lambda: all(phase(cluster, n) in ("Succeeded", "Failed") for n in submitted),
        max_cycles=200,
    )
    twice = [pod for pod, n in Counter(cluster.created_pods).items() if n > 1]
    assert not twice, f"pods created twice: {twice}"


@sync
async def test_a_workflow_held_for_a_missing_priority_class_runs_once_it_is_created() -> None:
    cluster = FakeCluster()
    cluster.apply(queue("q"))
    cluster.apply(workflow("w", "q", [step("a")], priorityClassName="later"))
    op = Operator(cluster)
    for _ in range(3):
        await op.cycle()
    waiting = cluster.status("workflows", "w")["steps"][0]
    assert "later" in str(waiting), waiting
    assert cluster.pods(workflow="w") == []
    # Nothing of the workflow changes: only the world it is planned in.
    cluster.add_priority_class("later", 100)
    await run(cluster, op, lambda: phase(cluster, "w") == "Succeeded")


@sync
async def test_queue_positions_are_exact_up_front_and_stable_further_back() -> None:
    cluster = FakeCluster()
    cluster.apply(queue("q", cpu=1))
    for i in range(130):
        cluster.clock.advance(0.01)  # FIFO by creation time
        cluster.apply(workflow(f"w{i:03d}", "q", [step("a", cpu="1", duration="30s")]))
    op = Operator(cluster)
    for _ in range(4):
        await op.cycle()
        cluster.run_pods()  # w000's step starts
    first = cluster.status("workflows", "w001")["steps"][0]
    assert first.get("position") == 1, first
    back = cluster.status("workflows", "w120")["steps"][0]
    assert not back.get("position") and back["message"] == "more than 100 workloads ahead in queue q", back

    # One step ends and the next is admitted: every position moves by one, but only the workflows
    # shown with a position (and the two whose steps changed) are written, not the whole queue.
    cluster.clock.advance(31)
    cluster.run_pods()
    writes = cluster.requests[("patch_status", "workflows")]
    for _ in range(3):
        await op.cycle()
        cluster.clock.advance(POSITIONS_REFRESH)
    written = cluster.requests[("patch_status", "workflows")] - writes
    assert 99 <= written <= 105, written
    assert cluster.status("workflows", "w002")["steps"][0].get("position") == 1
    assert cluster.status("workflows", "w120")["steps"][0] == back


@sync
async def test_the_watch_event_of_our_own_status_write_replans_nothing() -> None:
    cluster = FakeCluster()
    cluster.apply(queue("q"))
    cluster.apply(workflow("w", "q", [step("a", duration="3600s")]))
    op = Operator(cluster)
    await run(cluster, op, lambda: phase(cluster, "w") == "Running")
    # A cycle before the watch brings the write back: the view already has the status as written.
    await op.loop.cycle()
    await op.settle()
    before = op.loop.replans
    await op.cycle()  # now the watch event of that write arrives: the same resourceVersion
    assert op.loop.replans == before, "our own write, seen again in its watch event, replanned the workflow"
    assert phase(cluster, "w") == "Running"


@sync
async def test_finished_workflows_rest_until_something_of_theirs_moves() -> None:
    """A cluster keeps thousands of finished workflows: once a workflow's end is written, cycles no longer
    visit it, so their cost follows the unfinished ones; an edit of its status wakes it (and it is
    restored), then it rests again."""
    cluster = FakeCluster()
    cluster.apply(queue("q", cpu=100))
    for i in range(30):
        cluster.apply(workflow(f"done-{i}", "q", [step("a", duration="1s")]))
    cluster.apply(workflow("long", "q", [step("a", duration="3600s")]))
    op = Operator(cluster)
    op.loop.verify_incremental = False  # with it, every workflow is planned (and rests are checked)
    await run(cluster, op, lambda: all(phase(cluster, f"done-{i}") == "Succeeded" for i in range(30)))
    for _ in range(3):
        result = await op.cycle()
    # (The running one is parked: see test_a_parked_running_workflow_is_preempted_and_runs_again.)
    assert result.visited == 0, "finished workflows are still visited every cycle"
    assert ("default", "long") in op.loop._parked

    cluster._patch("workflows", "default", "done-3", {"status": {"phase": "Running"}}, status_only=True)
    assert (await op.cycle()).visited == 1
    await run(cluster, op, lambda: phase(cluster, "done-3") == "Succeeded")
    assert ("done-3", "StatusCorrected") in cluster.warnings()
    for _ in range(2):
        result = await op.cycle()
    assert result.visited == 0


@sync
async def test_a_quiet_cluster_asks_for_no_cycle() -> None:
    """Workflows waiting in a queue on Hold and finished ones: once their statuses are written, nothing
    can move without an event, so the loop asks to be woken at no time (before, every waiting workflow's
    positions refresh asked for a cycle every few seconds: an idle cluster of 10,000 workflows spent about
    half a core on them)."""
    cluster = FakeCluster()
    cluster.apply(queue("held", cpu=100, stopPolicy="Hold"))
    cluster.apply(queue("q", cpu=100))
    for i in range(5):
        cluster.clock.advance(0.1)
        cluster.apply(workflow(f"wait-{i}", "held", [step("a", duration="1s")]))
        cluster.apply(workflow(f"done-{i}", "q", [step("a", duration="1s")]))
    op = Operator(cluster)
    op.loop.verify_incremental = False
    await run(cluster, op, lambda: all(phase(cluster, f"done-{i}") == "Succeeded" for i in range(5)))
    for _ in range(3):
        await op.cycle()
        cluster.clock.advance(1)
    waiting = cluster.status("workflows", "wait-4")["steps"][0]
    assert waiting.get("position") == 5 and "hold" in waiting.get("message", "").lower(), waiting
    wakes = []
    for _ in range(8):  # woken by unrelated events, a second apart
        wakes.append((await op.cycle()).wake_at)
        cluster.clock.advance(1)
    assert wakes == [None] * 8, wakes


def position(cluster: FakeCluster, name: str) -> int:
    return (cluster.status("workflows", name).get("steps") or [{}])[0].get("position") or 0


@pytest.mark.parametrize("verify", [True, False])
@sync
async def test_waiting_workflows_are_parked_until_their_turn(verify: bool) -> None:
    """Workflows waiting their turn are parked: a cycle hands their requests to the core as they are,
    without visiting them (planning, offering, writing), so its cost follows what changed, not what waits.
    A parked one admitted while its pod create hangs is not offered again; positions still move as the
    queue drains. verify_incremental visits every workflow anyway, plans and offers each parked one from
    scratch and checks that it offers what it parked, that positions it did not look up have not moved,
    and that every workflow that moved was touched (without it, cycles visit only those)."""
    cluster = FakeCluster()
    cluster.apply(queue("q", cpu=1))
    names = [f"w{i:02d}" for i in range(12)]
    for name in names:
        cluster.clock.advance(0.1)
        cluster.apply(workflow(name, "q", [step("a", cpu="1", duration="2s")]))
    op = Operator(cluster)
    op.loop.verify_incremental = verify
    await run(
        cluster,
        op,
        lambda: position(cluster, "w11") == 11,
    )
    for _ in range(2):
        result = await op.cycle()
    assert result.visited <= 1, f"{result.visited} workflows visited while 11 only wait"
    assert result.pending == 11

    op.loop.writer.bind(asyncio.get_running_loop())
    gate = cluster.slow("create", "pods")
    try:
        for _ in range(6):  # w00 ends, w01 is admitted, and its create hangs
            cluster.clock.advance(1)
            cluster.run_pods()
            cluster.deliver()
            await op.loop.cycle()
            assert not op.loop.mismatches, op.loop.mismatches
            await asyncio.sleep(0.02)
        assert cluster.status("queues", "q").get("admitted") == 1
        assert cluster.pods(workflow="w02") == []
    finally:
        gate.set()
    await op.settle()
    await run(cluster, op, lambda: phase(cluster, "w06") == "Succeeded")
    # Five ahead of it left the queue: its position follows within a refresh (5 s) while it is parked.
    await run(cluster, op, lambda: 0 < position(cluster, "w11") <= 5, max_cycles=6)
    await run(cluster, op, lambda: all(phase(cluster, n) == "Succeeded" for n in names))
    assert len(cluster.created_pods) == len(set(cluster.created_pods)) == 12


@pytest.mark.parametrize("verify", [True, False])
@sync
async def test_a_parked_running_workflow_is_preempted_and_runs_again(verify: bool) -> None:
    """A running workflow whose status is written is parked too (its admitted work handed to the core as
    it is); when the core picks its pods to make room for higher-priority work (two of them in one
    cycle), they are deleted, the workflow is planned again and runs once there is room."""
    cluster = FakeCluster()
    cluster.add_priority_class("low", 10)
    cluster.add_priority_class("high", 1000)
    cluster.apply(queue("q", cpu=2, preemption={"withinQueue": "LowerPriority"}))
    steps = [step(f"b{i}", cpu="1", duration="30s") for i in range(2)]
    cluster.apply(workflow("batch", "q", steps, priorityClassName="low"))
    op = Operator(cluster)
    op.loop.verify_incremental = verify
    await run(cluster, op, lambda: phase(cluster, "batch") == "Running")
    for _ in range(2):
        result = await op.cycle()
    assert ("default", "batch") in op.loop._parked and result.visited == 0
    cluster.apply(workflow("hot", "q", [step("now", cpu="2", duration="2s")], priorityClassName="high"))
    await run(cluster, op, lambda: phase(cluster, "hot") == "Succeeded")
    await run(cluster, op, lambda: phase(cluster, "batch") == "Succeeded", max_cycles=80)
    batch_pods = [name for _, name in cluster.created_pods if name.startswith("batch-")]
    assert len(batch_pods) == 4, batch_pods  # each step: the preempted run and the one that finished
