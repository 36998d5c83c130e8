"""The real scheduling loop, end to end against an in-memory API server (no cluster; see fake_cluster.py).

Each test states what a user of the cluster sees: pods, workflow and queue status, Events.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass

import pytest

from meson.api.quantity import canonical
from meson.workflow import LABEL_CRONWORKFLOW, LABEL_INSTANCE, LABEL_STEP, SCHEDULED_TIME_ANNOTATION
from tests.controllers.builders import chain, cron, queue, step, steps_by_instance, workflow
from tests.controllers.fake_cluster import T0, FakeCluster, Fault, Operator, OperatorKilled, run, sync


def phase(cluster: FakeCluster, name: str) -> str | None:
    return cluster.status("workflows", name).get("phase")


def finished(cluster: FakeCluster, *names: str) -> bool:
    return all(phase(cluster, n) in ("Succeeded", "Failed") for n in names)


def cpu(pods: list[dict]) -> int:
    return sum(canonical("cpu", p["spec"]["containers"][0]["resources"]["requests"]["cpu"]) for p in pods)


def pods_per_instance(cluster: FakeCluster, name: str) -> Counter[str]:
    return Counter(p["metadata"]["labels"][LABEL_INSTANCE] for p in cluster.pods(workflow=name))


def assert_no_pod_created_twice(cluster: FakeCluster) -> None:
    twice = [name for name, n in Counter(cluster.created_pods).items() if n > 1]
    assert not twice, f"pods created twice: {twice}"


# --- 1. admission ---------------------------------------------------------------------------------
@dataclass
class Sample:
    """After one cycle: the queue's live pods and the status the operator has written for the queue."""

    live: int
    cpu: int
    status: dict


async def four_chains_in_a_small_queue() -> tuple[FakeCluster, list[Sample]]:
    cluster = FakeCluster()
    cluster.apply(queue("q", cpu="1"))  # room for two 400m steps at a time
    names = [f"wf-{i}" for i in range(4)]
    for name in names:
        cluster.apply(workflow(name, "q", chain("a", "b", "c", cpu="400m")))
    samples: list[Sample] = []

    def sample() -> None:
        live = cluster.pods(queue="q", live=True)
        samples.append(Sample(len(live), cpu(live), cluster.status("queues", "q")))

    await run(cluster, Operator(cluster), lambda: finished(cluster, *names), each=sample)
    for name in names:
        assert phase(cluster, name) == "Succeeded"
    return cluster, samples


@sync
async def test_chains_run_in_order_within_the_queue_quota_and_the_queue_status_says_so() -> None:
    cluster, samples = await four_chains_in_a_small_queue()

    assert max(s.cpu for s in samples) == 800, "the quota is never exceeded, and it is used"
    for name in [f"wf-{i}" for i in range(4)]:
        assert pods_per_instance(cluster, name) == {"a": 1, "b": 1, "c": 1}
        pods = {p["metadata"]["labels"][LABEL_STEP]: p for p in cluster.pods(workflow=name)}
        for before, after in (("a", "b"), ("b", "c")):
            ended = pods[before]["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]
            assert pods[after]["status"]["startTime"] >= ended, (
                f"{name}: {after} started before {before} ended"
            )
    # While work waits, the queue's status says how much waits and how much runs, and what it uses.
    busy = [s for s in samples if s.status.get("pending")]
    assert busy, samples
    for s in busy:
        assert s.status["admitted"] == s.live, s
    assert any((s.status.get("usage") or {}).get("cpu") == "800m" for s in samples), samples
    final = cluster.status("queues", "q")
    assert final["pending"] == 0 and final["admitted"] == 0, final


@sync
async def test_each_queue_status_write_is_consistent() -> None:
    _, samples = await four_chains_in_a_small_queue()
    for s in samples:
        usage = canonical("cpu", (s.status.get("usage") or {}).get("cpu", 0))
        assert (s.status["admitted"], usage) == (s.live, s.cpu), f"admitted and usage disagree: {s}"


@sync
async def test_an_idle_queue_reports_no_usage() -> None:
    cluster, _ = await four_chains_in_a_small_queue()
    final = cluster.status("queues", "q")
    assert not (final.get("usage") or {}).get("cpu"), f"an idle queue reports usage: {final}"


@pytest.mark.parametrize("lag", [1, 3])
def test_a_lagging_watch_neither_overshoots_the_quota_nor_duplicates_pods(lag: int) -> None:
    async def scenario() -> None:
        cluster = FakeCluster()
        cluster.watch_lag = lag  # every event reaches the operator `lag` cycles late
        cluster.apply(queue("q", cpu="2"))
        names = [f"wf-{i}" for i in range(3)]
        fan = {"items": list(range(8))}
        for name in names:
            cluster.apply(workflow(name, "q", [step("a"), step("fan", deps=["a"], cpu="300m", foreach=fan)]))
        used: list[int] = []
        await run(
            cluster,
            Operator(cluster),
            lambda: finished(cluster, *names),
            each=lambda: used.append(cpu(cluster.pods(queue="q", live=True))),
            max_cycles=100,
        )
        assert max(used) <= 2000, "the quota was exceeded"
        for name in names:
            assert phase(cluster, name) == "Succeeded"
            assert pods_per_instance(cluster, name) == {"a": 1, **{f"fan-{i}": 1 for i in range(8)}}
        assert_no_pod_created_twice(cluster)

    asyncio.run(asyncio.wait_for(scenario(), timeout=60))


@sync
async def test_deleting_a_running_workflow_frees_its_quota() -> None:
    cluster = FakeCluster()
    cluster.apply(queue("q", cpu="1"))
    cluster.apply(workflow("doomed", "q", [step("a", cpu="1", duration="3600s"), step("b", deps=["a"])]))
    cluster.apply(workflow("next", "q", [step("a", cpu="1")]))
    op = Operator(cluster)
    await run(cluster, op, lambda: bool(cluster.pods(workflow="doomed", live=True)))
    assert steps_by_instance(cluster.status("workflows", "next"))["a"]["phase"] == "Pending"

    cluster.delete("workflows", "default", "doomed")  # kubectl delete: the garbage collector takes its pod
    await run(cluster, op, lambda: finished(cluster, "next"), max_cycles=10)
    assert phase(cluster, "next") == "Succeeded"
    assert cluster.pods(workflow="doomed") == []


# --- 3. status is a record ------------------------------------------------------------------------
def forged_status() -> dict:
    steps = [{"name": n, "phase": "Succeeded", "run": 1, "attempts": 1} for n in ("a", "b", "c")]
    return {"phase": "Succeeded", "steps": steps}


@sync
async def test_a_forged_status_is_restored_and_no_step_is_skipped() -> None:
    cluster = FakeCluster()
    cluster.apply(queue("q", cpu=8))
    cluster.apply(
        workflow("forged", "q", [step("a", duration="3s"), step("b", deps=["a"]), step("c", deps=["b"])])
    )
    op = Operator(cluster)
    await run(cluster, op, lambda: bool(cluster.pods(workflow="forged", live=True)))

    cluster.user_patch_status("workflows", "forged", forged_status())
    await op.cycle()

    status = cluster.status("workflows", "forged")
    assert status["phase"] == "Running", status
    assert steps_by_instance(status)["a"]["phase"] == "Running"
    assert steps_by_instance(status)["b"]["phase"] != "Succeeded"
    await run(cluster, op, lambda: finished(cluster, "forged"))
    assert phase(cluster, "forged") == "Succeeded"
    assert pods_per_instance(cluster, "forged") == {"a": 1, "b": 1, "c": 1}


@sync
async def test_a_status_forged_while_the_operator_was_down_skips_no_step() -> None:
    cluster = FakeCluster()
    cluster.apply(queue("q", cpu=8))
    cluster.apply(
        workflow("forged", "q", [step("a", duration="3s"), step("b", deps=["a"]), step("c", deps=["b"])])
    )
    op = Operator(cluster)
    await run(cluster, op, lambda: bool(cluster.pods(workflow="forged", live=True)))
    await op.crash()

    cluster.user_patch_status("workflows", "forged", forged_status())
    op = Operator(cluster)  # a restart: no memory of its own writes, only the world
    await run(cluster, op, lambda: len(cluster.pods(workflow="forged")) == 3, max_cycles=30)
    await run(cluster, op, lambda: finished(cluster, "forged") and not cluster.pods(live=True))

    assert pods_per_instance(cluster, "forged") == {"a": 1, "b": 1, "c": 1}
    assert phase(cluster, "forged") == "Succeeded"


# --- 4. restart safety ----------------------------------------------------------------------------
@sync
async def test_a_restart_mid_fan_out_creates_each_pod_exactly_once() -> None:
    cluster = FakeCluster()
    cluster.apply(queue("q", cpu=100))
    items = list(range(30))
    steps = [step("prep"), step("fan", deps=["prep"], foreach={"items": items}), step("join", deps=["fan"])]
    cluster.apply(workflow("wide", "q", steps))
    op = Operator(cluster)
    op.session.kill_after_pod_creates = 1 + 10  # prep, then a third of the fan-out: the process dies
    try:
        await run(cluster, op, lambda: False, max_cycles=20)
    except OperatorKilled:
        pass
    else:
        raise AssertionError("the operator was never killed")
    await op.crash()
    made = len(cluster.pods(workflow="wide"))
    assert 1 + 10 <= made < 1 + 30, f"not mid fan-out: {made} pods"

    op = Operator(cluster)
    await run(cluster, op, lambda: finished(cluster, "wide"))

    assert phase(cluster, "wide") == "Succeeded"
    expected = {"prep": 1, "join": 1, **{f"fan-{i}": 1 for i in items}}
    assert pods_per_instance(cluster, "wide") == expected
    assert_no_pod_created_twice(cluster)


@sync
async def test_a_restart_with_a_lagging_watch_duplicates_nothing() -> None:
    cluster = FakeCluster()
    cluster.watch_lag = 2  # the new process's watch delivers everything two cycles late
    cluster.apply(queue("q", cpu=100))
    cluster.apply(
        workflow("wide", "q", [step("fan", foreach={"items": list(range(12))}), step("end", deps=["fan"])])
    )
    op = Operator(cluster)
    op.session.kill_after_pod_creates = 5
    with contextlib.suppress(OperatorKilled):
        await run(cluster, op, lambda: False, max_cycles=20)
    await op.crash()

    op = Operator(cluster)
    await run(cluster, op, lambda: finished(cluster, "wide"))

    assert pods_per_instance(cluster, "wide") == {"end": 1, **{f"fan-{i}": 1 for i in range(12)}}
    assert_no_pod_created_twice(cluster)


# --- 5. API errors --------------------------------------------------------------------------------
@sync
async def test_transient_api_errors_lose_and_duplicate_nothing() -> None:
    cluster = FakeCluster()
    cluster.apply(queue("q", cpu=8))
    cluster.apply(
        workflow("flaky", "q", [step("fan", foreach={"items": list(range(6))}), step("end", deps=["fan"])])
    )
    faults = [
        cluster.inject("create", "pods", 429, "Too many requests, please try again later.", times=2),
        cluster.inject("create", "pods", 500, "etcdserver: leader changed", times=2),
        # The pod was made, but the answer was lost: the retry finds it (409) and must not make another.
        cluster.inject(
            "create", "pods", 504, "the server was unable to return a response", times=2, lost_response=True
        ),
        cluster.inject("patch_status", "workflows", 500, "etcdserver: request timed out", times=3),
        cluster.inject("patch_status", "queues", 429, "Too many requests, please try again later.", times=2),
    ]
    op = Operator(cluster)
    await run(cluster, op, lambda: finished(cluster, "flaky"))

    assert all(f.times == 0 for f in faults), "every injected error happened"
    assert phase(cluster, "flaky") == "Succeeded"
    assert pods_per_instance(cluster, "flaky") == {"end": 1, **{f"fan-{i}": 1 for i in range(6)}}
    assert_no_pod_created_twice(cluster)
    assert "conditions" not in cluster.status("workflows", "flaky") or all(
        c["type"] != "Reconciled" for c in cluster.status("workflows", "flaky")["conditions"]
    )


QUOTA_REFUSAL = (
    'pods "capped-a-r1-0" is forbidden: exceeded quota: compute, '
    "requested: cpu=400m, used: cpu=0, limited: cpu=0"
)


def capped_world() -> tuple[FakeCluster, Fault]:
    cluster = FakeCluster()
    cluster.apply(queue("q", cpu=1))
    cluster.apply(workflow("capped", "q", [step("a", cpu="400m"), step("b", deps=["a"])]))
    return cluster, cluster.inject("create", "pods", 403, QUOTA_REFUSAL, namespace="default")


@sync
async def test_a_refused_pod_create_rolls_the_admission_back_until_the_cause_is_fixed() -> None:
    cluster, refusal = capped_world()
    op = Operator(cluster)
    await run(cluster, op, lambda: refusal.hits == 1)
    await op.cycle()  # the step is held back (with backoff) and says why

    assert cluster.pods(workflow="capped") == []
    a = steps_by_instance(cluster.status("workflows", "capped"))["a"]
    assert a["phase"] == "Pending" and "refused" in a.get("message", ""), a
    assert "exceeded quota" in a["message"]
    q = cluster.status("queues", "q")
    assert q["admitted"] == 0 and not (q.get("usage") or {}).get("cpu"), q
    assert cluster.warnings().count(("capped", "PodCreateRefused")) == 1

    cluster.remove(refusal)
    await run(cluster, op, lambda: finished(cluster, "capped"), max_cycles=120)
    assert phase(cluster, "capped") == "Succeeded"
    assert pods_per_instance(cluster, "capped") == {"a": 1, "b": 1}
    assert cluster.warnings().count(("capped", "PodCreateRefused")) == 1, "reported once, not per retry"


@sync
async def test_a_refused_step_says_so_in_every_status_until_it_runs() -> None:
    cluster, refusal = capped_world()
    op = Operator(cluster)
    await run(cluster, op, lambda: refusal.hits == 1)
    shown = []
    for _ in range(12):  # several retries with backoff
        await op.cycle()
        cluster.clock.advance(1)
        a = steps_by_instance(cluster.status("workflows", "capped"))["a"]
        shown.append(
            (refusal.hits, "refused" in a.get("message", ""), cluster.status("queues", "q")["admitted"])
        )
    assert refusal.hits > 2, shown
    assert all(said and admitted == 0 for _, said, admitted in shown), (
        f"(refusals, says refused, admitted): {shown}"
    )


# --- 6. cron --------------------------------------------------------------------------------------
@sync
async def test_a_cron_workflow_starts_a_run_when_the_minute_passes() -> None:
    cluster = FakeCluster()  # T0 is 22:13:20: the first run of '* * * * *' is due at 22:14:00
    cluster.apply(queue("default", cpu=8))
    made = cluster.apply(cron("minutely", "* * * * *"))
    op = Operator(cluster)

    def children() -> list[dict]:
        return [
            wf
            for (_, _), wf in cluster.objects["workflows"].items()
            if (wf["metadata"].get("labels") or {}).get(LABEL_CRONWORKFLOW) == "minutely"
        ]

    await run(cluster, op, lambda: bool(children()), tick=5, max_cycles=20)
    assert cluster.clock() >= T0 + 40, "a run before its time"
    (child,) = children()
    assert child["metadata"]["annotations"][SCHEDULED_TIME_ANNOTATION] == "2023-11-14T22:14:00Z"
    assert child["metadata"]["ownerReferences"][0]["uid"] == made["metadata"]["uid"]
    await run(cluster, op, lambda: finished(cluster, child["metadata"]["name"]), tick=5, max_cycles=10)
    assert phase(cluster, child["metadata"]["name"]) == "Succeeded"
    assert len(children()) == 1, "one run per minute"
    assert cluster.status("cronworkflows", "minutely")["lastScheduleTime"] == "2023-11-14T22:14:00Z"


@sync
async def test_a_cron_run_whose_workflow_create_is_refused_once_is_retried_not_lost() -> None:
    cluster = FakeCluster()
    cluster.apply(queue("default", cpu=8))
    cluster.apply(cron("minutely", "* * * * *"))
    message = (
        'workflows.meson.dev "x" is forbidden: exceeded quota: objects, limited: count/workflows.meson.dev=9'
    )
    refusal = cluster.inject("create", "workflows", 403, message, times=1)
    op = Operator(cluster)
    await run(cluster, op, lambda: refusal.hits == 1, tick=5, max_cycles=20)
    for _ in range(6):  # 30 s: still before the next run is due at 22:15:00
        await op.cycle()
        cluster.run_pods()
        cluster.clock.advance(5)
    scheduled = [
        wf["metadata"]["annotations"][SCHEDULED_TIME_ANNOTATION]
        for wf in cluster.objects["workflows"].values()
    ]
    assert scheduled == ["2023-11-14T22:14:00Z"], f"the 22:14 run was lost: {scheduled}"


# --- quota edge cases -----------------------------------------------------------------------------
@sync
async def test_a_queue_with_zero_cpu_quota_admits_no_cpu() -> None:
    cluster = FakeCluster()
    cluster.apply(queue("closed", cpu=0))  # guaranteed 0, limit 0: nothing may run
    cluster.apply(workflow("blocked", "closed", [step("x", cpu="100m")]))
    op = Operator(cluster)
    for _ in range(5):
        await op.cycle()
        cluster.run_pods()
        cluster.clock.advance(1)
    assert cluster.pods(workflow="blocked") == [], "a queue with a zero cpu quota ran a pod"


@sync
async def test_queue_status_of_a_hierarchy_is_the_cores_accounting() -> None:
    """The operator writes the core's numbers, for a parent as for its children (the parent counts its
    subtree; borrowed is usage above entitlement), and computes none itself."""
    cluster = FakeCluster()
    cluster.apply(queue("org", cpu="1", limit="4"))
    cluster.apply(queue("team-a", cpu="1", limit="3", parent="org"))
    cluster.apply(queue("team-b", cpu="0", limit="3", parent="org"))
    cluster.apply(workflow("fan-a", "team-a", [step("x", cpu="1", foreach={"items": list(range(3))})]))
    cluster.apply(workflow("fan-b", "team-b", [step("y", cpu="1", foreach={"items": list(range(2))})]))
    op = Operator(cluster)
    decided = []
    cycle = op.loop.scheduler.cycle

    def recording(snapshot):
        decisions = cycle(snapshot)
        decided.append(decisions)
        return decisions

    op.loop.scheduler.cycle = recording  # type: ignore[method-assign]
    for _ in range(3):
        await op.cycle()
        cluster.run_pods()
    accounts = decided[-1].queues
    assert set(accounts) == {"org", "team-a", "team-b"}
    assert accounts["org"].usage.get("cpu", 0) == sum(
        accounts[t].usage.get("cpu", 0) for t in ("team-a", "team-b")
    )
    assert accounts["org"].usage.get("cpu", 0) > 0
    for name, acct in accounts.items():
        written = cluster.status("queues", name)
        assert (written["pending"], written["admitted"]) == (acct.pending, acct.admitted), name
        assert canonical("cpu", (written.get("usage") or {}).get("cpu", 0)) == acct.usage.get("cpu", 0), name
        assert canonical("cpu", (written.get("borrowed") or {}).get("cpu", 0)) == acct.borrowed.get(
            "cpu", 0
        ), name
    # team-a is guaranteed 1 CPU: what it runs above that is borrowed.
    a = accounts["team-a"]
    assert a.borrowed.get("cpu", 0) == max(0, a.usage.get("cpu", 0) - 1000)
