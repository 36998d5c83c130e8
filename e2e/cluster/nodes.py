"""Fake kwok nodes: created as ordinary Node objects that kwok then keeps Ready."""

from __future__ import annotations

import time

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from e2e.cluster.controlplane import NODE_PREFIX, ZONES, NodeShape, kubeconfig_path


def api() -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig_path())))


def node_manifest(index: int, shape: NodeShape) -> dict:
    name = f"{NODE_PREFIX}{index}"
    resources = {"cpu": shape.cpu, "memory": shape.memory, "pods": str(shape.pods)}
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        "topology.kubernetes.io/region": "local",
        "topology.kubernetes.io/zone": ZONES[index % len(ZONES)],
    }
    if shape.gpus:
        resources["nvidia.com/gpu"] = str(shape.gpus)
        labels["nvidia.com/gpu.present"] = "true"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {"kwok.x-k8s.io/node": "fake"}},
        "spec": {},
        "status": {"allocatable": resources, "capacity": resources},
    }


def reconcile(count: int, shape: NodeShape) -> None:
    """Make nodes kwok-node-0..count-1 exist with this shape, and delete any beyond."""
    core = api()
    existing = {n.metadata.name: n for n in core.list_node().items if n.metadata.name.startswith(NODE_PREFIX)}
    wanted = {f"{NODE_PREFIX}{i}" for i in range(count)}
    for i in range(count):
        manifest = node_manifest(i, shape)
        name = manifest["metadata"]["name"]
        current = existing.get(name)
        if current is None:
            try:
                core.create_node(manifest)
            except ApiException as e:
                if e.status != 409:
                    raise
        elif current.status.allocatable == manifest["status"]["allocatable"]:
            continue
        else:
            core.patch_node(name, {"metadata": {"labels": manifest["metadata"]["labels"]}})
        # Status on create is not guaranteed to stick; set it explicitly so kwok reports this shape.
        core.patch_node_status(name, {"status": manifest["status"]})
    for name in sorted(set(existing) - wanted):
        core.delete_node(name)


def ready_count() -> int:
    nodes = api().list_node().items
    return sum(
        1
        for n in nodes
        if n.metadata.name.startswith(NODE_PREFIX)
        and any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))
    )


def wait_default_service_account(timeout: float) -> None:
    """Pods cannot be created until the controller-manager has made the `default` ServiceAccount."""
    core = api()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            core.read_namespaced_service_account("default", "default")
            return
        except ApiException as e:
            if e.status != 404:
                raise
        time.sleep(0.3)
    raise RuntimeError("the default ServiceAccount was not created; is kube-controller-manager running?")
