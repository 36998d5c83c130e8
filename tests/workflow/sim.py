"""A tiny fake cluster driving the pure workflow engine cycle by cycle in virtual time.

Every cycle: plan(workflow, observations, now) → persist the status → delete the pods the plan names → create
the pods of the pending requests the admission policy lets through. Pods follow a script: Pending for
``start_delay`` seconds, then Running on a node, then Succeeded/Failed after ``duration``.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from meson.workflow import InstanceRequest, Plan, PodObservation, instance_entries, plan

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
_uids = itertools.count(1)


def container(cpu: str = "500m", memory: str = "1Gi", **extra: Any) -> dict[str, Any]:
    resources = {"requests": {"cpu": cpu, "memory": memory}}
    return {"name": "main", "image": "busybox", "resources": resources, **extra}


def step(name: str, deps: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "template": {"spec": {"containers": [container()]}}}
    if deps:
        out["dependencies"] = deps
    out.update(fields)
    return out


def workflow(steps: list[dict[str, Any]], name: str = "wf", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "meson.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}-{next(_uids)}",  # unique: the engine caches compiled specs by uid
            "generation": 1,
            "creationTimestamp": "2023-11-14T22:13:20Z",
        },
        "spec": {"steps": steps, **spec},
    }


@dataclass
class Outcome:
    duration: float = 5.0
    exit_code: int = 0
    start_delay: float = 1.0
    hang: bool = False  # never finishes
    node: str = "node-a"  # where it runs
    result: str | None = None  # termination message of the main container when it succeeds


Script = Callable[[str, int, int, int], Outcome]  # (instance, run, attempt, pod index) -> outcome


@dataclass
class FakePod:
    name: str
    instance: str
    run: int
    attempt: int
    index: int
    created: float
    outcome: Outcome
    phase: str = "Pending"
    node: str | None = None
    started: float | None = None
    finished: float | None = None
    exit_code: int | None = None
    failure: str | None = None
    deleting: bool = False

    def observation(self) -> PodObservation:
        return PodObservation(
            name=self.name,
            instance=self.instance,
            run=self.run,
            attempt=self.attempt,
            phase=self.phase,
            node=self.node,
            exit_code=self.exit_code,
            failure=self.failure,  # type: ignore[arg-type]
            created=self.created,
            started=self.started,
            finished=self.finished,
            deleting=self.deleting,
            result=self.outcome.result if self.phase == "Succeeded" else None,
        )


@dataclass
class Cluster:
    wf: dict[str, Any]
    script: Script = field(default=lambda instance, run, attempt, index: Outcome())
    now: float = T0
    nodes: set[str] = field(default_factory=lambda: {"node-a", "node-b"})
    admit: Callable[[InstanceRequest], bool] = field(default=lambda request: True)
    pods: dict[str, FakePod] = field(default_factory=dict)
    gone: dict[str, FakePod] = field(default_factory=dict)  # deleted pods, observed as Gone for one cycle
    launches: list[tuple[str, int, int]] = field(default_factory=list)  # (instance, run, attempt)
    plans: list[Plan] = field(default_factory=list)
    events: list[tuple[float, str, str]] = field(default_factory=list)  # (time, reason, message)
    history: list[tuple[float, str, str]] = field(default_factory=list)  # (time, instance, phase) changes
    persist: bool = True
    memo: Any = None  # the memoization lookup given to the engine

    # ------------------------------------------------------------------ cluster side
    def observations(self) -> list[PodObservation]:
        return [p.observation() for p in [*self.pods.values(), *self.gone.values()]]

    def tick_pods(self) -> None:
        for pod in self.pods.values():
            if pod.phase == "Pending" and self.now >= pod.created + pod.outcome.start_delay:
                pod.phase, pod.node = "Running", pod.outcome.node
                pod.started = pod.created + pod.outcome.start_delay
            done = pod.started is not None and self.now >= pod.started + pod.outcome.duration
            if pod.phase == "Running" and not pod.outcome.hang and done:
                pod.finished = pod.started + pod.outcome.duration
                pod.exit_code = pod.outcome.exit_code
                pod.phase = "Succeeded" if pod.outcome.exit_code == 0 else "Failed"

    def delete_pod(self, name: str, failure: str | None = None) -> None:
        pod = self.pods.pop(name, None)
        if pod is None:
            return
        if pod.phase in ("Pending", "Running", "Unknown"):
            pod.phase, pod.finished, pod.failure = "Gone", self.now, failure
            self.gone[name] = pod

    def lose_node(self, node: str) -> None:
        self.nodes.discard(node)
        for pod in list(self.pods.values()):
            if pod.node == node:
                self.pods.pop(pod.name)  # pods of the node vanish; the runtime saw nothing

    def create(self, request: InstanceRequest) -> None:
        for index, manifest in enumerate(request.pods):
            name = manifest["metadata"]["name"]
            if name in self.pods:
                continue
            labels = manifest["metadata"]["labels"]
            assert labels["meson.dev/instance"] == request.instance
            self.pods[name] = FakePod(
                name=name,
                instance=request.instance,
                run=int(labels["meson.dev/run"]),
                attempt=int(labels["meson.dev/attempt"]),
                index=index,
                created=self.now,
                outcome=self.script(request.instance, request.run, request.attempt, index),
            )
        self.launches.append((request.instance, request.run, request.attempt))

    # ------------------------------------------------------------------ one cycle
    def cycle(self) -> Plan:
        self.tick_pods()
        before = {i: s["phase"] for i, s in instance_entries(self.wf.get("status") or {}).items()}
        result = plan(self.wf, self.observations(), self.now, nodes=set(self.nodes), memo=self.memo)
        self.gone.clear()
        self.plans.append(result)
        self.events += [(self.now, e.reason, e.message) for e in result.events]
        for instance, entry in instance_entries(result.status).items():
            if before.get(instance) != entry["phase"]:
                self.history.append((self.now, instance, entry["phase"]))
        if self.persist:
            self.wf["status"] = copy.deepcopy(result.status)
        for name in result.delete_pods:
            self.delete_pod(name)
        for manifest in result.create_pods:
            name = manifest["metadata"]["name"]
            if name not in self.pods:
                labels = manifest["metadata"]["labels"]
                self.pods[name] = FakePod(
                    name,
                    labels["meson.dev/instance"],
                    int(labels["meson.dev/run"]),
                    int(labels["meson.dev/attempt"]),
                    0,
                    self.now,
                    Outcome(),
                )
        for request in result.pending:
            if self.admit(request):
                self.create(request)
        return result

    def run(self, seconds: float = 600, dt: float = 1.0, until: Callable[[Plan], bool] | None = None) -> Plan:
        end = self.now + seconds
        result = self.cycle()
        while self.now < end:
            if (until or (lambda p: p.finished))(result):
                return result
            self.now += dt
            result = self.cycle()
        return result

    def set_spec(self, **changes: Any) -> None:
        self.wf["spec"].update(changes)
        self.wf["metadata"]["generation"] += 1

    # ------------------------------------------------------------------ queries
    @property
    def status(self) -> dict[str, Any]:
        return self.wf.get("status") or {}

    def instances(self) -> dict[str, dict[str, Any]]:
        """Every instance's entry by instance id (range entries of large fan-outs expanded)."""
        return instance_entries(self.status)

    def entry(self, instance: str) -> dict[str, Any]:
        return self.instances()[instance]

    def phase(self, instance: str) -> str:
        return self.entry(instance)["phase"]

    def first(self, instance: str, phase: str) -> float:
        """Virtual time at which ``instance`` first reached ``phase``."""
        return next(t for t, i, p in self.history if i == instance and p == phase)

    def started_order(self) -> list[str]:
        seen: list[str] = []
        for instance, _, _ in self.launches:
            if instance not in seen:
                seen.append(instance)
        return seen
