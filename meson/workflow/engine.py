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
  ``exitCode`` (the first non-zero one, else 0) and ``result`` (always ``""``: outputs are not captured).
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

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from meson.api.template import MissingValue, render
from meson.api.validation import validate_workflow_spec
from meson.api.workflow import (
    Backoff,
    RetryPolicy,
    Workflow,
    WorkflowSpec,
)
from meson.workflow.pods import finish_spec, pod_manifest, pod_name, pod_request
from meson.workflow.status import (
    COMPACT_ABOVE,
    MAX_CONDITIONS,
    OVERFLOW_REASON,
    PLAN_BUDGET_BYTES,
    WORKFLOW_MESSAGE_MAX_BYTES,
    cap_message,
    json_size,
    parse_ranges,
    range_entries,
    with_queue_positions,
)
from meson.workflow.types import (
    LIVE_POD_PHASES,
    FailureKind,
    InstanceRequest,
    Plan,
    PodObservation,
    WorkflowEvent,
)

__all__ = ["parse_time", "plan", "refused_status", "rfc3339", "with_queue_positions"]

TERMINAL = frozenset({"Succeeded", "Failed", "Skipped", "Omitted"})
_PHASES = TERMINAL | {"Waiting", "Pending", "Running", "Retrying"}
_REASONS = frozenset({"FailedExit", "NodeLost", "Evicted", "Timeout", "Preempted"})
_DONE_OK = frozenset({"Succeeded", "Skipped"})
_ACTIVE = frozenset({"Pending", "Running", "Retrying"})
_KILLED = "stopped: "
_NO_RETRY = RetryPolicy(limit=0)
_DEFAULT_BACKOFF = Backoff()
_CACHE_MAX = 4096


def rfc3339(epoch: float) -> str:
    """``2024-05-01T12:00:00Z`` (seconds precision, UTC)."""
    return datetime.fromtimestamp(math.floor(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: Any) -> float | None:
    """Epoch seconds of an RFC 3339 timestamp, None when absent or unparsable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


# --------------------------------------------------------------------------------------------- compiled spec


@dataclass(slots=True)
class _StepInfo:
    name: str
    deps: tuple[str, ...]
    upstream: tuple[str, ...]
    items: list[Any] | None
    max_concurrency: int | None
    parallelism: int
    when: str | None
    retry: RetryPolicy
    timeout: int | None
    template: dict[str, Any]
    exit: bool
    ordinal: int


@dataclass(slots=True)
class _Compiled:
    name: str
    namespace: str
    uid: str
    generation: int | None
    spec: WorkflowSpec | None
    problems: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    steps: list[_StepInfo] = field(default_factory=list)  # topological order, exit step last
    by_name: dict[str, _StepInfo] = field(default_factory=dict)
    instance_ids: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    created: float = 0.0
    rendered: dict[str, tuple[dict[str, Any], dict[str, int]] | str] = field(default_factory=dict)


_compiled: dict[tuple[str, int, str, str], _Compiled] = {}


def _topological(spec: WorkflowSpec) -> list[str]:
    remaining = [s.name for s in spec.steps]
    deps = {s.name: set(s.deps()) for s in spec.steps}
    done: set[str] = set()
    order: list[str] = []
    while remaining:
        for name in remaining:
            if deps[name] <= done:
                order.append(name)
                done.add(name)
                remaining.remove(name)
                break
        else:  # a cycle: validation reports it; keep spec order
            order.extend(remaining)
            break
    return order


def _compile(workflow: Mapping[str, Any]) -> _Compiled:
    meta = workflow.get("metadata") or {}
    name = meta.get("name") or ""
    namespace = meta.get("namespace") or "default"
    uid = meta.get("uid") or ""
    generation = meta.get("generation")
    key = (uid, generation, name, namespace) if uid and generation is not None else None
    if key is not None:
        hit = _compiled.get(key)
        if hit is not None:
            return hit
    compiled = _build(workflow, name, namespace, uid, generation)
    if key is not None:
        if len(_compiled) >= _CACHE_MAX:
            for old in list(_compiled)[: _CACHE_MAX // 4]:
                del _compiled[old]
        _compiled[key] = compiled
    return compiled


def _build(
    workflow: Mapping[str, Any], name: str, namespace: str, uid: str, generation: int | None
) -> _Compiled:
    try:
        model = Workflow.model_validate(
            {"metadata": workflow.get("metadata") or {}, "spec": workflow["spec"]}
        )
    except (ValidationError, KeyError, TypeError) as exc:
        return _Compiled(name, namespace, uid, generation, None, [f"spec: {exc}"])
    spec = model.spec
    problems = validate_workflow_spec(spec)
    compiled = _Compiled(name, namespace, uid, generation, spec, problems)
    if problems:
        return compiled
    params = spec.parameter_values()
    compiled.params = params
    created = parse_time((workflow.get("metadata") or {}).get("creationTimestamp"))
    compiled.created = created if created is not None else 0.0
    deps_of = {s.name: s.deps() for s in spec.steps}
    upstream: dict[str, set[str]] = {}
    ordinal = 0
    for step_name in _topological(spec):
        step = spec.step(step_name)
        up: set[str] = set()
        for dep in deps_of[step_name]:
            up |= {dep} | upstream.get(dep, set())
        upstream[step_name] = up
        items: list[Any] | None = None
        if step.foreach is not None:
            raw = (
                step.foreach.items
                if step.foreach.items is not None
                else params.get(step.foreach.parameter or "")
            )
            items = list(raw) if isinstance(raw, list) else []
        info = _StepInfo(
            name=step_name,
            deps=tuple(deps_of[step_name]),
            upstream=tuple(sorted(up)),
            items=items,
            max_concurrency=step.foreach.max_concurrency if step.foreach else None,
            parallelism=step.parallelism,
            when=step.when,
            retry=step.retry_policy or _NO_RETRY,
            timeout=step.timeout_seconds,
            template=step.template.model_dump(by_alias=True, exclude_none=True),
            exit=False,
            ordinal=ordinal,
        )
        compiled.steps.append(info)
        compiled.instance_ids[step_name] = (step_name, None)
        if items is not None:
            for index in range(len(items)):
                compiled.instance_ids[f"{step_name}-{index}"] = (step_name, index)
            ordinal += max(1, len(items))
        else:
            ordinal += 1
    if spec.on_exit is not None:
        exit_step = spec.on_exit
        info = _StepInfo(
            name=exit_step.name,
            deps=(),
            upstream=(),
            items=None,
            max_concurrency=None,
            parallelism=1,
            when=None,
            retry=exit_step.retry_policy or _NO_RETRY,
            timeout=exit_step.timeout_seconds,
            template=exit_step.template.model_dump(by_alias=True, exclude_none=True),
            exit=True,
            ordinal=ordinal,
        )
        compiled.steps.append(info)
        compiled.instance_ids[exit_step.name] = (exit_step.name, None)
    compiled.by_name = {info.name: info for info in compiled.steps}
    return compiled


# --------------------------------------------------------------------------------------------- CEL conditions

_programs: dict[str, Any] = {}


def _evaluate_when(expression: str, params: dict[str, Any], steps: dict[str, Any]) -> bool | str:
    """True/False, or an error message."""
    import celpy  # local: building the CEL grammar is slow and only conditions need it

    program = _programs.get(expression)
    try:
        if program is None:
            if len(_programs) > 4096:
                _programs.clear()
            env = celpy.Environment()
            program = env.program(env.compile(expression))
            _programs[expression] = program
        result = program.evaluate({"params": celpy.json_to_cel(params), "steps": celpy.json_to_cel(steps)})
    except Exception as exc:  # celpy raises several error types
        return f"cannot evaluate condition: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    if isinstance(result, celpy.celtypes.BoolType):
        return bool(result)
    return f"condition must evaluate to a bool, got {type(result).__name__}: {result}"


# --------------------------------------------------------------------------------------------- instances

_NO_FIELDS = ("Waiting", 0, 0, None, None, None, None, None, None, None)


def _fields(entry: Mapping[str, Any]) -> tuple:
    """An instance's fields read from its status entry, defensively: a status edited by hand (or forged)
    must not break the cycle."""
    phase, node, message = entry.get("phase"), entry.get("node"), entry.get("message")
    return (
        phase if phase in _PHASES else "Waiting",
        max(0, _int(entry.get("attempts")) or 0),
        max(0, _int(entry.get("run")) or 0),
        _int(entry.get("start")),
        _int(entry.get("end")),
        node if isinstance(node, str) and 0 < len(node) <= 253 else None,
        _int(entry.get("exitCode")),
        message if isinstance(message, str) and message else None,
        entry.get("reason") if entry.get("reason") in _REASONS else None,
        _int(entry.get("retryAt")),
    )


class _Inst:
    __slots__ = (
        "attempts",
        "end",
        "exit_code",
        "id",
        "index",
        "info",
        "message",
        "node",
        "phase",
        "reason",
        "retry_at",
        "run",
        "start",
    )

    def __init__(self, info: _StepInfo, index: int | None, fields: tuple = _NO_FIELDS) -> None:
        self.info = info
        self.index = index
        self.id = info.name if index is None else f"{info.name}-{index}"
        self.phase: str
        self.attempts: int
        self.run: int
        self.start: int | None
        self.end: int | None
        self.node: str | None
        self.exit_code: int | None
        self.message: str | None
        self.reason: str | None
        self.retry_at: int | None
        (
            self.phase,
            self.attempts,
            self.run,
            self.start,
            self.end,
            self.node,
            self.exit_code,
            self.message,
            self.reason,
            self.retry_at,
        ) = fields

    def copy_as(self, index: int) -> _Inst:
        inst = _Inst(self.info, index)
        inst.phase, inst.message = self.phase, self.message
        return inst

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.info.name}
        if self.index is not None:
            out["index"] = self.index
        out["phase"] = self.phase
        for key, value in (
            ("attempts", self.attempts or None),
            ("run", self.run or None),
            ("start", self.start),
            ("end", self.end),
            ("node", self.node),
            ("exitCode", self.exit_code),
            ("reason", self.reason),
            ("retryAt", self.retry_at),
            ("message", cap_message(self.message)),
        ):
            if value is not None:
                out[key] = value
        return out

    def state(self, lean: bool) -> dict[str, Any]:
        """The fields of a range entry (no per-instance times or node). Lean: only what decisions read, the
        message only when it marks an instance the engine stopped (stop_state tells them from failures)."""
        message = self.message
        if lean and not (self.phase == "Failed" and (message or "").startswith(_KILLED)):
            message = None
        out: dict[str, Any] = {"phase": self.phase}
        for key, value in (
            ("attempts", self.attempts or None),
            ("run", self.run or None),
            ("exitCode", None if lean else self.exit_code),
            ("reason", None if lean else self.reason),
            ("retryAt", self.retry_at),
            ("message", cap_message(message)),
        ):
            if value is not None:
                out[key] = value
        return out

    def reset(self) -> None:
        """Back to Waiting for a restart: attempts counted afresh, ``run`` kept (pod names stay unique)."""
        self.phase = "Waiting"
        self.attempts = 0
        self.start = self.end = self.node = self.exit_code = self.message = self.reason = self.retry_at = None

    @property
    def count(self) -> int:
        """Instances this entry stands for (an unexpanded foreach step stands for all its elements)."""
        if self.info.items is not None and self.index is None:
            return len(self.info.items)
        return 1


# --------------------------------------------------------------------------------------------- the cycle


class _Cycle:
    def __init__(
        self,
        compiled: _Compiled,
        workflow: Mapping[str, Any],
        pods: Sequence[PodObservation],
        now: float,
        nodes: Collection[str] | None,
    ) -> None:
        self.c = compiled
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
        self.obs: dict[str, list[PodObservation]] = {}
        for pod in pods:
            self.obs.setdefault(pod.instance, []).append(pod)
        self.by_step: dict[str, list[_Inst]] = {}
        self._load()

    # ----------------------------------------------------------------------------------------- helpers

    def _load(self) -> None:
        grouped: dict[str, dict[int | None, tuple]] = {}
        wholes: dict[str, int] = {}  # entries without index or indexes, per step
        steps = self.old.get("steps")
        for entry in steps if isinstance(steps, list) else ():
            name = entry.get("name") if isinstance(entry, Mapping) else None
            info = self.c.by_name.get(name) if isinstance(name, str) else None
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
        for info in self.c.steps:
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
        return [inst for info in self.c.steps for inst in self.by_step[info.name]]

    def rel(self, epoch: float) -> int:
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

    # ----------------------------------------------------------------------------------------- observation

    def observe(self) -> None:
        for instance_id, observed in self.obs.items():
            ref = self.c.instance_ids.get(instance_id)
            if ref is None:  # not an instance of this spec (renamed step, shrunk list): orphans
                self.delete.update(o.name for o in observed if o.phase in LIVE_POD_PHASES and not o.deleting)
                continue
            step_name, index = ref
            if index is not None and self.by_step[step_name][0].index is None:
                self.expand(self.c.by_name[step_name])
        for inst in self.all():
            observed = self.obs.get(inst.id, ())
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
            if self.node_gone(inst.node):
                self.fail(inst, "NodeLost", None, self.now, f"pods lost: node {inst.node} is gone")
            else:
                self.fail(inst, "Evicted", None, self.now, "pods lost: deleted")
            return
        pods = sorted(pods, key=lambda o: _pod_index(o.name))
        if inst.start is None:
            inst.start = self.rel(min(o.created for o in pods))
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
            inst.end = self.rel(max(o.finished if o.finished is not None else self.now for o in pods))
            inst.exit_code = 0
            inst.message = None
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
        inst.end = self.rel(when)
        inst.message = f"{kind}: {text}"
        self.event(
            True,
            "StepFailed",
            f"{inst.id}: failed ({kind}: {text}) after {inst.attempts} attempt(s)",
            kind,  # type: ignore[arg-type]
        )

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
                inst.end = self.rel(self.now)
                inst.retry_at = None
                inst.message = f"{inst.reason}: not retried: {why}"
                self.event(True, "StepFailed", f"{inst.id}: failed ({inst.reason}), not retried: {why}")
            elif inst.phase == "Running" and how in ("kill", "terminate"):
                inst.phase = "Failed"
                inst.end = self.rel(self.now)
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
            steps[name] = {"phase": self.step_phase(name), "exitCode": codes[0] if codes else 0, "result": ""}
        return _evaluate_when(info.when, self.c.params, steps)

    def advance(self, stopping: bool) -> None:
        """Waiting → Pending / Skipped / Omitted for steps whose dependencies are done."""
        if not stopping:
            for info in self.c.steps:
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
                verdict = self.condition(info)
                if verdict is not True:
                    for inst in self.by_step[info.name]:
                        if inst.phase != "Waiting":
                            continue
                        if verdict is False:
                            inst.phase, inst.message = "Skipped", "condition false"
                            self.event(False, "StepSkipped", f"{inst.id}: skipped (condition false)")
                        else:
                            inst.phase, inst.message = "Failed", f"when: {verdict}"
                            inst.end = self.rel(self.now)
                            self.event(True, "StepFailed", f"{inst.id}: {inst.message}")
                    continue
                self.expand(info)
                insts = self.by_step[info.name]
                active = sum(1 for i in insts if i.phase in _ACTIVE)
                cap = info.max_concurrency
                for inst in insts:
                    if cap is not None and active >= cap:
                        break
                    if inst.phase == "Waiting":
                        self.make_pending(inst)
                        active += 1
        exit_info = self.c.steps[-1] if self.c.steps and self.c.steps[-1].exit else None
        if exit_info is not None and self.spec.shutdown != "Terminate":
            inst = self.by_step[exit_info.name][0]
            if inst.phase == "Waiting" and all(i.phase in TERMINAL for i in self.all() if not i.info.exit):
                self.make_pending(inst)

    def make_pending(self, inst: _Inst) -> None:
        inst.phase = "Pending"
        inst.attempts = 1
        inst.message = None

    # ----------------------------------------------------------------------------------------- pods

    def pod_name(self, inst: _Inst, run: int, index: int) -> str:
        return pod_name(self.c.name, inst.id, run, index)

    def rendered(self, inst: _Inst) -> tuple[dict[str, Any], dict[str, int]] | str:
        hit = self.c.rendered.get(inst.id)
        if hit is not None:
            return hit
        info = inst.info
        context = {
            "params": self.c.params,
            "item": info.items[inst.index] if info.items is not None and inst.index is not None else None,
            "step": {"name": info.name, "index": inst.index or 0},
            "workflow": {"name": self.c.name, "namespace": self.c.namespace, "uid": self.c.uid},
        }
        result: tuple[dict[str, Any], dict[str, int]] | str
        try:
            template = render(info.template, context)
            spec = finish_spec(template.get("spec") or {}, self.spec.priority_class_name)
            result = ({"metadata": template.get("metadata") or {}, "spec": spec}, pod_request(spec))
        except MissingValue as exc:
            result = f"template: no value for {{{{ {exc.args[0]} }}}}"
        except (ValueError, TypeError, AttributeError) as exc:
            result = f"template: {exc}"
        self.c.rendered[inst.id] = result
        return result

    def manifests(self, inst: _Inst, run: int, attempt: int, indexes: Sequence[int]) -> list[dict] | None:
        rendered = self.rendered(inst)
        if isinstance(rendered, str):
            return None
        template = rendered[0]
        return [
            pod_manifest(
                name=self.pod_name(inst, run, i),
                workflow=self.c.name,
                step=inst.info.name,
                instance=inst.id,
                run=run,
                attempt=attempt,
                queue=self.spec.queue,
                template=template,
                priority_class_name=self.spec.priority_class_name,
            )
            for i in indexes
        ]

    def request(self, inst: _Inst, run: int, attempt: int, pods: tuple[dict, ...]) -> InstanceRequest:
        rendered = self.rendered(inst)
        info = inst.info
        return InstanceRequest(
            key=f"{self.c.namespace}/{self.c.name}/{inst.id}",
            instance=inst.id,
            step=info.name,
            index=inst.index,
            run=run,
            attempt=attempt,
            pod_count=info.parallelism,
            gang=info.parallelism > 1,
            pod_request=dict(rendered[1]) if not isinstance(rendered, str) else {},
            created=self.c.created + 1e-6 * (info.ordinal + (inst.index or 0)),
            pods=pods,
        )

    def requests(self) -> tuple[list[InstanceRequest], list[InstanceRequest]]:
        pending: list[InstanceRequest] = []
        admitted: list[InstanceRequest] = []
        suspended = self.spec.suspend
        for inst in self.all():
            live_run = inst.run if inst.phase == "Running" else 0
            live_attempt = inst.attempts if live_run else 0
            for o in self.obs.get(inst.id, ()):
                if o.phase not in LIVE_POD_PHASES:
                    continue
                if not (inst.phase == "Running" and o.run == inst.run) and not o.deleting:
                    self.delete.add(o.name)
                if o.run > live_run or (o.run == live_run and o.attempt > live_attempt):
                    live_run, live_attempt = o.run, o.attempt
            if live_run:
                admitted.append(self.request(inst, live_run, live_attempt, ()))
            if inst.phase != "Pending":
                continue
            if suspended:
                inst.message = "suspended"
                continue
            if inst.message and not inst.message.startswith("preempted"):
                inst.message = None  # queue reasons come from the runtime (with_queue_positions)
            if live_run:
                continue  # wait until the previous pods are gone
            run = inst.run + 1
            pods = self.manifests(inst, run, inst.attempts, range(inst.info.parallelism))
            if pods is None:
                rendered = self.rendered(inst)
                inst.phase = "Failed"
                inst.end = self.rel(self.now)
                inst.message = rendered if isinstance(rendered, str) else "cannot make the pods"
                self.event(True, "StepFailed", f"{inst.id}: {inst.message}")
                continue
            pending.append(self.request(inst, run, inst.attempts, tuple(pods)))
        return pending, admitted

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
            delete_pods=sorted(self.delete),
            events=self.events,
            wake_at=min(wake) if wake else None,
            finished=finished,
            delete_workflow=delete_workflow,
            create_pods=self.create,
        )

    def restart(self, restarted: bool) -> float | None:
        """When the workflow timeout counts from: the last restart (now, when restarting in this cycle)."""
        restart_at = None
        for cond in self.old.get("conditions") or []:
            if isinstance(cond, Mapping) and cond.get("type") == "Restarted":
                restart_at = parse_time(cond.get("lastTransitionTime"))
        if not restarted:
            return restart_at
        for inst in self.all():
            if inst.phase in ("Failed", "Omitted") or (inst.info.exit and inst.phase in TERMINAL):
                inst.reset()
        self.event(False, "WorkflowRestarted", f"restart {self.spec.restarts}: rerunning the failed steps")
        return self.now

    def outcome(
        self, stop: tuple[str, str] | None, admitted: list[InstanceRequest]
    ) -> tuple[str, str | None, bool]:
        """(phase, message, finished) of the workflow."""
        insts = self.all()
        finished = all(i.phase in TERMINAL for i in insts) and not admitted
        failed = [i for i in insts if i.phase == "Failed"]
        if finished:
            phase = "Failed" if failed or stop is not None else "Succeeded"
        elif not any(i.run for i in insts) and not any(i.phase in ("Running", "Retrying") for i in insts):
            phase = "Suspended" if self.spec.suspend else "Pending"
        elif self.spec.suspend and not admitted and not any(i.phase == "Running" for i in insts):
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
        conditions = self.conditions(phase, out.get("message"), out.get("finishedAt"), restart_at)
        if conditions:
            out["conditions"] = conditions
        if self.c.generation is not None:
            out["observedGeneration"] = self.c.generation
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
            restarted = {
                "type": "Restarted",
                "status": "True",
                "reason": "RestartedFromFailedSteps",
                "message": f"restart {self.spec.restarts}: failed steps rerun",
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
        for info in self.c.steps:
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
            live = [o for o in self.obs.get(inst.id, ()) if o.phase in LIVE_POD_PHASES]
            self.delete.update(o.name for o in live if not o.deleting)
            if live:
                top = max(live, key=lambda o: (o.run, o.attempt))
                admitted.append(self.request(inst, top.run, top.attempt, ()))
        for instance_id, observed in self.obs.items():
            if instance_id not in self.c.instance_ids:
                self.delete.update(o.name for o in observed if o.phase in LIVE_POD_PHASES and not o.deleting)
        status = dict(self.old)
        if self.c.generation is not None:
            status["observedGeneration"] = self.c.generation
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
            delete_pods=sorted(self.delete),
            wake_at=wake_at,
            finished=True,
            delete_workflow=delete_workflow,
        )


_BUCKET = {
    "Waiting": "pending",
    "Pending": "pending",
    "Running": "running",
    "Retrying": "running",
    "Succeeded": "succeeded",
    "Failed": "failed",
    "Skipped": "skipped",
    "Omitted": "skipped",
}


def _bounded_condition(condition: Mapping[str, Any]) -> dict[str, Any]:
    """A condition copied from the old status, its texts capped (a status may have been edited)."""
    out = dict(condition)
    for key in ("type", "reason", "message"):
        if key in out:
            out[key] = cap_message(out[key], WORKFLOW_MESSAGE_MAX_BYTES)
    return out


_INDEXES_LOST = (
    "step {step}: status entries lost their indexes (is the Workflow CRD older than the operator? apply "
    "crds/); the step's instances are read again from their pods"
)


def _whole_step(info: _StepInfo, fields: tuple, entries: int) -> bool:
    """Whether an entry without index of a foreach step can stand for the whole unexpanded step. Several
    such entries, or a phase only expanded instances have, are range entries whose ``indexes`` the API
    server pruned (a CRD older than the operator): read as the whole step they would mislead."""
    phase = fields[0]
    return entries == 1 and (phase in ("Waiting", "Skipped", "Omitted", "Failed") or not info.items)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _pod_index(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _backoff(policy: RetryPolicy, attempt: int) -> float:
    backoff = policy.backoff or _DEFAULT_BACKOFF
    delay = backoff.initial_seconds * backoff.factor ** max(0, attempt - 1)
    if backoff.max_seconds is not None:
        delay = min(delay, backoff.max_seconds)
    return delay


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
) -> Plan:
    """The plan for one workflow this cycle (pure, deterministic; see the module documentation).

    ``workflow`` is the object as read from the API (metadata, spec, status); ``pods`` every observed pod of
    the workflow (all runs); ``nodes`` the names of the existing nodes (None: unknown, lost pods then count
    as Evicted rather than NodeLost).
    """
    compiled = _compile(workflow)
    if compiled.problems:
        return _invalid(compiled, workflow, pods, now)
    return _Cycle(compiled, workflow, pods, now, nodes).run()
