"""Workflows run end to end: Meson admits steps, kube-scheduler places the pods, kwok runs them."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

from kubernetes import client

from e2e.cluster.controlplane import NodeShape
from e2e.cluster.nodes import node_manifest
from e2e.conftest import Cluster
from e2e.helpers import (
    apply,
    get_workflow,
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
from meson.api.quantity import canonical
from meson.workflow.status import QUEUE_POSITIONS_MAX


def ts(t) -> float:
    return t.timestamp()


def finished_at(pod: client.V1Pod) -> float:
    return max(ts(cs.state.terminated.finished_at) for cs in pod.status.container_statuses)


class Sampler:
    """Samples a condition in the background while a test waits, recording every violation."""

    def __init__(self, probe, interval: float = 0.25) -> None:
        self.probe = probe
        self.interval = interval
        self.samples = 0
        self.violations: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            problem = self.probe()
            self.samples += 1
            if problem:
                self.violations.append(problem)
            time.sleep(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)


def pod_cpu(pod: client.V1Pod) -> int:
    return sum(canonical("cpu", c.resources.requests.get("cpu", 0)) for c in pod.spec.containers)


def live(pods: list[client.V1Pod]) -> list[client.V1Pod]:
    return [p for p in pods if p.status.phase not in ("Succeeded", "Failed")]


def test_twenty_step_dag_with_fanout_condition_retry_and_exit_step(
    cluster: Cluster, operator: OperatorProcess, core: client.CoreV1Api, custom, namespace: str, queues
) -> None:
    q = f"dag-{uid()}"
    queues.append(q)
    flaky = {"sim.meson.dev/exit-code": "1", "sim.meson.dev/fail-attempts": "2"}
    retry = {"limit": 3, "backoff": {"initialSeconds": 1, "factor": 2}}
    steps = [
        step("extract"),
        step("transform", deps=["extract"], foreach={"items": list(range(8)), "maxConcurrency": 3}),
        step("validate", deps=["transform"]),
        step("report-prod", deps=["validate"], when="params.env == 'prod'"),
        step("report-dev", deps=["validate"], when="params.env == 'dev'"),
        step("flaky", deps=["validate"], annotations=flaky, retryPolicy=retry),
        step("load-a", deps=["flaky"]),
        step("load-b", deps=["flaky"]),
        step("load-c", deps=["flaky"]),
        step("train", deps=["load-a"], parallelism=3),
        step("publish", deps=["load-b", "load-c", "train", "report-dev"]),
        step("notify", deps=["publish"]),
    ]
    on_exit = step("cleanup")
    wf = workflow(
        "etl",
        q,
        steps,
        parameters=[{"name": "env", "default": "dev"}],
        onExit={"name": "cleanup", "template": on_exit["template"]},
    )
    apply(cluster, queue(q, cpu=64))
    apply(cluster, wf, namespace=namespace)

    def transform_concurrency() -> str | None:
        running = live(
            [
                p
                for p in workflow_pods(core, namespace, "etl")
                if p.metadata.labels["meson.dev/step"] == "transform"
            ]
        )
        return f"{len(running)} transform pods live at once" if len(running) > 3 else None

    with Sampler(transform_concurrency) as sampler:
        done = wait_workflow(custom, namespace, "etl", ("Succeeded", "Failed"), timeout=180)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert sampler.samples > 5 and not sampler.violations, sampler.violations

    st = steps_by_instance(done)
    assert len(st) == 20  # 1 + 8 + 1 + 2 + 1 + 3 + 1 + 1 + 1 + exit step
    assert st["report-prod"]["phase"] == "Skipped"
    assert st["report-dev"]["phase"] == "Succeeded"
    assert st["flaky"]["attempts"] == 3 and st["flaky"]["phase"] == "Succeeded"
    assert st["cleanup"]["phase"] == "Succeeded"
    assert all(
        s.get("attempts", 1) == 1 for name, s in st.items() if name != "flaky" and s["phase"] == "Succeeded"
    )

    pods = workflow_pods(core, namespace, "etl")
    by_step: dict[str, list[client.V1Pod]] = defaultdict(list)
    for p in pods:
        by_step[p.metadata.labels["meson.dev/step"]].append(p)
    assert len(by_step["train"]) == 3 and all(p.status.phase == "Succeeded" for p in by_step["train"])
    assert len(by_step["flaky"]) == 3
    flaky_runs = sorted(by_step["flaky"], key=lambda p: p.metadata.labels["meson.dev/run"])
    assert [p.status.phase for p in flaky_runs] == [
        "Failed", "Failed", "Succeeded",
    ]  # fmt: skip
    assert "report-prod" not in by_step, "a skipped step must not make a pod"
    # Every pod was placed by kube-scheduler, never by Meson.
    assert all(p.spec.node_name and p.spec.scheduler_name == "default-scheduler" for p in pods)
    # Order: no step's pods were created before all pods of its dependencies finished.
    deps = {s["name"]: s.get("dependencies", []) for s in steps}
    ok_pods = {name: [p for p in ps if p.status.phase == "Succeeded"] for name, ps in by_step.items()}
    for name, ds in deps.items():
        for d in ds:
            if not ok_pods.get(d) or name not in by_step:
                continue
            first_start = min(ts(p.metadata.creation_timestamp) for p in by_step[name])
            last_dep_end = max(finished_at(p) for p in ok_pods[d])
            assert first_start >= last_dep_end - 1, f"{name} started before {d} finished"
    exit_created = min(ts(p.metadata.creation_timestamp) for p in by_step["cleanup"])
    others_done = max(finished_at(p) for n, ps in by_step.items() if n != "cleanup" for p in ps)
    assert exit_created >= others_done - 1
    # The retry waited for its backoff (1s, then 2s).
    runs = sorted(by_step["flaky"], key=lambda p: p.metadata.labels["meson.dev/run"])
    assert ts(runs[2].metadata.creation_timestamp) - finished_at(runs[1]) >= 1
    # Events tell the story.
    reasons = {
        e.reason
        for e in core.list_namespaced_event(namespace, field_selector="involvedObject.name=etl").items
    }
    assert {"StepStarted", "StepSucceeded", "StepRetrying", "StepSkipped", "WorkflowSucceeded"} <= reasons, (
        reasons
    )
    # And so do the metrics.
    text = operator.metrics()
    assert f'meson_admissions_total{{queue="{q}"}}' in text
    assert f'meson_admission_wait_seconds_count{{queue="{q}"}}' in text
    assert 'meson_step_retries_total{kind="FailedExit"}' in text
    assert "meson_scheduling_cycle_seconds_count" in text


def test_queue_quota_is_never_exceeded_and_no_pod_exists_before_admission(
    cluster: Cluster, operator: OperatorProcess, core: client.CoreV1Api, custom, namespace: str, queues
) -> None:
    qa, qb = f"qa-{uid()}", f"qb-{uid()}"
    queues.extend([qa, qb])
    apply(cluster, queue(qa, cpu=2), queue(qb, cpu=1))
    wfs = {
        "wa": workflow("wa", qa, [step(f"s{i}", cpu="500m", duration="1s") for i in range(12)]),
        "wb": workflow("wb", qb, [step(f"s{i}", cpu="500m", duration="1s") for i in range(8)]),
    }
    apply(cluster, *wfs.values(), namespace=namespace)
    limits = {qa: 2000, qb: 1000}
    peak: dict[str, int] = defaultdict(int)

    def probe() -> str | None:
        problems = []
        pods = core.list_namespaced_pod(namespace).items
        for q, limit in limits.items():
            used = sum(pod_cpu(p) for p in live(pods) if p.metadata.labels.get("meson.dev/queue") == q)
            peak[q] = max(peak[q], used)
            if used > limit:
                problems.append(f"queue {q} has {used}m cpu live > {limit}m")
        for name in wfs:
            wf = get_workflow(custom, namespace, name)
            waiting = {i for i, s in steps_by_instance(wf).items() if s["phase"] in ("Waiting", "Pending")}
            early = [
                p.metadata.name
                for p in pods
                if p.metadata.labels.get("meson.dev/workflow") == name
                and p.metadata.labels["meson.dev/instance"] in waiting
                and p.metadata.creation_timestamp.timestamp() < time.time() - 3
            ]
            if early:
                problems.append(f"pods of steps not admitted exist: {early}")
        return "; ".join(problems) or None

    with Sampler(probe, interval=0.3) as sampler:
        for name in wfs:
            done = wait_workflow(custom, namespace, name, ("Succeeded", "Failed"), timeout=180)
            assert done["status"]["phase"] == "Succeeded"
    assert sampler.samples > 10
    assert not sampler.violations, sampler.violations[:5]
    # The quota was actually used (the test would pass vacuously with one pod at a time).
    assert peak[qa] == 2000 and peak[qb] == 1000, dict(peak)
    status = custom.get_cluster_custom_object("meson.dev", "v1alpha1", "queues", qa).get("status") or {}
    assert status.get("admitted") == 0 and status.get("pending") == 0


def test_high_priority_workflow_is_admitted_next_behind_200_low_priority_steps(
    cluster: Cluster, operator: OperatorProcess, core: client.CoreV1Api, custom, namespace: str, queues,
    priority_classes,
) -> None:  # fmt: skip
    low, high = priority_classes
    q = f"prio-{uid()}"
    queues.append(q)
    apply(cluster, queue(q, cpu=1))
    lows = workflow(
        "lows", q, [step("work", cpu="500m", duration="1s", foreach={"items": list(range(200))})],
        priorityClassName=low,
    )  # fmt: skip
    apply(cluster, lows, namespace=namespace)
    wait_for(lambda: len(workflow_pods(core, namespace, "lows")) >= 6, 60, "low-priority steps to run")
    apply(
        cluster,
        workflow("vip", q, [step("urgent", cpu="500m", duration="1s")], priorityClassName=high),
        namespace=namespace,
    )
    submitted = get_workflow(custom, namespace, "vip")["metadata"]["creationTimestamp"]
    vip_pod = wait_for(lambda: workflow_pods(core, namespace, "vip"), 60, "the high-priority step's pod")[0]
    created = ts(vip_pod.metadata.creation_timestamp)
    from datetime import datetime

    t0 = datetime.fromisoformat(submitted.replace("Z", "+00:00")).timestamp()
    overtook = [
        p for p in workflow_pods(core, namespace, "lows") if t0 < ts(p.metadata.creation_timestamp) < created
    ]
    # Two 500m slots: at most what was already in flight may start before it.
    assert len(overtook) <= 2, [p.metadata.name for p in overtook]
    wf = wait_workflow(custom, namespace, "vip", ("Succeeded",), timeout=60)
    assert wf["status"]["phase"] == "Succeeded"
    pending = [
        s
        for s in steps_by_instance(get_workflow(custom, namespace, "lows")).values()
        if s["phase"] == "Pending"
    ]
    # Pending steps show their queue position (FIFO within the priority), except the at most two being
    # admitted at the moment the status was read; a status shows the first QUEUE_POSITIONS_MAX of them.
    placed = sorted((s["index"], s["position"]) for s in pending if s.get("position"))
    shown = min(len(pending), QUEUE_POSITIONS_MAX)
    assert pending and shown - len(placed) <= 2, pending[:5]
    assert [pos for _, pos in placed] == sorted(pos for _, pos in placed), placed[:10]
    cluster.kubectl("delete", "workflow.meson.dev", "lows", "-n", namespace, "--wait=false")


def test_higher_priority_preempts_within_queue_without_using_a_retry(
    cluster: Cluster, operator: OperatorProcess, core: client.CoreV1Api, custom, namespace: str, queues,
    priority_classes,
) -> None:  # fmt: skip
    low, high = priority_classes
    q = f"preempt-{uid()}"
    queues.append(q)
    apply(cluster, queue(q, cpu=2, preemption={"withinQueue": "LowerPriority"}))
    keep = {"sim.meson.dev/keep-running": "true"}
    apply(
        cluster,
        workflow(
            "batch", q, [step(f"b{i}", cpu="1", annotations=keep) for i in range(2)], priorityClassName=low
        ),
        namespace=namespace,
    )

    def running_batch() -> int:
        return len([p for p in workflow_pods(core, namespace, "batch") if p.status.phase == "Running"])

    wait_for(lambda: running_batch() == 2,
             60, "both low-priority steps running")  # fmt: skip
    apply(
        cluster,
        workflow("hot", q, [step("now", cpu="1", duration="2s")], priorityClassName=high),
        namespace=namespace,
    )
    wait_workflow(custom, namespace, "hot", ("Succeeded",), timeout=90)

    def rerun() -> list[dict]:
        return [
            s
            for s in steps_by_instance(get_workflow(custom, namespace, "batch")).values()
            if (s.get("run") or 1) > 1
        ]

    # The preempted step is admitted again (run 2) once hot's pod ends; batch's status may be written a
    # cycle after hot's, so it is awaited rather than read once.
    wait_for(lambda: bool(rerun()), 60, "the preempted step admitted again")
    preempted = rerun()
    assert len(preempted) == 1, preempted
    assert preempted[0].get("attempts", 1) == 1, "a preemption must not use a retry"
    # The preempted step goes back to its queue and is admitted again once the capacity frees.
    wait_for(lambda: running_batch() == 2,
             60, "the preempted step to run again")  # fmt: skip
    cluster.kubectl("delete", "workflow.meson.dev", "batch", "-n", namespace, "--wait=false")


def test_node_loss_retries_the_step_on_another_node(
    cluster: Cluster, operator: OperatorProcess, core: client.CoreV1Api, custom, namespace: str, queues
) -> None:
    tag = uid()
    names = [f"kwok-loss-{tag}-{i}" for i in range(2)]
    for name in names:
        node = node_manifest(0, NodeShape(cpu="8", memory="16Gi"))
        node["metadata"]["name"] = name
        node["metadata"]["labels"].update({"kubernetes.io/hostname": name, "meson-test": tag})
        apply(cluster, node)
        core.patch_node_status(name, {"status": node["status"]})
    q = f"loss-{uid()}"
    queues.append(q)
    apply(cluster, queue(q, cpu=16))
    s = step(
        "long",
        duration="6s",
        retryPolicy={"limit": 1, "retryOn": ["NodeLost"], "backoff": {"initialSeconds": 0}},
    )
    s["template"]["spec"]["nodeSelector"] = {"meson-test": tag}
    try:
        apply(cluster, workflow("fragile", q, [s]), namespace=namespace)
        first = wait_for(
            lambda: [p for p in workflow_pods(core, namespace, "fragile") if p.status.phase == "Running"],
            60,
            "running",
        )[0]
        cluster.kubectl("delete", "node", first.spec.node_name)
        done = wait_workflow(custom, namespace, "fragile", ("Succeeded", "Failed"), timeout=120)
        assert done["status"]["phase"] == "Succeeded", done["status"]
        st = steps_by_instance(done)["long"]
        assert st["attempts"] == 2
        final = [p for p in workflow_pods(core, namespace, "fragile") if p.status.phase == "Succeeded"]
        assert final and final[0].spec.node_name != first.spec.node_name
    finally:
        cluster.kubectl("delete", "node", *names, "--ignore-not-found", "--wait=false", check=False)


def test_operator_killed_at_random_moments_loses_and_duplicates_nothing(
    cluster: Cluster, operator: OperatorProcess, core: client.CoreV1Api, custom, namespace: str, queues
) -> None:
    import random

    q = f"chaos-{uid()}"
    queues.append(q)
    apply(cluster, queue(q, cpu=4))
    flaky = {"sim.meson.dev/exit-code": "1", "sim.meson.dev/fail-attempts": "1"}
    names = [f"chaos-{i}" for i in range(3)]
    for name in names:
        steps = [
            step("a", duration="500ms"),
            step("fan", deps=["a"], cpu="500m", duration="700ms", foreach={"items": list(range(6))}),
            step(
                "flaky",
                deps=["fan"],
                annotations=flaky,
                retryPolicy={"limit": 2, "backoff": {"initialSeconds": 0}},
            ),
            step("gang", deps=["flaky"], parallelism=3, cpu="500m", duration="500ms"),
            step("z", deps=["gang"]),
        ]
        apply(cluster, workflow(name, q, steps), namespace=namespace)
    rng = random.Random(7)
    for _ in range(6):
        time.sleep(rng.uniform(0.3, 2.5))
        operator.restart()
    for name in names:
        done = wait_workflow(custom, namespace, name, ("Succeeded", "Failed"), timeout=240)
        assert done["status"]["phase"] == "Succeeded", done["status"]
        st = steps_by_instance(done)
        assert st["flaky"]["attempts"] == 2
        pods = workflow_pods(core, namespace, name)
        runs: dict[str, set[str]] = defaultdict(set)
        per_run: dict[tuple[str, str], int] = defaultdict(int)
        for p in pods:
            inst, run = p.metadata.labels["meson.dev/instance"], p.metadata.labels["meson.dev/run"]
            runs[inst].add(run)
            per_run[(inst, run)] += 1
            assert p.metadata.owner_references and p.metadata.owner_references[0].name == name
        # No step ran twice beyond its retries: one run per step, two for the flaky one.
        assert {i: len(r) for i, r in runs.items() if len(r) > 1} == {"flaky": 2}
        assert per_run[("gang", "1")] == 3 and all(n == 1 for (i, _), n in per_run.items() if i != "gang")
    assert operator.starts >= 7


def test_crash_in_the_middle_of_admitting_a_gang_is_repaired_on_restart(
    cluster: Cluster, operator: OperatorProcess, core: client.CoreV1Api, custom, namespace: str, queues
) -> None:
    """The operator dies (SIGKILL-like exit) after creating 5 pods of a 40-pod gang; the next one finishes."""
    q = f"crash-{uid()}"
    queues.append(q)
    operator.stop()
    try:
        apply(cluster, queue(q, cpu=64))
        steps = [step("gang", parallelism=40, cpu="100m", duration="1s"), step("after", deps=["gang"])]
        apply(cluster, workflow("halfway", q, steps), namespace=namespace)
        crasher = OperatorProcess(cluster.kubeconfig, launcher=("-m", "e2e.crashing_operator", "5"))
        crasher.start(wait=False)
        assert crasher.proc is not None
        assert crasher.proc.wait(90) == 137, crasher.log()[-3000:]
        partial = workflow_pods(core, namespace, "halfway")
        assert 5 <= len(partial) < 40, f"{len(partial)} pods: the crash was meant to land mid-gang"
        operator.start()
        done = wait_workflow(custom, namespace, "halfway", ("Succeeded", "Failed"), timeout=120)
        assert done["status"]["phase"] == "Succeeded", done["status"]
        pods = workflow_pods(core, namespace, "halfway")
        gang = [p for p in pods if p.metadata.labels["meson.dev/step"] == "gang"]
        assert len(gang) == 40 and {p.metadata.labels["meson.dev/run"] for p in gang} == {"1"}
        assert len([p for p in pods if p.metadata.labels["meson.dev/step"] == "after"]) == 1
    finally:
        if operator.proc is None or operator.proc.poll() is not None:
            operator.start()
