"""The embedded control plane behaves like a real cluster: kube-scheduler places, kwok runs pods."""

from __future__ import annotations

import json
import uuid

import yaml
from kubernetes import client

from e2e.cluster import versions
from e2e.conftest import Cluster
from e2e.helpers import wait_for


def pod(name: str, cpu: str = "100m", annotations: dict | None = None, **spec_extra) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "containers": [{"name": "main", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}],
            **spec_extra,
        },
    }


def apply(cluster: Cluster, namespace: str, *objs: dict) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(objs))


def test_server_reports_the_pinned_version(cluster: Cluster) -> None:
    out = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"] == versions.KUBERNETES
    assert out["clientVersion"]["gitVersion"] == versions.KUBERNETES


def test_fake_nodes_carry_zones_and_gpus(core: client.CoreV1Api) -> None:
    nodes = [n for n in core.list_node().items if n.metadata.name.startswith("kwok-node-")]
    assert len(nodes) >= 3
    zones = {n.metadata.labels["topology.kubernetes.io/zone"] for n in nodes}
    assert len(zones) == 3
    assert all(n.status.allocatable.get("nvidia.com/gpu") == "4" for n in nodes)


def test_200_plain_pods_are_placed_by_default_scheduler_and_succeed(
    cluster: Cluster, core: client.CoreV1Api, namespace: str
) -> None:
    apply(cluster, namespace, *(pod(f"p-{i}") for i in range(200)))

    def all_succeeded():
        pods = core.list_namespaced_pod(namespace).items
        return pods if len(pods) == 200 and all(p.status.phase == "Succeeded" for p in pods) else None

    pods = wait_for(all_succeeded, 180, "200 pods to succeed")
    assert all(p.spec.node_name and p.spec.node_name.startswith("kwok-node-") for p in pods)
    assert len({p.spec.node_name for p in pods}) > 1, "pods should spread over several fake nodes"
    assert all(p.spec.scheduler_name == "default-scheduler" for p in pods)
    scheduled = {
        e.involved_object.name
        for e in core.list_namespaced_event(namespace, field_selector="reason=Scheduled").items
        if e.source.component == "default-scheduler" or e.reporting_component == "default-scheduler"
    }
    assert scheduled == {p.metadata.name for p in pods}


def test_pod_larger_than_any_node_stays_unschedulable(
    cluster: Cluster, core: client.CoreV1Api, namespace: str
) -> None:
    apply(cluster, namespace, pod("huge", cpu="1000"))

    def unschedulable():
        p = core.read_namespaced_pod("huge", namespace)
        conds = {c.type: c for c in p.status.conditions or []}
        sched = conds.get("PodScheduled")
        return sched if sched and sched.status == "False" and sched.reason == "Unschedulable" else None

    wait_for(unschedulable, 60, "PodScheduled=False/Unschedulable")
    p = core.read_namespaced_pod("huge", namespace)
    assert p.status.phase == "Pending" and not p.spec.node_name


def test_pod_annotated_to_fail_ends_failed_with_its_exit_code(
    cluster: Cluster, core: client.CoreV1Api, namespace: str
) -> None:
    apply(
        cluster,
        namespace,
        pod("doomed", annotations={"sim.meson.dev/exit-code": "3", "sim.meson.dev/duration": "500ms"}),
        pod("runner", annotations={"sim.meson.dev/keep-running": "true"}),
    )

    def failed():
        p = core.read_namespaced_pod("doomed", namespace)
        return p if p.status.phase == "Failed" else None

    p = wait_for(failed, 60, "the annotated pod to fail")
    assert p.status.container_statuses[0].state.terminated.exit_code == 3
    runner = core.read_namespaced_pod("runner", namespace)
    assert runner.status.phase == "Running", "keep-running pods must not complete"


def test_fail_attempts_fails_early_attempts_only(
    cluster: Cluster, core: client.CoreV1Api, namespace: str
) -> None:
    ann = {"sim.meson.dev/exit-code": "1", "sim.meson.dev/fail-attempts": "2"}
    pods = []
    for attempt in (1, 2, 3):
        p = pod(f"try-{attempt}", annotations=ann)
        p["metadata"]["labels"] = {"meson.dev/attempt": str(attempt)}
        pods.append(p)
    apply(cluster, namespace, *pods)

    def finished():
        got = {p.metadata.name: p.status.phase for p in core.list_namespaced_pod(namespace).items}
        return got if all(v in ("Succeeded", "Failed") for v in got.values()) and len(got) == 3 else None

    phases = wait_for(finished, 60, "three attempts to finish")
    assert phases == {"try-1": "Failed", "try-2": "Failed", "try-3": "Succeeded"}


def test_kube_scheduler_preempts_lower_priority_pod_on_a_full_node(
    cluster: Cluster, core: client.CoreV1Api, namespace: str
) -> None:
    # A private, tainted node so no other test's pods interfere with "full".
    from e2e.cluster.controlplane import NodeShape
    from e2e.cluster.nodes import node_manifest

    # A letter first: an all-digit or "1e5"-like suffix is read back from YAML as a number.
    suffix = "t" + uuid.uuid4().hex[:6]
    node = node_manifest(0, NodeShape(cpu="4", memory="8Gi"))
    node["metadata"]["name"] = f"kwok-preempt-{suffix}"
    node["metadata"]["labels"]["kubernetes.io/hostname"] = node["metadata"]["name"]
    node["spec"] = {"taints": [{"key": "meson.dev/test", "value": suffix, "effect": "NoSchedule"}]}
    low, high = f"low-{suffix}", f"high-{suffix}"
    classes = [
        {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": n}, "value": v}
        for n, v in ((low, 10), (high, 1000))
    ]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([node, *classes]))
    try:
        core.patch_node_status(node["metadata"]["name"], {"status": node["status"]})
        placement = {
            "nodeSelector": {"kubernetes.io/hostname": node["metadata"]["name"]},
            "tolerations": [{"key": "meson.dev/test", "operator": "Equal", "value": suffix}],
        }
        keep = {"sim.meson.dev/keep-running": "true"}
        apply(
            cluster, namespace, pod("victim", cpu="3", annotations=keep, priorityClassName=low, **placement)
        )
        wait_for(
            lambda: core.read_namespaced_pod("victim", namespace).status.phase == "Running",
            60,
            "victim running",
        )
        apply(cluster, namespace, pod("vip", cpu="3", annotations=keep, priorityClassName=high, **placement))

        def vip_running():
            return core.read_namespaced_pod("vip", namespace).status.phase == "Running"

        wait_for(vip_running, 90, "the high-priority pod to run after preemption")
        names = {p.metadata.name for p in core.list_namespaced_pod(namespace).items}
        assert "victim" not in names
        events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=victim").items
        assert any(e.reason == "Preempted" for e in events)
    finally:
        cluster.kubectl("delete", "node", node["metadata"]["name"], "--wait=false", check=False)
        cluster.kubectl("delete", "priorityclass", low, high, "--wait=false", check=False)


def test_service_account_token_request_and_rbac(
    cluster: Cluster, core: client.CoreV1Api, namespace: str
) -> None:
    """TokenRequest works and RBAC is enforced, so tests can act as the operator's ServiceAccount."""
    cluster.kubectl("create", "serviceaccount", "robot", "-n", namespace)
    token = cluster.kubectl("create", "token", "robot", "-n", namespace).stdout.strip()
    assert token.count(".") == 2

    def as_robot(*args: str):
        return cluster.kubectl("--token", token, "--user", "", *args, check=False)

    denied = as_robot("get", "pods", "-n", namespace)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    cluster.kubectl("create", "role", "reader", "--verb=list,get", "--resource=pods", "-n", namespace)
    cluster.kubectl(
        "create",
        "rolebinding",
        "reader",
        "--role=reader",
        f"--serviceaccount={namespace}:robot",
        "-n",
        namespace,
    )
    wait_for(lambda: as_robot("get", "pods", "-n", namespace).returncode == 0, 30, "RBAC grant to apply")
    assert as_robot("get", "pods", "-n", "default").returncode != 0
