"""StreamJobs end to end: replicas admitted through the same queues as workflow steps, placed by
kube-scheduler on kwok nodes; scale, suspend/resume, a rolling update that keeps its bounds, and priority
over batch."""

from __future__ import annotations

import json

from kubernetes import client

from e2e.conftest import Cluster
from e2e.helpers import (
    GROUP,
    VERSION,
    apply,
    meson_cli,
    queue,
    step,
    uid,
    wait_for,
    wait_workflow,
    workflow,
    workflow_pods,
)
from e2e.operator import OperatorProcess
from e2e.test_workflows import Sampler, live


def streamjob(name: str, queue_name: str, replicas: int = 3, image: str = "busybox:1", **spec) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "StreamJob",
        "metadata": {"name": name},
        "spec": {
            "queue": queue_name,
            "replicas": replicas,
            "minReadySeconds": 1,
            "template": {
                "metadata": {"annotations": {"sim.meson.dev/keep-running": "true"}},
                "spec": {
                    "containers": [
                        {"name": "main", "image": image, "resources": {"requests": {"cpu": "500m"}}}
                    ]
                },
            },
            **spec,
        },
    }


def job_pods(core: client.CoreV1Api, namespace: str, name: str) -> list[client.V1Pod]:
    return core.list_namespaced_pod(namespace, label_selector=f"meson.dev/streamjob={name}").items


def status(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict:
    return (
        custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "streamjobs", name).get("status") or {}
    )


def queue_cpu(custom: client.CustomObjectsApi, name: str) -> str:
    q = custom.get_cluster_custom_object(GROUP, VERSION, "queues", name)
    return ((q.get("status") or {}).get("usage") or {}).get("cpu", "0")


def test_deploy_scale_suspend_resume_and_update(
    cluster: Cluster, operator: OperatorProcess, core, custom, namespace: str, queues
) -> None:
    q = f"stream-{uid()}"
    queues.append(q)
    apply(cluster, queue(q, cpu=4))
    apply(cluster, streamjob("enricher", q), namespace=namespace)
    wait_for(lambda: status(custom, namespace, "enricher").get("phase") == "Running", 60, "Running")
    pods = job_pods(core, namespace, "enricher")
    assert len(live(pods)) == 3 and all(p.spec.node_name for p in pods)
    assert wait_for(lambda: queue_cpu(custom, q) == "1500m", 20, "queue usage 1500m")

    # kubectl scale (the scale subresource): 3 -> 6 admitted through the queue (room for 8), then 6 -> 2.
    cluster.kubectl("scale", "streamjob/enricher", "--replicas=6", "-n", namespace)
    wait_for(lambda: len(live(job_pods(core, namespace, "enricher"))) == 6, 60, "6 replicas")
    wait_for(lambda: queue_cpu(custom, q) == "3", 20, "queue usage 3 CPU")
    cluster.kubectl("scale", "streamjob/enricher", "--replicas=2", "-n", namespace)
    wait_for(lambda: len(live(job_pods(core, namespace, "enricher"))) == 2, 60, "2 replicas")
    slots = sorted(
        int(p.metadata.labels["meson.dev/slot"]) for p in live(job_pods(core, namespace, "enricher"))
    )
    assert slots == [0, 1], "scale-down removes the newest (highest) slots"

    # Suspend frees the queue; resume takes it again.
    patch = {"spec": {"desiredState": "Suspended"}}
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "streamjobs", "enricher", patch)
    wait_for(lambda: not live(job_pods(core, namespace, "enricher")), 60, "no pod while suspended")
    wait_for(lambda: queue_cpu(custom, q) in ("0", "0m", None), 20, "queue usage back to 0")
    assert status(custom, namespace, "enricher")["phase"] == "Suspended"
    patch = {"spec": {"desiredState": "Running", "replicas": 3}}
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "streamjobs", "enricher", patch)
    wait_for(lambda: status(custom, namespace, "enricher").get("phase") == "Running", 60, "Running again")

    # A new image rolls out within maxSurge 1 / maxUnavailable 0: never more than 4 pods, never < 3 ready.
    first = status(custom, namespace, "enricher")["currentRevision"]

    def bounds() -> str | None:
        pods = [p for p in live(job_pods(core, namespace, "enricher")) if not p.metadata.deletion_timestamp]
        ready = [
            p
            for p in pods
            if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ]
        if len(pods) > 4:
            return f"{len(pods)} pods (> replicas + maxSurge)"
        if len(ready) < 3 and len(pods) >= 3:
            return f"{len(ready)} ready (< replicas - maxUnavailable)"
        return None

    image = {"spec": {"template": json.loads(json.dumps(streamjob("x", q)["spec"]["template"]))}}
    image["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:2"
    with Sampler(bounds, interval=0.2) as sampler:
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "streamjobs", "enricher", image)

        def rolled() -> bool:
            st = status(custom, namespace, "enricher")
            return st.get("phase") == "Running" and st.get("currentRevision") not in (None, first)

        wait_for(rolled, 120, "the rollout to complete")
    assert sampler.violations == [], sampler.violations[:5]
    revisions = cluster.kubectl(
        "get", "controllerrevisions", "-n", namespace, "-l", "meson.dev/streamjob=enricher", "-o", "name"
    ).stdout.split()
    assert len(revisions) >= 2 and any(first in r for r in revisions), revisions
    cluster.kubectl("delete", "streamjob", "enricher", "-n", namespace, "--wait=false")


def test_a_high_priority_stream_job_preempts_low_priority_steps(
    cluster: Cluster, operator: OperatorProcess, core, custom, namespace: str, queues, priority_classes
) -> None:
    low, high = priority_classes
    q = f"mixed-{uid()}"
    queues.append(q)
    apply(cluster, queue(q, cpu=2, preemption={"withinQueue": "LowerPriority"}))
    batch = workflow(
        "batch", q, [step("work", cpu="500m", duration="10s", foreach={"items": list(range(6))})],
        priorityClassName=low,
    )  # fmt: skip
    apply(cluster, batch, namespace=namespace)
    wait_for(lambda: len(live(workflow_pods(core, namespace, "batch"))) == 4, 60, "the queue full of steps")
    apply(cluster, streamjob("urgent", q, replicas=2, priorityClassName=high), namespace=namespace)
    wait_for(
        lambda: status(custom, namespace, "urgent").get("phase") == "Running", 90, "the stream job Running"
    )
    wf = wait_workflow(custom, namespace, "batch", ("Succeeded",), timeout=180)
    preempted = [s for s in wf["status"]["steps"] if (s.get("run") or 1) > 1]
    assert preempted, "no step was preempted"
    assert all((s.get("attempts") or 1) == 1 for s in wf["status"]["steps"]), "a preemption used a retry"
    cluster.kubectl("delete", "streamjob", "urgent", "-n", namespace, "--wait=false")


def ready_pods(core: client.CoreV1Api, namespace: str, name: str) -> list[client.V1Pod]:
    return [
        p
        for p in live(job_pods(core, namespace, name))
        if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]


def test_an_update_that_never_becomes_ready_is_rolled_back_and_manual_rollback_works(
    cluster: Cluster, operator: OperatorProcess, core, custom, namespace: str, queues
) -> None:
    q = f"rollback-{uid()}"
    queues.append(q)
    apply(cluster, queue(q, cpu=4))
    apply(cluster, streamjob("proc", q, replicas=2, progressDeadlineSeconds=8), namespace=namespace)
    wait_for(lambda: status(custom, namespace, "proc").get("stableRevision"), 60, "a stable revision")
    stable = status(custom, namespace, "proc")["stableRevision"]

    bad = json.loads(json.dumps(streamjob("x", q)["spec"]["template"]))
    bad["metadata"]["annotations"]["sim.meson.dev/never-ready"] = "true"
    bad["spec"]["containers"][0]["image"] = "busybox:broken"
    with Sampler(
        lambda: None if len(ready_pods(core, namespace, "proc")) >= 2 else "old pods stopped serving"
    ) as s:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "streamjobs", "proc", {"spec": {"template": bad}}
        )

        def rolled_back() -> dict | None:
            st = status(custom, namespace, "proc")
            cond = next((c for c in st.get("conditions") or [] if c["type"] == "Progressing"), {})
            done = st.get("phase") == "Running" and st.get("currentRevision") == stable
            return st if done and cond.get("reason") == "RolledBack" else None

        st = wait_for(rolled_back, 90, "the automatic rollback")
    assert s.violations == [], s.violations[:3]
    assert st.get("failedRevision") and st["failedRevision"] != stable
    events = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=proc"
    ).stdout
    assert "RolledBack" in events

    # A good update, then `meson streamjob rollback` returns to the previous template.
    good = json.loads(json.dumps(streamjob("x", q)["spec"]["template"]))
    good["spec"]["containers"][0]["image"] = "busybox:2"
    good["metadata"]["annotations"]["sim.meson.dev/never-ready"] = None  # a merge patch: null removes it
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "streamjobs", "proc", {"spec": {"template": good}}
    )
    wait_for(
        lambda: status(custom, namespace, "proc").get("stableRevision") not in (None, stable),
        90,
        "the good update",
    )
    assert "rollback" in meson_cli(cluster, "streamjob", "rollback", "proc", "-n", namespace)
    wait_for(
        lambda: (
            status(custom, namespace, "proc").get("stableRevision") == stable
            and status(custom, namespace, "proc").get("phase") == "Running"
        ),
        90,
        "the manual rollback",
    )
    images = {p.spec.containers[0].image for p in live(job_pods(core, namespace, "proc"))}
    assert images == {"busybox:1"}, images
    cluster.kubectl("delete", "streamjob", "proc", "-n", namespace, "--wait=false")
