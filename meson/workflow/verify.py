"""Status is a record, not an input: a persisted status checked against the pods before the engine trusts it.

Whoever may patch the status subresource can write any status; the engine obeys the status it is given
(an instance said Succeeded is never run). The controller therefore feeds the engine the status it wrote
itself, and when it has no memory of a workflow (after a restart) it first calls :func:`verify_status`,
which drops the claims the pods do not back:

* an instance said Succeeded needs Succeeded pods (the whole gang) of its run, unless pods of a later run
  exist (the engine adopts those and the pods decide);
* an instance said Running, Retrying or Failed in a run above every pod of that instance is reset, except a
  Retrying or Failed one whose pods are gone by design (evicted, node lost, timed out, stopped by the engine);
* a reset instance goes back to what its pods say: Running in the latest run of its pods (the engine then
  evaluates them, retries included), or Waiting with no run when it has no pods;
* the attempts of a Pending, Running or Retrying instance never go below the attempt label of its run's pods
  (of a Pending one only until the workflow is first restarted: a restart counts attempts afresh);
* Skipped needs a condition that is false now that the upstream steps are done; Omitted needs a failed or
  omitted dependency, a failure that stops the workflow, a shutdown or a workflow timeout. Otherwise the
  instance goes back to Waiting and the engine derives it again;
* a workflow said Succeeded or Failed whose instances are not all finished and backed is reopened.

Limits (deliberate):

* A finished workflow (phase Succeeded or Failed, finishedAt set) whose every instance is finished and none
  of whose pods is alive is trusted as is: the pods of old workflows may have been garbage collected. A
  forged "finished" status is thus believed when no pod of the workflow is alive; it can only end the
  forger's own workflow, and holds no quota (nothing runs).
* A failure without pods (a condition or template error, run 0) is trusted: it cannot be checked, and it
  only stops the forger's own workflow.
* In an unfinished workflow a Succeeded instance whose pods were deleted (or garbage collected) runs again.
* At the coarse level of a huge status (see meson.workflow.status) finished instances record the highest
  run of their phase; their Succeeded claims are then reset to their pods' run (same outcome, reported).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from meson.workflow.children import as_pod
from meson.workflow.compiled import _DONE_OK, _KILLED, TERMINAL, _compile, parse_time
from meson.workflow.engine import _Cycle
from meson.workflow.instances import _Inst, _int
from meson.workflow.types import LIVE_POD_PHASES, ChildObservation, PodObservation

__all__ = ["MAX_CORRECTIONS", "verify_status"]

#: Corrections described one by one; the others are counted in a last line.
MAX_CORRECTIONS = 20
# Failures whose pods are gone by design: their absence does not contradict the claim.
_PODS_GONE = frozenset({"Evicted", "NodeLost", "Timeout"})


def verify_status(
    workflow: Mapping[str, Any], pods: Sequence[PodObservation], children: Sequence[ChildObservation] = ()
) -> tuple[dict[str, Any], list[str]]:
    """(status the engine may trust, human-readable corrections); the status is returned unchanged (and no
    correction) when the pods back every claim. Pure; ``pods`` are every observed pod of the workflow,
    ``children`` its child Workflows (a sub-workflow step's claims are checked against them as pods)."""
    status = dict(workflow.get("status") or {})
    compiled = _compile(workflow)
    if not status or compiled.problems:
        return status, []  # nothing claimed, or an invalid spec (the engine fails it whatever the status)
    check = _Check(
        _Cycle(compiled, workflow, pods, 0.0, None, children=children), [*pods, *map(as_pod, children)]
    )
    if check.trusted(status):
        return status, []
    check.claims()
    check.derived()
    return check.result(status)


class _Check:
    def __init__(self, cycle: _Cycle, pods: Sequence[PodObservation]) -> None:
        self.cycle = cycle
        self.live = any(p.phase in LIVE_POD_PHASES for p in pods)
        self.restarted = bool(cycle.old.get("restarts"))
        self.notes: list[str] = []
        self.corrected = 0

    def note(self, text: str) -> None:
        self.corrected += 1
        if len(self.notes) < MAX_CORRECTIONS:
            self.notes.append(text)

    def trusted(self, status: Mapping[str, Any]) -> bool:
        """A finished workflow with nothing alive: its pods may be long gone, keep its record."""
        restarting = self.cycle.spec.restarts > (_int(status.get("restarts")) or 0)
        return (
            status.get("phase") in ("Succeeded", "Failed")
            and parse_time(status.get("finishedAt")) is not None
            and all(inst.phase in TERMINAL for inst in self.cycle.all())
            and not (self.live and not restarting)
        )

    # ----------------------------------------------------------------------------------------- claims

    def claims(self) -> None:
        cycle = self.cycle
        for (
            instance_id
        ) in cycle.pods_by_instance:  # pods of foreach elements: the step is expanded (as the engine does)
            ref = cycle.compiled.instance_ids.get(instance_id)
            if ref is not None and ref[1] is not None and cycle.by_step[ref[0]][0].index is None:
                cycle.expand(cycle.compiled.by_name[ref[0]])
        for inst in cycle.all():
            pods = cycle.pods_by_instance.get(inst.id, [])
            problem = self.unbacked(inst, pods)
            if problem is not None:
                self.reset(inst, pods, problem)
            else:
                self.floor_attempts(inst, pods)

    def unbacked(self, inst: _Inst, pods: list[PodObservation]) -> str | None:
        """Why the pods contradict the instance's claim, None when they do not."""
        top = max((o.run for o in pods), default=0)
        if inst.phase == "Succeeded":
            if inst.info.items == [] or inst.run < top:
                return None  # "no items" needs no pod; pods of a later run are adopted by the engine
            succeeded = {o.name for o in pods if o.run == inst.run and o.phase == "Succeeded"}
            if len(succeeded) >= inst.info.parallelism:
                return None
            return f"status said Succeeded but no pod of run {inst.run} succeeded"
        if inst.phase in ("Running", "Retrying", "Failed") and inst.run > top:
            if inst.phase != "Running" and _pods_gone_by_design(inst):
                return None
            return f"status said {inst.phase} in run {inst.run} but no pod of that run exists"
        return None

    def reset(self, inst: _Inst, pods: list[PodObservation], why: str) -> None:
        """Back to what the pods say: Running in their latest run (the engine evaluates it), else Waiting."""
        top = max((o.run for o in pods), default=0)
        inst.reset()
        inst.run = top
        if pods:
            inst.phase = "Running"
            inst.attempts = max(o.attempt for o in pods if o.run == top)
        self.note(f"step {inst.id}: {why}; reset to {inst.phase}")

    def floor_attempts(self, inst: _Inst, pods: list[PodObservation]) -> None:
        if inst.phase not in ("Pending", "Running", "Retrying"):
            return  # attempts of other phases decide nothing
        if inst.phase == "Pending" and self.restarted:
            return  # a restart counts attempts afresh while the run (and its old pods' labels) stays
        seen = max((o.attempt for o in pods if o.run == inst.run), default=0)
        if inst.attempts < seen:
            self.note(f"step {inst.id}: status said attempt {inst.attempts}, its pods say {seen}; raised")
            inst.attempts = seen

    # ----------------------------------------------------------------------------------------- derived phases

    def derived(self) -> None:
        """Skipped and Omitted must follow from the rest (upstream first: steps are in topological order)."""
        cycle = self.cycle
        for info in cycle.compiled.steps:
            insts = cycle.by_step[info.name]
            phases = {inst.phase for inst in insts}
            if "Skipped" in phases and not self.skip_justified(info):
                self.rederive(insts, "Skipped", "its condition is not false")
            if "Omitted" in phases and not self.omit_justified(info):
                self.rederive(insts, "Omitted", "no failure, dependency or shutdown stops it")

    def skip_justified(self, info: Any) -> bool:
        cycle = self.cycle
        if info.when is None or info.exit:
            return False
        if not all(cycle.step_phase(dep) in _DONE_OK for dep in info.deps):
            return False
        return cycle.condition(info) is False

    def omit_justified(self, info: Any) -> bool:
        cycle = self.cycle
        spec = cycle.spec
        if any(cycle.step_phase(dep) in ("Failed", "Omitted") for dep in info.deps):
            return True
        if spec.shutdown is not None or spec.timeout_seconds is not None:
            return True
        failed = [i for i in cycle.all() if i.phase == "Failed" and not i.info.exit]
        if any((i.message or "").startswith(_KILLED) for i in failed):
            return True  # the engine stopped the workflow (e.g. its status could not fit)
        return bool(failed) and spec.failure_mode != "Continue"

    def rederive(self, insts: list[_Inst], phase: str, why: str) -> None:
        for inst in insts:
            if inst.phase == phase:
                inst.reset()
                self.note(f"step {inst.id}: status said {phase} but {why}; reset to Waiting")

    # ----------------------------------------------------------------------------------------- result

    def result(self, status: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        cycle = self.cycle
        phase = status.get("phase")
        finished = all(inst.phase in TERMINAL for inst in cycle.all())
        reopen = phase in ("Succeeded", "Failed") and (self.corrected > 0 or not finished)
        if not self.corrected and not reopen:
            return status, []
        out = dict(status)
        notes = list(self.notes)
        if self.corrected > len(notes):
            notes.append(f"... and {self.corrected - len(notes)} more corrections")
        if self.corrected:
            cycle.encode_steps(out)
        if reopen:
            out["phase"] = "Running"
            out.pop("finishedAt", None)
            old = out.get("conditions") or []
            conditions = [c for c in old if isinstance(c, Mapping) and c.get("type") != "Completed"]
            out["conditions"] = conditions
            if not conditions:
                del out["conditions"]
            notes.append(f"workflow: status said {phase} but its steps did not all finish; reopened")
        return out, notes


def _pods_gone_by_design(inst: _Inst) -> bool:
    return inst.reason in _PODS_GONE or (inst.message or "").startswith(_KILLED)
