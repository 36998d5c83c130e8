"""StreamJobs in the scheduling loop: the stream engine's plans, admitted by the same core as workflow steps.

A StreamJob is a second planner plugged into the loop next to workflows: each cycle its engine
(:func:`meson.stream.plan_stream`) says which replicas need admission (one request per pod: replicas are
admitted one by one, each a workload of the job's queue and priority) and which hold admitted pods; the
loop hands both to the one scheduling core with every workflow step, so stream replicas and batch steps
compete in the same queues, quotas and priorities, and a higher-priority replica can preempt lower-priority
steps. This module only translates: requests in, then the engine's deletions (marked as Meson's, so they
are not mistaken for failures), its revisions (ControllerRevisions owned by the job), its status with the
admission reason of replicas still waiting, and its events.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meson.adapters import metrics
from meson.api.validation import invalid_condition
from meson.controllers import faults
from meson.controllers.inflight import Write
from meson.controllers.store import Key
from meson.controllers.translate import PREEMPTED_ANNOTATION
from meson.controllers.writer import merge_patch, owner_reference
from meson.core import AdmittedWorkload
from meson.stream import (
    LABEL_REVISION,
    LABEL_RUN,
    LABEL_SLOT,
    LABEL_STREAMJOB,
    StreamPlan,
    plan_stream,
    pod_name,
)
from meson.stream.rollout import is_live

if TYPE_CHECKING:
    from meson.controllers.scheduling import SchedulingLoop, _Inputs

log = logging.getLogger("meson.streamjobs")
KIND = "StreamJob"
#: A replica pod deleted this long ago and still in the view was missed by the watch (see _drop_ghosts).
GHOST_SECONDS = 15.0
#: The condition saying whether every replica is admitted (False: the reason of the first one waiting).
ADMITTED = "Admitted"
#: The states of ``meson_streamjob_replicas`` (see :meth:`StreamJobs.count_replicas`).
REPLICA_STATES = ("pending", "starting", "ready", "old")


class StalePlan(AssertionError):
    """A reused plan differs from a plan made from scratch (checked only with ``loop.verify_incremental``,
    and only once the job's status is the plan's: a transition in flight keeps its first timestamps)."""


@dataclass
class _Made:
    inputs: tuple
    plan: StreamPlan
    admitted: list[AdmittedWorkload]


class StreamJobs:
    def __init__(self, loop: SchedulingLoop) -> None:
        self.loop = loop
        self.store = loop.store
        self.writer = loop.writer
        self.plans: dict[Key, StreamPlan] = {}
        self._made: dict[Key, _Made] = {}  # each job's last plan and what it was made from
        # Replica pods deleted by this operator and still in the view: (ns, job, pod) -> (when, reason).
        self._deleted: dict[tuple[str, str, str], tuple[float, str | None]] = {}
        self.replans = 0  # stream jobs planned from scratch (the others reused their last plan)
        self._namespaces: set[str] = set()  # namespaces with a meson_streamjob_replicas series

    # --- planning ----------------------------------------------------------------------------------
    def plan_all(self, now: float, inputs: _Inputs) -> None:
        """Plan every job. A job is planned again only when its inputs moved (the object, including the
        status this operator wrote, its pods, its recorded revisions, its queue and priority) or a time its
        last plan asked to be woken at has come; otherwise that plan is offered again as it is."""
        self.plans = {}
        self._stale: list[Key] = []
        self.forget_gone()
        self._drop_ghosts(now)
        for key, job in list(self.store.streamjobs.items()):
            self.loop.faults.guard(KIND, key, "plan", self._plan, key, job, now, inputs)
        if self._stale:
            raise StalePlan(f"stream jobs {self._stale}: a reused plan differs from a plan from scratch")

    def _plan(self, key: Key, job: dict, now: float, inputs: _Inputs) -> None:
        problems = self.loop.checks.problems(KIND, job)
        if problems:
            old = job.get("status") or {}
            status = faults.with_condition(
                old, invalid_condition(problems, generation=job["metadata"].get("generation"))
            )
            if status != old:
                self.writer.event(job, "Warning", "InvalidSpec", "; ".join(problems))
                inputs.writes.append(((KIND, key), self._patch_status(key, status, old)))
            return
        spec = job.get("spec") or {}
        queue, priority_class = spec.get("queue", "default"), spec.get("priorityClassName")
        priority = self.store.priority_of(priority_class)
        placement = (queue, priority, self.loop.hold_reason(key, queue, priority_class))
        pods = self.store.replicas(key)
        revisions = self.store.revisions.get(key, {})
        made_from = (job, tuple(sorted(pods, key=lambda r: (r.name, r.phase))), dict(revisions), placement)
        made = self._made.get(key)
        if (
            made is None
            or not self._same(made.inputs, made_from)
            or (made.plan.wake_at is not None and now >= made.plan.wake_at)
        ):
            made = self._made[key] = self._plan_from_scratch(key, job, pods, revisions, now, placement)
            made.inputs = made_from
            self.replans += 1
        elif getattr(self.loop, "verify_incremental", False) and made.plan.status == job.get("status"):
            fresh = self._plan_from_scratch(key, job, pods, revisions, now, placement)
            if (fresh.plan, fresh.admitted) != (made.plan, made.admitted):
                self._stale.append(key)  # raised after the guard (which would take it for the job's fault)
        self.plans[key] = made.plan
        self.loop.offer(
            KIND, key, made.plan.pending, made.admitted, placement, made.plan.wake_at, now, inputs
        )

    @staticmethod
    def _same(a: tuple, b: tuple) -> bool:
        """The job compared by identity (the store replaces it on every event and own write), the rest by
        value (pods and revisions are small)."""
        return a[0] is b[0] and a[1:] == b[1:]

    def _plan_from_scratch(
        self, key: Key, job: dict, pods: list, revisions: dict, now: float, placement: tuple
    ) -> _Made:
        queue, priority, _ = placement
        p = plan_stream(job, pods, revisions, now)
        created = {pod.name: pod.created for pod in pods}
        admitted = [
            AdmittedWorkload(
                self.loop.workload(req, queue, priority),
                created.get(pod_name(key[1], req.step, req.index or 0, req.run), now),
            )
            for req in p.admitted
        ]
        return _Made((), p, admitted)

    def forget_gone(self) -> None:
        for key in [k for k in self._made if k not in self.store.streamjobs]:
            del self._made[key]

    # --- acting ------------------------------------------------------------------------------------
    def deletions(self, victims: dict) -> list[Write]:
        """The engine's deletions (scale-down, rollout, suspend... all Meson's decisions but a pod that
        already ended) and the core's preemption victims among running replicas."""
        out = []
        for (ns, job), p in self.plans.items():
            for d in p.delete_pods:
                out.append(self._deletion(ns, job, d.name, None if d.reason == "Failed" else d.reason))
            for req in p.admitted:
                victim = victims.get(req.key)
                if victim is not None:
                    queue = ((self.store.streamjobs.get((ns, job)) or {}).get("spec") or {}).get("queue", "")
                    metrics.PREEMPTIONS.labels(queue=queue).inc()
                    metrics.PREEMPTION_WORK_LOST.labels(queue=queue).inc(victim.work_lost)
                    name = pod_name(job, req.step, req.index or 0, req.run)
                    out.append(self._deletion(ns, job, name, victim.reason))
        return out

    def _deletion(self, ns: str, job: str, name: str, reason: str | None) -> Write:
        return ("delete", ns, name), self._delete(ns, job, name, reason)

    async def _delete(self, ns: str, job: str, name: str, reason: str | None) -> None:
        try:
            await self.writer.delete_pod(ns, name, reason)
        except Exception as exc:  # the pod is still in the view: the next cycle deletes it again
            log.warning("pod %s/%s deletion failed (retried): %s", ns, name, faults.describe(exc))
            return
        self._deleted.setdefault((ns, job, name), (self.loop.clock(), reason))

    def _drop_ghosts(self, now: float) -> None:
        """Replica pods this operator deleted (or found gone: 404) that the watch has still not reported
        deleted GHOST_SECONDS later leave the view.

        A pod deleted between the operator's initial listing and the start of kopf's own watch (a restarted
        operator's first cycle deletes at once, mid-rollout) is never reported deleted by that watch: it
        would stay in the view for good, deleted again every cycle and counted against maxSurge, the rollout
        stuck. Not dropped at once: a late event of the pod (the patch marking the deletion as Meson's)
        would bring it back, counted as available, until its DELETED event arrives."""
        for entry, (at, reason) in list(self._deleted.items()):
            ns, job, name = entry
            replica = self.store.stream_pods.get((ns, job), {}).get(name)
            if replica is None:
                del self._deleted[entry]
                continue
            if now - at < GHOST_SECONDS:
                continue
            del self._deleted[entry]
            labels = {
                LABEL_STREAMJOB: job,
                LABEL_REVISION: replica.revision,
                LABEL_SLOT: str(replica.slot),
                LABEL_RUN: str(replica.run),
            }
            gone = {
                "metadata": {
                    "name": name,
                    "namespace": ns,
                    "labels": labels,
                    # Meson's decision, not a lost replica (an ended pod is not taken for one either).
                    "annotations": {PREEMPTED_ANNOTATION: reason} if reason else {},
                },
                "status": {"phase": replica.phase},
            }
            log.info("pod %s/%s: deleted %.0fs ago, never reported deleted; dropped", ns, name, now - at)
            self.store.on_pod("DELETED", gone)

    def status_writes(self, inputs: _Inputs, decisions: Any) -> list[Write]:
        waiting: dict[Key, list[str]] = {}
        for key, req, info in self.loop.waiting(inputs, decisions, KIND, self.plans):
            where = f" (position {info[0]})" if info[0] else ""
            waiting.setdefault(key, []).append(f"replica {req.index}{where}: {info[1]}")
        writes: list[Write] = []
        for key, p in self.plans.items():
            job = self.store.streamjobs.get(key)
            if job is None:
                continue
            status = self._with_admission(p.status, waiting.get(key, []))
            old = job.get("status") or {}
            if status != old:
                writes.append(((KIND, key), self._patch_status(key, status, old, job, p)))
            writes += self._revision_writes(key, job, p)
        self.count_replicas()
        return writes

    def count_replicas(self) -> None:
        """``meson_streamjob_replicas{namespace,state}`` from this cycle's plans: pending (a replica with
        no pod yet), starting / ready (pods of the current revision), old (pods of an earlier revision still
        serving). Pods being deleted, or deleted by this cycle's plan, are not counted."""
        counts: dict[str, dict[str, int]] = {}
        for (ns, name), p in self.plans.items():
            per = counts.setdefault(ns, dict.fromkeys(REPLICA_STATES, 0))
            per["pending"] += len(p.pending)
            target = p.status.get("currentRevision")
            deleted = {d.name for d in p.delete_pods}
            for pod in self.store.replicas((ns, name)):
                if not is_live(pod) or pod.deleting or pod.name in deleted:
                    continue
                state = "old" if pod.revision != target else "ready" if pod.ready else "starting"
                per[state] += 1
        for ns in self._namespaces - counts.keys():
            for state in REPLICA_STATES:
                metrics.STREAMJOB_REPLICAS.remove(ns, state)
        for ns, per in counts.items():
            for state, n in per.items():
                metrics.STREAMJOB_REPLICAS.labels(namespace=ns, state=state).set(n)
        self._namespaces = set(counts)

    @staticmethod
    def _with_admission(status: dict, waiting: list[str]) -> dict:
        if not waiting:
            return faults.with_condition(
                status, faults.condition(ADMITTED, True, "AllAdmitted", "every replica")
            )
        message = f"{len(waiting)} replica(s) waiting for admission; " + "; ".join(sorted(waiting)[:5])
        return faults.with_condition(
            status, faults.condition(ADMITTED, False, "WaitingForAdmission", message)
        )

    async def _patch_status(
        self, key: Key, status: dict, old: dict, job: dict | None = None, p: StreamPlan | None = None
    ) -> None:
        patch = self.writer.patch_status("streamjobs", key[0], key[1], merge_patch(status, old))
        await self.loop.faults.guard_write(KIND, key, patch)
        if job is not None and p is not None and self.loop.faults.of(KIND, key) is None:
            for ev in p.events:
                self.writer.event(job, ev.type, ev.reason, ev.message)
            self._count_transitions(key[0], p, status, old)
            current = self.store.streamjobs.get(key)
            if current is not None:  # our own write, at once (the watch event supersedes it)
                self.store.streamjobs[key] = {**current, "status": status}

    @staticmethod
    def _count_transitions(namespace: str, p: StreamPlan, status: dict, old: dict) -> None:
        """Rollbacks and restarts, counted once: when the status recording them is written (a write that
        fails is made again by the next cycle, from the same old status)."""
        rollbacks = sum(1 for ev in p.events if ev.reason == "RolledBack")
        if rollbacks:
            metrics.STREAMJOB_ROLLBACKS.labels(namespace=namespace).inc(rollbacks)
        before, after = old.get("restarts"), status.get("restarts")
        if isinstance(after, int) and after > (before if isinstance(before, int) else 0):
            metrics.STREAMJOB_RESTARTS.labels(namespace=namespace).inc(after - (before or 0))

    def _revision_writes(self, key: Key, job: dict, p: StreamPlan) -> list[Write]:
        known = self.store.revisions.get(key, {})
        out: list[Write] = []
        busy = self.loop.inflight.busy  # a write still running is not made again (nor its coroutine built)
        for revision, template in p.record_revisions.items():
            if revision not in known and not busy(ident := (KIND, key, "revision", revision)):
                write = self.loop.faults.guard_write(
                    KIND, key, self._record(key, job, revision, template), "revision"
                )
                out.append((ident, write))
        for revision in p.forget_revisions:
            if revision in known and not busy(ident := (KIND, key, "revision", revision)):
                write = self.loop.faults.guard_write(KIND, key, self._forget(key, revision), "revision")
                out.append((ident, write))
        return out

    async def _record(self, key: Key, job: dict, revision: str, template: dict) -> None:
        body = {
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {
                "name": f"{key[1]}-{revision}",
                "namespace": key[0],
                "labels": {LABEL_STREAMJOB: key[1], LABEL_REVISION: revision},
                "ownerReferences": [owner_reference(KIND, job)],
            },
            "data": {"template": template},
            "revision": len(self.store.revisions.get(key, {})) + 1,
        }
        created = await self.writer.create_revision(key[0], body)
        if created is not None:
            self.store.on_controller_revision("ADDED", created)

    async def _forget(self, key: Key, revision: str) -> None:
        await self.writer.delete_revision(key[0], f"{key[1]}-{revision}")
        self.store.revisions.get(key, {}).pop(revision, None)
