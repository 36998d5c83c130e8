"""Scheduling policy over time (issue 13) on the real control plane: a used-up GPU budget holds the next
workflow with a reason naming it and its reset; a gang is admitted at its reservation while short steps
backfill around it; minimum runtime decides which step is preempted."""

from __future__ import annotations

import re
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from kubernetes import client

from e2e.conftest import Cluster
from e2e.helpers import (
    apply,
    get_workflow,
    queue,
    step,
    steps_by_instance,
    uid,
    wait_for,
    wait_workflow,
    workflow,
    workflow_pods,
)
from e2e.operator import OperatorProcess
from meson.core.budget import Budget

GPU = "nvidia.com/gpu"


def gpu_step(name: str, gpus: int, duration: str, expected: int) -> dict:
    s = step(name, duration=duration, expectedDurationSeconds=expected)
    s["template"]["spec"]["containers"][0]["resources"]["limits"] = {GPU: str(gpus)}
    return s


def message(custom: client.CustomObjectsApi, namespace: str, name: str, instance: str) -> str:
    return (steps_by_instance(get_workflow(custom, namespace, name)).get(instance) or {}).get("message", "")


def created(pods: list[client.V1Pod]) -> list[float]:
    return sorted(p.metadata.creation_timestamp.timestamp() for p in pods)


def test_a_used_up_weekly_gpu_budget_holds_the_next_workflow_until_its_reset(
    cluster: Cluster, operator: OperatorProcess, custom, namespace: str, queues
) -> None:
    q = f"research-{uid()}"
    queues.append(q)
    # 30 GPU-seconds a week: a 4-GPU step estimated at 5 s costs 20, so only one fits.
    budget = {"resource": GPU, "resourceHours": 30 / 3600, "window": "Week", "timeZone": "Europe/Paris"}
    research = queue(q, cpu=8, budgets=[budget])
    research["spec"]["quota"][GPU] = {"guaranteed": 8}
    apply(cluster, research)
    apply(cluster, workflow("first", q, [gpu_step("train", 4, "3s", 5)]), namespace=namespace)
    wait_workflow(custom, namespace, "first", ("Succeeded",), timeout=90)
    apply(cluster, workflow("second", q, [gpu_step("train", 4, "3s", 5)]), namespace=namespace)

    reason = wait_for(
        lambda: (m := message(custom, namespace, "second", "train")) and "budget" in m and m,
        60,
        "a budget reason",
    )
    reset = Budget(GPU, 1, "Week", "Europe/Paris").resets_at(time.time())
    assert f"budget: queue {q} has" in reason and f"of its 0.008333 {GPU}-hours left this week" in reason
    paris = datetime.fromtimestamp(reset, ZoneInfo("Europe/Paris"))
    assert paris.strftime("resets %Y-%m-%d 00:00 %Z") in reason and paris.weekday() == 0  # Monday

    def persisted() -> dict | None:  # the use is written at most every 10 s while it moves
        status = custom.get_cluster_custom_object("meson.dev", "v1alpha1", "queues", q)["status"]["budgets"][
            0
        ]
        return status if status["usedResourceSeconds"] >= 12 else None  # 4 GPUs for 3 s at least

    status = wait_for(persisted, 30, "the budget's use in the queue status")
    assert status["resource"] == GPU
    assert status["resetsAt"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(reset))
    metric = rf'meson_queue_budget_used_resource_hours{{queue="{q}",resource="{GPU}"}} ([0-9.e-]+)'
    assert float(re.search(metric, operator.metrics()).group(1)) > 0
    assert get_workflow(custom, namespace, "second")["status"].get("phase") == "Pending"


def test_a_gang_is_admitted_at_its_reservation_while_short_steps_backfill_around_it(
    cluster: Cluster, operator: OperatorProcess, core: client.CoreV1Api, custom, namespace: str, queues
) -> None:
    q = f"backfill-{uid()}"
    queues.append(q)
    apply(cluster, queue(q, cpu=8, queueingStrategy="Backfill"))
    apply(cluster, workflow("warm", q, [step("run", cpu="6", duration="15s", expectedDurationSeconds=15)]),
          namespace=namespace)  # fmt: skip
    wait_for(lambda: workflow_pods(core, namespace, "warm"), 60, "the warm-up step to start")
    gang = step("allreduce", cpu="1", duration="2s", parallelism=8, expectedDurationSeconds=5)
    apply(cluster, workflow("gang", q, [gang]), namespace=namespace)
    wait_for(lambda: "capacity reserved for it from" in message(custom, namespace, "gang", "allreduce"),
             30, "the gang's reservation")  # fmt: skip
    short = step("shard", cpu="1", duration="1s", expectedDurationSeconds=3, foreach={"items": [1, 2]})
    apply(cluster, workflow("short", q, [short]), namespace=namespace)
    apply(cluster, workflow("long", q, [step("scan", cpu="1", duration="1s", expectedDurationSeconds=600)]),
          namespace=namespace)  # fmt: skip

    # The short steps end before the reservation: they run while the gang waits; the long one may not.
    wait_workflow(custom, namespace, "short", ("Succeeded",), timeout=60)
    assert workflow_pods(core, namespace, "gang") == []
    # A waiting workflow's status is written up to the status interval (1 s) after it is first seen,
    # and "short" may end before that: wait for the reason rather than read it once.
    wait_for(lambda: "capacity is reserved for" in message(custom, namespace, "long", "scan"),
             10, "the long step's reason to name the reservation")  # fmt: skip
    assert workflow_pods(core, namespace, "gang") == [] and workflow_pods(core, namespace, "long") == []
    wait_workflow(custom, namespace, "gang", ("Succeeded",), timeout=90)
    wait_workflow(custom, namespace, "long", ("Succeeded",), timeout=60)

    warm_end = get_workflow(custom, namespace, "warm")["status"]["steps"][0]
    gang_pods = created(workflow_pods(core, namespace, "gang"))
    assert len(gang_pods) == 8
    assert max(created(workflow_pods(core, namespace, "short"))) < gang_pods[0]  # backfilled before it
    assert gang_pods[-1] <= created(workflow_pods(core, namespace, "long"))[0]  # nobody jumped the gang
    assert warm_end.get("phase") == "Succeeded"


def test_a_step_within_its_minimum_runtime_is_not_preempted_and_one_past_it_is(
    cluster: Cluster, operator: OperatorProcess, core: client.CoreV1Api, custom, namespace: str, queues,
    priority_classes,
) -> None:  # fmt: skip
    low, high = priority_classes
    q = f"minrun-{uid()}"
    queues.append(q)
    preemption = {"withinQueue": "LowerPriority", "minRuntimeSeconds": 2}
    apply(cluster, queue(q, cpu=2, preemption=preemption))
    keep = {"sim.meson.dev/keep-running": "true"}
    apply(cluster, workflow("old", q, [step("work", cpu="1", annotations=keep)], priorityClassName=low),
          namespace=namespace)  # fmt: skip
    wait_for(lambda: workflow_pods(core, namespace, "old"), 60, "the old step to start")
    time.sleep(3)  # the old step is now past the queue's 2 s minimum runtime
    # The newest admission is the cheapest victim, but this one asks for an hour of protection.
    young = step("work", cpu="1", annotations=keep, preemption={"minRuntimeSeconds": 3600})
    apply(cluster, workflow("young", q, [young], priorityClassName=low), namespace=namespace)
    wait_for(lambda: workflow_pods(core, namespace, "young"), 60, "the young step to start")
    apply(cluster, workflow("hot", q, [step("now", cpu="1", duration="1s")], priorityClassName=high),
          namespace=namespace)  # fmt: skip
    wait_workflow(custom, namespace, "hot", ("Succeeded",), timeout=90)

    def old_rerun() -> dict | None:  # preempted once, back in its queue, admitted again once hot is done
        old = steps_by_instance(get_workflow(custom, namespace, "old"))["work"]
        return old if (old.get("run") or 1) >= 2 and old.get("phase") == "Running" else None

    old = wait_for(old_rerun, 60, "the old step to be preempted and run again")
    young_now = steps_by_instance(get_workflow(custom, namespace, "young"))["work"]
    assert old["run"] == 2, old
    assert (young_now.get("run") or 1) == 1, young_now
    assert len(workflow_pods(core, namespace, "young")) == 1
    lost = re.search(
        rf'meson_preemption_work_lost_seconds_total{{queue="{q}"}} ([0-9.e+]+)', operator.metrics()
    )
    assert lost and float(lost.group(1)) >= 3
    for name in ("old", "young"):
        cluster.kubectl("delete", "workflow.meson.dev", name, "-n", namespace, "--wait=false")
