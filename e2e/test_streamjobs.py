"""StreamJobs end to end: replicas admitted through the same queues as workflow steps, placed by
kube-scheduler on kwok nodes; scale, suspend/resume, a rolling update that keeps its bounds, and priority
over batch."""

from __future__ import annotations

import json
import math
import re

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
from e2e.test_workflows import Sampler, live, pod_cpu
from meson.api.quantity import canonical


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


def columns(cluster: Cluster, namespace: str, name: str) -> dict[str, str]:
    """`kubectl get msj NAME` as a user reads it: the CRD's printer columns, by header."""
    header, row = cluster.kubectl("get", "msj", name, "-n", namespace).stdout.splitlines()[:2]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    cells = [row[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    return dict(zip(header.split(), cells, strict=True))


def metric(operator: OperatorProcess, name: str, **labels: str) -> float | None:
    """One sample of the operator's /metrics (None: no such series)."""
    for line in operator.metrics().splitlines():
        m = re.fullmatch(rf"{re.escape(name)}\{{(.*)\}} (\S+)", line)
        if m and dict(re.findall(r'(\w+)="([^"]*)"', m.group(1))) == labels:
            return float(m.group(2))
    return None


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
    shown = columns(cluster, namespace, "enricher")
    assert {k: shown[k] for k in ("PHASE", "REPLICAS", "READY", "UPDATED")} == {
        "PHASE": "Running", "REPLICAS": "3", "READY": "3", "UPDATED": "3"
    }, shown  # fmt: skip
    assert shown["REVISION"] == status(custom, namespace, "enricher")["currentRevision"]
    wait_for(
        lambda: metric(operator, "meson_streamjob_replicas", namespace=namespace, state="ready") == 3,
        20,
        "meson_streamjob_replicas{state=ready} 3",
    )

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
    shown = columns(cluster, namespace, "enricher")
    assert (shown["PHASE"], shown["REPLICAS"], shown["READY"]) == ("Suspended", "2", "0"), shown
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

    # The bound holds from a full start: "Running" may be reported while the last resumed pod is still
    # becoming ready (under load this raced the sampler's first reading).
    wait_for(
        lambda: bounds() is None and len(live(job_pods(core, namespace, "enricher"))) == 3, 60, "3 ready"
    )
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


def test_a_high_priority_stream_job_preempts_exactly_enough_low_priority_steps(
    cluster: Cluster, operator: OperatorProcess, core, custom, namespace: str, queues, priority_classes
) -> None:
    low, high = priority_classes
    q = f"mixed-{uid()}"
    queues.append(q)
    apply(cluster, queue(q, cpu=2, preemption={"withinQueue": "LowerPriority"}))
    # Steps long enough that none ends by itself before the stream job has been admitted.
    batch = workflow(
        "batch", q, [step("work", cpu="500m", duration="20s", foreach={"items": list(range(6))})],
        priorityClassName=low,
    )  # fmt: skip
    apply(cluster, batch, namespace=namespace)
    wait_for(lambda: len(live(workflow_pods(core, namespace, "batch"))) == 4, 60, "the queue full of steps")
    urgent = streamjob("urgent", q, replicas=2, priorityClassName=high)
    # What the stream job needs beyond what the queue has free decides how many steps must go.
    quota = canonical("cpu", 2)
    running = live(workflow_pods(core, namespace, "batch"))
    used = sum(pod_cpu(p) for p in running)
    step_cpu = pod_cpu(running[0])
    replica_cpu = canonical(
        "cpu", urgent["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]
    )
    needed = max(0, urgent["spec"]["replicas"] * replica_cpu - (quota - used))
    expected = math.ceil(needed / step_cpu)
    assert (used, expected) == (2000, 2), (used, expected)

    apply(cluster, urgent, namespace=namespace)
    wait_for(
        lambda: status(custom, namespace, "urgent").get("phase") == "Running", 90, "the stream job Running"
    )
    wf = wait_workflow(custom, namespace, "batch", ("Succeeded",), timeout=240)
    preempted = sum((s.get("run") or 1) - 1 for s in wf["status"]["steps"])
    assert preempted == expected, f"{preempted} steps preempted, {expected} needed: {wf['status']['steps']}"
    assert all((s.get("attempts") or 1) == 1 for s in wf["status"]["steps"]), "a preemption used a retry"
    runs = {p.metadata.labels["meson.dev/run"] for p in live(job_pods(core, namespace, "urgent"))}
    assert runs == {"1"}, f"a stream replica was replaced while batch ran: runs {runs}"
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
    assert metric(operator, "meson_streamjob_rollbacks_total", namespace=namespace) == 1

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
    # The last pod of the rolled-back revision may still be going when the status says Running.
    wait_for(
        lambda: (
            {p.spec.containers[0].image for p in live(job_pods(core, namespace, "proc"))} == {"busybox:1"}
        ),
        60,
        "only the restored revision's pods",
    )
    cluster.kubectl("delete", "streamjob", "proc", "-n", namespace, "--wait=false")


def test_a_crash_loop_beyond_the_restart_budget_fails_the_job_until_meson_streamjob_restart(
    cluster: Cluster, operator: OperatorProcess, core, custom, namespace: str, queues
) -> None:
    q = f"crash-{uid()}"
    queues.append(q)
    apply(cluster, queue(q, cpu=4))
    budget = {"maxRestarts": 3, "windowSeconds": 600}
    apply(cluster, streamjob("flaky", q, replicas=2, restartBudget=budget), namespace=namespace)
    wait_for(lambda: status(custom, namespace, "flaky").get("stableRevision"), 60, "a stable revision")

    # An update whose container crash-loops (restartCount rising every second, CrashLoopBackOff).
    crashing = json.loads(json.dumps(streamjob("x", q)["spec"]["template"]))
    crashing["metadata"]["annotations"]["sim.meson.dev/crash-loop"] = "true"
    crashing["spec"]["containers"][0]["image"] = "busybox:crashing"
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "streamjobs", "flaky", {"spec": {"template": crashing}}
    )
    st = wait_for(
        lambda: (s := status(custom, namespace, "flaky")).get("phase") == "Failed" and s, 90, "phase Failed"
    )
    conds = {c["type"]: c for c in st["conditions"]}
    assert (conds["Available"]["status"], conds["Available"]["reason"]) == ("False", "RestartBudgetExceeded")
    assert conds["Progressing"]["reason"] == "RestartBudgetExceeded", conds
    assert "more than 3 restarts" in st["message"], st
    assert st["restarts"] > 3, st
    warnings = json.loads(
        cluster.kubectl(
            "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=flaky", "-o", "json"
        ).stdout
    )["items"]
    budget_events = [e for e in warnings if e["reason"] == "RestartBudgetExceeded"]
    assert len(budget_events) == 1 and budget_events[0]["type"] == "Warning", budget_events
    wait_for(lambda: not live(job_pods(core, namespace, "flaky")), 60, "every pod deleted")
    wait_for(lambda: queue_cpu(custom, q) in ("0", "0m", None), 30, "the queue's quota freed")
    assert columns(cluster, namespace, "flaky")["PHASE"] == "Failed"
    restarts = metric(operator, "meson_streamjob_restarts_total", namespace=namespace)
    assert restarts is not None and restarts >= st["restarts"], (restarts, st["restarts"])

    # Fixing the template alone does not clear the failure: the job stays Failed, with no pod.
    fixed = json.loads(json.dumps(crashing))
    fixed["metadata"]["annotations"]["sim.meson.dev/crash-loop"] = None
    fixed["spec"]["containers"][0]["image"] = "busybox:fixed"
    job = custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "streamjobs", "flaky", {"spec": {"template": fixed}}
    )
    generation = job["metadata"]["generation"]
    wait_for(
        lambda: status(custom, namespace, "flaky").get("observedGeneration") == generation,
        30,
        "the fix observed",
    )
    assert status(custom, namespace, "flaky")["phase"] == "Failed"
    assert not live(job_pods(core, namespace, "flaky"))

    assert "restart" in meson_cli(cluster, "streamjob", "restart", "flaky", "-n", namespace)

    def available() -> dict | None:  # Ready for minReadySeconds: Available follows Running
        st = status(custom, namespace, "flaky")
        conds = {c["type"]: c for c in st.get("conditions") or []}
        ok = st.get("phase") == "Running" and (conds.get("Available") or {}).get("status") == "True"
        return st if ok and len(ready_pods(core, namespace, "flaky")) == 2 else None

    st = wait_for(available, 90, "Running and Available again after meson streamjob restart")
    assert not st.get("failed") and st.get("restartsInWindow", 0) == 0, st
    images = {p.spec.containers[0].image for p in live(job_pods(core, namespace, "flaky"))}
    assert images == {"busybox:fixed"}, images
    reasons = {
        e["reason"]
        for e in json.loads(
            cluster.kubectl(
                "get",
                "events",
                "-n",
                namespace,
                "--field-selector",
                "involvedObject.name=flaky",
                "-o",
                "json",
            ).stdout
        )["items"]
    }
    assert "Restarted" in reasons, reasons
    wait_for(
        lambda: metric(operator, "meson_streamjob_replicas", namespace=namespace, state="ready") == 2,
        30,
        "meson_streamjob_replicas{state=ready} 2",
    )
    cluster.kubectl("delete", "streamjob", "flaky", "-n", namespace, "--wait=false")
