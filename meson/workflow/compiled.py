"""A Workflow's spec compiled once per generation: steps in topological order with their fan-out,
retry policy and template (``_compile``, cached), and the CEL ``when`` conditions.

Also the engine's vocabulary (phases) and its time format (RFC 3339, seconds)."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from meson.api.template import output_values, placeholders
from meson.api.validation import validate_workflow_spec
from meson.api.workflow import (
    MAX_FOREACH_ITEMS,
    MAX_RESULT_BYTES,
    Backoff,
    RetryPolicy,
    Workflow,
    WorkflowSpec,
)
from meson.workflow.children import depth_of

TERMINAL = frozenset({"Succeeded", "Failed", "Skipped", "Omitted", "Cached"})
_PHASES = TERMINAL | {"Waiting", "Pending", "Running", "Retrying"}
_REASONS = frozenset({"FailedExit", "NodeLost", "Evicted", "Timeout", "Preempted"})
_DONE_OK = frozenset({"Succeeded", "Skipped", "Cached"})
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
    from_output: str | None = None  # foreach over an upstream step's output (items None until it is known)
    reads_outputs: bool = False  # the template has {{ steps.NAME.outputs... }} placeholders
    memoize: tuple[str, int] | None = None  # (key template, maxAgeSeconds)
    # A sub-workflow step: its workflowTemplateRef (wire form; parameters hold placeholders), else None.
    sub: dict[str, Any] | None = None


@dataclass(slots=True)
class _Compiled:
    name: str
    namespace: str
    uid: str
    generation: int | None
    spec: WorkflowSpec | None
    problems: list[str]
    depth: int = 0  # sub-workflow depth (label meson.dev/depth)
    params: dict[str, Any] = field(default_factory=dict)
    steps: list[_StepInfo] = field(default_factory=list)  # topological order, exit step last
    by_name: dict[str, _StepInfo] = field(default_factory=dict)
    instance_ids: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    created: float = 0.0
    # Rendered templates by instance id (by instance id and the outputs read, for templates that read some).
    rendered: dict[Any, tuple[dict[str, Any], dict[str, int]] | str] = field(default_factory=dict)
    dynamic: bool = False  # some foreach fans out over an output: steps are specialised per cycle


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
    if not spec.steps and not problems:  # the controller makes it from its template before planning it
        problems = ["spec.workflowTemplateRef: not made from its template yet"]
    compiled = _Compiled(
        name, namespace, uid, generation, spec, problems, depth_of(workflow.get("metadata") or {})
    )
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
        if step.foreach is not None and step.foreach.from_output is None:
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
            template=step.template.model_dump(by_alias=True, exclude_none=True) if step.template else {},
            exit=False,
            ordinal=ordinal,
            from_output=step.foreach.from_output if step.foreach is not None else None,
            memoize=(step.memoize.key, step.memoize.max_age_seconds) if step.memoize else None,
            sub=(
                step.workflow_template_ref.model_dump(by_alias=True, exclude_none=True)
                if step.workflow_template_ref
                else None
            ),
        )
        info.reads_outputs = any(
            ref.startswith("steps.") for _, ref in placeholders([info.template, info.sub])
        )
        compiled.dynamic |= info.from_output is not None
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


# --------------------------------------------------------------------------------------------- outputs

#: Most bytes of all results of a workflow (``status.outputs``): 16 results of the 4 KiB maximum.
OUTPUTS_BUDGET_BYTES = 64 * 1024
_NOT_A_LIST = object()


def has_outputs(info: _StepInfo) -> bool:
    """Whether a step records a result: one without foreach (the exit step too)."""
    return info.items is None and info.from_output is None


def steps_outputs(names: Any, outputs: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``steps.NAME.outputs`` for the given (finished upstream) steps: a step without a result has ""."""
    return {name: {"outputs": output_values(outputs.get(name, ""))} for name in names}


def output_list(reference: str, outputs: Mapping[str, str]) -> Any:
    """The value of ``steps.NAME.outputs.json.KEY...`` (or ``.result``) when the step has a result, else
    None; the caller checks that it is a list."""
    parts = reference.split(".")
    name = parts[1]
    if name not in outputs:
        return None
    value: Any = output_values(outputs[name])
    for part in parts[3:]:  # after steps.NAME.outputs
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _NOT_A_LIST
    return value


def _with_output_items(compiled: _Compiled, outputs: Mapping[str, str]) -> _Compiled:
    """The compiled spec with the items of each foreach over an output that is known (a list) now; such a
    step keeps ``items`` None until then. The rendered-template cache is shared (its keys carry the item)."""
    steps = []
    extra: dict[str, tuple[str, int | None]] = {}
    for info in compiled.steps:
        items = output_list(info.from_output, outputs) if info.from_output else None
        if isinstance(items, list):
            info = dataclasses.replace(info, items=items[:MAX_FOREACH_ITEMS])
            extra.update({f"{info.name}-{i}": (info.name, i) for i in range(len(info.items or ()))})
        steps.append(info)
    return dataclasses.replace(
        compiled,
        steps=steps,
        by_name={info.name: info for info in steps},
        instance_ids={**compiled.instance_ids, **extra},
    )


def memo_id(key: str) -> str:
    """The id a rendered memoize key is recorded and looked up under (status.memo): SHA-256, 32 hex."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def cap_result(text: str) -> str:
    """At most MAX_RESULT_BYTES of UTF-8 (Kubernetes caps termination messages so; a forged status may
    not), cut at a character boundary."""
    raw = text.encode()
    return text if len(raw) <= MAX_RESULT_BYTES else raw[:MAX_RESULT_BYTES].decode(errors="ignore")


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
