"""Stage 4 of a cycle: the workflow's outcome, its events and its bounded status (and a finished
workflow's frozen plan)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meson.workflow.compiled import (
    TERMINAL,
    parse_time,
    rfc3339,
)
from meson.workflow.instances import (
    _BUCKET,
    _bounded_condition,
)
from meson.workflow.status import (
    COMPACT_ABOVE,
    MAX_CONDITIONS,
    PLAN_BUDGET_BYTES,
    WORKFLOW_MESSAGE_MAX_BYTES,
    cap_message,
    json_size,
    range_entries,
)
from meson.workflow.types import (
    LIVE_POD_PHASES,
    InstanceRequest,
    Plan,
)

#: Restarts kept in status.history (the API's maxItems).
MAX_HISTORY = 10


class Reporting:
    """Stage 4 of a cycle: the workflow's outcome, its events and its bounded status (and a finished"""

    def outcome(
        self, stop: tuple[str, str] | None, admitted: list[InstanceRequest]
    ) -> tuple[str, str | None, bool]:
        """(phase, message, finished) of the workflow."""
        insts = self.all()
        busy = bool(admitted) or self.children_live  # pods or child Workflows still alive
        finished = all(i.phase in TERMINAL for i in insts) and not busy
        failed = [i for i in insts if i.phase == "Failed"]
        if finished:
            phase = "Failed" if failed or stop is not None else "Succeeded"
        elif not any(i.run for i in insts) and not any(i.phase in ("Running", "Retrying") for i in insts):
            phase = "Suspended" if self.spec.suspend else "Pending"
        elif self.spec.suspend and not busy and not any(i.phase == "Running" for i in insts):
            phase = "Suspended"
        else:
            phase = "Running"
        if stop is not None:
            return phase, stop[1], finished
        real = [i.id for i in failed if not i.info.exit]
        if len(real) == 1:
            return phase, f"step {real[0]} failed", finished
        if real:
            more = ", ..." if len(real) > 5 else ""
            return phase, f"{len(real)} steps failed: " + ", ".join(real[:5]) + more, finished
        if failed:
            return phase, f"exit step {failed[0].id} failed", finished
        return phase, "suspended" if phase == "Suspended" else None, finished

    def phase_events(self, phase: str, message: str | None) -> None:
        old_phase = self.old.get("phase")
        if phase == old_phase or (old_phase is None and phase == "Pending"):
            return
        if phase in ("Succeeded", "Failed"):
            text = f"workflow {phase.lower()}" + (f": {message}" if message else "")
            self.event(phase == "Failed", f"Workflow{phase}", text)
        else:
            self.event(False, f"Workflow{phase}", f"workflow {phase.lower()}")

    def counts(self) -> dict[str, int]:
        counts = {"total": 0, "pending": 0, "running": 0, "succeeded": 0, "failed": 0, "skipped": 0}
        for inst in self.all():
            n = inst.count
            counts["total"] += n
            counts[_BUCKET[inst.phase]] += n
        return counts

    def status(
        self,
        phase: str,
        message: str | None,
        finished: bool,
        restart_at: float | None,
        force: bool = False,
    ) -> dict[str, Any] | None:
        """The new status (only known fields, messages capped), None when it cannot fit its budget."""
        counts = self.counts()
        done = counts["succeeded"] + counts["failed"] + counts["skipped"]
        out: dict[str, Any] = {"phase": phase, "progress": f"{done}/{counts['total']}"}
        if message:
            out["message"] = cap_message(message, WORKFLOW_MESSAGE_MAX_BYTES)
        out["startedAt"] = rfc3339(self.started)
        if finished:
            out["finishedAt"] = rfc3339(self.now)
        out["counts"] = counts
        history = [h for h in self.old.get("history") or [] if isinstance(h, Mapping)]
        if self.history_entry is not None:
            history.append(self.history_entry)
        if history:
            out["history"] = history[-MAX_HISTORY:]
        if self.memo_records:
            out["memo"] = dict(self.memo_records)
        if self.outputs:
            out["outputs"] = dict(self.outputs)
        conditions = self.conditions(phase, out.get("message"), out.get("finishedAt"), restart_at)
        if conditions:
            out["conditions"] = conditions
        if self.compiled.generation is not None:
            out["observedGeneration"] = self.compiled.generation
        if self.spec.restarts:
            out["restarts"] = self.spec.restarts
        return out if self.encode_steps(out) or force else None

    def conditions(
        self, phase: str, message: str | None, finished_at: str | None, restart_at: float | None
    ) -> list[dict[str, Any]]:
        old = [c for c in self.old.get("conditions") or [] if isinstance(c, Mapping)]
        kept = [_bounded_condition(c) for c in old if c.get("type") not in ("Completed", "Restarted")]
        restarted = next((dict(c) for c in old if c.get("type") == "Restarted"), None)
        if restart_at is not None:
            origin = (self.history_entry or {}).get("from")
            restarted = {
                "type": "Restarted",
                "status": "True",
                "reason": "RestartedFromStep" if origin else "RestartedFromFailedSteps",
                "message": f"restart {self.spec.restarts}: "
                + (f"rerun from step {origin}" if origin else "failed steps rerun"),
                "lastTransitionTime": rfc3339(restart_at),
            }
        if restarted is not None:
            kept.append(_bounded_condition(restarted))
        if finished_at is not None:
            completed = {
                "type": "Completed",
                "status": "True",
                "reason": phase,
                "lastTransitionTime": finished_at,
            }
            if message:
                completed["message"] = message
            kept.append(completed)
        return kept[-MAX_CONDITIONS:]

    def encode_steps(self, out: dict[str, Any]) -> bool:
        """Sets ``out["steps"]`` to the first level of detail (see meson.workflow.status) that fits the
        budget; False when none does (the coarsest is then set)."""
        states: dict[tuple[str, bool], list[tuple[int, dict[str, Any]]]] = {}  # shared by the levels
        expanded = [insts for insts in self.by_step.values() if insts[0].index is not None]
        levels = (0, 1, 2, 3) if any(len(insts) <= COMPACT_ABOVE for insts in expanded) else (0, 2, 3)
        for level in levels:
            out["steps"] = self.steps_wire(level, states)
            if json_size(out) <= PLAN_BUDGET_BYTES:
                return True
        return False

    def steps_wire(
        self, level: int, states: dict[tuple[str, bool], list[tuple[int, dict[str, Any]]]]
    ) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] = []
        lean = level >= 2
        for info in self.compiled.steps:
            insts = self.by_step[info.name]
            if insts[0].index is None or (level == 0 and len(insts) <= COMPACT_ABOVE):
                steps.extend(inst.wire() for inst in insts)
                continue
            key = (info.name, lean)
            if key not in states:
                states[key] = [(inst.index or 0, inst.state(lean)) for inst in insts]
            steps.extend(range_entries(info.name, states[key], coarse=level >= 3))
        return steps

    def frozen(self) -> Plan:
        """A finished workflow: nothing changes; leftover pods are deleted; TTL."""
        admitted: list[InstanceRequest] = []
        for inst in self.all():
            live = [o for o in self.pods_by_instance.get(inst.id, ()) if o.phase in LIVE_POD_PHASES]
            self.delete.update(o.name for o in live if not o.deleting)
            if live and inst.info.sub is None:  # a child Workflow holds no admission
                top = max(live, key=lambda o: (o.run, o.attempt))
                admitted.append(self.request(inst, top.run, top.attempt, ()))
        for instance_id, observed in self.pods_by_instance.items():
            if instance_id not in self.compiled.instance_ids:
                self.delete.update(o.name for o in observed if o.phase in LIVE_POD_PHASES and not o.deleting)
        status = dict(self.old)
        if self.compiled.generation is not None:
            status["observedGeneration"] = self.compiled.generation
        delete_workflow = False
        wake_at = None
        ttl = self.spec.ttl_seconds_after_finished
        finished_at = parse_time(self.old.get("finishedAt"))
        if ttl is not None:
            expires = (finished_at if finished_at is not None else self.now) + ttl
            if self.now >= expires:
                delete_workflow = True
            else:
                wake_at = expires
        return Plan(
            status=status,
            admitted=admitted,
            delete_pods=sorted(n for n in self.delete if n not in self.children),
            shutdown_workflows=self.child_shutdowns(),
            wake_at=wake_at,
            finished=True,
            delete_workflow=delete_workflow,
        )
