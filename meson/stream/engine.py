"""The pure stream engine: (StreamJob with its persisted status, observed pods, recorded revisions, now) →
:class:`~meson.stream.types.StreamPlan`. No Kubernetes, no kopf: the scheduling loop feeds it and applies the
plan next to the workflow engine's, so replicas are admitted by the same core and queues as workflow steps.

Level-triggered and deterministic. Everything remembered between cycles is in ``status`` (bounded) and in the
pods' labels (``meson.dev/revision``, ``meson.dev/slot``, ``meson.dev/run``). The same inputs give the same
plan; a status one cycle stale replayed against the real pods gives no duplicate pod: pod names are
``{job}-{revision}-{slot}-{run}`` and the run of a new pod is derived from the pods (one above any run seen in
its slot, or recorded in ``status.slotFailures``), and a slot with any live pod of the target revision never
asks for another.

1. Deploy. Slots ``0..replicas-1``; each slot without a pod is a pending request (key ``{ns}/{job}/{slot}``;
   admission decides when its pod is created). Phase Deploying until every replica is Ready, then Running.
2. Revisions. A revision is the first 10 hex digits of sha256 of the template's canonical JSON. A changed
   template starts a rollout (Event RolloutStarted, phase Updating, ``status.rolloutStartedAt``), rolled slot
   by slot within maxSurge/maxUnavailable (see :mod:`meson.stream.rollout`). Revisions are recorded as
   ``record_revisions`` (ControllerRevisions for the loop) and old ones beyond ``spec.revisionHistoryLimit``
   forgotten (the current, latest, stable and any revision with live pods are always kept).
3. Stability and rollback. A pod is available once Ready for ``spec.minReadySeconds`` (the Ready condition's
   transition time; a container restart resets it) and not crash-looping. A rollout completes when every slot
   has an available pod of the target revision and no other pod is left: the revision becomes
   ``stableRevision`` (Event Deployed the first time, then RolloutComplete). A rollout not complete within
   ``progressDeadlineSeconds`` of its start is rolled back to ``stableRevision`` the same way (Event
   RolledBack, phase RollingBack, condition Progressing=False ProgressDeadlineExceeded), then Running with
   Progressing=False RolledBack; the failed revision (``status.failedRevision``) is not retried until the
   template changes. A first deployment has nothing to roll back to: it keeps trying, with
   Progressing=False. Manual rollback is setting ``spec.template`` back (its revision is recorded and rolled
   out like any other); ``spec.rollbackTo`` is not supported.
4. Scale. More replicas: new pending slots (Event ScaledUp). Fewer: the slots at and above ``replicas`` (the
   newest) are deleted at once (Event ScaledDown), releasing their quota.
5. ``desiredState: Suspended`` deletes every pod (phase Suspended, Event Suspended); Running again redeploys
   (Event Resumed), the pods admitted again.
6. Failures. A pod that ended (Failed/Succeeded) or vanished without Meson deleting it (the loop reports a
   ``Gone`` tombstone) is replaced with the next run after a per-slot exponential backoff (1 s doubling to
   5 min; reset once a replacement is available), Event ReplicaRestarted. Replacements and container restarts
   (restartCount growth) count towards ``restarts`` and the restart budget: more than ``maxRestarts`` within
   ``windowSeconds`` makes the job Failed (Available=False RestartBudgetExceeded, every pod deleted) until
   ``spec.restarts`` grows (``meson streamjob restart``), which clears the failure and redeploys.

Pods deleted by the plan carry a reason (:data:`~meson.stream.types.DeleteReason`). Pods that still exist
(also while being deleted) are listed in ``admitted``: they hold quota until gone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from meson.api.streamjob import StreamJobSpec
from meson.api.validation import validate_streamjob
from meson.stream.budget import RestartLog, container_restarts
from meson.stream.pods import replica_request, revision_name, selector
from meson.stream.rollout import Bounds, bounds, is_live, plan_slots
from meson.stream.status import build_status, conditions, history
from meson.stream.types import PodDeletion, ReplicaPod, StreamPlan, WorkflowEvent
from meson.workflow.compiled import parse_time, rfc3339

__all__ = ["BACKOFF_MAX", "plan_stream"]

BACKOFF_MAX = 300.0
_ENDED = frozenset({"Failed", "Succeeded", "Gone"})
_FAILURE_KEYS = ("slot", "run", "failures", "at")


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


class _Cycle:
    """One plan of one stream job; the stages, in order, are in :meth:`run`."""

    def __init__(
        self, job: Mapping[str, Any], pods: Sequence[ReplicaPod], revisions: Mapping[str, dict], now: float
    ) -> None:
        meta = job.get("metadata") or {}
        self.name: str = meta.get("name") or ""
        self.namespace: str = meta.get("namespace") or ""
        self.generation = meta.get("generation")
        self.created = parse_time(meta.get("creationTimestamp")) or 0.0
        self.raw_spec = job.get("spec") or {}
        self.spec = StreamJobSpec.model_validate(self.raw_spec)
        self.old: dict[str, Any] = dict(job.get("status") or {})
        self.pods = list(pods)
        self.revisions = dict(revisions)
        self.now = now
        self.latest = revision_name(self.raw_spec.get("template") or {})
        self.templates: dict[str, Mapping[str, Any]] = {
            **self.revisions,
            self.latest: self.raw_spec["template"],
        }
        self.events: list[WorkflowEvent] = []
        self.deletes: dict[str, str] = {}
        self.wake: list[float] = []
        self.new: dict[str, Any] = {}  # status fields decided by the stages

    def event(self, warning: bool, reason: str, message: str) -> None:
        self.events.append(WorkflowEvent("Warning" if warning else "Normal", reason, message))

    # ----------------------------------------------------------------------------------------- the cycle

    def run(self) -> StreamPlan:
        restarted = self.spec.restarts > _int(self.old.get("observedRestarts"))
        if restarted:
            for key in ("failed", "restartLog", "podRestarts", "slotFailures"):
                self.old.pop(key, None)
            self.event(False, "Restarted", f"restart {self.spec.restarts}: redeploying")
        budget = self.spec.restart_budget
        log = RestartLog(self.old.get("restartLog"), budget.window_seconds if budget else 600, self.now)
        stopped = self.old.get("failed") is True or self.spec.desired_state == "Suspended"
        self.replaced = 0
        failures = {} if stopped else self.observe_failures()
        new_restarts, tracked = container_restarts(self.pods, self.old.get("podRestarts") or {})
        replaced = self.replaced
        log.add(new_restarts + replaced)
        self.new.update(
            restarts=_int(self.old.get("restarts")) + new_restarts + replaced,
            restartsInWindow=log.total(),
            restartLog=log.wire() or None,
            podRestarts=tracked or None,
            slotFailures=[failures[s] for s in sorted(failures)] or None,
            observedRestarts=self.spec.restarts,
        )
        if (exp := log.expires()) is not None:
            self.wake.append(exp)
        if new_restarts:
            self.event(True, "ReplicaRestarted", f"{new_restarts} container restart(s)")
        limit = budget.max_restarts if budget else 5
        if self.old.get("failed") is True or log.total() > limit:
            return self.stop("Failed", limit)
        if self.spec.desired_state == "Suspended":
            return self.stop("Suspended", limit)
        return self.deploy(failures)

    def observe_failures(self) -> dict[int, dict[str, int]]:
        """Per slot, its last failure (kept until a later run is available); new ones count as restarts."""
        entries: dict[int, dict[str, int]] = {}
        for raw in self.old.get("slotFailures") or []:
            if isinstance(raw, Mapping) and all(isinstance(raw.get(k), int) for k in _FAILURE_KEYS):
                entries[raw["slot"]] = {k: raw[k] for k in _FAILURE_KEYS}
        for slot in sorted({p.slot for p in self.pods}):
            mine = [p for p in self.pods if p.slot == slot]
            ended = max((p.run for p in mine if p.phase in _ENDED), default=0)
            entry = entries.get(slot)
            later = any(is_live(p) and p.run > ended for p in mine)
            if ended and not later and (entry is None or ended > entry["run"]):
                failures = entry["failures"] + 1 if entry else 1
                entries[slot] = {"slot": slot, "run": ended, "failures": failures, "at": math.floor(self.now)}
                self.replaced += 1
                self.event(True, "ReplicaRestarted", f"replica {slot}: run {ended} ended; replacing it")
        for slot, entry in list(entries.items()):
            recovered = any(p.run > entry["run"] and self.available(p) for p in self.pods if p.slot == slot)
            if recovered or slot >= self.spec.replicas:
                del entries[slot]
        return entries

    def available(self, pod: ReplicaPod) -> bool:
        if pod.phase != "Running" or not pod.ready or pod.deleting or pod.crash_looping:
            return False
        since = pod.ready_since if pod.ready_since is not None else pod.created
        if self.now - since >= self.spec.min_ready_seconds:
            return True
        self.wake.append(since + self.spec.min_ready_seconds)
        return False

    def stop(self, phase: str, limit: int) -> StreamPlan:
        """Failed (budget exceeded) or Suspended: every pod deleted, nothing requested."""
        reason = "RestartBudgetExceeded" if phase == "Failed" else "Suspended"
        for pod in self.pods:
            if is_live(pod) and not pod.deleting:
                self.deletes[pod.name] = reason
        if phase == "Failed":
            self.new["failed"] = True
            message = f"more than {limit} restarts within the budget window: pods deleted"
            if self.old.get("failed") is not True:
                self.event(True, "RestartBudgetExceeded", message)
        else:
            message = "suspended: pods deleted"
            if self.old.get("phase") != "Suspended":
                self.event(False, "Suspended", message)
            self.new["rolloutStartedAt"] = None
        target = self.old.get("currentRevision") or self.latest
        return self.finish(phase, message, target, None, bounds(self.spec.replicas, 1, 0))

    # ----------------------------------------------------------------------------------------- running

    def deploy(self, failures: dict[int, dict[str, int]]) -> StreamPlan:
        spec = self.spec
        stable = self.old.get("stableRevision")
        failed_rev = self.old.get("failedRevision") if self.old.get("failedRevision") == self.latest else None
        target = stable if failed_rev and stable in self.templates else self.latest
        self.scale_events()
        started = self.rollout_start(target, stable)
        strategy = spec.update_strategy
        b = bounds(
            spec.replicas, strategy.max_surge if strategy else 1, strategy.max_unavailable if strategy else 0
        )
        slots = self.plan_for(target, b, failures)
        deadline_passed = False
        if started is not None and not slots.complete:
            due = started + spec.progress_deadline_seconds
            if self.now < due:
                self.wake.append(due)
            elif target == self.latest and stable and stable != target and stable in self.templates:
                failed_rev, target, started = self.latest, stable, self.now
                self.new["previousRevision"] = self.latest
                self.event(
                    True,
                    "RolledBack",
                    f"revision {self.latest} not stable within {spec.progress_deadline_seconds}s: "
                    f"rolling back to {stable}",
                )
                slots = self.plan_for(target, b, failures)
                self.wake.append(self.now + spec.progress_deadline_seconds)
            else:
                deadline_passed = True
        self.new["failedRevision"] = failed_rev
        if slots.complete and started is not None:
            started = None
            self.complete_event(target, stable, failed_rev)
            stable = target
        self.new["stableRevision"] = stable
        self.new["rolloutStartedAt"] = rfc3339(started) if started is not None else None
        self.deletes.update(slots.deletes)
        self.delete_replaced()
        phase, message = self.phase(target, stable, failed_rev, started, b)
        self.new["deadlineExceeded"] = deadline_passed
        return self.finish(phase, message, target, slots.requests, b)

    def delete_replaced(self) -> None:
        """Ended pods go once their slot has a later pod (or is scaled away); their run lives on in it."""
        for pod in self.pods:
            if pod.phase not in ("Failed", "Succeeded") or pod.deleting:
                continue
            later = any(p.slot == pod.slot and p.run > pod.run and is_live(p) for p in self.pods)
            if later or pod.slot >= self.spec.replicas:
                self.deletes[pod.name] = "Failed"

    def scale_events(self) -> None:
        before = self.old.get("desiredReplicas")
        after = self.spec.replicas
        if isinstance(before, int) and before != after:
            reason = "ScaledUp" if after > before else "ScaledDown"
            self.event(False, reason, f"replicas {before} -> {after}")

    def rollout_start(self, target: str, stable: str | None) -> float | None:
        """When the rollout of ``target`` started (None: no rollout in progress); starts one when needed."""
        current = self.old.get("currentRevision")
        started = parse_time(self.old.get("rolloutStartedAt"))
        self.new["previousRevision"] = self.old.get("previousRevision")
        if self.old.get("phase") == "Suspended":
            self.event(False, "Resumed", "resumed: redeploying")
            return self.now
        if current is None:
            return self.now
        if current != target:
            self.new["previousRevision"] = current
            if target == self.latest:
                self.event(False, "RolloutStarted", f"rolling out revision {target} (was {current})")
            return self.now
        if started is None and target != stable:
            return self.now
        return started

    def complete_event(self, target: str, stable: str | None, failed_rev: str | None) -> None:
        if failed_rev:
            return  # RolledBack said it; the condition Progressing says it is done
        if stable is None or stable == target:
            self.event(False, "Deployed", f"revision {target}: all {self.spec.replicas} replicas available")
        else:
            self.event(False, "RolloutComplete", f"revision {target} is stable (was {stable})")

    def plan_for(self, target: str, b: Bounds, failures: Mapping[int, Mapping[str, int]]):
        next_run: dict[int, int] = {}
        backing_off: set[int] = set()
        for slot in range(b.replicas):
            mine = [p for p in self.pods if p.slot == slot]
            entry = failures.get(slot)
            next_run[slot] = max([p.run for p in mine] + [entry["run"] if entry else 0]) + 1
            if entry and not any(is_live(p) for p in mine):
                due = entry["at"] + min(BACKOFF_MAX, 2.0 ** (entry["failures"] - 1))
                if self.now < due:
                    backing_off.add(slot)
                    self.wake.append(due)
        available = {p.name: self.available(p) for p in self.pods if is_live(p)}
        return plan_slots(self.pods, target, b, available, next_run, backing_off)

    def phase(
        self, target: str, stable: str | None, failed_rev: str | None, started: float | None, b: Bounds
    ) -> tuple[str, str]:
        live = [p for p in self.pods if is_live(p) and p.name not in self.deletes]
        ready = sum(1 for p in live if p.ready and p.revision == target)
        if started is None:
            if failed_rev:
                return "Running", f"revision {failed_rev} was rolled back; running {target}"
            return "Running", f"revision {target}: {ready}/{b.replicas} ready"
        if failed_rev:
            return "RollingBack", f"rolling back from {failed_rev} to {target}: {ready}/{b.replicas} ready"
        if stable is None or stable == target:
            all_ready = ready >= b.replicas and all(p.revision == target for p in live)
            return ("Running" if all_ready else "Deploying"), f"revision {target}: {ready}/{b.replicas} ready"
        return "Updating", f"rolling out {target} (from {stable}): {ready}/{b.replicas} updated and ready"

    # ----------------------------------------------------------------------------------------- the plan

    def finish(
        self, phase: str, message: str, target: str, requests: Mapping[int, int] | None, b: Bounds
    ) -> StreamPlan:
        spec = self.spec
        template = self.templates.get(target)
        pending = [
            replica_request(
                namespace=self.namespace,
                job=self.name,
                revision=target,
                slot=slot,
                run=run,
                queue=spec.queue,
                template=template,
                priority_class_name=spec.priority_class_name,
                created=self.created,
                current=True,
                pending=True,
            )
            for slot, run in sorted((requests or {}).items())
        ]
        admitted, keys = [], {r.key for r in pending}
        for pod in sorted((p for p in self.pods if is_live(p)), key=lambda p: (p.slot, p.revision, p.run)):
            req = replica_request(
                namespace=self.namespace,
                job=self.name,
                revision=pod.revision,
                slot=pod.slot,
                run=pod.run,
                queue=spec.queue,
                template=self.templates.get(pod.revision),
                priority_class_name=spec.priority_class_name,
                created=self.created,
                current=pod.revision == target,
                pending=False,
            )
            if req.key in keys:
                req = replace(req, key=f"{req.key}/r{pod.run}")
            keys.add(req.key)
            admitted.append(req)
        record, forget, kept = history(
            self.old.get("revisionHistory"),
            self.revisions,
            self.templates,
            target,
            protect={self.latest, *(r for r in (self.new.get("stableRevision"),) if r)}
            | {p.revision for p in self.pods if is_live(p)},
            limit=spec.revision_history_limit,
        )
        status = self.status(phase, message, target, b, kept)
        wake = [t for t in self.wake if t > self.now]
        return StreamPlan(
            status=status,
            pending=pending,
            admitted=admitted,
            delete_pods=[PodDeletion(n, r) for n, r in sorted(self.deletes.items())],  # type: ignore[arg-type]
            events=self.events,
            record_revisions=record,
            forget_revisions=forget,
            wake_at=min(wake) if wake else None,
        )

    def status(self, phase: str, message: str, target: str, b: Bounds, kept: list[str]) -> dict[str, Any]:
        live = [p for p in self.pods if is_live(p)]
        remaining = [p for p in live if p.name not in self.deletes and not p.deleting]
        available = sum(1 for p in remaining if self.available(p))
        fields = {
            **self.new,
            "phase": phase,
            "message": message,
            "currentRevision": target,
            "replicas": len(live),
            "readyReplicas": sum(1 for p in remaining if p.ready),
            "updatedReplicas": sum(1 for p in remaining if p.revision == target),
            "selector": selector(self.name),
            "observedGeneration": self.generation,
            "desiredReplicas": self.spec.replicas,
            "revisionHistory": kept or None,
        }
        fields["conditions"] = conditions(self.old, fields, available, b, self.now)
        return build_status(fields)


def _refused(
    job: Mapping[str, Any], pods: Sequence[ReplicaPod], problems: list[str], now: float
) -> StreamPlan:
    old = dict(job.get("status") or {})
    message = "invalid spec: " + "; ".join(problems)
    fields = {**old, "phase": "Failed", "message": message[:1024]}
    fields["observedGeneration"] = (job.get("metadata") or {}).get("generation")
    fields["conditions"] = conditions(old, fields, 0, Bounds(0, 0, 0), now, invalid=message[:1024])
    events = [] if old.get("phase") == "Failed" else [WorkflowEvent("Warning", "InvalidSpec", message[:1024])]
    deletes = [PodDeletion(p.name, "Failed") for p in pods if is_live(p) and not p.deleting]
    return StreamPlan(
        status=build_status(fields), delete_pods=sorted(deletes, key=lambda d: d.name), events=events
    )


def plan_stream(
    job: Mapping[str, Any], pods: Sequence[ReplicaPod], revisions: Mapping[str, dict], now: float
) -> StreamPlan:
    """The plan for one stream job this cycle (pure, deterministic; see the module documentation).

    ``job`` is the StreamJob as watched (metadata, spec, status); ``pods`` every observed pod of the job
    (with ``Gone`` tombstones); ``revisions`` the recorded revisions (name -> pod template)."""
    problems = validate_streamjob(job)
    if problems:
        return _refused(job, pods, problems, now)
    return _Cycle(job, pods, revisions, now).run()
