"""A tiny fake cluster driving the pure stream engine cycle by cycle in virtual time.

Every cycle: plan_stream(job, observations, revisions, now) → persist status and revisions → delete the pods
the plan names → create the pods of the pending requests the admission policy lets through. Pods follow their
template's annotations: Pending for 1 s, Running, Ready 1 s later (never with ``sim.meson.dev/never-ready``;
with ``sim.meson.dev/crash-loop`` the container restarts every 2 s and is never Ready); a deleted pod is gone
after 1 s.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from meson.stream import InstanceRequest, ReplicaPod, StreamPlan, plan_stream

T0 = 1_700_000_000.0


def template(image: str = "proc:1", **annotations: str) -> dict[str, Any]:
    container = {"name": "main", "image": image, "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}
    out: dict[str, Any] = {"metadata": {"labels": {"app": "proc"}}, "spec": {"containers": [container]}}
    if annotations:
        out["metadata"]["annotations"] = {
            f"sim.meson.dev/{k.replace('_', '-')}": v for k, v in annotations.items()
        }
    return out


def streamjob(replicas: int = 3, name: str = "sj", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "meson.dev/v1alpha1",
        "kind": "StreamJob",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "generation": 1,
            "creationTimestamp": "2023-11-14T22:13:20Z",
        },
        "spec": {"replicas": replicas, "template": spec.pop("template", template()), **spec},
    }


@dataclass
class FakePod:
    name: str
    revision: str
    slot: int
    run: int
    created: float
    annotations: dict[str, str]
    phase: str = "Pending"
    ready_since: float | None = None
    restarts: int = 0
    deleting_at: float | None = None

    def flag(self, name: str) -> bool:
        return self.annotations.get(f"sim.meson.dev/{name}") == "true"

    def step(self, now: float) -> None:
        if self.phase == "Pending" and now >= self.created + 1:
            self.phase = "Running"
        if self.phase != "Running":
            return
        if self.flag("crash-loop"):
            self.restarts = int((now - self.created - 1) // 2)
        elif not self.flag("never-ready") and self.ready_since is None and now >= self.created + 2:
            self.ready_since = self.created + 2

    def observation(self) -> ReplicaPod:
        return ReplicaPod(
            name=self.name,
            revision=self.revision,
            slot=self.slot,
            run=self.run,
            phase=self.phase,
            ready=self.ready_since is not None,
            ready_since=self.ready_since,
            restart_count=self.restarts,
            crash_looping=self.flag("crash-loop") and self.restarts > 0,
            created=self.created,
            deleting=self.deleting_at is not None,
            node="node-a" if self.phase != "Pending" else None,
        )


Admit = Callable[[InstanceRequest, "Sim"], bool]


@dataclass
class Sim:
    job: dict[str, Any]
    now: float = T0
    pods: dict[str, FakePod] = field(default_factory=dict)
    revisions: dict[str, dict] = field(default_factory=dict)
    admit: Admit = lambda req, sim: True
    plans: list[StreamPlan] = field(default_factory=list)
    created_names: list[str] = field(default_factory=list)

    def observations(self) -> list[ReplicaPod]:
        return [p.observation() for p in sorted(self.pods.values(), key=lambda p: p.name)]

    def plan(self) -> StreamPlan:
        return plan_stream(
            copy.deepcopy(self.job), self.observations(), copy.deepcopy(self.revisions), self.now
        )

    def cycle(self, dt: float = 1.0) -> StreamPlan:
        self.now += dt
        for name, pod in list(self.pods.items()):
            if pod.deleting_at is not None and self.now >= pod.deleting_at + 1:
                del self.pods[name]
            else:
                pod.step(self.now)
        plan = self.plan()
        self.apply(plan)
        return plan

    def apply(self, plan: StreamPlan) -> None:
        self.plans.append(plan)
        self.job["status"] = plan.status
        self.revisions.update(plan.record_revisions)
        for name in plan.forget_revisions:
            self.revisions.pop(name, None)
        for deletion in plan.delete_pods:
            pod = self.pods.get(deletion.name)
            if pod is not None and pod.deleting_at is None:
                pod.deleting_at = self.now
        for req in plan.pending:
            if not self.admit(req, self):
                continue
            (manifest,) = req.pods
            meta = manifest["metadata"]
            assert meta["name"] not in self.pods, f"duplicate pod {meta['name']}"
            labels = meta["labels"]
            self.created_names.append(meta["name"])
            self.pods[meta["name"]] = FakePod(
                name=meta["name"],
                revision=labels["meson.dev/revision"],
                slot=int(labels["meson.dev/slot"]),
                run=int(labels["meson.dev/run"]),
                created=self.now,
                annotations=dict(meta.get("annotations") or {}),
            )

    def run(self, seconds: float, dt: float = 1.0, check: Callable[[Sim], None] | None = None) -> None:
        end = self.now + seconds
        while self.now < end:
            self.cycle(dt)
            if check is not None:
                check(self)

    def until(self, cond: Callable[[Sim], bool], limit: float = 600, dt: float = 1.0) -> None:
        end = self.now + limit
        while not cond(self):
            assert self.now < end, f"timed out; status {self.job.get('status')}"
            self.cycle(dt)

    def set_spec(self, **fields: Any) -> None:
        self.job["spec"].update(fields)
        self.job["metadata"]["generation"] += 1

    @property
    def status(self) -> dict[str, Any]:
        return self.job.get("status") or {}

    def live(self) -> list[FakePod]:
        return [p for p in self.pods.values() if p.phase in ("Pending", "Running")]

    def events(self) -> list[str]:
        return [e.reason for plan in self.plans for e in plan.events]
