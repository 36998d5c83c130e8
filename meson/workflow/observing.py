"""Stage 1 of a cycle: observe the pods — adopt runs the status does not know, evaluate running
instances, and turn failures into a requeue (preempted), a retry with backoff, or a final failure."""

from __future__ import annotations

import math
from collections.abc import Iterable

from meson.workflow.children import failure_text
from meson.workflow.compiled import OUTPUTS_BUDGET_BYTES, cap_result, has_outputs, rfc3339
from meson.workflow.instances import (
    _backoff,
    _Inst,
    _pod_index,
)
from meson.workflow.status import json_size
from meson.workflow.types import (
    LIVE_POD_PHASES,
    PodObservation,
)


class Observing:
    """Stage 1 of a cycle: observe the pods — adopt runs the status does not know, evaluate running"""

    # ----------------------------------------------------------------------------------------- observation

    def observe(self) -> None:
        unknown = self.expand_observed(list(self.pods_by_instance))
        self.observe_instances(self.all())
        if unknown and any(info.from_output and info.items is None for info in self.compiled.steps):
            # A fan-out over an output whose result this plan only read now from its pods: the status it
            # started from (the last one written) may predate it, while a later write was still on its way.
            for info in [i for i in self.compiled.steps if i.from_output and i.items is None]:
                self.with_items(info)
            known = [i for i in unknown if i in self.compiled.instance_ids]
            unknown = self.expand_observed(known) + [i for i in unknown if i not in known]
            steps = {self.compiled.instance_ids[i][0] for i in known}
            self.observe_instances([inst for inst in self.all() if inst.info.name in steps])
        for instance_id in unknown:  # not an instance of this spec (renamed step, shrunk list): orphans
            observed = self.pods_by_instance[instance_id]
            self.delete.update(o.name for o in observed if o.phase in LIVE_POD_PHASES and not o.deleting)

    def expand_observed(self, instance_ids: list[str]) -> list[str]:
        """Fan out the foreach steps that have pods; the ids that are no instance of the spec (yet)."""
        unknown = []
        for instance_id in instance_ids:
            ref = self.compiled.instance_ids.get(instance_id)
            if ref is None:
                unknown.append(instance_id)
                continue
            step_name, index = ref
            if index is not None and self.by_step[step_name][0].index is None:
                self.expand(self.compiled.by_name[step_name])
        return unknown

    def observe_instances(self, instances: Iterable[_Inst]) -> None:
        """Adopt runs the status does not know, and evaluate the running instances' pods."""
        for inst in instances:
            observed = self.pods_by_instance.get(inst.id, ())
            if observed:
                top = max(o.run for o in observed)
                if top > inst.run:
                    self.adopt(inst, [o for o in observed if o.run == top])
            if inst.phase == "Running":
                self.evaluate(inst, [o for o in observed if o.run == inst.run])

    def adopt(self, inst: _Inst, pods: list[PodObservation]) -> None:
        inst.run = pods[0].run
        inst.attempts = max(o.attempt for o in pods)
        inst.start = inst.end = inst.node = inst.retry_at = inst.message = None
        inst.exit_code = None
        if inst.phase != "Running":
            inst.phase = "Running"
            self.event(False, "StepStarted", f"{inst.id}: started (attempt {inst.attempts}, run {inst.run})")

    def evaluate(self, inst: _Inst, pods: list[PodObservation]) -> None:
        info = inst.info
        if not pods:
            if info.sub is not None:
                self.fail(inst, "Evicted", None, self.now, "sub-workflow lost: deleted")
            elif self.node_gone(inst.node):
                self.fail(inst, "NodeLost", None, self.now, f"pods lost: node {inst.node} is gone")
            else:
                self.fail(inst, "Evicted", None, self.now, "pods lost: deleted")
            return
        pods = sorted(pods, key=lambda o: _pod_index(o.name))
        if inst.start is None:
            inst.start = self.since_start(min(o.created for o in pods))
        if inst.node is None:
            inst.node = next((o.node for o in pods if o.node), None)
        failed = [
            o
            for o in pods
            if o.phase in ("Failed", "Gone") or (o.phase == "Unknown" and self.node_gone(o.node))
        ]
        if failed:
            self.fail(inst, *self.failure_of(failed, info.parallelism > 1))
            return
        if len({o.name for o in pods if o.phase == "Succeeded"}) >= info.parallelism:
            inst.phase = "Succeeded"
            inst.end = self.since_start(max(o.finished if o.finished is not None else self.now for o in pods))
            inst.exit_code = 0
            inst.message = None
            if has_outputs(info) and pods[0].result:
                self.keep_output(inst, pods[0].result)
            if info.memoize is not None:
                key = self.memo_key(inst)
                if key is not None:
                    self.memo_records[info.name] = {"key": key, "at": rfc3339(self.started + inst.end)}
            self.event(False, "StepSucceeded", f"{inst.id}: succeeded")
            return
        if info.timeout is not None:
            starts = [o.started for o in pods if o.started is not None]
            if starts:
                deadline = min(starts) + info.timeout
                if self.now >= deadline:
                    self.fail(inst, "Timeout", None, deadline, f"timed out after {info.timeout}s")
                    return
                self.wake.append(deadline)
        seen = {o.name for o in pods}
        if len(seen) < info.parallelism and not any(o.deleting for o in pods):
            missing = [i for i in range(info.parallelism) if self.pod_name(inst, inst.run, i) not in seen]
            built = self.manifests(inst, inst.run, inst.attempts or 1, missing)
            if built is not None:
                self.create.extend(built)

    def keep_output(self, inst: _Inst, result: str) -> None:
        """Record a step's result, unless the workflow's results would exceed their budget (then the step
        says so, and a step reading it sees an empty result)."""
        result = cap_result(result)
        others = {k: v for k, v in self.outputs.items() if k != inst.info.name}
        if json_size({**others, inst.info.name: result}) > OUTPUTS_BUDGET_BYTES:
            inst.message = (
                f"result not kept: the workflow's results exceed {OUTPUTS_BUDGET_BYTES // 1024} KiB"
            )
            return
        self.outputs[inst.info.name] = result

    def failure_of(self, failed: list[PodObservation], inst_gang: bool) -> tuple[str, int | None, float, str]:
        ordered = sorted(failed, key=lambda o: (o.finished if o.finished is not None else self.now, o.name))
        code = next((o.exit_code for o in ordered if o.exit_code), None)
        first = next((o for o in ordered if o.failure == "Preempted"), ordered[0])
        kind = first.failure
        if kind is None:
            if first.exit_code or first.phase == "Failed":
                kind = "FailedExit"
            elif self.node_gone(first.node):
                kind = "NodeLost"
            else:
                kind = "Evicted"
        when = first.finished if first.finished is not None else self.now
        who = f"pod {_pod_index(first.name)}: " if inst_gang else ""
        if kind == "FailedExit":
            text = f"{who}exit code {first.exit_code}" if first.exit_code else f"{who}pod failed"
        elif kind == "NodeLost":
            text = f"{who}node {first.node} lost"
        elif kind == "Preempted":
            text = "preempted"
        elif kind == "Timeout":
            text = f"{who}timed out"
        else:
            text = f"{who}pod deleted or evicted"
        if first.name in self.children:  # a sub-workflow's child: its own words
            text = failure_text(self.children[first.name], first.name)
        return kind, code, when, text

    def fail(self, inst: _Inst, kind: str, code: int | None, when: float, text: str) -> None:
        """The current attempt of ``inst`` failed: requeue (preempted), retry, or fail for good."""
        inst.reason = kind
        inst.exit_code = code
        if kind == "Preempted":
            inst.phase = "Pending"
            inst.start = inst.node = None
            inst.message = "preempted; back in the queue"
            self.event(True, "StepPreempted", f"{inst.id}: preempted (run {inst.run}); back in the queue")
            return
        policy = inst.info.retry
        if kind in policy.retry_on and inst.attempts < policy.limit + 1:
            delay = _backoff(policy, inst.attempts)
            inst.phase = "Retrying"
            inst.retry_at = math.ceil(when + delay - self.started)
            inst.message = f"attempt {inst.attempts} failed: {text}"
            self.event(
                True,
                "StepRetrying",
                f"{inst.id}: attempt {inst.attempts} failed ({kind}: {text}); retrying in {delay:g}s",
                kind,  # type: ignore[arg-type]  # a FailureKind by construction
            )
            return
        inst.phase = "Failed"
        inst.end = self.since_start(when)
        inst.message = f"{kind}: {text}"
        self.event(
            True,
            "StepFailed",
            f"{inst.id}: failed ({kind}: {text}) after {inst.attempts} attempt(s)",
            kind,  # type: ignore[arg-type]
        )
