"""The pure workflow engine: (Workflow object with its persisted status, observed pods, now) → :class:`Plan`.

Level-triggered and deterministic: everything the engine knows between two calls is in ``status`` (which the
runtime persists) and in the pods (which carry their instance, run and attempt in labels). The same inputs
always give the same plan, and a stale status (one cycle old) replayed against the real pods gives no
duplicate launches: pod names are a function of (workflow, instance, run, index) and the run of a pending
instance is ``status.run + 1``.

Instances. One per step; a ``foreach`` step has one per element (``NAME-INDEX``), expanded when the step
becomes ready (until then a single entry without index stands for the whole step); a gang (parallelism N) is
one instance with N pods; the exit step is the instance ``onExit.name``.

Per instance (``status.steps[]``):

* ``run`` counts launches (pods ``{workflow}-{instance}-r{run}-{i}``); a Pending instance asks for run
  ``run + 1``. Pods of a run above ``run`` are adopted (created, then the status write was lost).
* ``attempts`` is the attempt of the current (or pending) run: it grows when a failed attempt is retried, not
  when the instance is preempted (then only ``run`` grows).
* Phases: Waiting → Pending (in the queue) → Running (its pods exist) → Succeeded | Retrying → Pending … |
  Failed; Skipped (``when`` false), Omitted (not run because of a failure, Stop or Terminate).

Choices (Argo-like):

* A dependency that is Skipped counts as done: its dependants run. A Failed or Omitted dependency makes
  dependants Omitted (failureMode Continue; the other modes omit everything not yet started anyway).
* ``steps.NAME`` in ``when`` sees every upstream step: ``phase`` (aggregated over foreach instances),
  ``exitCode`` (the first non-zero one, else 0), ``result`` (its result, ``""`` when none) and, for a step
  without foreach, ``outputs.result`` and ``outputs.json`` (the result read as JSON, when it is JSON).
* Outputs: a succeeded step without foreach keeps the termination message of its main container (pod 0's)
  in ``status.outputs`` (4 KiB each, 64 KiB per workflow: a result beyond that is not kept and the step
  says so). A restart drops the results of the steps it reruns. ``foreach.fromOutput`` fans out over a list
  in an upstream output: the step's items are known once that output is (until then it is one entry).
  A ``when`` that cannot be evaluated fails the instance.
* Once the workflow is stopping (StopScheduling/FailFast after a failure, Stop, Terminate, workflow timeout),
  Waiting/Pending instances become Omitted and Retrying ones Failed (no retry is started); with FailFast,
  Terminate and the workflow timeout running instances are failed and their pods deleted ("stopped: …").
* The exit step starts once every other instance is terminal (it does not wait for the pods being deleted),
  also when stopping, but never after Terminate. It is not stopped by FailFast or the workflow timeout.
  When it fails the workflow fails. suspend holds it like any other instance.
* suspend: Pending instances stay Pending (message "suspended") and are not requested; running ones go on.
  The phase is Suspended while no instance is Running and no pod is alive, else Running.
* ``startedAt`` is set by the first plan (the controller started the workflow); per-instance times are seconds
  after it. The workflow timeout counts from startedAt, or from the last restart (condition Restarted).
* An instance whose previous pods are still alive (being deleted after a failure or a preemption) is listed in
  ``Plan.admitted`` with that run and is not requested again until they are gone.
* The workflow finishes when every instance is terminal and no pod is alive; ``finishedAt`` is then set.
  A finished workflow is frozen until ``spec.restarts`` grows.

Status size. The status shares an etcd object with the spec, so it is bounded by design
(:mod:`meson.workflow.status`): a large fan-out is recorded as range entries (``indexes``, one entry per
state), messages are capped, and levels of detail are dropped until the status fits its budget; the engine
reads every form back with the same decisions (only per-instance times and nodes of range entries are lost;
a running instance's are read again from its pods, and one whose pods vanished without trace is then
Evicted rather than NodeLost). A workflow whose status cannot fit even then is terminated.

Trust. The engine obeys the status it is given: the runtime feeds it the status it wrote itself, and checks
any other one against the pods first (:func:`meson.workflow.verify.verify_status`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from meson.api.workflow import (
    WorkflowSpec,
)
from meson.workflow.advancing import Advancing
from meson.workflow.children import as_pod
from meson.workflow.compiled import (
    TERMINAL,
    _compile,
    _Compiled,
    _StepInfo,
    _with_output_items,
    has_outputs,
    parse_time,
    rfc3339,
)
from meson.workflow.instances import (
    _INDEXES_LOST,
    _NO_FIELDS,
    _fields,
    _Inst,
    _int,
    _whole_step,
)
from meson.workflow.observing import Observing
from meson.workflow.reporting import Reporting
from meson.workflow.requesting import Requesting
from meson.workflow.status import (
    OVERFLOW_REASON,
    WORKFLOW_MESSAGE_MAX_BYTES,
    cap_message,
    parse_ranges,
    with_queue_positions,
)
from meson.workflow.types import (
    LIVE_POD_PHASES,
    ChildObservation,
    FailureKind,
    MemoLookup,
    Plan,
    PodObservation,
    WorkflowEvent,
)

__all__ = ["parse_time", "plan", "refused_status", "rfc3339", "with_queue_positions"]


# --------------------------------------------------------------------------------------------- the cycle


class _Cycle(Observing, Advancing, Requesting, Reporting):
    """One plan of one workflow: the stages, in order, are in ``run``."""

    def __init__(
        self,
        compiled: _Compiled,
        workflow: Mapping[str, Any],
        pods: Sequence[PodObservation],
        now: float,
        nodes: Collection[str] | None,
        memo: MemoLookup | None = None,
        children: Sequence[ChildObservation] = (),
    ) -> None:
        self.compiled = compiled
        assert compiled.spec is not None
        self.spec: WorkflowSpec = compiled.spec
        self.meta = workflow.get("metadata") or {}
        self.old: dict[str, Any] = dict(workflow.get("status") or {})
        self.now = now
        self.nodes = nodes if nodes is None or isinstance(nodes, set | frozenset | dict) else set(nodes)
        started = parse_time(self.old.get("startedAt"))
        self.started: float = started if started is not None else float(math.floor(now))
        self.events: list[WorkflowEvent] = []
        self.delete: set[str] = set()
        self.create: list[dict[str, Any]] = []
        self.wake: list[float] = []
        self.pods_by_instance: dict[str, list[PodObservation]] = {}
        # Child Workflows of sub-workflow steps are observed as the pods of their instance and run.
        self.children: dict[str, ChildObservation] = {c.name: c for c in children}
        self.create_children: list[dict[str, Any]] = []
        self.children_live = False  # a child Workflow of some instance has not finished
        for pod in [*pods, *(as_pod(c) for c in children)]:
            self.pods_by_instance.setdefault(pod.instance, []).append(pod)
        self.by_step: dict[str, list[_Inst]] = {}
        self.outputs: dict[str, str] = self._old_outputs()
        self.history_entry: dict[str, Any] | None = None  # set by a restart acted on in this cycle
        self.memo = memo
        self.memo_records: dict[str, dict[str, str]] = self._old_memo_records()
        if compiled.dynamic:
            self.compiled = _with_output_items(compiled, self.outputs)
        self._load()

    # ----------------------------------------------------------------------------------------- helpers

    def _old_outputs(self) -> dict[str, str]:
        """The results kept in the old status, of steps of this spec that can have one."""
        old = self.old.get("outputs")
        if not isinstance(old, Mapping):
            return {}
        by_name = self.compiled.by_name
        return {
            name: value
            for name, value in old.items()
            if isinstance(value, str) and name in by_name and has_outputs(by_name[name])
        }

    def _old_memo_records(self) -> dict[str, dict[str, str]]:
        old = self.old.get("memo")
        if not isinstance(old, Mapping):
            return {}
        by_name = self.compiled.by_name
        return {
            name: {"key": str(rec.get("key")), "at": str(rec.get("at"))}
            for name, rec in old.items()
            if isinstance(rec, Mapping) and name in by_name and by_name[name].memoize is not None
        }

    def _load(self) -> None:
        grouped: dict[str, dict[int | None, tuple]] = {}
        wholes: dict[str, int] = {}  # entries without index or indexes, per step
        steps = self.old.get("steps")
        for entry in steps if isinstance(steps, list) else ():
            name = entry.get("name") if isinstance(entry, Mapping) else None
            info = self.compiled.by_name.get(name) if isinstance(name, str) else None
            if info is None:
                continue
            slots = grouped.setdefault(info.name, {})
            fields = _fields(entry)  # once per entry: a range entry stands for many instances
            index = _int(entry.get("index"))
            if "indexes" in entry:  # an instance entry of the same instance wins
                for i in parse_ranges(entry["indexes"], len(info.items or ())):
                    slots.setdefault(i, fields)
            else:
                slots[index] = fields
                wholes[info.name] = wholes.get(info.name, 0) + (index is None)
        for info in self.compiled.steps:
            entries = grouped.get(info.name, {})
            if info.items is not None:
                if None in entries and not _whole_step(info, entries[None], wholes[info.name]):
                    del entries[None]
                    self.event(True, "StatusIndexesLost", _INDEXES_LOST.format(step=info.name))
                indexed = {
                    k: v for k, v in entries.items() if isinstance(k, int) and 0 <= k < len(info.items)
                }
                if indexed:
                    self.by_step[info.name] = [
                        _Inst(info, i, indexed.get(i, _NO_FIELDS)) for i in range(len(info.items))
                    ]
                    continue
            self.by_step[info.name] = [_Inst(info, None, entries.get(None, _NO_FIELDS))]

    def all(self) -> list[_Inst]:
        return [inst for info in self.compiled.steps for inst in self.by_step[info.name]]

    def since_start(self, epoch: float) -> int:
        """Whole seconds from the workflow's start to ``epoch`` (how instance times are persisted)."""
        return max(0, math.floor(epoch - self.started))

    def event(self, warning: bool, reason: str, message: str, failure: FailureKind | None = None) -> None:
        self.events.append(WorkflowEvent("Warning" if warning else "Normal", reason, message, failure))

    def node_gone(self, node: str | None) -> bool:
        return self.nodes is not None and bool(node) and node not in self.nodes

    def expand(self, info: _StepInfo) -> None:
        insts = self.by_step[info.name]
        if info.items is None or insts[0].index is not None:
            return
        placeholder = insts[0]
        if not info.items:
            if placeholder.phase == "Waiting":
                placeholder.phase, placeholder.message = "Succeeded", "no items"
            return
        self.by_step[info.name] = [placeholder.copy_as(i) for i in range(len(info.items))]

    # ----------------------------------------------------------------------------------------- status

    def run(self) -> Plan:
        restarted = self.spec.restarts > (_int(self.old.get("restarts")) or 0)
        restart_at = self.restart(restarted)
        if not restarted and self.old.get("phase") in ("Succeeded", "Failed"):
            return self.frozen()
        self.observe()
        stop = self.stop_state(restart_at)
        if stop is not None:
            self.apply_stop(*stop)
        self.retry_due()
        self.advance(stop is not None)
        pending, admitted = self.requests()
        phase, message, finished = self.outcome(stop, admitted)
        status = self.status(phase, message, finished, restart_at if restarted else None)
        if status is None:  # even the coarse form does not fit: terminate (finished instances always fit)
            self.event(True, "StatusTooLarge", f"workflow terminated: {OVERFLOW_REASON}")
            stop = ("terminate", OVERFLOW_REASON)
            self.apply_stop(*stop)
            self.create = []
            self.create_children = []
            pending, admitted = self.requests()
            phase, message, finished = self.outcome(stop, admitted)
            status = self.status(phase, message, finished, restart_at if restarted else None, force=True)
            assert status is not None
        self.phase_events(phase, message)
        delete_workflow = False
        if finished and self.spec.ttl_seconds_after_finished is not None:
            expires = math.floor(self.now) + self.spec.ttl_seconds_after_finished
            if self.now >= expires:
                delete_workflow = True
            else:
                self.wake.append(expires)
        wake = [t for t in self.wake if t > self.now]
        return Plan(
            status=status,
            pending=pending,
            admitted=admitted,
            delete_pods=sorted(n for n in self.delete if n not in self.children),
            events=self.events,
            wake_at=min(wake) if wake else None,
            finished=finished,
            delete_workflow=delete_workflow,
            create_pods=self.create,
            create_workflows=self.create_children,
            shutdown_workflows=self.child_shutdowns(),
        )

    def child_shutdowns(self) -> dict[str, str]:
        """Children to stop: those the engine would delete are terminated; the parent's Stop is passed
        on to its running children."""
        out: dict[str, str] = {}
        for name, child in self.children.items():
            if child.gone or child.deleting or child.phase in ("Succeeded", "Failed"):
                continue
            if name in self.delete and child.shutdown != "Terminate":
                out[name] = "Terminate"
            elif self.spec.shutdown == "Stop" and child.shutdown is None:
                out[name] = "Stop"
        return out

    def restart(self, restarted: bool) -> float | None:
        """When the workflow timeout counts from: the last restart (now, when restarting in this cycle)."""
        restart_at = None
        for cond in self.old.get("conditions") or []:
            if isinstance(cond, Mapping) and cond.get("type") == "Restarted":
                restart_at = parse_time(cond.get("lastTransitionTime"))
        if not restarted:
            return restart_at
        origin = self.spec.restart_from if self.spec.restart_from in self.compiled.by_name else None
        rerun = {origin} | {i.name for i in self.compiled.steps if origin in i.upstream} if origin else set()
        reset = 0
        for inst in self.all():
            again = inst.info.name in rerun and inst.phase != "Waiting"
            if again or inst.phase in ("Failed", "Omitted") or (inst.info.exit and inst.phase in TERMINAL):
                inst.reset()
                self.outputs.pop(inst.info.name, None)
                self.memo_records.pop(inst.info.name, None)
                reset += inst.count
        what = f"rerunning from step {origin}" if origin else "rerunning the failed steps"
        self.event(False, "WorkflowRestarted", f"restart {self.spec.restarts}: {what}")
        self.history_entry = {"restart": self.spec.restarts, "at": rfc3339(self.now)}
        if origin:
            self.history_entry["from"] = origin
        self.history_entry["rerun"] = reset
        values = ", ".join(
            f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in self.compiled.params.items()
        )
        if values:
            self.history_entry["parameters"] = cap_message(values)
        return self.now


def refused_status(
    workflow: Mapping[str, Any], messages: Sequence[str], now: float, generation: int | None = None
) -> dict[str, Any]:
    """The status of a workflow refused for an invalid spec: Failed with a ``Valid=False`` condition.

    The one builder for it (the engine's own checks and the controller's, e.g. a pod template the API
    server refused in a dry run). Idempotent: refusing again for the same reasons keeps the condition's
    transition time, so a refused workflow's status does not churn."""
    old = dict(workflow.get("status") or {})
    message = cap_message("invalid spec: " + "; ".join(messages), WORKFLOW_MESSAGE_MAX_BYTES) or ""
    status = dict(old)
    status["phase"] = "Failed"
    status["message"] = message
    conditions = [c for c in old.get("conditions") or [] if c.get("type") != "Valid"]
    previous = next((c for c in old.get("conditions") or [] if c.get("type") == "Valid"), None)
    when = (previous or {}).get("lastTransitionTime") if (previous or {}).get("message") == message else None
    conditions.append(
        {
            "type": "Valid",
            "status": "False",
            "reason": "InvalidSpec",
            "message": message,
            "lastTransitionTime": when or rfc3339(now),
        }
    )
    status["conditions"] = conditions
    status.setdefault("finishedAt", rfc3339(now))
    if generation is not None:
        status["observedGeneration"] = generation
    return status


def _invalid(
    compiled: _Compiled, workflow: Mapping[str, Any], pods: Sequence[PodObservation], now: float
) -> Plan:
    old = workflow.get("status") or {}
    status = refused_status(workflow, compiled.problems, now, compiled.generation)
    events = (
        [] if old.get("phase") == "Failed" else [WorkflowEvent("Warning", "InvalidSpec", status["message"])]
    )
    return Plan(
        status=status,
        delete_pods=sorted(p.name for p in pods if p.phase in LIVE_POD_PHASES and not p.deleting),
        events=events,
        finished=True,
    )


def plan(
    workflow: Mapping[str, Any],
    pods: Sequence[PodObservation],
    now: float,
    *,
    nodes: Collection[str] | None = None,
    memo: MemoLookup | None = None,
    children: Sequence[ChildObservation] = (),
) -> Plan:
    """The plan for one workflow this cycle (pure, deterministic; see the module documentation).

    ``workflow`` is the object as read from the API (metadata, spec, status); ``pods`` every observed pod of
    the workflow (all runs); ``nodes`` the names of the existing nodes (None: unknown, lost pods then count
    as Evicted rather than NodeLost); ``memo`` looks up the namespace's memoization cache (None: no hit);
    ``children`` the child Workflows of its sub-workflow steps (see :mod:`meson.workflow.children`).
    """
    compiled = _compile(workflow)
    if compiled.problems:
        return _invalid(compiled, workflow, pods, now)
    return _Cycle(compiled, workflow, pods, now, nodes, memo, children).run()
