"""Builders and waits shared by the operator e2e tests."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import yaml
from kubernetes import client

from e2e.conftest import Cluster
from meson.workflow import instance_entries

GROUP, VERSION = "meson.dev", "v1alpha1"


def uid() -> str:
    return uuid.uuid4().hex[:6]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def queue(name: str, cpu: str | int = 100, limit: str | int | None = None, **spec: Any) -> dict:
    quota = {"cpu": {"guaranteed": cpu, **({"limit": limit} if limit is not None else {})}}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Queue",
        "metadata": {"name": name},
        "spec": {"quota": quota, **spec},
    }


def step(
    name: str,
    *,
    deps: list[str] | None = None,
    cpu: str = "100m",
    duration: str = "300ms",
    annotations: dict[str, str] | None = None,
    **extra: Any,
) -> dict:
    ann = {"sim.meson.dev/duration": duration, **(annotations or {})}
    s: dict[str, Any] = {
        "name": name,
        "template": {
            "metadata": {"annotations": ann},
            "spec": {
                "containers": [{"name": "main", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}]
            },
        },
        **extra,
    }
    if deps:
        s["dependencies"] = deps
    return s


def workflow(name: str, queue_name: str, steps: list[dict], **spec: Any) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"queue": queue_name, "steps": steps, **spec},
    }


def apply(cluster: Cluster, *objs: dict, namespace: str | None = None) -> None:
    args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
    cluster.kubectl(*args, input=yaml.safe_dump_all(objs))


def get_workflow(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict:
    return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "workflows", name)


def wait_workflow(
    custom: client.CustomObjectsApi, namespace: str, name: str, phases: tuple[str, ...], timeout: float = 120
) -> dict:
    def done() -> dict | None:
        wf = get_workflow(custom, namespace, name)
        return wf if (wf.get("status") or {}).get("phase") in phases else None

    try:
        return wait_for(done, timeout, f"workflow {name} to reach {phases}")
    except AssertionError as e:
        wf = get_workflow(custom, namespace, name)
        raise AssertionError(f"{e}\nstatus: {yaml.safe_dump(wf.get('status'))}") from None


def steps_by_instance(wf: dict) -> dict[str, dict]:
    """Every step instance of a workflow's status by id, compact range entries of big fan-outs expanded."""
    return instance_entries(wf.get("status") or {})


def workflow_pods(core: client.CoreV1Api, namespace: str, name: str) -> list[client.V1Pod]:
    return core.list_namespaced_pod(namespace, label_selector=f"meson.dev/workflow={name}").items


def meson_cli(cluster: Cluster, *args: str) -> str:
    """The `meson` command a user runs (kubeconfig from $KUBECONFIG); its output, or a failure with stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "meson.cli", *args],
        env=cluster.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
