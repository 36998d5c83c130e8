"""Workflows at Argo/Maestro depth (#14) on the real control plane: step outputs read by later steps."""

from __future__ import annotations

import json

from kubernetes import client

from e2e.conftest import Cluster
from e2e.helpers import (
    apply,
    queue,
    step,
    steps_by_instance,
    uid,
    wait_workflow,
    workflow,
    workflow_pods,
)
from e2e.operator import OperatorProcess

RESULT = "sim.meson.dev/termination-message"


def args(pod: client.V1Pod) -> list[str]:
    return pod.spec.containers[0].args or []


def test_a_step_fans_out_over_a_list_its_upstream_step_emitted_and_a_condition_reads_it(
    cluster: Cluster, operator: OperatorProcess, core: client.CoreV1Api, custom, namespace: str, queues
) -> None:
    q = f"outputs-{uid()}"
    queues.append(q)
    emitted = {"partitions": ["a", "b", "c"], "rows": 3}
    load = step("load", deps=["list"], foreach={"fromOutput": "steps.list.outputs.json.partitions"})
    load["template"]["spec"]["containers"][0]["args"] = ["{{ item }}", "{{ steps.list.outputs.json.rows }}"]
    steps = [
        step("list", annotations={RESULT: json.dumps(emitted)}),
        load,
        step("when-big", deps=["list"], when="steps.list.outputs.json.rows > 100"),
        step("when-some", deps=["list"], when="size(steps.list.outputs.json.partitions) == 3"),
    ]
    apply(cluster, queue(q, cpu=8))
    apply(cluster, workflow("outputs", q, steps), namespace=namespace)
    done = wait_workflow(custom, namespace, "outputs", ("Succeeded", "Failed"), timeout=120)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert json.loads(done["status"]["outputs"]["list"]) == emitted
    by_id = steps_by_instance(done)
    assert by_id["when-big"]["phase"] == "Skipped" and by_id["when-some"]["phase"] == "Succeeded"
    fanned = sorted(
        args(p)
        for p in workflow_pods(core, namespace, "outputs")
        if p.metadata.labels["meson.dev/step"] == "load"
    )
    assert fanned == [["a", "3"], ["b", "3"], ["c", "3"]]
