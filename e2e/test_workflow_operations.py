"""Operating running workflows (suspend, stop, terminate, restart, TTL) and CronWorkflow policies."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from kubernetes import client

from e2e.conftest import Cluster
from e2e.helpers import (
    GROUP,
    VERSION,
    apply,
    get_workflow,
    meson_cli,
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

KEEP = {"sim.meson.dev/keep-running": "true"}


@pytest.fixture
def q(cluster: Cluster, operator: OperatorProcess) -> Iterator[str]:
    name = f"ops-{uid()}"
    apply(cluster, queue(name, cpu=64))
    yield name
    cluster.kubectl("delete", "queue.meson.dev", name, "--wait=false", check=False)


def test_suspend_admits_nothing_until_resumed(cluster: Cluster, core, custom, namespace: str, q: str) -> None:
    wf = workflow("paused", q, [step("a"), step("b", deps=["a"])], suspend=True)
    apply(cluster, wf, namespace=namespace)
    wait_for(
        lambda: (get_workflow(custom, namespace, "paused").get("status") or {}).get("phase"), 30, "a status"
    )
    time.sleep(3)
    assert workflow_pods(core, namespace, "paused") == [], "a suspended workflow must not start steps"
    assert get_workflow(custom, namespace, "paused")["status"]["phase"] in ("Suspended", "Pending")
    meson_cli(cluster, "workflow", "resume", "paused", "-n", namespace)
    done = wait_workflow(custom, namespace, "paused", ("Succeeded", "Failed"), timeout=60)
    assert done["status"]["phase"] == "Succeeded"


def test_stop_lets_running_steps_finish_and_runs_the_exit_step(
    cluster: Cluster, core, custom, namespace: str, q: str
) -> None:
    wf = workflow(
        "stopme", q, [step("a", duration="30s"), step("b", deps=["a"])],  # time for the CLI on a busy machine
        onExit={"name": "bye", "template": step("x")["template"]},
    )  # fmt: skip
    apply(cluster, wf, namespace=namespace)
    wait_for(
        lambda: [p for p in workflow_pods(core, namespace, "stopme") if p.status.phase == "Running"], 60, "a"
    )
    meson_cli(cluster, "workflow", "stop", "stopme", "-n", namespace)
    done = wait_workflow(custom, namespace, "stopme", ("Succeeded", "Failed"), timeout=60)
    st = steps_by_instance(done)
    assert done["status"]["phase"] == "Failed"
    assert st["a"]["phase"] == "Succeeded", "a running step finishes after stop"
    assert st["b"]["phase"] not in ("Running", "Succeeded", "Failed"), st["b"]
    assert st["bye"]["phase"] == "Succeeded", "the exit step runs after stop"
    assert not [
        p for p in workflow_pods(core, namespace, "stopme") if p.metadata.labels["meson.dev/step"] == "b"
    ]


def test_terminate_kills_running_steps_and_skips_the_exit_step(
    cluster: Cluster, core, custom, namespace: str, q: str
) -> None:
    wf = workflow(
        "killme",
        q,
        [step("forever", annotations=KEEP)],
        onExit={"name": "bye", "template": step("x")["template"]},
    )
    apply(cluster, wf, namespace=namespace)
    wait_for(
        lambda: [p for p in workflow_pods(core, namespace, "killme") if p.status.phase == "Running"],
        60,
        "run",
    )
    meson_cli(cluster, "workflow", "terminate", "killme", "-n", namespace)
    done = wait_workflow(custom, namespace, "killme", ("Failed",), timeout=60)
    assert "bye" not in steps_by_instance(done) or steps_by_instance(done)["bye"]["phase"] not in (
        "Running", "Succeeded",
    )  # fmt: skip
    wait_for(
        lambda: not [p for p in workflow_pods(core, namespace, "killme") if p.status.phase == "Running"],
        60, "the running pod to be killed",
    )  # fmt: skip


def test_restart_reruns_only_the_failed_steps(cluster: Cluster, core, custom, namespace: str, q: str) -> None:
    fails_once = {"sim.meson.dev/exit-code": "2", "sim.meson.dev/fail-attempts": "1"}
    wf = workflow(
        "again",
        q,
        [step("good"), step("bad", deps=["good"], annotations=fails_once), step("after", deps=["bad"])],
    )
    apply(cluster, wf, namespace=namespace)
    failed = wait_workflow(custom, namespace, "again", ("Failed", "Succeeded"), timeout=60)
    assert failed["status"]["phase"] == "Failed"
    assert steps_by_instance(failed)["bad"]["exitCode"] == 2
    meson_cli(cluster, "workflow", "restart", "again", "-n", namespace)
    done = wait_workflow(custom, namespace, "again", ("Succeeded",), timeout=60)
    assert done["status"]["phase"] == "Succeeded"
    pods = workflow_pods(core, namespace, "again")
    per_step = {
        s: len([p for p in pods if p.metadata.labels["meson.dev/step"] == s])
        for s in ("good", "bad", "after")
    }
    assert per_step == {"good": 1, "bad": 2, "after": 1}, "successful steps are not rerun"


def test_ttl_after_finish_deletes_the_workflow_and_its_pods(
    cluster: Cluster, core, custom, namespace: str, q: str
) -> None:
    apply(cluster, workflow("brief", q, [step("a")], ttlSecondsAfterFinished=2), namespace=namespace)

    def gone() -> bool:
        try:
            get_workflow(custom, namespace, "brief")
            return False
        except client.ApiException as e:
            return e.status == 404

    wait_for(gone, 60, "the workflow to be deleted by its TTL")
    wait_for(lambda: not workflow_pods(core, namespace, "brief"), 60, "its pods to be garbage-collected")


def test_cronworkflow_concurrency_policies(cluster: Cluster, core, custom, namespace: str, q: str) -> None:
    """Crons firing every minute, runs that never end: Allow stacks them, Forbid skips, Replace swaps."""
    for policy in ("Allow", "Forbid", "Replace"):
        cron = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "CronWorkflow",
            "metadata": {"name": policy.lower()},
            "spec": {
                "schedule": "* * * * *",
                "concurrencyPolicy": policy,
                "workflowTemplate": {"spec": {"queue": q, "steps": [step("forever", annotations=KEEP)]}},
            },
        }
        apply(cluster, cron, namespace=namespace)

    def children(cron: str) -> list[dict]:
        items = custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, "workflows", label_selector=f"meson.dev/cronworkflow={cron}"
        )["items"]
        return [w for w in items if not w["metadata"].get("deletionTimestamp")]

    # Two schedule ticks: at most 120 s after the first minute boundary.
    wait_for(lambda: len(children("allow")) >= 2, 150, "Allow to start a second run beside the first")
    time.sleep(3)
    allow = children("allow")
    assert all((w.get("status") or {}).get("phase") in ("Running", "Pending") for w in allow)
    forbid = children("forbid")
    assert len(forbid) == 1, "Forbid must not start a run while one is active"
    replace = wait_for(
        lambda: (lambda c: c if len(c) == 1 else None)(children("replace")), 30, "one Replace run"
    )
    first_allow = min(w["metadata"]["annotations"]["meson.dev/scheduled-time"] for w in allow)
    assert replace[0]["metadata"]["annotations"]["meson.dev/scheduled-time"] > first_allow, (
        "Replace must have swapped the first run for the newer one"
    )
    status = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "cronworkflows", "forbid")[
        "status"
    ]
    assert status.get("lastScheduleTime") and status.get("active")
    for policy in ("allow", "forbid", "replace"):
        cluster.kubectl("delete", "cronworkflow.meson.dev", policy, "-n", namespace, "--wait=false")


def test_without_the_webhook_an_invalid_workflow_is_refused_by_the_controller(
    cluster: Cluster, core, custom, namespace: str, q: str
) -> None:
    """A dependency cycle passes the schema (only the webhook can see it); the controller refuses it."""
    wf = workflow("loop", q, [step("a", deps=["b"]), step("b", deps=["a"])])
    apply(cluster, wf, namespace=namespace)
    done = wait_workflow(custom, namespace, "loop", ("Failed",), timeout=60)
    conditions = {c["type"]: c for c in done["status"].get("conditions") or []}
    assert conditions["Valid"]["status"] == "False" and conditions["Valid"]["reason"] == "InvalidSpec"
    assert "cycle" in conditions["Valid"]["message"]
    time.sleep(2)
    assert workflow_pods(core, namespace, "loop") == [], "no pod may be created for a refused workflow"


def test_without_the_webhook_a_pod_template_kubernetes_rejects_is_refused_before_any_pod(
    cluster: Cluster, core, custom, namespace: str, q: str
) -> None:
    """The controller dry-runs the pod templates with the real pod rules before making the first pod."""
    bad = step("a")
    bad["template"]["spec"]["restartPolicy"] = "Sometimes"
    apply(cluster, workflow("badpod", q, [bad]), namespace=namespace)
    done = wait_workflow(custom, namespace, "badpod", ("Failed",), timeout=60)
    valid = next(c for c in done["status"]["conditions"] if c["type"] == "Valid")
    assert valid["status"] == "False" and "restartPolicy" in valid["message"], valid
    assert workflow_pods(core, namespace, "badpod") == []
