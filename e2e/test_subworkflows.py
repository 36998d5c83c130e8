"""Sub-workflows (#14) on the real control plane: a step runs a WorkflowTemplate as a child Workflow owned by
its parent, whose own steps are admitted through the child's queue; a failed child fails the step and its
retry makes a new child; an operator killed right after creating a child neither runs it twice nor stalls."""

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
    wait_for,
    wait_workflow,
    workflow,
    workflow_pods,
)
from e2e.operator import OperatorProcess
from e2e.test_workflow_depth import RESULT, args, own_queue

GROUP, VERSION = "meson.dev", "v1alpha1"


def template(name: str, queue_name: str, steps: list[dict], **spec: object) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WorkflowTemplate",
        "metadata": {"name": name},
        "spec": {"queue": queue_name, "steps": steps, **spec},
    }


def sub(name: str, template_name: str, deps: list[str] | None = None, **extra: object) -> dict:
    s: dict = {"name": name, "workflowTemplateRef": {"name": template_name}, **extra}
    if deps:
        s["dependencies"] = deps
    return s


def children(custom: client.CustomObjectsApi, namespace: str, parent: str) -> list[dict]:
    listed = custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, "workflows", label_selector=f"meson.dev/parent={parent}"
    )
    return sorted(listed["items"], key=lambda w: w["metadata"]["name"])


def test_a_sub_workflow_step_runs_its_template_through_the_childs_queue_and_passes_outputs_on(
    cluster: Cluster, operator: OperatorProcess, core: client.CoreV1Api, custom, namespace: str, queues
) -> None:
    cluster.wait_established("workflowtemplates")
    parent_q = own_queue(cluster, queues, "parent")
    child_q = own_queue(cluster, queues, "child")
    extract = step("extract", annotations={RESULT: '{"rows": 7}'})
    extract["template"]["spec"]["containers"][0]["args"] = ["{{ params.day }}"]
    etl = template(
        "etl",
        child_q,
        [extract, step("load", deps=["extract"])],
        parameters=[{"name": "day", "default": "mon"}],
    )
    use = step("use", deps=["run-etl"])
    use["template"]["spec"]["containers"][0]["args"] = ["{{ steps.run-etl.outputs.json.extract }}"]
    parent = workflow(
        "nightly",
        parent_q,
        [
            step("prepare", annotations={RESULT: "fri"}),
            sub(
                "run-etl",
                "etl",
                deps=["prepare"],
                workflowTemplateRef={
                    "name": "etl",
                    "parameters": [{"name": "day", "value": "{{ steps.prepare.outputs.result }}"}],
                },
            ),
            use,
        ],
    )
    apply(cluster, etl, parent, namespace=namespace)
    done = wait_workflow(custom, namespace, "nightly", ("Succeeded", "Failed"), timeout=120)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert json.loads(done["status"]["outputs"]["run-etl"]) == {"extract": '{"rows": 7}'}

    (child,) = children(custom, namespace, "nightly")
    assert child["metadata"]["name"] == "nightly-run-etl-r1"
    (owner,) = child["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "Workflow",
        "nightly",
        done["metadata"]["uid"],
        True,
    )
    assert child["status"]["phase"] == "Succeeded" and child["spec"]["queue"] == child_q
    assert child["metadata"]["labels"]["meson.dev/depth"] == "1"
    child_pods = {
        p.metadata.labels["meson.dev/step"]: p
        for p in workflow_pods(core, namespace, child["metadata"]["name"])
    }
    assert sorted(child_pods) == ["extract", "load"]
    assert {p.metadata.labels["meson.dev/queue"] for p in child_pods.values()} == {child_q}
    assert args(child_pods["extract"]) == ["fri"]  # the parent's step output, as the child's parameter
    parent_pods = {p.metadata.labels["meson.dev/step"]: p for p in workflow_pods(core, namespace, "nightly")}
    assert sorted(parent_pods) == ["prepare", "use"]  # the sub-workflow step has no pod of its own
    assert args(parent_pods["use"]) == ['{"rows": 7}']


def test_a_failed_sub_workflow_fails_the_step_and_its_retry_makes_a_second_child(
    cluster: Cluster, operator: OperatorProcess, core: client.CoreV1Api, custom, namespace: str, queues
) -> None:
    cluster.wait_established("workflowtemplates")
    q = own_queue(cluster, queues, "subfail")
    broken = template("broken", q, [step("load", annotations={"sim.meson.dev/exit-code": "3"})])
    retry = {"limit": 1, "backoff": {"initialSeconds": 1}}
    parent = workflow("flaky", q, [sub("run", "broken", retryPolicy=retry), step("after", deps=["run"])])
    apply(cluster, broken, parent, namespace=namespace)
    done = wait_workflow(custom, namespace, "flaky", ("Succeeded", "Failed"), timeout=120)
    assert done["status"]["phase"] == "Failed", done["status"]
    by_id = steps_by_instance(done)
    assert by_id["run"]["phase"] == "Failed" and by_id["run"]["attempts"] == 2, by_id["run"]
    assert by_id["run"]["message"] == "FailedExit: sub-workflow flaky-run-r2 failed: step load failed"
    assert by_id["after"]["phase"] == "Omitted"
    made = children(custom, namespace, "flaky")
    assert [c["metadata"]["name"] for c in made] == ["flaky-run-r1", "flaky-run-r2"]
    assert [c["metadata"]["labels"]["meson.dev/attempt"] for c in made] == ["1", "2"]
    assert [c["status"]["phase"] for c in made] == ["Failed", "Failed"]
    for c in made:  # each child ran its own step once, with the exit code the template set
        (pod,) = workflow_pods(core, namespace, c["metadata"]["name"])
        assert pod.status.phase == "Failed"


def test_an_operator_killed_right_after_creating_a_child_makes_no_second_one_and_finishes(
    cluster: Cluster, operator: OperatorProcess, core: client.CoreV1Api, custom, namespace: str, queues
) -> None:
    cluster.wait_established("workflowtemplates")
    q = f"subcrash-{uid()}"
    queues.append(q)
    operator.stop()
    try:
        apply(cluster, queue(q, cpu=8))
        apply(
            cluster,
            template("leaf", q, [step("a", duration="1s"), step("b", deps=["a"])]),
            workflow("crashy", q, [sub("one", "leaf"), sub("two", "leaf", deps=["one"])]),
            namespace=namespace,
        )
        crasher = OperatorProcess(cluster.kubeconfig, launcher=("-m", "e2e.crashing_operator", "workflows:1"))
        crasher.start(wait=False)
        assert crasher.proc is not None
        assert crasher.proc.wait(90) == 137, crasher.log()[-3000:]
        assert [c["metadata"]["name"] for c in children(custom, namespace, "crashy")] == ["crashy-one-r1"]
        operator.start()
        done = wait_workflow(custom, namespace, "crashy", ("Succeeded", "Failed"), timeout=120)
        assert done["status"]["phase"] == "Succeeded", done["status"]
        made = children(custom, namespace, "crashy")
        assert [c["metadata"]["name"] for c in made] == ["crashy-one-r1", "crashy-two-r1"]
        for c in made:  # each child's steps ran exactly once
            pods = sorted(p.metadata.name for p in workflow_pods(core, namespace, c["metadata"]["name"]))
            assert pods == [f"{c['metadata']['name']}-a-r1-0", f"{c['metadata']['name']}-b-r1-0"]
    finally:
        if operator.proc is None or operator.proc.poll() is not None:
            operator.start()


def test_terminating_the_parent_terminates_its_running_child(
    cluster: Cluster, operator: OperatorProcess, core: client.CoreV1Api, custom, namespace: str, queues
) -> None:
    cluster.wait_established("workflowtemplates")
    q = own_queue(cluster, queues, "subterm")
    slow = template("slow", q, [step("forever", annotations={"sim.meson.dev/keep-running": "true"})])
    apply(cluster, slow, workflow("stopme", q, [sub("run", "slow")]), namespace=namespace)

    def child_running() -> bool:
        made = children(custom, namespace, "stopme")
        return bool(made) and bool(workflow_pods(core, namespace, made[0]["metadata"]["name"]))

    wait_for(child_running, 60, "the child's step to start")
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "workflows", "stopme", {"spec": {"shutdown": "Terminate"}}
    )
    done = wait_workflow(custom, namespace, "stopme", ("Succeeded", "Failed"), timeout=60)
    assert done["status"]["phase"] == "Failed" and done["status"]["message"] == "terminated", done["status"]
    (child,) = children(custom, namespace, "stopme")
    assert child["spec"]["shutdown"] == "Terminate" and child["status"]["phase"] == "Failed", child["status"]
