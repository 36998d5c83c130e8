"""Kubernetes objects become the core's and the engine's values the way Kubernetes itself reads them."""

from __future__ import annotations

from meson.controllers import translate
from meson.core import (
    AdmittedWorkload,
    NodeCapacity,
    QueueConfig,
    Resources,
    Scheduler,
    Snapshot,
    Workload,
    validate_queues,
)
from meson.workflow import pod_request


def test_pod_request_follows_kubernetes_effective_request_rule() -> None:
    spec = {
        "containers": [
            {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "1", "nvidia.com/gpu": 2}}},  # limit stands in
        ],
        "initContainers": [{"name": "init", "resources": {"requests": {"cpu": "4"}}}],
        "overhead": {"memory": "128Mi"},
    }
    assert translate.pod_request(spec) == {
        "cpu": 4000,  # the init container needs more than the containers together
        "memory": (1 << 30) + (128 << 20),
        "nvidia.com/gpu": 2,
        "pods": 1,
    }


def test_queue_config_from_the_queue_api() -> None:
    obj = {
        "metadata": {"name": "team-a"},
        "spec": {
            "parent": "org",
            "quota": {"cpu": {"guaranteed": "4", "limit": "10"}, "memory": {"guaranteed": "8Gi"}},
            "weight": 3,
            "maxAdmitted": 5,
            "admissionRate": {"podsPerSecond": 20, "burst": 40},
            "queueingStrategy": "StrictFIFO",
            "preemption": {"withinQueue": "LowerPriority", "reclaimBorrowed": True},
            "stopPolicy": "Hold",
        },
    }
    q = translate.queue_config(obj)
    assert q.parent == "org" and q.weight == 3.0 and q.max_admitted == 5
    assert q.guaranteed == Resources(cpu=4000, memory=8 << 30)
    assert q.limit == Resources(cpu=10000, memory=8 << 30)  # no limit: guaranteed, no borrowing
    assert (q.admission_rate, q.admission_burst, q.strategy) == (20, 40, "StrictFIFO")
    assert q.preempt_within_queue == "LowerPriority" and q.reclaim_borrowed and q.stop_policy == "Hold"
    assert q.listed == frozenset({"cpu", "memory"})  # what this queue limits; other resources it does not


def test_namespace_policy_by_name_and_selector() -> None:
    q = {"spec": {"namespaces": {"names": ["a"], "selector": {"matchExpressions": [
        {"key": "team", "operator": "In", "values": ["x", "y"]}]}}}}  # fmt: skip
    assert translate.namespace_allowed(q, "a", {})
    assert translate.namespace_allowed(q, "b", {"team": "y"})
    assert not translate.namespace_allowed(q, "b", {"team": "z"})
    assert translate.namespace_allowed({"spec": {}}, "anything", None)


def _pod(phase: str, **extra) -> dict:
    pod = {
        "metadata": {
            "name": "wf-a-r2-0",
            "labels": {"meson.dev/instance": "a", "meson.dev/run": "2", "meson.dev/attempt": "1"},
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "annotations": {},
        },
        "spec": {"nodeName": "n1"},
        "status": {"phase": phase, "startTime": "2026-01-01T00:00:01Z"},
    }
    pod.update(extra)
    return pod


def test_pod_observation_of_a_failed_exit() -> None:
    pod = _pod("Failed")
    pod["status"]["containerStatuses"] = [
        {"state": {"terminated": {"exitCode": 3, "finishedAt": "2026-01-01T00:00:05Z"}}}
    ]
    obs = translate.pod_observation(pod)
    assert (obs.instance, obs.run, obs.attempt, obs.phase) == ("a", 2, 1, "Failed")
    assert obs.exit_code == 3 and obs.failure == "FailedExit"
    assert obs.finished - obs.started == 4


def test_a_deleted_unfinished_pod_is_gone_and_says_why() -> None:
    preempted = _pod("Running")
    preempted["metadata"]["annotations"] = {translate.PREEMPTED_ANNOTATION: "by higher priority"}
    assert translate.pod_observation(preempted, gone=True, nodes={"n1"}).failure == "Preempted"
    assert translate.pod_observation(_pod("Running"), gone=True, nodes={"n2"}).failure == "NodeLost"
    evicted = translate.pod_observation(_pod("Running"), gone=True, nodes={"n1"})
    assert (evicted.phase, evicted.failure) == ("Gone", "Evicted")
    done = translate.pod_observation(_pod("Succeeded"), gone=True, nodes=set())
    assert done.phase == "Succeeded" and done.failure is None


def test_node_capacity_is_allocatable_minus_live_requests_of_ready_nodes() -> None:
    ready = {"type": "Ready", "status": "True"}
    nodes = {
        "n1": {"status": {"allocatable": {"cpu": "4", "pods": "10"}, "conditions": [ready]}},
        "n2": {
            "spec": {"unschedulable": True},
            "status": {"allocatable": {"cpu": "4"}, "conditions": [ready]},
        },
        "n3": {"status": {"allocatable": {"cpu": "4"}, "conditions": [{"type": "Ready", "status": "False"}]}},
    }
    caps = translate.node_capacities(nodes, {"n1": {"cpu": 1500, "pods": 2}})
    assert [c.name for c in caps] == ["n1"]
    assert caps[0].free == Resources(cpu=2500, pods=8)


def _queue(name: str, quota: dict, parent: str | None = None) -> QueueConfig:
    spec: dict = {"quota": quota} if parent is None else {"quota": quota, "parent": parent}
    return translate.queue_config({"metadata": {"name": name}, "spec": spec})


def _step_request(cpu: str = "100m", memory: str = "64Mi") -> dict[str, int]:
    """A step's per-pod request as the workflow engine computes it (it has no ``pods`` entry)."""
    return pod_request(
        {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}
    )


def test_a_pods_only_quota_caps_the_pods_admitted_at_once() -> None:
    """The reported bug: ``quota: {pods: {guaranteed: 5}}`` ran 20 pods at once. The engine's request has
    no ``pods`` entry and the controller kept only the resources the tree names, so the core was
    handed an empty request and charged nothing. The core now counts ``pods: 1`` for every pod."""
    queues = [_queue("pods-only", {"pods": {"guaranteed": 5}})]
    request = _step_request()
    assert "pods" not in request
    pending = [Workload(f"single-{i:02d}", "pods-only", 0, float(i), Resources(request)) for i in range(50)]
    pending += [
        Workload(f"gang-{i}", "pods-only", 0, 0.5 + 5 * i, Resources(request), pod_count=2, gang=True)
        for i in range(10)
    ]
    nodes = [
        NodeCapacity(f"n{i}", Resources(cpu=32_000, memory=64 << 30, pods=110),
                     Resources(cpu=32_000, memory=64 << 30, pods=110))
        for i in range(3)
    ]  # fmt: skip
    sched = Scheduler()
    running: list[AdmittedWorkload] = []
    finished: list[str] = []
    most = 0
    for t in range(200):
        if not pending and not running:
            break
        d = sched.cycle(Snapshot(float(t), queues, pending, running, nodes))
        admitted = {a.key for a in d.admit}
        running += [AdmittedWorkload(w, float(t)) for w in pending if w.key in admitted]
        pending = [w for w in pending if w.key not in admitted]
        pods = sum(a.workload.pod_count for a in running)
        assert pods <= 5, (t, pods)
        assert d.queues["pods-only"].usage == Resources(pods=pods)
        most = max(most, pods)
        for w in pending:
            assert d.pending[w.key].reason.startswith("needs pods ") or "behind" in d.pending[w.key].reason
        # The oldest admission finishes every cycle (a gang's pods finish together).
        if running:
            finished.append(running.pop(0).key)
    assert most == 5
    assert len(finished) == 60 and not pending


def test_a_resource_a_queue_does_not_list_is_not_limited_by_that_queue() -> None:
    """The Queue API's rule, per queue: "gpu" lists only GPUs, so its CPU is capped by its parent alone;
    "cpu" lists only CPU, so its GPUs are capped by the tree's GPU pool (what "gpu" is guaranteed)."""
    queues = [
        _queue("org", {"cpu": {"guaranteed": 8}}),
        _queue("gpu", {"nvidia.com/gpu": {"guaranteed": 2}}, parent="org"),
        _queue("cpu", {"cpu": {"guaranteed": 4}}, parent="org"),
    ]
    assert validate_queues(queues) == []
    gpu_step = Resources(_step_request(cpu="3"), **{"nvidia.com/gpu": 1})
    pending = [Workload(f"g{i}", "gpu", 0, float(i), gpu_step) for i in range(4)]
    d = Scheduler().cycle(Snapshot(0.0, queues, pending))
    # Its two GPUs, each step with 3 CPUs borrowed from org's pool of 8 (no limit of its own on CPU).
    assert [a.key for a in d.admit] == ["g0", "g1"]
    assert d.pending["g2"].reason == "needs nvidia.com/gpu 1, queue gpu has 0 free of limit 2"
    big = Workload("big", "gpu", 0, 9.0, Resources(_step_request(cpu="9")))
    assert Scheduler().cycle(Snapshot(0.0, queues, [big])).pending["big"].reason == (
        "needs cpu 9, more than queue gpu can ever get (8)"
    )
    assert d.queues["gpu"].usage == Resources({"cpu": 6000, "nvidia.com/gpu": 2})
    assert d.queues["gpu"].borrowed == Resources(cpu=6000)  # it is guaranteed no CPU


def test_a_succeeded_pod_s_result_is_its_main_container_s_termination_message():
    from meson.controllers.translate import pod_observation

    pod = {
        "metadata": {"name": "wf-a-r1-0", "labels": {"meson.dev/instance": "a", "meson.dev/run": "1"}},
        "spec": {"containers": [{"name": "main"}, {"name": "sidecar"}]},
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [  # the API server lists them by name, not in spec order
                {"name": "sidecar", "state": {"terminated": {"exitCode": 0, "message": "not me"}}},
                {"name": "main", "state": {"terminated": {"exitCode": 0, "message": '{"n": 1}'}}},
            ],
        },
    }
    assert pod_observation(pod).result == '{"n": 1}'
    pod["status"]["phase"] = "Failed"
    assert pod_observation(pod).result is None  # only a success has a result
