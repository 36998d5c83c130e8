"""Workflows at Argo/Maestro depth (#14) on the real control plane: step outputs read by later steps,
restart from any step with new parameters, memoization, cron backfill, semaphores of workflows and of
steps."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from kubernetes import client

from e2e.conftest import Cluster
from e2e.helpers import (
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
from e2e.test_workflows import Sampler

RESULT = "sim.meson.dev/termination-message"


def own_queue(cluster: Cluster, queues: list[str], prefix: str) -> str:
    """A fresh queue of 8 CPUs for one test (deleted after it by the queues fixture)."""
    name = f"{prefix}-{uid()}"
    queues.append(name)
    apply(cluster, queue(name, cpu=8))
    return name


def args(pod: client.V1Pod) -> list[str]:
    return pod.spec.containers[0].args or []


def test_a_step_fans_out_over_a_list_its_upstream_step_emitted_and_a_condition_reads_it(
    cluster: Cluster, operator: OperatorProcess, core: client.CoreV1Api, custom, namespace: str, queues
) -> None:
    q = own_queue(cluster, queues, "outputs")
    emitted = {"partitions": ["a", "b", "c"], "rows": 3}
    load = step("load", deps=["list"], foreach={"fromOutput": "steps.list.outputs.json.partitions"})
    load["template"]["spec"]["containers"][0]["args"] = ["{{ item }}", "{{ steps.list.outputs.json.rows }}"]
    steps = [
        step("list", annotations={RESULT: json.dumps(emitted)}),
        load,
        step("when-big", deps=["list"], when="steps.list.outputs.json.rows > 100"),
        step("when-some", deps=["list"], when="size(steps.list.outputs.json.partitions) == 3"),
    ]
    apply(cluster, workflow("outputs", q, steps), namespace=namespace)
    done = wait_workflow(custom, namespace, "outputs", ("Succeeded", "Failed"), timeout=120)
    assert done["status"]["phase"] == "Succeeded", [
        (s.get("name"), s.get("index"), s.get("phase"), s.get("reason"), s.get("message"), s.get("run"))
        for s in done["status"].get("steps") or []
    ]
    assert json.loads(done["status"]["outputs"]["list"]) == emitted
    by_id = steps_by_instance(done)
    assert by_id["when-big"]["phase"] == "Skipped" and by_id["when-some"]["phase"] == "Succeeded"
    fanned = sorted(
        args(p)
        for p in workflow_pods(core, namespace, "outputs")
        if p.metadata.labels["meson.dev/step"] == "load"
    )
    assert fanned == [["a", "3"], ["b", "3"], ["c", "3"]]


def test_restart_from_a_middle_step_with_a_new_parameter_reruns_only_it_and_downstream(
    cluster: Cluster, operator: OperatorProcess, core: client.CoreV1Api, custom, namespace: str, queues
) -> None:
    q = own_queue(cluster, queues, "restart")
    steps = [step("extract", annotations={RESULT: '{"rows": 5}'})]
    for name, deps in (("transform", ["extract"]), ("load", ["transform"])):
        s = step(name, deps=deps)
        s["template"]["spec"]["containers"][0]["args"] = [
            "{{ params.day }}",
            "{{ steps.extract.outputs.json.rows }}",
        ]
        steps.append(s)
    apply(
        cluster,
        workflow("rerun", q, steps, parameters=[{"name": "day", "default": "mon"}]),
        namespace=namespace,
    )
    assert (
        wait_workflow(custom, namespace, "rerun", ("Succeeded", "Failed"))["status"]["phase"] == "Succeeded"
    )

    out = meson_cli(
        cluster, "workflow", "restart", "rerun", "--from", "transform", "-p", "day=tue", "-n", namespace
    )
    assert out.strip() == "workflow.meson.dev/rerun restart from step transform"

    def rerun_done() -> dict | None:
        wf = get_workflow(custom, namespace, "rerun")
        status = wf.get("status") or {}
        return wf if status.get("history") and status.get("phase") in ("Succeeded", "Failed") else None

    done = wait_for(rerun_done, 120, "the restarted workflow to finish")
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert done["status"]["history"][0]["from"] == "transform"
    runs: dict[str, list[tuple[str, list[str]]]] = {}
    for pod in workflow_pods(core, namespace, "rerun"):
        labels = pod.metadata.labels
        runs.setdefault(labels["meson.dev/step"], []).append((labels["meson.dev/run"], args(pod)))
    assert runs["extract"] == [("1", [])]  # upstream: not rerun
    for name in ("transform", "load"):
        assert sorted(runs[name]) == [("1", ["mon", "5"]), ("2", ["tue", "5"])]


def test_a_memoized_step_is_cached_on_the_second_run_and_its_output_reused_downstream(
    cluster: Cluster, operator: OperatorProcess, core: client.CoreV1Api, custom, namespace: str, queues
) -> None:
    q = own_queue(cluster, queues, "memo")

    def memo_run(name: str, rows: int) -> dict:
        extract = step(
            "extract",
            annotations={RESULT: json.dumps({"rows": rows})},
            memoize={"key": "extract-{{ params.day }}", "maxAgeSeconds": 3600},
        )
        use = step("use", deps=["extract"])
        use["template"]["spec"]["containers"][0]["args"] = ["{{ steps.extract.outputs.json.rows }}"]
        wf = workflow(name, q, [extract, use], parameters=[{"name": "day", "default": "2025-06-01"}])
        apply(cluster, wf, namespace=namespace)
        return wait_workflow(custom, namespace, name, ("Succeeded", "Failed"))

    first = memo_run("memo-first", rows=5)
    assert (
        first["status"]["phase"] == "Succeeded"
        and steps_by_instance(first)["extract"]["phase"] == "Succeeded"
    )
    second = memo_run("memo-second", rows=99)
    assert second["status"]["phase"] == "Succeeded", second["status"]
    assert steps_by_instance(second)["extract"]["phase"] == "Cached"
    pods = {
        p.metadata.labels["meson.dev/step"]: args(p) for p in workflow_pods(core, namespace, "memo-second")
    }
    assert pods == {"use": ["5"]}  # no extract pod; the first run's result reused


def test_backfill_of_ten_daily_runs_three_at_a_time_and_a_second_backfill_creates_none(
    cluster: Cluster, operator: OperatorProcess, custom, namespace: str, queues
) -> None:
    q = own_queue(cluster, queues, "backfill")
    template = workflow("unused", q, [step("day", duration="1s")])["spec"]
    template["parameters"] = [{"name": "scheduledTime", "default": ""}]
    cron = {
        "apiVersion": "meson.dev/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": {"name": "daily"},
        "spec": {
            "schedule": "0 0 * * *",
            "successfulWorkflowsHistoryLimit": 20,
            "workflowTemplate": {"spec": template},
        },
    }
    apply(cluster, cron, namespace=namespace)
    last = datetime.now(UTC).date() - timedelta(days=1)
    first = last - timedelta(days=9)

    def runs() -> list[dict]:
        listed = custom.list_namespaced_custom_object(
            "meson.dev", "v1alpha1", namespace, "workflows", label_selector="meson.dev/backfill=true"
        )
        return listed["items"]

    def backfill() -> str:
        span = ("--from", str(first), "--to", str(last), "--parallel", "3", "-n", namespace)
        return meson_cli(cluster, "cron", "backfill", "daily", *span)

    def overlap() -> str | None:
        live = [w for w in runs() if (w.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        return f"{len(live)} backfill runs unfinished at once" if len(live) > 3 else None

    with Sampler(overlap) as sampler:
        out = backfill()
        assert "backfill of 10 scheduled times" in out
        done = wait_for(
            lambda: (
                len(runs()) == 10 and all((w.get("status") or {}).get("phase") == "Succeeded" for w in runs())
            ),
            180,
            "10 backfill runs to succeed",
        )
    assert done and sampler.samples > 5 and not sampler.violations, sampler.violations
    times = sorted(w["spec"]["parameters"][0]["value"] for w in runs())
    assert times == [f"{first + timedelta(days=d)}T00:00:00Z" for d in range(10)]
    names = sorted(w["metadata"]["name"] for w in runs())

    backfill()
    time.sleep(3)  # give the controller cycles to act on it (it must create nothing)
    assert sorted(w["metadata"]["name"] for w in runs()) == names


def test_a_workflow_made_from_a_workflow_template_runs_with_its_own_parameter_values(
    cluster: Cluster, operator: OperatorProcess, core: client.CoreV1Api, custom, namespace: str, queues
) -> None:
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/workflowtemplates.meson.dev", "crd/clusterworkflowtemplates.meson.dev",
    )  # fmt: skip
    q = own_queue(cluster, queues, "tmpl")
    first = step("extract")
    first["template"]["spec"]["containers"][0]["args"] = ["{{ params.day }}", "{{ params.mode }}"]
    spec = workflow("unused", q, [first, step("load", deps=["extract"])])["spec"]
    spec["parameters"] = [{"name": "day", "default": "mon"}, {"name": "mode", "default": "full"}]
    template = {
        "apiVersion": "meson.dev/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {"name": "etl"},
        "spec": spec,
    }
    made = {
        "apiVersion": "meson.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "from-template"},
        "spec": {"workflowTemplateRef": {"name": "etl"}, "parameters": [{"name": "day", "value": "fri"}]},
    }
    apply(cluster, template, made, namespace=namespace)
    done = wait_workflow(custom, namespace, "from-template", ("Succeeded", "Failed"))
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert done["spec"]["queue"] == q and done["spec"]["workflowTemplateRef"]["name"] == "etl"
    pods = {p.metadata.labels["meson.dev/step"]: p for p in workflow_pods(core, namespace, "from-template")}
    assert sorted(pods) == ["extract", "load"]
    assert args(pods["extract"]) == ["fri", "full"]
    assert pods["extract"].metadata.labels["meson.dev/queue"] == q  # admitted through the template's queue


def test_three_workflows_sharing_a_mutex_never_overlap_and_run_in_priority_order(
    cluster: Cluster,
    operator: OperatorProcess,
    core: client.CoreV1Api,
    custom,
    namespace: str,
    queues,
    priority_classes: tuple[str, str],
) -> None:
    q = own_queue(cluster, queues, "sem")
    low, high = priority_classes
    sem = {"semaphore": {"name": "warehouse", "limit": 1}}

    # Steps of 1 s: a workflow's first pod is then 2 s or more after the previous one's (creation
    # timestamps have whole seconds), so the order below is unambiguous.
    def guarded(name: str, priority: str | None, duration: str = "1s") -> dict:
        spec = {"synchronization": sem, **({"priorityClassName": priority} if priority else {})}
        return workflow(
            name, q, [step("a", duration=duration), step("b", deps=["a"], duration=duration)], **spec
        )

    # A first holder, so the three below are all waiting when the mutex frees.
    apply(cluster, guarded("blocker", None, duration="4s"), namespace=namespace)
    wait_for(lambda: workflow_pods(core, namespace, "blocker"), 60, "the blocker to start")
    names = ["none", "low", "high"]
    apply(cluster, guarded("none", None), guarded("low", low), guarded("high", high), namespace=namespace)

    def overlap() -> str | None:
        pods = core.list_namespaced_pod(namespace).items
        live = {
            p.metadata.labels.get("meson.dev/workflow")
            for p in pods
            if p.status.phase in ("Pending", "Running")
        }
        return f"{sorted(live)} hold the mutex at once" if len(live) > 1 else None

    with Sampler(overlap) as sampler:
        for name in ["blocker", *names]:
            done = wait_workflow(custom, namespace, name, ("Succeeded", "Failed"), timeout=120)
            assert done["status"]["phase"] == "Succeeded", done["status"]
            if name == "blocker":
                operator.restart()  # SIGKILL as the mutex is handed over: the new process works it out again
    assert sampler.samples > 5 and not sampler.violations, sampler.violations
    for name in names:  # each step ran once: nothing was granted or launched twice across the kill
        assert sorted(p.metadata.name for p in workflow_pods(core, namespace, name)) == [
            f"{name}-a-r1-0",
            f"{name}-b-r1-0",
        ]
    first_pod = {
        name: min(p.metadata.creation_timestamp for p in workflow_pods(core, namespace, name))
        for name in names
    }
    assert sorted(names, key=first_pod.__getitem__) == ["high", "low", "none"]


def test_three_workflows_sharing_a_step_mutex_run_that_step_one_at_a_time_and_their_other_steps_freely(
    cluster: Cluster,
    operator: OperatorProcess,
    core: client.CoreV1Api,
    custom,
    namespace: str,
    queues,
    priority_classes: tuple[str, str],
) -> None:
    q = own_queue(cluster, queues, "stepsem")
    low, high = priority_classes
    sem = {"semaphore": {"name": "warehouse", "limit": 1}}

    # Only step load takes the mutex; free and after (once load is done) take nothing.
    def guarded(name: str, priority: str | None, duration: str = "2s") -> dict:
        steps = [
            step("load", duration=duration, synchronization=sem),
            step("free", duration="1s"),
            step("after", deps=["load"], duration="1s"),
        ]
        return workflow(name, q, steps, **({"priorityClassName": priority} if priority else {}))

    def pods_of(step_name: str) -> list[client.V1Pod]:
        pods = core.list_namespaced_pod(namespace, label_selector=f"meson.dev/step={step_name}").items
        return pods

    # A first holder, so the three below all wait for the mutex when their free steps start.
    apply(cluster, guarded("blocker", None, duration="6s"), namespace=namespace)
    wait_for(lambda: pods_of("load"), 60, "the blocker's load to start")
    names = ["none", "low", "high"]
    apply(cluster, guarded("none", None), guarded("low", low), guarded("high", high), namespace=namespace)

    def overlap() -> str | None:
        live = {
            p.metadata.labels.get("meson.dev/workflow")
            for p in pods_of("load")
            if p.status.phase in ("Pending", "Running")
        }
        return f"{sorted(live)} run load at once" if len(live) > 1 else None

    def blocker_loaded() -> bool:
        return any(
            p.metadata.labels.get("meson.dev/workflow") == "blocker" and p.status.phase == "Succeeded"
            for p in pods_of("load")
        )

    with Sampler(overlap) as sampler:
        wait_for(blocker_loaded, 60, "the blocker's load to end")
        operator.restart()  # SIGKILL as the mutex is handed over: the new process works it out again
        for name in ["blocker", *names]:
            done = wait_workflow(custom, namespace, name, ("Succeeded", "Failed"), timeout=120)
            assert done["status"]["phase"] == "Succeeded", done["status"]
    assert sampler.samples > 5 and not sampler.violations, sampler.violations
    pods = core.list_namespaced_pod(namespace).items
    labels = [(p.metadata.labels["meson.dev/workflow"], p.metadata.labels["meson.dev/step"]) for p in pods]
    created = dict(zip(labels, (p.metadata.creation_timestamp for p in pods), strict=True))
    # Each step of each workflow ran once: nothing was granted or launched twice across the kill.
    assert len(pods) == len(created) == 12
    # The steps without the semaphore were not held: every free step started before the first waiter's load.
    assert max(created[(n, "free")] for n in names) < min(created[(n, "load")] for n in names), created
    assert sorted(names, key=lambda n: created[(n, "load")]) == ["high", "low", "none"]


def test_a_semaphore_limit_read_from_a_config_map_holds_back_until_set_and_applies_when_raised(
    cluster: Cluster, operator: OperatorProcess, core: client.CoreV1Api, custom, namespace: str, queues
) -> None:
    q = own_queue(cluster, queues, "semcm")
    sem = {"semaphore": {"name": "warehouse", "configMapKeyRef": {"name": "limits", "key": "warehouse"}}}
    names = ["first", "second"]
    # Steps long enough that the holder still runs when the limit is raised.
    apply(
        cluster,
        *(workflow(n, q, [step("a", duration="30s")], synchronization=sem) for n in names),
        namespace=namespace,
    )

    def message(name: str) -> str:
        entry = steps_by_instance(get_workflow(custom, namespace, name)).get("a") or {}
        return entry.get("message") or ""

    def live() -> set[str]:
        pods = core.list_namespaced_pod(namespace).items
        return {
            p.metadata.labels.get("meson.dev/workflow")
            for p in pods
            if p.status.phase in ("Pending", "Running")
        }

    # No ConfigMap yet: both are held back (not failed) and say why.
    wait_for(
        lambda: all("ConfigMap limits not found" in message(n) for n in names),
        60,
        "the missing ConfigMap reason",
    )
    assert not live()
    assert all(get_workflow(custom, namespace, n)["status"].get("phase") != "Failed" for n in names)

    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="limits"), data={"warehouse": "1"})
    )
    with Sampler(lambda: f"{sorted(live())} hold a semaphore of 1" if len(live()) > 1 else None) as sampler:
        holder = wait_for(lambda: next(iter(live()), None), 60, "a holder to start")
        (waiter,) = set(names) - {holder}
        wait_for(
            lambda: f"waiting for semaphore warehouse: 1/1 held by {holder}" in message(waiter),
            60,
            "the other workflow to wait its turn",
        )
    assert sampler.samples > 2 and not sampler.violations, sampler.violations

    core.patch_namespaced_config_map("limits", namespace, {"data": {"warehouse": "2"}})
    wait_for(lambda: live() == set(names), 60, "both workflows to run at once under a limit of 2")
    for name in names:
        done = wait_workflow(custom, namespace, name, ("Succeeded", "Failed"), timeout=120)
        assert done["status"]["phase"] == "Succeeded", done["status"]


def test_a_sequential_cron_queues_its_runs_one_at_a_time(
    cluster: Cluster, operator: OperatorProcess, core: client.CoreV1Api, custom, namespace: str, queues
) -> None:
    q = own_queue(cluster, queues, "seq")
    template = workflow("unused", q, [step("day", duration="1s")])["spec"]
    cron = {
        "apiVersion": "meson.dev/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": {"name": "seq"},
        "spec": {
            "schedule": "0 0 * * *",
            "runStrategy": {"type": "Sequential"},
            "workflowTemplate": {"spec": template},
        },
    }
    apply(cluster, cron, namespace=namespace)
    last = datetime.now(UTC).date() - timedelta(days=1)
    first = last - timedelta(days=2)

    def overlap() -> str | None:
        live = [
            p for p in core.list_namespaced_pod(namespace).items if p.status.phase in ("Pending", "Running")
        ]
        return f"{len(live)} runs at once" if len(live) > 1 else None

    with Sampler(overlap) as sampler:
        # Three backfill runs may be unfinished at once; the run strategy still runs them one by one.
        meson_cli(
            cluster,
            "cron",
            "backfill",
            "seq",
            "--from",
            str(first),
            "--to",
            str(last),
            "--parallel",
            "3",
            "-n",
            namespace,
        )

        def all_done() -> bool:
            listed = custom.list_namespaced_custom_object("meson.dev", "v1alpha1", namespace, "workflows")[
                "items"
            ]
            return len(listed) == 3 and all(
                (w.get("status") or {}).get("phase") == "Succeeded" for w in listed
            )

        wait_for(all_done, 120, "the three runs to succeed")
    assert sampler.samples > 5 and not sampler.violations, sampler.violations
