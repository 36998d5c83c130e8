"""The operator SIGKILLed again and again in the middle of StreamJob rollouts and scaling: every rollout
resumes and completes, pods never exceed replicas + maxSurge, and nothing is orphaned or duplicated."""

from __future__ import annotations

import json
import threading

from kubernetes import client

from e2e.conftest import Cluster
from e2e.helpers import GROUP, VERSION, apply, queue, uid, wait_for
from e2e.operator import OperatorProcess
from e2e.test_streamjobs import job_pods, ready_pods, status, streamjob
from e2e.test_workflows import Sampler, live

SURGE = 1


class Bound:
    """The most pods allowed now: replicas + maxSurge, with replicas the larger of the old and new values
    while a scale is under way (the spec changes before the pods can follow)."""

    def __init__(self, replicas: int) -> None:
        self.lock = threading.Lock()
        self.replicas = replicas

    def set(self, replicas: int) -> None:
        with self.lock:
            self.replicas = replicas

    def limit(self) -> int:
        with self.lock:
            return self.replicas + SURGE


def serving(core: client.CoreV1Api, namespace: str, name: str) -> list[client.V1Pod]:
    """Pods of the job that exist and are not being deleted."""
    return [p for p in live(job_pods(core, namespace, name)) if not p.metadata.deletion_timestamp]


def template(image: str) -> dict:
    t = json.loads(json.dumps(streamjob("x", "q")["spec"]["template"]))
    t["spec"]["containers"][0]["image"] = image
    return t


def test_the_operator_killed_mid_rollout_and_mid_scale_resumes_and_orphans_nothing(
    cluster: Cluster, operator: OperatorProcess, core, custom, namespace: str, queues
) -> None:
    q = f"kill-{uid()}"
    queues.append(q)
    apply(cluster, queue(q, cpu=8))
    name = "survivor"
    spec = {"updateStrategy": {"maxSurge": SURGE, "maxUnavailable": 0}, "revisionHistoryLimit": 1}
    apply(cluster, streamjob(name, q, replicas=4, **spec), namespace=namespace)
    wait_for(lambda: status(custom, namespace, name).get("stableRevision"), 90, "a stable first revision")
    revisions = [status(custom, namespace, name)["stableRevision"]]
    bound = Bound(4)

    def patch(body: dict) -> None:
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "streamjobs", name, {"spec": body})

    def stable_on_new_revision() -> dict | None:
        st = status(custom, namespace, name)
        done = (
            st.get("phase") == "Running"
            and st.get("currentRevision") not in revisions
            and st.get("stableRevision") == st.get("currentRevision")
        )
        return st if done else None

    def crashing(creates: int) -> OperatorProcess:
        """An operator that exits abruptly (137, as SIGKILL) right after its Nth pod create."""
        return OperatorProcess(cluster.kubeconfig, launcher=("-m", "e2e.crashing_operator", str(creates)))

    def died(op: OperatorProcess, what: str) -> None:
        assert op.proc is not None
        wait_for(lambda: op.proc.poll() is not None, 120, f"the operator to die {what}")
        assert op.proc.returncode == 137, op.log()[-2000:]

    def state() -> str:
        pods = [
            (p.metadata.name, p.status.phase, p.spec.node_name, bool(p.metadata.deletion_timestamp),
             [(c.type, c.status) for c in p.status.conditions or [] if c.type == "Ready"])
            for p in job_pods(core, namespace, name)
        ]  # fmt: skip
        return f"status: {json.dumps(status(custom, namespace, name))}\npods: {pods}"

    def until(predicate, timeout: float, what: str):
        try:
            return wait_for(predicate, timeout, what)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{state()}\noperator log: {op.log()[-3000:] if op else ''}") from None

    def pod_count(predicate, what: str, op: OperatorProcess) -> None:
        until(predicate, 120, what)
        op.kill()  # SIGKILL: no cleanup, writes in flight are lost

    operator.stop()  # the session's operator must not act meanwhile
    kills = 0
    op: OperatorProcess | None = None
    try:
        with Sampler(
            lambda: (
                None
                if (n := len(serving(core, namespace, name))) <= bound.limit()
                else f"{n} pods > {bound.limit()} (replicas + maxSurge)"
            ),
            interval=0.2,
        ) as sampler:
            # Rollout 1 (busybox:2): killed right after its 2nd pod create, then by SIGKILL once an old
            # pod has been replaced, then the rest completes.
            patch({"template": template("busybox:2")})
            op = crashing(2)
            op.start(wait=False)
            died(op, "after 2 pod creates mid-rollout")
            kills += 1
            op = OperatorProcess(cluster.kubeconfig)
            op.start()
            first = revisions[0]
            pod_count(
                lambda: (
                    sum(
                        1
                        for p in serving(core, namespace, name)
                        if p.metadata.labels["meson.dev/revision"] == first
                    )
                    <= 2
                ),
                "half of the old pods replaced",
                op,
            )
            kills += 1

            # A scale 4 -> 6 in the middle of that rollout, the operator dying after 1 create.
            bound.set(6)
            patch({"replicas": 6})
            op = crashing(1)
            op.start(wait=False)
            died(op, "after 1 pod create mid-scale")
            kills += 1
            op = OperatorProcess(cluster.kubeconfig)
            op.start()
            revisions.append(until(stable_on_new_revision, 180, "rollout 1 to complete")["currentRevision"])

            # Rollout 2 (busybox:3): SIGKILL as soon as it has begun, then again mid-way.
            patch({"template": template("busybox:3")})
            pod_count(
                lambda: any(
                    p.metadata.labels["meson.dev/revision"] not in revisions
                    for p in serving(core, namespace, name)
                ),
                "the first pod of rollout 2",
                op,
            )
            kills += 1
            op = OperatorProcess(cluster.kubeconfig)
            op.start()
            second = revisions[1]
            pod_count(
                lambda: (
                    sum(
                        1
                        for p in serving(core, namespace, name)
                        if p.metadata.labels["meson.dev/revision"] == second
                    )
                    <= 3
                ),
                "half of rollout 2",
                op,
            )
            kills += 1
            op = OperatorProcess(cluster.kubeconfig)
            op.start()
            revisions.append(until(stable_on_new_revision, 180, "rollout 2 to complete")["currentRevision"])

            # Scale 6 -> 2: SIGKILL once the first pod is gone.
            patch({"replicas": 2})
            pod_count(lambda: len(serving(core, namespace, name)) < 6, "the scale-down to begin", op)
            kills += 1
            op = OperatorProcess(cluster.kubeconfig)
            op.start()
            until(lambda: len(serving(core, namespace, name)) == 2, 120, "2 replicas")
            bound.set(2)
            wait_for(
                lambda: (
                    status(custom, namespace, name).get("phase") == "Running"
                    and len(ready_pods(core, namespace, name)) == 2
                ),
                60,
                "Running with 2 ready replicas",
            )
            op.stop()
        assert sampler.samples > 50 and sampler.violations == [], sampler.violations[:5]
        assert kills >= 3

        # Nothing orphaned: every pod is a replica of the live job, of its current revision, one per slot.
        job = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "streamjobs", name)
        st = job["status"]
        assert st["currentRevision"] == revisions[-1] == st["stableRevision"]
        pods = [p for p in core.list_namespaced_pod(namespace).items if not p.metadata.deletion_timestamp]
        assert len(pods) == 2, [p.metadata.name for p in pods]
        for p in pods:
            (ref,) = p.metadata.owner_references
            assert (ref.kind, ref.uid, ref.controller) == ("StreamJob", job["metadata"]["uid"], True)
            assert p.metadata.labels["meson.dev/revision"] == revisions[-1]
        assert sorted(p.metadata.labels["meson.dev/slot"] for p in pods) == ["0", "1"]
        events = cluster.kubectl(
            "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}", "-o", "json"
        ).stdout
        reasons = [e["reason"] for e in json.loads(events)["items"]]
        assert "ReplicaRestarted" not in reasons, "a pod deleted by the operator was taken for a lost replica"
        # History: the current revision and at most revisionHistoryLimit (1) old one, all owned by the job.
        crs = cluster.kubectl(
            "get", "controllerrevisions", "-n", namespace, "-l", f"meson.dev/streamjob={name}", "-o", "json"
        ).stdout
        items = json.loads(crs)["items"]
        kept = {r["metadata"]["labels"]["meson.dev/revision"] for r in items}
        assert kept == {revisions[-1], revisions[-2]}, (kept, revisions)
        assert all(r["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"] for r in items)
        assert st["revisionHistory"] == [revisions[-2], revisions[-1]], st["revisionHistory"]
    finally:
        if op is not None:
            op.stop()
        operator.start()
    cluster.kubectl("delete", "streamjob", name, "-n", namespace, "--wait=false")
