"""Stage 2 of a cycle: stopping (Stop, Terminate, FailFast, timeouts), retries that are due, and
advancing the DAG: ready instances become Pending, conditions decide Skipped, failures Omitted."""

from __future__ import annotations

from meson.api.template import output_values
from meson.workflow.compiled import (
    _ACTIVE,
    _DONE_OK,
    _KILLED,
    _NOT_A_LIST,
    TERMINAL,
    _evaluate_when,
    _StepInfo,
    _with_output_items,
    has_outputs,
    output_list,
    rfc3339,
)
from meson.workflow.instances import (
    _Inst,
)
from meson.workflow.types import FAILURE_KINDS


class Advancing:
    """Stage 2 of a cycle: stopping (Stop, Terminate, FailFast, timeouts), retries that are due, and"""

    # ----------------------------------------------------------------------------------------- decisions

    def stop_state(self, restart_at: float | None) -> tuple[str, str] | None:
        """(how, why) when the workflow is stopping: how is terminate, kill (FailFast-like) or stop."""
        spec = self.spec
        if spec.shutdown == "Terminate":
            return "terminate", "terminated"
        if spec.shutdown == "Stop":
            return "stop", "stopped"
        if spec.timeout_seconds is not None:
            deadline = max(self.started, restart_at or 0.0) + spec.timeout_seconds
            if self.now >= deadline:
                return "kill", "workflow timeout"
            self.wake.append(deadline)
        if spec.failure_mode == "Continue":
            return None
        cause = next(
            (
                i
                for i in self.all()
                if i.phase == "Failed" and not i.info.exit and not (i.message or "").startswith(_KILLED)
            ),
            None,
        )
        if cause is None:
            return None
        why = f"step {cause.id} failed"
        return ("kill" if spec.failure_mode == "FailFast" else "stop"), why

    def apply_stop(self, how: str, why: str) -> None:
        for inst in self.all():
            if inst.info.exit and how != "terminate":
                continue
            if inst.phase in ("Waiting", "Pending"):
                inst.phase = "Omitted"
                inst.message = f"not run: {why}"
                self.event(False, "StepOmitted", f"{inst.id}: not run: {why}")
            elif inst.phase == "Retrying":
                inst.phase = "Failed"
                inst.end = self.since_start(self.now)
                inst.retry_at = None
                inst.message = f"{inst.reason}: not retried: {why}"
                # The failure it was to retry (read back from the status: a known kind only).
                kind = inst.reason if inst.reason in FAILURE_KINDS else None
                text = f"{inst.id}: failed ({inst.reason}), not retried: {why}"
                self.event(True, "StepFailed", text, kind)  # type: ignore[arg-type]
            elif inst.phase == "Running" and how in ("kill", "terminate"):
                inst.phase = "Failed"
                inst.end = self.since_start(self.now)
                inst.message = f"{_KILLED}{why}"
                self.event(True, "StepFailed", f"{inst.id}: stopped: {why}")

    def retry_due(self) -> None:
        for inst in self.all():
            if inst.phase != "Retrying":
                continue
            due = self.started + (inst.retry_at or 0)
            if self.now >= due:
                inst.phase = "Pending"
                inst.attempts += 1
                inst.retry_at = None
                inst.start = inst.node = None
                inst.message = None
            else:
                self.wake.append(due)

    def step_phase(self, name: str) -> str:
        phases = {inst.phase for inst in self.by_step[name]}
        if "Failed" in phases:
            return "Failed"
        if "Omitted" in phases:
            return "Omitted"
        if phases <= {"Skipped"}:
            return "Skipped"
        if phases <= _DONE_OK:
            return "Succeeded"
        if phases & {"Running", "Retrying"}:
            return "Running"
        if "Pending" in phases:
            return "Pending"
        return "Waiting"

    def condition(self, info: _StepInfo) -> bool | str:
        if info.when is None:
            return True
        steps = {}
        for name in info.upstream:
            codes = [i.exit_code for i in self.by_step[name] if i.exit_code]
            result = self.outputs.get(name, "")
            steps[name] = {
                "phase": self.step_phase(name),
                "exitCode": codes[0] if codes else 0,
                "result": result,
            }
            if has_outputs(self.compiled.by_name[name]):
                steps[name]["outputs"] = output_values(result)
        return _evaluate_when(info.when, self.compiled.params, steps)

    def with_items(self, info: _StepInfo) -> _StepInfo:
        """The step with the items of its foreach over an output, once that output is known (it may have
        come in this very cycle)."""
        if info.from_output is None or info.items is not None:
            return info
        if not isinstance(output_list(info.from_output, self.outputs), list):
            return info
        self.compiled = _with_output_items(self.compiled, self.outputs)
        new = self.compiled.by_name[info.name]
        for inst in self.by_step[info.name]:
            inst.info = new
        return new

    def output_items_problem(self, info: _StepInfo) -> str | None:
        """Why a foreach over an output cannot fan out now that its dependencies are done (None: it can)."""
        if info.from_output is None:
            return None
        if info.items is None:
            value = output_list(info.from_output, self.outputs)
            got = (
                "no result"
                if value is None
                else "no such field"
                if value is _NOT_A_LIST
                else type(value).__name__
            )
            return f"foreach.fromOutput: {info.from_output} is not a list ({got})"
        return None

    def advance(self, stopping: bool) -> None:
        """Waiting → Pending / Skipped / Omitted for steps whose dependencies are done."""
        if not stopping:
            for info in self.compiled.steps:
                if info.exit or not any(i.phase == "Waiting" for i in self.by_step[info.name]):
                    continue
                states = [(dep, self.step_phase(dep)) for dep in info.deps]
                bad = next(((d, s) for d, s in states if s in ("Failed", "Omitted")), None)
                if bad is not None:
                    for inst in self.by_step[info.name]:
                        if inst.phase == "Waiting":
                            inst.phase = "Omitted"
                            inst.message = f"not run: dependency {bad[0]} {bad[1].lower()}"
                            self.event(False, "StepOmitted", f"{inst.id}: {inst.message}")
                    continue
                if not all(s in _DONE_OK for _, s in states):
                    continue
                info = self.with_items(info)
                verdict = self.condition(info)
                if verdict is True and self.output_items_problem(info):
                    verdict = self.output_items_problem(info)
                if verdict is not True:
                    for inst in self.by_step[info.name]:
                        if inst.phase != "Waiting":
                            continue
                        if verdict is False:
                            inst.phase, inst.message = "Skipped", "condition false"
                            self.event(False, "StepSkipped", f"{inst.id}: skipped (condition false)")
                        else:
                            text = verdict if verdict.startswith("foreach") else f"when: {verdict}"
                            inst.phase, inst.message = "Failed", text
                            inst.end = self.since_start(self.now)
                            self.event(True, "StepFailed", f"{inst.id}: {inst.message}")
                    continue
                self.expand(info)
                insts = self.by_step[info.name]
                active = sum(1 for i in insts if i.phase in _ACTIVE)
                cap = info.max_concurrency
                for inst in insts:
                    if cap is not None and active >= cap:
                        break
                    if inst.phase == "Waiting" and not self.cached(inst):
                        self.make_pending(inst)
                        active += 1
        exit_info = self.compiled.steps[-1] if self.compiled.steps and self.compiled.steps[-1].exit else None
        if exit_info is not None and self.spec.shutdown != "Terminate":
            inst = self.by_step[exit_info.name][0]
            if inst.phase == "Waiting" and all(i.phase in TERMINAL for i in self.all() if not i.info.exit):
                self.make_pending(inst)

    def cached(self, inst: _Inst) -> bool:
        """A memoized step whose key succeeded within maxAge: Cached, the result reused (True)."""
        info = inst.info
        if info.memoize is None or self.memo is None:
            return False
        key = self.memo_key(inst)
        hit = self.memo(key) if key is not None else None
        if hit is None or self.now - hit[1] > info.memoize[1]:
            return False
        result, at = hit
        inst.phase, inst.end = "Cached", self.since_start(self.now)
        inst.message = f"cached: same key succeeded at {rfc3339(at)}"
        if result and has_outputs(info):
            self.keep_output(inst, result)
        self.memo_records[info.name] = {"key": key, "at": rfc3339(at)}
        self.event(False, "StepCached", f"{inst.id}: {inst.message}")
        return True

    def make_pending(self, inst: _Inst) -> None:
        inst.phase = "Pending"
        inst.attempts = 1
        inst.message = None
