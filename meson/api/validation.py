"""Checks the CRD schema cannot express, as pure functions returning clear messages.

Used twice: by the validating admission webhook (:mod:`meson.controllers.admission`), which rejects the
object at ``kubectl apply`` time, and by the controllers, which refuse an object that got past a disabled
webhook by setting the condition built by :func:`invalid_condition` (type ``Valid``, status ``False``,
reason ``InvalidSpec``) and creating no pod.

Every message starts with the path of the offending field (``spec.steps[2].when: ...``).
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from meson.api.cronworkflow import CronWorkflow
from meson.api.queue import Queue
from meson.api.streamjob import StreamJob
from meson.api.template import MissingValue, render, unknown_references
from meson.api.workflow import ExitStep, Step, Workflow, WorkflowSpec

__all__ = [
    "KIND_MODELS",
    "find_cycle",
    "invalid_condition",
    "parse",
    "sample_pods",
    "validate",
    "validate_condition",
    "validate_cronworkflow",
    "validate_queue",
    "validate_streamjob",
    "validate_workflow",
    "validate_workflow_spec",
]

KIND_MODELS: dict[str, type[BaseModel]] = {
    "Workflow": Workflow,
    "CronWorkflow": CronWorkflow,
    "StreamJob": StreamJob,
    "Queue": Queue,
}

_RESOURCE_NAME = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_PARAM_REF = re.compile(r"\bparams\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)|\bparams\s*\[\s*['\"]([^'\"]+)['\"]\s*\]")
_STEP_REF = re.compile(r"\bsteps\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)|\bsteps\s*\[\s*['\"]([^'\"]+)['\"]\s*\]")
_UNDECLARED = re.compile(r"undeclared reference to '([^']+)'")
_STEP_RESULT_SAMPLE = {"phase": "Succeeded", "exitCode": 0, "result": ""}


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not str(part).startswith(("function-", "int", "str", "constrained-str", "lax-")):
            out += f".{part}" if out else str(part)
    return out


def parse(kind: str, obj: Mapping[str, Any]) -> tuple[BaseModel | None, list[str]]:
    """The typed model of ``obj`` and, when it does not parse, the messages saying why."""
    model = KIND_MODELS.get(kind)
    if model is None:
        return None, [f"kind: unknown kind {kind!r} (expected one of {', '.join(KIND_MODELS)})"]
    try:
        return model.model_validate(dict(obj)), []
    except ValidationError as exc:
        return None, [f"{_loc(err['loc'])}: {err['msg']}" for err in exc.errors()]


def find_cycle(graph: Mapping[str, list[str]]) -> list[str] | None:
    """A cycle of ``graph`` (node → the nodes it depends on) as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    for root in graph:
        if state.get(root):
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = [root]
        state[root] = 1
        while stack:
            node, index = stack[-1]
            deps = graph.get(node, [])
            if index < len(deps):
                stack[-1] = (node, index + 1)
                nxt = deps[index]
                if nxt not in graph:
                    continue
                if state.get(nxt) == 1:
                    return [*path[path.index(nxt) :], nxt]
                if not state.get(nxt):
                    state[nxt] = 1
                    stack.append((nxt, 0))
                    path.append(nxt)
            else:
                state[node] = 2
                stack.pop()
                path.pop()
    return None


def _upstream(spec: WorkflowSpec) -> dict[str, set[str]]:
    """Transitive dependencies of every step (assumes no cycle)."""
    deps = {s.name: s.deps() for s in spec.steps}
    memo: dict[str, set[str]] = {}

    def visit(name: str) -> set[str]:
        if name not in memo:
            memo[name] = set()
            result: set[str] = set()
            for dep in deps.get(name, []):
                if dep in deps:
                    result |= {dep} | visit(dep)
            memo[name] = result
        return memo[name]

    for name in deps:
        visit(name)
    return memo


def validate_condition(
    expression: str, *, params: Mapping[str, Any], upstream: set[str], where: str
) -> list[str]:
    """Check a step's ``when``: it compiles, names only known parameters and upstream steps, and is a bool."""
    import celpy  # local: importing celpy builds its grammar (slow); only admission needs it

    env = celpy.Environment()
    try:
        ast = env.compile(expression)
    except Exception as exc:  # celpy raises CELParseError (and lark errors) for bad syntax
        lines = str(exc).splitlines()
        column = lines[1].index("^") + 1 if len(lines) > 1 and "^" in lines[1] else None
        at = f" at column {column}" if column else ""
        return [f"{where}: invalid CEL expression{at}: {expression}"]
    problems: list[str] = []
    for match in _PARAM_REF.finditer(expression):
        name = match.group(1) or match.group(2)
        if name not in params:
            problems.append(f"{where}: refers to undefined parameter {name!r}")
    for match in _STEP_REF.finditer(expression):
        name = match.group(1) or match.group(2)
        if name not in upstream:
            problems.append(
                f"{where}: refers to step {name!r}, which is not upstream of this step "
                "(conditions may only read steps it depends on; use steps['NAME'] for names with dashes)"
            )
    if problems:
        return problems
    activation = {
        "params": celpy.json_to_cel(dict(params)),
        "steps": celpy.json_to_cel({name: dict(_STEP_RESULT_SAMPLE) for name in upstream}),
    }
    try:
        result = env.program(ast).evaluate(activation)
    except Exception as exc:
        undeclared = _UNDECLARED.search(str(exc))
        if undeclared:
            return [f"{where}: unknown variable {undeclared.group(1)!r} (conditions see params and steps)"]
        return []  # a runtime error on sample data (e.g. int("")) is not a spec error
    if not isinstance(result, celpy.celtypes.BoolType):
        return [f"{where}: must evaluate to a bool, got {type(result).__name__.removesuffix('Type').lower()}"]
    return []


def _validate_step_template(step: Step | ExitStep, where: str, params: set[str], has_item: bool) -> list[str]:
    return unknown_references(
        step.template.model_dump(by_alias=True), params=params, has_item=has_item, path=where
    )


def validate_workflow_spec(spec: WorkflowSpec, path: str = "spec") -> list[str]:
    """Every check of a Workflow spec the schema cannot do (also used for CronWorkflow templates)."""
    problems: list[str] = []
    params = spec.parameter_values()
    seen: dict[str, int] = {}
    for index, param in enumerate(spec.parameters or []):
        if param.name in seen:
            problems.append(f"{path}.parameters[{index}].name: duplicate parameter name {param.name!r}")
        seen[param.name] = index
        if param.effective is None:
            problems.append(
                f"{path}.parameters[{index}]: parameter {param.name!r} has no value and no default"
            )

    names: dict[str, int] = {}
    for index, step in enumerate(spec.steps):
        if step.name in names:
            problems.append(f"{path}.steps[{index}].name: duplicate step name {step.name!r}")
        names[step.name] = index
    for index, step in enumerate(spec.steps):
        for dep in step.deps():
            if dep not in names:
                problems.append(f"{path}.steps[{index}].dependencies: unknown step {dep!r}")
    cycle = find_cycle({s.name: s.deps() for s in spec.steps})
    if cycle:
        problems.append(f"{path}.steps: dependency cycle: {' -> '.join(cycle)}")
        return problems  # upstream sets are meaningless with a cycle
    upstream = _upstream(spec)

    for index, step in enumerate(spec.steps):
        where = f"{path}.steps[{index}]"
        has_item = step.foreach is not None
        if step.foreach is not None and (step.foreach.items is None) == (step.foreach.parameter is None):
            problems.append(f"{where}.foreach: exactly one of items or parameter must be set")
        if step.foreach is not None and step.foreach.parameter is not None:
            name = step.foreach.parameter
            if name not in params:
                problems.append(f"{where}.foreach.parameter: refers to undefined parameter {name!r}")
            elif not isinstance(params[name], list):
                problems.append(
                    f"{where}.foreach.parameter: parameter {name!r} must be a list, "
                    f"got {type(params[name]).__name__}"
                )
        if step.when is not None:
            problems += validate_condition(
                step.when, params=params, upstream=upstream.get(step.name, set()), where=f"{where}.when"
            )
        if step.retry_policy and "Timeout" in step.retry_policy.retry_on and step.timeout_seconds is None:
            problems.append(
                f"{where}.retryPolicy.retryOn: Timeout is listed but the step has no timeoutSeconds"
            )
        problems += _validate_step_template(step, f"{where}.template", set(params), has_item)
    if spec.on_exit is not None:
        problems += _validate_step_template(spec.on_exit, f"{path}.onExit.template", set(params), False)
    return problems


def validate_workflow(obj: Mapping[str, Any]) -> list[str]:
    """All schema-inexpressible checks of a Workflow object (a dict as sent to the API server)."""
    model, problems = parse("Workflow", obj)
    if model is None:
        return problems
    assert isinstance(model, Workflow)
    return validate_workflow_spec(model.spec)


def validate_cronworkflow(obj: Mapping[str, Any]) -> list[str]:
    """Schedule and time zone really parse; the workflow template is a valid Workflow spec."""
    from croniter import croniter  # local: only admission needs it

    model, problems = parse("CronWorkflow", obj)
    if model is None:
        return problems
    assert isinstance(model, CronWorkflow)
    spec = model.spec
    try:
        croniter(spec.schedule, datetime.now(UTC)).get_next(datetime)
    except Exception as exc:  # croniter raises several error types
        problems.append(f"spec.schedule: invalid cron schedule {spec.schedule!r}: {exc}")
    if spec.time_zone is not None:
        try:
            zoneinfo.ZoneInfo(spec.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            problems.append(
                f"spec.timeZone: unknown time zone {spec.time_zone!r} (use an IANA name such as UTC)"
            )
    return problems + validate_workflow_spec(spec.workflow_template.spec, "spec.workflowTemplate.spec")


def validate_streamjob(obj: Mapping[str, Any]) -> list[str]:
    """The update strategy can make progress."""
    model, problems = parse("StreamJob", obj)
    if model is None:
        return problems
    assert isinstance(model, StreamJob)
    strategy = model.spec.update_strategy
    if strategy is not None and strategy.max_unavailable in (0, "0%") and strategy.max_surge in (0, "0%"):
        problems.append(
            "spec.updateStrategy: maxUnavailable and maxSurge cannot both be 0 (no update could start)"
        )
    return problems


def validate_queue(obj: Mapping[str, Any], parents: Mapping[str, str | None] | None = None) -> list[str]:
    """Resource names are valid and the parent chain (``parents``: queue → parent) has no cycle."""
    model, problems = parse("Queue", obj)
    if model is None:
        return problems
    assert isinstance(model, Queue)
    for resource in model.spec.quota or {}:
        if not _RESOURCE_NAME.match(resource) or len(resource) > 253:
            problems.append(
                f"spec.quota: {resource!r} is not a valid resource name (e.g. cpu, memory, nvidia.com/gpu)"
            )
    name = model.metadata.name
    if name and model.spec.parent and parents is not None:
        chain = [name]
        current: str | None = model.spec.parent
        while current is not None and current not in chain:
            chain.append(current)
            current = parents.get(current) if current != name else None
        if current is not None:
            chain.append(current)
            problems.append(f"spec.parent: queue hierarchy cycle: {' -> '.join(chain)}")
    return problems


def validate(
    kind: str, obj: Mapping[str, Any], *, queue_parents: Mapping[str, str | None] | None = None
) -> list[str]:
    """Dispatch on ``kind``; ``queue_parents`` (existing queue → parent) is only used for Queues."""
    if kind == "Workflow":
        return validate_workflow(obj)
    if kind == "CronWorkflow":
        return validate_cronworkflow(obj)
    if kind == "StreamJob":
        return validate_streamjob(obj)
    if kind == "Queue":
        return validate_queue(obj, queue_parents)
    return parse(kind, obj)[1]


def invalid_condition(messages: list[str], *, generation: int | None = None) -> dict[str, Any]:
    """The condition a controller sets on an object it refuses (webhook off): Valid=False/InvalidSpec."""
    condition: dict[str, Any] = {
        "type": "Valid",
        "status": "False",
        "reason": "InvalidSpec",
        "message": "; ".join(messages)[:32768],
        "lastTransitionTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def _pod(name_hint: str, namespace: str | None, template: dict[str, Any]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"generateName": f"{name_hint[:50]}-"}
    if namespace:
        metadata["namespace"] = namespace
    meta = template.get("metadata") or {}
    for key in ("labels", "annotations"):
        if meta.get(key):
            metadata[key] = meta[key]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template.get("spec") or {}}


def _workflow_pods(
    spec: WorkflowSpec, path: str, meta: Mapping[str, Any], namespace: str | None
) -> list[tuple[str, dict[str, Any]]]:
    params = spec.parameter_values()
    workflow_ctx = {
        "name": meta.get("name") or "workflow",
        "namespace": namespace or "default",
        "uid": meta.get("uid") or "00000000-0000-0000-0000-000000000000",
    }
    pods: list[tuple[str, dict[str, Any]]] = []
    steps: list[tuple[str, Step | ExitStep]] = [(f"{path}.steps[{i}]", s) for i, s in enumerate(spec.steps)]
    if spec.on_exit is not None:
        steps.append((f"{path}.onExit", spec.on_exit))
    for where, step in steps:
        item: Any = None
        foreach = getattr(step, "foreach", None)
        if foreach is not None:
            items = foreach.items if foreach.items is not None else params.get(foreach.parameter or "")
            item = items[0] if isinstance(items, list) and items else "item"
        context = {
            "params": params,
            "item": item,
            "step": {"name": step.name, "index": 0},
            "workflow": workflow_ctx,
        }
        try:
            rendered = render(step.template.model_dump(by_alias=True, exclude_none=True), context)
        except MissingValue:
            continue  # reported by validate_workflow_spec
        pods.append((f"{where}.template", _pod(f"{workflow_ctx['name']}-{step.name}", namespace, rendered)))
    return pods


def sample_pods(kind: str, obj: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(field path, Pod manifest) for every pod template of ``obj``, placeholders rendered with the
    parameter values and the first foreach element: what a server-side dry-run create should accept."""
    model, _ = parse(kind, obj)
    if model is None:
        return []
    meta = dict(obj.get("metadata") or {})
    namespace = meta.get("namespace")
    if isinstance(model, Workflow):
        return _workflow_pods(model.spec, "spec", meta, namespace)
    if isinstance(model, CronWorkflow):
        return _workflow_pods(
            model.spec.workflow_template.spec, "spec.workflowTemplate.spec", meta, namespace
        )
    if isinstance(model, StreamJob):
        template = model.spec.template.model_dump(by_alias=True, exclude_none=True)
        return [("spec.template", _pod(meta.get("name") or "streamjob", namespace, template))]
    return []
