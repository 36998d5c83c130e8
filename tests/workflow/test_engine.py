"""Workflow engine behaviour, driven cycle by cycle through the fake cluster."""

from __future__ import annotations

import json

from meson.workflow import plan, pod_name, pod_request, with_queue_positions
from tests.workflow.sim import T0, Cluster, Outcome, container, step, workflow

EXIT = {"template": {"spec": {"containers": [container()]}}}


def failing(*instances: str, times: int = 99, code: int = 1):
    """A script where the given instances fail their first ``times`` attempts with ``code``."""

    def script(instance: str, run: int, attempt: int, index: int) -> Outcome:
        if instance in instances and attempt <= times:
            return Outcome(duration=3, exit_code=code)
        return Outcome()

    return script


# ---------------------------------------------------------------------------------- the DAG


def test_steps_run_in_dependency_order_and_the_workflow_succeeds():
    c = Cluster(workflow([step("a"), step("b", ["a"]), step("c", ["a"]), step("d", ["b", "c"])]))
    result = c.run()
    assert result.finished and c.status["phase"] == "Succeeded"
    assert c.status["progress"] == "4/4"
    assert c.status["counts"] == {
        "total": 4,
        "pending": 0,
        "running": 0,
        "succeeded": 4,
        "failed": 0,
        "skipped": 0,
    }
    assert c.started_order()[0] == "a" and c.started_order()[-1] == "d"
    # b and c overlap; each starts only after its dependencies succeeded
    assert c.first("b", "Running") == c.first("c", "Running") > c.first("a", "Succeeded")
    assert c.first("d", "Running") > max(c.first("b", "Succeeded"), c.first("c", "Succeeded"))
    assert [cond["type"] for cond in c.status["conditions"]] == ["Completed"]
    assert c.status["conditions"][0]["reason"] == "Succeeded"
    assert c.status["startedAt"] == "2023-11-14T22:13:20Z" and "finishedAt" in c.status
    reasons = [r for _, r, _ in c.events]
    assert reasons.count("StepStarted") == 4 and reasons.count("StepSucceeded") == 4
    assert reasons[-1] == "WorkflowSucceeded"


def test_phase_is_pending_until_something_runs():
    c = Cluster(workflow([step("a")]), admit=lambda r: False)
    for _ in range(3):
        result = c.cycle()
        c.now += 1
    assert c.status["phase"] == "Pending" and c.phase("a") == "Pending"
    assert [r.instance for r in result.pending] == ["a"] and result.admitted == []


def test_pending_request_carries_admission_data_and_pod_manifests():
    wf = workflow(
        [
            step("first"),
            step(
                "train",
                ["first"],
                parallelism=2,
                template={
                    "metadata": {"labels": {"team": "ml"}, "annotations": {"note": "x"}},
                    "spec": {"containers": [container(cpu="2", memory="4Gi")]},
                },
            ),
        ],
        priorityClassName="high",
        queue="research",
    )
    result = plan(wf, [], T0)
    (request,) = result.pending
    assert request.key == "ns/wf/first" and request.run == 1 and request.attempt == 1
    assert request.created == T0  # creation epoch + 1e-6 * ordinal 0
    c = Cluster(wf)
    c.run(until=lambda p: any(r.instance == "train" for r in p.pending))
    train = next(r for r in c.plans[-1].pending if r.instance == "train")
    assert train.gang and train.pod_count == 2 and train.index is None
    assert train.pod_request == {"cpu": 2000, "memory": 4 * 2**30}
    assert abs(train.created - (T0 + 1e-6)) < 1e-6
    assert [p["metadata"]["name"] for p in train.pods] == ["wf-train-r1-0", "wf-train-r1-1"]
    pod = train.pods[0]
    assert pod["metadata"]["labels"] == {
        "team": "ml",
        "meson.dev/workflow": "wf",
        "meson.dev/step": "train",
        "meson.dev/instance": "train",
        "meson.dev/run": "1",
        "meson.dev/attempt": "1",
        "meson.dev/queue": "research",
    }
    assert pod["metadata"]["annotations"] == {"note": "x"}
    assert "namespace" not in pod["metadata"] and "ownerReferences" not in pod["metadata"]
    assert pod["spec"]["restartPolicy"] == "Never" and pod["spec"]["priorityClassName"] == "high"
    assert "nodeName" not in pod["spec"]


def test_pod_request_follows_kubernetes_rules():
    spec = {
        "initContainers": [
            {"name": "init", "resources": {"requests": {"cpu": "3", "memory": "1Gi"}}},
            {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}},
        ],
        "containers": [
            {"name": "a", "resources": {"requests": {"cpu": "500m"}, "limits": {"memory": "2Gi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "1", "nvidia.com/gpu": 1}}},
        ],
    }
    # containers: cpu 1500 + sidecar 100 = 1600; the init container alone needs 3000 → 3000
    assert pod_request(spec) == {"cpu": 3000, "memory": 2 * 2**30, "nvidia.com/gpu": 1}


def test_pod_names_stay_short_unique_and_stable():
    long_wf, long_step = "w" * 60, "s" * 40
    a = pod_name(long_wf, f"{long_step}-1", 3, 0)
    b = pod_name(long_wf, f"{long_step}-2", 3, 0)
    assert len(a) <= 63 and len(b) <= 63 and a != b and a.endswith("-r3-0")
    assert a == pod_name(long_wf, f"{long_step}-1", 3, 0)
    assert pod_name("wf", "extract", 1, 0) == "wf-extract-r1-0"


def test_placeholders_are_rendered_per_instance():
    template = {
        "spec": {
            "containers": [
                container(
                    args=[
                        "{{ params.mode }}",
                        "{{ item.file }}",
                        "{{ step.name }}/{{ step.index }}",
                        "{{ workflow.name }}",
                    ],
                    env=[{"name": "UID", "value": "{{ workflow.uid }}"}],
                )
            ]
        }
    }
    wf = workflow(
        [step("load", template=template, foreach={"items": [{"file": "a.csv"}, {"file": "b.csv"}]})],
        parameters=[{"name": "mode", "default": "fast"}],
    )
    result = plan(wf, [], T0)
    args = [r.pods[0]["spec"]["containers"][0]["args"] for r in result.pending]
    assert args == [["fast", "a.csv", "load/0", "wf"], ["fast", "b.csv", "load/1", "wf"]]
    assert result.pending[0].pods[0]["spec"]["containers"][0]["env"][0]["value"] == wf["metadata"]["uid"]


# ---------------------------------------------------------------------------------- foreach, gangs


def test_foreach_respects_max_concurrency():
    items = list(range(7))
    c = Cluster(
        workflow([step("fan", foreach={"items": items, "maxConcurrency": 2}), step("after", ["fan"])])
    )
    peak = 0
    result = c.cycle()
    while not result.finished and c.now < T0 + 600:
        active = sum(
            1 for s in c.status["steps"] if s["name"] == "fan" and s["phase"] in ("Pending", "Running")
        )
        peak = max(peak, active)
        c.now += 1
        result = c.cycle()
    assert result.finished and c.status["phase"] == "Succeeded"
    assert peak == 2
    fan = [s for s in c.status["steps"] if s["name"] == "fan"]
    assert [s["index"] for s in fan] == items
    assert c.started_order() == [f"fan-{i}" for i in items] + ["after"]
    assert c.status["progress"] == "8/8"


def test_foreach_over_a_parameter_and_empty_lists():
    wf = workflow(
        [
            step("fan", foreach={"parameter": "shards"}),
            step("none", foreach={"items": []}),
            step("z", ["fan", "none"]),
        ],
        parameters=[{"name": "shards", "value": ["x", "y", "z"]}],
    )
    c = Cluster(wf)
    # before it is ready a foreach step is one compact entry standing for all its elements
    assert c.run()
    assert c.status["phase"] == "Succeeded"
    assert sorted(i for i, _, _ in c.launches) == ["fan-0", "fan-1", "fan-2", "z"]
    assert c.entry("none")["phase"] == "Succeeded" and c.entry("none")["message"] == "no items"


def test_unready_foreach_step_is_a_single_status_entry():
    wf = workflow([step("a"), step("fan", ["a"], foreach={"items": list(range(100))})])
    result = plan(wf, [], T0)
    fan = [s for s in result.status["steps"] if s["name"] == "fan"]
    assert fan == [{"name": "fan", "phase": "Waiting"}]
    assert result.status["counts"]["total"] == 101 and result.status["progress"] == "0/101"


def test_gang_is_one_instance_and_a_failed_member_kills_its_siblings():
    def script(instance, run, attempt, index):
        if run == 1 and index == 1:
            return Outcome(duration=2, exit_code=3)
        return Outcome(duration=10)

    c = Cluster(
        workflow([step("g", parallelism=3, retryPolicy={"limit": 1, "backoff": {"initialSeconds": 0}})]),
        script=script,
    )
    first = c.cycle()
    (request,) = first.pending
    assert request.gang and request.pod_count == 3 and len(request.pods) == 3
    c.run(until=lambda p: bool(p.delete_pods))
    assert sorted(c.plans[-1].delete_pods) == ["wf-g-r1-0", "wf-g-r1-2"]
    assert c.entry("g")["reason"] == "FailedExit" and c.entry("g")["exitCode"] == 3
    result = c.run()
    assert result.finished and c.status["phase"] == "Succeeded"
    assert c.launches == [("g", 1, 1), ("g", 2, 2)]
    assert c.entry("g")["attempts"] == 2 and c.entry("g")["run"] == 2


def test_gang_succeeds_only_when_every_member_succeeded():
    c = Cluster(
        workflow([step("g", parallelism=2)]), script=lambda i, r, a, idx: Outcome(duration=5 + 10 * idx)
    )
    c.run()
    assert c.first("g", "Succeeded") == T0 + 16  # the slower member: created 0, started 1, ran 15


def test_partially_created_gang_is_completed():
    wf = workflow([step("g", parallelism=3)])
    c = Cluster(wf)
    c.cycle()
    c.pods.pop("wf-g-r1-2")  # the runtime crashed after creating two of the three pods
    c.now += 1
    result = c.cycle()
    assert [p["metadata"]["name"] for p in result.create_pods] == ["wf-g-r1-2"]
    assert [r.instance for r in result.admitted] == ["g"] and result.pending == []
    assert c.run().finished and c.status["phase"] == "Succeeded"


# ---------------------------------------------------------------------------------- conditions


def test_false_condition_skips_and_dependants_of_a_skipped_step_still_run():
    wf = workflow(
        [
            step("a"),
            step("deploy", ["a"], when="params.env == 'prod'"),
            step("report", ["deploy"]),
            step("check", ["a"], when="steps.a.phase == 'Succeeded' && steps.a.exitCode == 0"),
        ],
        parameters=[{"name": "env", "default": "dev"}],
    )
    c = Cluster(wf)
    c.run()
    assert c.phase("deploy") == "Skipped" and c.entry("deploy")["message"] == "condition false"
    assert c.phase("report") == "Succeeded" and c.phase("check") == "Succeeded"
    assert c.status["phase"] == "Succeeded"
    assert c.status["counts"]["skipped"] == 1
    assert any(r == "StepSkipped" for _, r, _ in c.events)


def test_condition_on_a_foreach_step_skips_all_its_elements_in_one_entry():
    wf = workflow(
        [step("fan", foreach={"items": list(range(50))}, when="params.go")],
        parameters=[{"name": "go", "default": False}],
    )
    result = plan(wf, [], T0)
    assert result.status["steps"] == [{"name": "fan", "phase": "Skipped", "message": "condition false"}]
    assert (
        result.finished and result.status["phase"] == "Succeeded" and result.status["counts"]["skipped"] == 50
    )


# ---------------------------------------------------------------------------------- retries


def test_fails_twice_then_succeeds_with_exponential_backoff():
    wf = workflow([step("flaky", retryPolicy={"limit": 3, "backoff": {"initialSeconds": 5, "factor": 2}})])
    c = Cluster(wf, script=failing("flaky", times=2))
    retry_wakes = []
    result = c.cycle()
    while not result.finished:
        if c.entry("flaky")["phase"] == "Retrying":
            retry_wakes.append(result.wake_at)
        c.now += 1
        result = c.cycle()
    assert c.status["phase"] == "Succeeded"
    assert c.launches == [("flaky", 1, 1), ("flaky", 2, 2), ("flaky", 3, 3)]
    # attempt 1: created 0, running 1, fails at 4 → retry at 4 + 5 = 9; attempt 2 created 9, fails 13 → 23
    launch_times = [t for t, i, p in c.history if i == "flaky" and p == "Pending"]
    assert launch_times == [T0, T0 + 9, T0 + 23]
    assert set(retry_wakes) == {T0 + 9, T0 + 23}
    entry = c.entry("flaky")
    assert entry["attempts"] == 3 and entry["run"] == 3 and entry["exitCode"] == 0
    assert [r for _, r, _ in c.events].count("StepRetrying") == 2


def test_backoff_is_capped_and_retry_at_is_persisted():
    wf = workflow(
        [
            step(
                "s",
                retryPolicy={"limit": 5, "backoff": {"initialSeconds": 10, "factor": 10, "maxSeconds": 30}},
            )
        ]
    )
    c = Cluster(wf, script=failing("s", times=3))
    c.run(until=lambda p: c.phase("s") == "Retrying" and c.entry("s")["attempts"] == 2)
    entry = c.entry("s")
    # attempt 2: created at 14 (4 + 10), fails at 18, delay min(100, 30) → retryAt 48
    assert entry["retryAt"] == 48 and entry["reason"] == "FailedExit" and entry["exitCode"] == 1
    assert c.run().finished and c.status["phase"] == "Succeeded"


def test_retries_exhausted_fail_the_step():
    c = Cluster(
        workflow([step("s", retryPolicy={"limit": 1, "backoff": {"initialSeconds": 1}})]), script=failing("s")
    )
    c.run()
    entry = c.entry("s")
    assert entry["phase"] == "Failed" and entry["attempts"] == 2 and entry["reason"] == "FailedExit"
    assert c.status["phase"] == "Failed" and c.status["message"] == "step s failed"
    assert c.status["conditions"][-1]["reason"] == "Failed"


def test_failure_kinds_outside_retry_on_are_not_retried():
    wf = workflow([step("s", retryPolicy={"limit": 3, "retryOn": ["NodeLost"]})])
    c = Cluster(wf, script=failing("s"))
    c.run()
    assert c.phase("s") == "Failed" and c.launches == [("s", 1, 1)]


def test_node_lost_is_retried_and_recorded():
    c = Cluster(workflow([step("s", retryPolicy={"limit": 1, "backoff": {"initialSeconds": 0}})]))
    c.script = lambda *a: Outcome(duration=30)
    c.run(until=lambda p: c.phase("s") == "Running" and c.entry("s").get("node") == "node-a")
    c.lose_node("node-a")  # pods vanish with their node, the runtime saw no deletion
    c.now += 1
    c.cycle()
    entry = c.entry("s")
    assert entry["reason"] == "NodeLost"
    assert c.run().finished and c.status["phase"] == "Succeeded"
    assert c.launches == [("s", 1, 1), ("s", 2, 2)]


def test_evicted_pod_is_retried_when_evicted_is_in_retry_on():
    c = Cluster(workflow([step("s", retryPolicy={"limit": 1, "backoff": {"initialSeconds": 0}})]))
    c.script = lambda *a: Outcome(duration=30)
    c.run(until=lambda p: c.phase("s") == "Running")
    c.delete_pod("wf-s-r1-0")  # someone deleted it: observed as Gone without a known failure
    c.now += 1
    c.cycle()
    assert c.entry("s")["reason"] == "Evicted" and c.phase("s") in ("Retrying", "Pending", "Running")
    assert c.run().finished and c.launches == [("s", 1, 1), ("s", 2, 2)]


def test_step_timeout_deletes_the_pods_and_retries_only_when_asked():
    wf = workflow(
        [
            step(
                "t",
                timeoutSeconds=10,
                retryPolicy={"limit": 1, "retryOn": ["Timeout"], "backoff": {"initialSeconds": 0}},
            ),
            step("u", timeoutSeconds=10),
        ],
        failureMode="Continue",
    )
    c = Cluster(wf, script=lambda *a: Outcome(hang=True))
    result = c.cycle()
    c.now += 1
    result = c.cycle()  # pods running since T0 + 1: the timeout fires at T0 + 11
    assert result.wake_at == T0 + 11
    c.now = T0 + 11
    result = c.cycle()
    assert sorted(result.delete_pods) == ["wf-t-r1-0", "wf-u-r1-0"]
    assert c.entry("t")["reason"] == "Timeout" and c.entry("u")["reason"] == "Timeout"
    assert c.phase("u") == "Failed" and c.entry("u")["message"].startswith("Timeout")
    c.run(seconds=60)
    assert c.launches.count(("t", 2, 2)) == 1 and c.entry("t")["attempts"] == 2


def test_preemption_requeues_without_using_a_retry():
    c = Cluster(workflow([step("s")]))  # no retries at all
    c.script = lambda *a: Outcome(duration=20)
    c.run(until=lambda p: c.phase("s") == "Running")
    pod = c.pods["wf-s-r1-0"]
    pod.deleting = True  # the runtime evicts it for a preemptor; it terminates gracefully
    c.now += 1
    result = c.cycle()
    assert c.phase("s") == "Running" and [r.run for r in result.admitted] == [1]
    c.delete_pod("wf-s-r1-0", failure="Preempted")
    c.now += 1
    result = c.cycle()
    entry = c.entry("s")
    assert entry["phase"] == "Pending" and entry["reason"] == "Preempted" and entry["attempts"] == 1
    (request,) = result.pending
    assert (request.run, request.attempt) == (2, 1) and request.pods[0]["metadata"]["name"] == "wf-s-r2-0"
    assert request.created == T0  # keeps its place in the queue
    assert c.run().finished and c.status["phase"] == "Succeeded"
    assert c.launches == [("s", 1, 1), ("s", 2, 1)]
    assert any(r == "StepPreempted" for _, r, _ in c.events)


def test_preempted_instance_is_not_requeued_while_its_pods_terminate():
    wf = workflow([step("g", parallelism=2)])
    c = Cluster(wf, script=lambda *a: Outcome(duration=50))
    c.run(until=lambda p: c.phase("g") == "Running")
    c.delete_pod("wf-g-r1-0", failure="Preempted")
    c.pods["wf-g-r1-1"].deleting = True
    c.now += 1
    result = c.cycle()
    assert c.phase("g") == "Pending" and result.pending == []
    assert [(r.instance, r.run) for r in result.admitted] == [("g", 1)]
    assert result.delete_pods == []  # already being deleted
    c.delete_pod("wf-g-r1-1", failure="Preempted")
    c.now += 1
    result = c.cycle()
    assert [(r.instance, r.run, r.attempt) for r in result.pending] == [("g", 2, 1)]


# ---------------------------------------------------------------------------------- failure modes


def three_branches(mode: str, **spec):
    # a fails at T0+4; b runs long in parallel; c waits on a; d waits on b
    return workflow(
        [step("a"), step("b"), step("c", ["a"]), step("d", ["b"])], failureMode=mode, onExit=EXIT, **spec
    )


def long_b(instance, run, attempt, index):
    if instance == "a":
        return Outcome(duration=3, exit_code=2)
    if instance == "b":
        return Outcome(duration=20)
    return Outcome()


def test_stop_scheduling_lets_running_steps_finish_then_runs_the_exit_step():
    c = Cluster(three_branches("StopScheduling"), script=long_b)
    c.run()
    assert c.phase("a") == "Failed" and c.phase("b") == "Succeeded"
    assert c.phase("c") == "Omitted" and c.phase("d") == "Omitted"
    assert c.entry("d")["message"] == "not run: step a failed"
    assert c.phase("on-exit") == "Succeeded" and c.first("on-exit", "Running") > c.first("b", "Succeeded")
    assert c.status["phase"] == "Failed" and c.status["message"] == "step a failed"


def test_fail_fast_stops_running_steps():
    c = Cluster(three_branches("FailFast"), script=long_b)
    c.run(until=lambda p: c.phase("a") == "Failed")
    assert c.plans[-1].delete_pods == ["wf-b-r1-0"]
    b = c.entry("b")
    assert b["phase"] == "Failed" and b["message"] == "stopped: step a failed"
    c.run()
    assert c.phase("on-exit") == "Succeeded"
    assert c.status["phase"] == "Failed" and c.status["message"] == "step a failed"
    assert ("b", 1, 1) in c.launches and not any(i in ("c", "d") for i, _, _ in c.launches)


def test_continue_runs_everything_not_depending_on_the_failure():
    c = Cluster(three_branches("Continue"), script=long_b)
    c.run()
    assert c.phase("c") == "Omitted" and c.entry("c")["message"] == "not run: dependency a failed"
    assert c.phase("b") == "Succeeded" and c.phase("d") == "Succeeded" and c.phase("on-exit") == "Succeeded"
    assert c.status["phase"] == "Failed" and c.status["message"] == "step a failed"


def test_omission_propagates_transitively_in_continue_mode():
    wf = workflow([step("a"), step("b", ["a"]), step("c", ["b"])], failureMode="Continue")
    c = Cluster(wf, script=failing("a"))
    c.run()
    assert [c.phase(x) for x in "abc"] == ["Failed", "Omitted", "Omitted"]
    assert c.entry("c")["message"] == "not run: dependency b omitted"


def test_workflow_timeout_stops_everything_but_the_exit_step_runs():
    c = Cluster(three_branches("Continue", timeoutSeconds=10), script=lambda *a: Outcome(duration=100))
    assert c.cycle().wake_at == T0 + 10  # the workflow deadline
    c.run()
    assert c.phase("a") == "Failed" and c.entry("a")["message"] == "stopped: workflow timeout"
    assert c.phase("c") == "Omitted"
    assert c.first("a", "Failed") == T0 + 10
    assert c.status["phase"] == "Failed" and c.status["message"] == "workflow timeout"
    assert c.phase("on-exit") == "Succeeded"  # not killed by the workflow timeout


def test_exit_step_runs_after_success_and_failure_and_a_failed_exit_step_fails_the_workflow():
    c = Cluster(workflow([step("a")], onExit=EXIT), script=failing("on-exit"))
    c.run()
    assert c.phase("a") == "Succeeded" and c.phase("on-exit") == "Failed"
    assert c.status["phase"] == "Failed" and c.status["message"] == "exit step on-exit failed"


# ---------------------------------------------------------------------------------- suspend, stop, terminate


def test_suspend_holds_new_steps_and_resumes():
    c = Cluster(workflow([step("a"), step("b", ["a"])], suspend=True))
    result = c.run(seconds=5)
    assert result.pending == [] and c.launches == []
    assert c.status["phase"] == "Suspended" and c.entry("a")["message"] == "suspended"
    c.set_spec(suspend=False)
    c.run(until=lambda p: c.phase("a") == "Running")
    c.set_spec(suspend=True)
    c.run(until=lambda p: c.phase("a") == "Succeeded")
    assert (
        c.status["phase"] == "Suspended"
        and c.phase("b") == "Pending"
        and c.entry("b")["message"] == "suspended"
    )
    assert c.status["message"] == "suspended"
    c.set_spec(suspend=False)
    c.run()
    assert c.status["phase"] == "Succeeded" and "message" not in c.entry("b")


def test_suspended_workflow_with_running_steps_is_running():
    c = Cluster(workflow([step("a"), step("b")]), script=lambda *a: Outcome(duration=30))
    c.run(until=lambda p: c.phase("a") == "Running")
    c.set_spec(suspend=True)
    c.now += 1
    c.cycle()
    assert c.status["phase"] == "Running"


def test_stop_lets_running_steps_finish_runs_the_exit_step_and_fails():
    wf = workflow([step("a"), step("b", ["a"])], onExit=EXIT)
    c = Cluster(wf, script=lambda *a: Outcome(duration=10))
    c.run(until=lambda p: c.phase("a") == "Running")
    c.set_spec(shutdown="Stop")
    c.run()
    assert c.phase("a") == "Succeeded" and c.phase("b") == "Omitted" and c.phase("on-exit") == "Succeeded"
    assert c.status["phase"] == "Failed" and c.status["message"] == "stopped"


def test_terminate_deletes_pods_and_skips_the_exit_step():
    wf = workflow([step("a"), step("b", ["a"])], onExit=EXIT)
    c = Cluster(wf, script=lambda *a: Outcome(duration=100))
    c.run(until=lambda p: c.phase("a") == "Running")
    c.set_spec(shutdown="Terminate")
    c.now += 1
    result = c.cycle()
    assert result.delete_pods == ["wf-a-r1-0"]
    c.run()
    assert c.phase("a") == "Failed" and c.phase("b") == "Omitted" and c.phase("on-exit") == "Omitted"
    assert not any(i == "on-exit" for i, _, _ in c.launches)
    assert c.status["phase"] == "Failed" and c.status["message"] == "terminated"


def test_terminated_workflow_finishes_only_once_its_pods_are_gone():
    c = Cluster(workflow([step("a")]), script=lambda *a: Outcome(duration=100))
    c.run(until=lambda p: c.phase("a") == "Running")
    c.set_spec(shutdown="Terminate")
    c.pods["wf-a-r1-0"].deleting = True
    c.now += 1
    result = c.cycle()
    assert not result.finished and result.delete_pods == [] and result.admitted[0].instance == "a"
    c.delete_pod("wf-a-r1-0")
    c.now += 1
    assert c.cycle().finished


# ---------------------------------------------------------------------------------- restart


def test_restart_reruns_only_failed_and_omitted_steps():
    wf = workflow([step("a"), step("b"), step("c", ["b"])], onExit=EXIT)
    c = Cluster(wf, script=lambda i, r, a, x: Outcome(duration=3, exit_code=int(i == "b" and r == 1)))
    c.run()
    assert c.status["phase"] == "Failed" and c.phase("c") == "Omitted"
    a_before = c.entry("a")
    c.set_spec(restarts=1)
    c.now += 100
    c.run()
    assert c.status["phase"] == "Succeeded" and c.status["restarts"] == 1
    assert c.entry("a") == a_before  # not rerun
    assert [x for x in c.launches if x[0] == "a"] == [("a", 1, 1)]
    assert ("b", 2, 1) in c.launches and ("c", 1, 1) in c.launches and ("on-exit", 2, 1) in c.launches
    assert c.entry("b")["attempts"] == 1 and c.entry("b")["run"] == 2
    restarted = next(x for x in c.status["conditions"] if x["type"] == "Restarted")
    assert restarted["status"] == "True"
    assert [x["type"] for x in c.status["conditions"]] == ["Restarted", "Completed"]
    assert any(r == "WorkflowRestarted" for _, r, _ in c.events)


def test_restart_of_a_timed_out_workflow_counts_the_timeout_from_the_restart():
    c = Cluster(
        workflow([step("a")], timeoutSeconds=10),
        script=lambda i, r, a, x: Outcome(duration=30 if r == 1 else 3),
    )
    c.run()
    assert c.status["message"] == "workflow timeout"
    c.now += 1000
    c.set_spec(restarts=1)
    c.run()
    assert c.status["phase"] == "Succeeded"


# ---------------------------------------------------------------------------------- TTL, events, positions


def test_ttl_deletes_the_workflow_after_it_finished():
    c = Cluster(workflow([step("a")], ttlSecondsAfterFinished=30))
    result = c.run()
    finished_at = c.now
    assert result.finished and not result.delete_workflow and result.wake_at == finished_at + 30
    c.now = finished_at + 29
    assert not c.cycle().delete_workflow
    c.now = finished_at + 30
    assert c.cycle().delete_workflow


def test_events_are_emitted_once_per_transition():
    c = Cluster(workflow([step("a")]), script=lambda *a: Outcome(duration=30))
    c.run(until=lambda p: c.phase("a") == "Running")
    for _ in range(5):
        c.now += 1
        result = c.cycle()
        assert result.events == [] and result.status == c.status


def test_queue_positions_are_applied_by_the_runtime():
    wf = workflow([step("a"), step("b")])
    result = plan(wf, [], T0)
    status = with_queue_positions(result.status, {"a": (3, "waiting for quota in queue default")})
    a, b = status["steps"]
    assert a["position"] == 3 and a["message"] == "waiting for quota in queue default" and "position" not in b
    assert "position" not in result.status["steps"][0]  # the input is not modified
    wf["status"] = status
    again = plan(wf, [], T0 + 1)
    assert all("position" not in s for s in again.status["steps"])


def test_invalid_spec_fails_the_workflow_without_pods():
    wf = workflow([step("a", ["b"]), step("b", ["a"])])
    result = plan(wf, [], T0)
    assert result.finished and result.pending == [] and result.status["phase"] == "Failed"
    valid = result.status["conditions"][0]
    assert valid["type"] == "Valid" and valid["status"] == "False" and "cycle" in valid["message"]


def test_status_of_5000_instances_stays_compact():
    wf = workflow([step("fan", foreach={"items": list(range(5000))}, retryPolicy={"limit": 2})])
    c = Cluster(
        wf, script=lambda i, r, a, x: Outcome(duration=3, exit_code=int(int(i.rsplit("-", 1)[1]) % 7 == 0))
    )
    c.nodes = {"node-a"}
    c.run(seconds=10)
    size = len(json.dumps(c.status, separators=(",", ":")))
    assert len(c.instances()) == 5000 and len(c.status["steps"]) < 10  # one range entry per state
    assert size < 20_000, size


def test_queue_reason_is_refreshed_every_cycle_by_the_runtime():
    wf = workflow([step("a")])
    wf["status"] = with_queue_positions(plan(wf, [], T0).status, {"a": (1, "waiting for quota")})
    again = plan(wf, [], T0 + 1)
    assert again.status["steps"][0] == {"name": "a", "phase": "Pending", "attempts": 1}
    assert with_queue_positions(again.status, {"a": (1, "waiting for quota")}) == wf["status"] | {
        "startedAt": wf["status"]["startedAt"]
    }


def test_stop_during_a_retry_backoff_fails_the_step_without_retrying():
    wf = workflow([step("s", retryPolicy={"limit": 3, "backoff": {"initialSeconds": 60}})])
    c = Cluster(wf, script=failing("s"))
    c.run(until=lambda p: c.phase("s") == "Retrying")
    c.set_spec(shutdown="Stop")
    c.now += 1
    result = c.cycle()
    assert result.finished and c.phase("s") == "Failed"
    assert c.entry("s")["message"] == "FailedExit: not retried: stopped" and c.launches == [("s", 1, 1)]
    assert [(e.reason, e.failure) for e in result.events if e.reason == "StepFailed"] == [
        ("StepFailed", "FailedExit")
    ]


def test_suspend_during_a_retry_backoff_holds_the_next_attempt():
    wf = workflow([step("s", retryPolicy={"limit": 3, "backoff": {"initialSeconds": 5}})])
    c = Cluster(wf, script=failing("s", times=1))
    c.run(until=lambda p: c.phase("s") == "Retrying")
    c.set_spec(suspend=True)
    c.run(seconds=30, until=lambda p: False)
    assert c.phase("s") == "Pending" and c.entry("s")["message"] == "suspended"
    assert c.status["phase"] == "Suspended" and c.launches == [("s", 1, 1)]
    c.set_spec(suspend=False)
    assert c.run().finished and c.launches == [("s", 1, 1), ("s", 2, 2)]


def test_retry_and_failure_events_carry_the_failure_kind() -> None:
    """The retry metric counts by the event's structured failure kind, never by its message text."""
    wf = workflow([step("flaky", retryPolicy={"limit": 1, "backoff": {"initialSeconds": 1}})])
    c = Cluster(wf, script=failing("flaky", times=5))
    kinds = []
    result = c.cycle()
    for _ in range(60):
        kinds += [(e.reason, e.failure) for e in result.events if e.reason in ("StepRetrying", "StepFailed")]
        if result.finished:
            break
        c.now += 1
        result = c.cycle()
    assert kinds == [("StepRetrying", "FailedExit"), ("StepFailed", "FailedExit")]


def test_refused_status_is_idempotent() -> None:
    from meson.workflow import refused_status

    wf = {"metadata": {"name": "w", "generation": 2}, "spec": {}}
    first = refused_status(wf, ["spec.steps: dependency cycle"], 100.0, 2)
    assert first["phase"] == "Failed" and first["conditions"][-1]["reason"] == "InvalidSpec"
    again = refused_status({**wf, "status": first}, ["spec.steps: dependency cycle"], 500.0, 2)
    assert again == first
