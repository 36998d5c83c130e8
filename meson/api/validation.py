"""Checks the CRD schema cannot express, as pure functions returning clear messages.

Used twice: by the validating admission webhook (:mod:`meson.controllers.admission`), which rejects the
object at ``kubectl apply`` time, and by the controllers, which refuse an object that got past a disabled
webhook by setting the condition built by :func:`invalid_condition` (type ``Valid``, status ``False``,
reason ``InvalidSpec``) and creating no pod.

Every message starts with the path of the offending field (``spec.steps[2].when: ...``).

Parsing is strict: a field the schema does not declare (``spec.steps[0].template.spek``) is an error, never
silently dropped by a typed model. Inside a pod spec (free-form here) unknown fields are found by the API
server's strict dry run (:mod:`meson.adapters.dryrun`).
"""

from __future__ import annotations

import difflib
import re
import time
import types
import zoneinfo
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from meson.api.cronworkflow import MAX_BACKFILL_RUNS, CronWorkflow
from meson.api.queue import Queue
from meson.api.streamjob import StreamJob
from meson.api.template import MissingValue, output_reference_problem, render, unknown_references
from meson.api.workflow import (
    MAX_FOREACH_ITEMS,
    MAX_WORKFLOW_INSTANCES,
    ExitStep,
    Step,
    Synchronization,
    Workflow,
    WorkflowSpec,
)
from meson.api.workflowtemplate import ClusterWorkflowTemplate, WorkflowTemplate

__all__ = [
    "KIND_MODELS",
    "find_cycle",
    "invalid_condition",
    "parse",
    "sample_pods",
    "sub_workflow_cycle",
    "sub_workflow_refs",
    "unknown_fields",
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
    "WorkflowTemplate": WorkflowTemplate,
    "ClusterWorkflowTemplate": ClusterWorkflowTemplate,
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
_OUTPUT_REF = re.compile(
    r"\bsteps\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)\s*\.\s*outputs\b|\bsteps\s*\[\s*['\"]([^'\"]+)['\"]\s*\]\s*\.\s*outputs\b"
)
_STEP_RESULT_SAMPLE = {"phase": "Succeeded", "exitCode": 0, "result": "", "outputs": {"result": ""}}
# Kubernetes qualified names (label and annotation keys) and label values.
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
_MAX_ANNOTATIONS_BYTES = 256 * 1024


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not str(part).startswith(("function-", "int", "str", "constrained-str", "lax-")):
            out += f".{part}" if out else str(part)
    return out


def _models_in(annotation: Any) -> tuple[str, type[BaseModel]] | None:
    """Where ``annotation`` holds an API model: ("one" | "list" | "dict", model); None for free-form JSON."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _models_in(get_args(annotation)[0])
    if origin in (Union, types.UnionType):  # X | None
        return next((found for arg in get_args(annotation) if (found := _models_in(arg))), None)
    if origin in (list, dict):
        inner = _models_in(get_args(annotation)[-1])
        return ("list" if origin is list else "dict", inner[1]) if inner and inner[0] == "one" else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "one", annotation
    return None


def unknown_fields(model: type[BaseModel], raw: Any, path: str) -> list[str]:
    """A message for every key of ``raw`` (a wire object) that ``model`` does not declare, at any depth.

    The models ignore unknown keys; the API server prunes them (or, with kubectl's strict field validation,
    refuses them). This makes the pure checks as strict as the server, so a misspelt field is reported with
    its path instead of being dropped. Free-form nodes (a pod spec, a parameter value) are not walked."""
    if not isinstance(raw, Mapping) or model.model_config.get("extra") == "allow":
        return []
    fields = {info.alias or name: info for name, info in model.model_fields.items()}
    problems: list[str] = []
    for key, value in raw.items():
        info = fields.get(key)
        if info is None:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f'did you mean "{close[0]}"?' if close else f"known fields: {', '.join(fields)}"
            problems.append(f'{path}: unknown field "{key}" ({hint})')
            continue
        found = _models_in(info.annotation)
        if found is None:
            continue
        shape, inner = found
        where = f"{path}.{key}"
        if shape == "one":
            problems += unknown_fields(inner, value, where)
        elif shape == "list" and isinstance(value, list):
            for index, item in enumerate(value):
                problems += unknown_fields(inner, item, f"{where}[{index}]")
        elif shape == "dict" and isinstance(value, Mapping):
            for name, item in value.items():
                problems += unknown_fields(inner, item, f"{where}.{name}")
    return problems


def parse(kind: str, obj: Mapping[str, Any]) -> tuple[BaseModel | None, list[str]]:
    """The typed model of ``obj`` and, when it does not parse, the messages saying why.

    Strict about ``spec``: an undeclared field there makes the object unparsable (see :func:`unknown_fields`).
    """
    model = KIND_MODELS.get(kind)
    if model is None:
        return None, [f"kind: unknown kind {kind!r} (expected one of {', '.join(KIND_MODELS)})"]
    try:
        parsed = model.model_validate(dict(obj))
    except ValidationError as exc:
        return None, [f"{_loc(err['loc'])}: {err['msg']}" for err in exc.errors()]
    spec_model = _models_in(model.model_fields["spec"].annotation)
    assert spec_model is not None
    problems = unknown_fields(spec_model[1], obj.get("spec"), "spec")
    return (None, problems) if problems else (parsed, [])


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


def _validate_step_template(
    step: Step | ExitStep,
    where: str,
    params: set[str],
    has_item: bool,
    upstream: dict[str, bool] | None = None,
) -> list[str]:
    if step.template is None:
        return []
    return unknown_references(
        step.template.model_dump(by_alias=True),
        params=params,
        has_item=has_item,
        path=where,
        upstream=upstream,
    )


def _output_problems(step: Step, where: str, upstream: dict[str, bool]) -> list[str]:
    """Outputs read by a step's foreach.fromOutput and ``when``: only of upstream steps without foreach."""
    problems: list[str] = []
    if step.foreach is not None and step.foreach.from_output is not None:
        problem = output_reference_problem(step.foreach.from_output.removeprefix("steps."), upstream)
        if problem:
            problems.append(f"{where}.foreach.fromOutput: {problem}")
    for match in _OUTPUT_REF.finditer(step.when or ""):
        name = match.group(1) or match.group(2)
        if upstream.get(name) is False:
            problems.append(
                f"{where}.when: refers to the outputs of step {name!r}, which has foreach "
                "(only steps without foreach have outputs)"
            )
    return problems


def validate_workflow_spec(spec: WorkflowSpec, path: str = "spec") -> list[str]:
    """Every check of a Workflow spec the schema cannot do (also used for CronWorkflow templates)."""
    problems = _semaphore_problems(spec.synchronization, f"{path}.synchronization", None)
    if not spec.steps:
        if spec.workflow_template_ref is None:
            problems.append(f"{path}.steps: required unless workflowTemplateRef is set")
        return problems  # made from its template by the controller, then checked again
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
    if spec.restart_from is not None and spec.restart_from not in names:
        problems.append(f"{path}.restartFrom: unknown step {spec.restart_from!r}")
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
        if step.foreach is not None and (
            (step.foreach.items is not None)
            + (step.foreach.parameter is not None)
            + (step.foreach.from_output is not None)
            != 1
        ):
            problems.append(f"{where}.foreach: exactly one of items, parameter or fromOutput must be set")
        with_outputs = {name: spec.step(name).foreach is None for name in upstream.get(step.name, set())}
        problems += _output_problems(step, where, with_outputs)
        if step.foreach is not None and step.foreach.parameter is not None:
            name = step.foreach.parameter
            if name not in params:
                problems.append(f"{where}.foreach.parameter: refers to undefined parameter {name!r}")
            elif not isinstance(params[name], list):
                problems.append(
                    f"{where}.foreach.parameter: parameter {name!r} must be a list, "
                    f"got {type(params[name]).__name__}"
                )
            elif len(params[name]) > MAX_FOREACH_ITEMS:
                # The schema bounds foreach.items, not a list parameter; the status budget needs both.
                problems.append(
                    f"{where}.foreach.parameter: parameter {name!r} has {len(params[name])} elements, "
                    f"more than {MAX_FOREACH_ITEMS}"
                )
        if step.when is not None:
            problems += validate_condition(
                step.when, params=params, upstream=upstream.get(step.name, set()), where=f"{where}.when"
            )
        if step.memoize is not None:
            if step.foreach is not None:
                problems.append(f"{where}.memoize: a step with foreach cannot be memoized")
            problems += unknown_references(
                step.memoize.key,
                params=set(params),
                has_item=False,
                path=f"{where}.memoize.key",
                upstream=with_outputs,
            )
        if step.retry_policy and "Timeout" in step.retry_policy.retry_on and step.timeout_seconds is None:
            problems.append(
                f"{where}.retryPolicy.retryOn: Timeout is listed but the step has no timeoutSeconds"
            )
        problems += _validate_step_template(step, f"{where}.template", set(params), has_item, with_outputs)
        problems += _sub_workflow_problems(step, where, set(params), has_item, with_outputs)
        problems += _semaphore_problems(step.synchronization, f"{where}.synchronization", spec)
    if spec.on_exit is not None:
        problems += _validate_step_template(spec.on_exit, f"{path}.onExit.template", set(params), False)
        problems += _semaphore_problems(spec.on_exit.synchronization, f"{path}.onExit.synchronization", spec)
    total = sum(_instances(step, params) for step in spec.steps)
    if total > MAX_WORKFLOW_INSTANCES:
        problems.append(
            f"{path}.steps: {total} step instances, more than {MAX_WORKFLOW_INSTANCES} per workflow"
        )
    return problems


def _semaphore_problems(sync: Synchronization | None, where: str, spec: WorkflowSpec | None) -> list[str]:
    """A semaphore's limit comes from one place; a step's (``spec``: its workflow's) is not the workflow's
    own (the workflow holds that one already)."""
    sem = sync.semaphore if sync is not None else None
    if sem is None:
        return []
    problems = []
    if sem.limit is not None and sem.config_map_key_ref is not None:
        problems.append(
            f"{where}.semaphore: limit and configMapKeyRef are exclusive: set one (neither: a mutex)"
        )
    own = spec.synchronization.semaphore.name if spec is not None and spec.synchronization else None
    if sem.name == own:
        problems.append(
            f"{where}.semaphore.name: the workflow holds semaphore {own!r} itself (spec.synchronization) "
            "while it runs: its steps cannot take it too"
        )
    return problems


def _sub_workflow_problems(
    step: Step, where: str, params: set[str], has_item: bool, upstream: dict[str, bool]
) -> list[str]:
    """A step is a pod template or a sub-workflow, and a sub-workflow takes only the fields that mean
    something for a child Workflow (it has no pod of its own: no gang, no timeout, no memoization)."""
    if (step.template is None) == (step.workflow_template_ref is None):
        return [f"{where}: exactly one of template and workflowTemplateRef must be set"]
    ref = step.workflow_template_ref
    if ref is None:
        return []
    problems = [
        f"{where}.{field}: not supported for a sub-workflow step (workflowTemplateRef)"
        for field, unsupported in (
            ("parallelism", step.parallelism != 1),
            ("timeoutSeconds", step.timeout_seconds is not None),
            ("memoize", step.memoize is not None),
            ("preemption", step.preemption is not None),
            # The step has no pod to hold a semaphore (its child's template may name one for itself).
            ("synchronization", step.synchronization is not None),
        )
        if unsupported
    ]
    names: set[str] = set()
    for index, arg in enumerate(ref.parameters or []):
        if arg.name in names:
            problems.append(
                f"{where}.workflowTemplateRef.parameters[{index}].name: duplicate parameter {arg.name!r}"
            )
        names.add(arg.name)
        problems += unknown_references(
            arg.value,
            params=params,
            has_item=has_item,
            path=f"{where}.workflowTemplateRef.parameters[{index}].value",
            upstream=upstream,
        )
    return problems


#: A template as sub-workflow references name it: (namespace, name); namespace "" for a cluster template.
TemplateKey = tuple[str, str]


def template_key(namespace: str | None, name: str, cluster_scope: bool) -> TemplateKey:
    return ("" if cluster_scope else namespace or "default", name)


def sub_workflow_refs(spec: WorkflowSpec, namespace: str | None) -> list[TemplateKey]:
    """The templates the steps of ``spec`` run as sub-workflows. A ClusterWorkflowTemplate's reference to a
    namespaced template (namespace None) is resolved only when it runs: it is left out."""
    refs: list[TemplateKey] = []
    for step in spec.steps:
        ref = step.workflow_template_ref
        if ref is not None and (ref.cluster_scope or namespace is not None):
            refs.append(template_key(namespace, ref.name, ref.cluster_scope))
    return refs


def sub_workflow_cycle(
    key: TemplateKey, refs: list[TemplateKey], existing: Mapping[TemplateKey, list[TemplateKey]]
) -> str | None:
    """The message for a template (``key``, whose steps run ``refs``) that would run itself through its
    sub-workflows, given the sub-workflow references of the ``existing`` templates; None when it does not."""
    graph = {**existing, key: refs}
    path: list[TemplateKey] = [key]
    seen: set[TemplateKey] = set()

    def back_to_key(node: TemplateKey) -> bool:  # depth-first: is there a path from node back to key?
        for nxt in graph.get(node, []):
            if nxt == key:
                path.append(nxt)
                return True
            if nxt not in seen:
                seen.add(nxt)
                path.append(nxt)
                if back_to_key(nxt):
                    return True
                path.pop()
        return False

    if not back_to_key(key):
        return None
    text = " -> ".join(name if ns else f"ClusterWorkflowTemplate {name}" for ns, name in path)
    return f"spec.steps: sub-workflow cycle: {text} (a template may not run itself through its sub-workflows)"


def _instances(step: Step, params: Mapping[str, Any]) -> int:
    if step.foreach is None:
        return 1
    items = step.foreach.items if step.foreach.items is not None else params.get(step.foreach.parameter or "")
    return max(1, len(items)) if isinstance(items, list) else 1


def validate_workflow(obj: Mapping[str, Any]) -> list[str]:
    """All schema-inexpressible checks of a Workflow object (a dict as sent to the API server)."""
    model, problems = parse("Workflow", obj)
    if model is None:
        return problems
    assert isinstance(model, Workflow)
    return validate_workflow_spec(model.spec)


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (name, lowest, highest, names) of the five cron fields, as croniter reads them (7 is Sunday too).
_CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {m: i for i, m in enumerate(_MONTHS, 1)}),
    ("day of week", 0, 7, {d: i for i, d in enumerate(_WEEKDAYS)}),
)
_CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
#: A CronWorkflow's name is the value of the label meson.dev/cronworkflow on each run's Workflow.
MAX_CRONWORKFLOW_NAME = 63


def _cron_field_problem(schedule: str) -> str | None:
    """The first value out of its field's range, or step of 0, in words; None leaves the rest to croniter."""
    fields = schedule.split()
    if len(fields) != len(_CRON_FIELDS):
        return None
    for text, (field, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for part in text.split(","):
            base, _, step = part.partition("/")
            if step.isdigit() and int(step) == 0:
                return f"{field} step must be at least 1, got {part!r}"
            for bound in base.split("-") if base not in ("*", "?") else ():
                value = int(bound) if bound.isdigit() else names.get(bound.lower())
                if value is not None and not low <= value <= high:
                    return f"{field} {bound} is out of range {low}-{high}"
    return None


def _schedule_problems(schedule: str, tz: tzinfo) -> list[str]:
    """What plan_cron would fail on: croniter's previous and next run from now, in the schedule's zone."""
    from croniter import CroniterBadDateError, croniter  # local: only cron checks need it

    where = f"spec.schedule: invalid cron schedule {schedule!r}"
    problem = _cron_field_problem(schedule)
    if problem:
        return [f"{where}: {problem}"]
    now = datetime.now(tz)
    try:
        croniter(schedule, now).get_prev(datetime)
        croniter(schedule, now).get_next(datetime)
    except CroniterBadDateError:
        return [f"{where}: it never matches a real date (e.g. 30 February)"]
    except Exception as exc:  # croniter raises several error types for what it cannot parse
        return [f"{where}: {exc}"]
    return []


def _time_zone(name: str | None) -> tuple[tzinfo, list[str]]:
    """The zone plan_cron would use for ``name`` (UTC when unset or unusable) and what is wrong with it."""
    if name is None:
        return UTC, []
    if not name:
        return UTC, ["spec.timeZone: must not be empty (leave it out for UTC)"]
    if name.lower() in ("local", "localtime"):  # the operator's machine's zone, not the tenant's
        return UTC, [f"spec.timeZone: {name!r} is not allowed (use an IANA name such as Europe/Paris)"]
    try:
        return zoneinfo.ZoneInfo(name), []
    except Exception:  # ZoneInfoNotFoundError, ValueError, and OSError for a directory such as "Europe"
        return UTC, [f"spec.timeZone: unknown time zone {name!r} (use an IANA name such as UTC)"]


def _qualified_name_problem(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return f"{key!r}: the prefix before '/' must be a DNS subdomain such as example.com"
    if not _QUALIFIED_NAME.match(name):
        return (
            f"{key!r}: the name must be 1-63 characters: alphanumerics, '-', '_' or '.', "
            "starting and ending with an alphanumeric"
        )
    return None


def _metadata_problems(meta: Mapping[str, Any], path: str) -> list[str]:
    """Labels and annotations the API server would refuse on the objects made with them."""
    problems: list[str] = []
    for key, value in (meta.get("labels") or {}).items():
        problem = _qualified_name_problem(key)
        if problem:
            problems.append(f"{path}.labels: invalid label key {problem}")
        elif not _LABEL_VALUE.match(value):
            problems.append(
                f"{path}.labels.{key}: invalid label value {value!r}: at most 63 characters: alphanumerics, "
                "'-', '_' or '.', starting and ending with an alphanumeric"
            )
    annotations = meta.get("annotations") or {}
    for key in annotations:
        problem = _qualified_name_problem(key)
        if problem:
            problems.append(f"{path}.annotations: invalid annotation key {problem}")
    size = sum(len(k) + len(v) for k, v in annotations.items())
    if size > _MAX_ANNOTATIONS_BYTES:
        problems.append(f"{path}.annotations: {size} bytes, more than the {_MAX_ANNOTATIONS_BYTES} allowed")
    return problems


def _clearer_schedule_message(problem: str, schedule: Any) -> str:
    """The schema's pattern error for spec.schedule, said in words."""
    if not problem.startswith("spec.schedule: String should match pattern"):
        return problem
    return (
        f"spec.schedule: invalid cron schedule {schedule!r}: expected five fields (minute hour "
        f"day-of-month month day-of-week) or one of {', '.join(_CRON_MACROS)}"
    )


def validate_cronworkflow(obj: Mapping[str, Any]) -> list[str]:
    """Everything :func:`meson.workflow.cron.plan_cron` and the Workflows it creates depend on: the schedule
    gives a previous and a next run in the time zone, the zone exists, each run's Workflow can be made
    (name length, labels, annotations), and the workflow template is a valid Workflow spec."""
    model, problems = parse("CronWorkflow", obj)
    if model is None:
        schedule = (obj.get("spec") or {}).get("schedule")
        return [_clearer_schedule_message(problem, schedule) for problem in problems]
    assert isinstance(model, CronWorkflow)
    spec = model.spec
    tz, problems = _time_zone(spec.time_zone)
    problems = _schedule_problems(spec.schedule, tz) + problems
    name = model.metadata.name or ""
    if len(name) > MAX_CRONWORKFLOW_NAME:
        problems.append(
            f"metadata.name: {len(name)} characters, more than the {MAX_CRONWORKFLOW_NAME} allowed for a "
            "CronWorkflow (it is the value of the label meson.dev/cronworkflow on each run's Workflow)"
        )
    if spec.workflow_template.metadata is not None:
        problems += _metadata_problems(
            spec.workflow_template.metadata.model_dump(), "spec.workflowTemplate.metadata"
        )
    if spec.run_strategy is not None and spec.concurrency_policy != "Allow":
        problems.append(
            f"spec.runStrategy: needs concurrencyPolicy Allow (runs queue instead of overlapping), "
            f"not {spec.concurrency_policy}"
        )
    if spec.run_strategy is not None and spec.workflow_template.spec.synchronization is not None:
        problems.append(
            "spec.runStrategy: the runs hold the semaphore cron-NAME; the template cannot set "
            "synchronization too"
        )
    if spec.backfill is not None and not problems:
        problems += backfill_problems(spec.schedule, tz, spec.backfill.from_time, spec.backfill.to_time)[1]
    return problems + validate_workflow_spec(spec.workflow_template.spec, "spec.workflowTemplate.spec")


def backfill_problems(
    schedule: str, tz: tzinfo, start: str, end: str, now: float | None = None
) -> tuple[int, list[str]]:
    """(scheduled times from ``start`` to ``end``, what is wrong with that backfill range): backwards, in the
    future, empty or above MAX_BACKFILL_RUNS (shared by the webhook and `meson cron backfill`)."""
    from croniter import croniter  # local: only cron checks need it

    first = datetime.fromisoformat(start.replace("Z", "+00:00"))
    last = datetime.fromisoformat(end.replace("Z", "+00:00"))
    if first > last:
        return 0, [f"spec.backfill: the range is backwards: from {start} is after to {end}"]
    if last.timestamp() > (time.time() if now is None else now):
        return 0, [f"spec.backfill.to: {end} is in the future (a backfill covers past times only)"]
    times = croniter(schedule, datetime.fromtimestamp(first.timestamp() - 1, tz))
    count = 0
    while count <= MAX_BACKFILL_RUNS and times.get_next(datetime).timestamp() <= last.timestamp():
        count += 1
    if count > MAX_BACKFILL_RUNS:
        return count, [
            f"spec.backfill: more than {MAX_BACKFILL_RUNS} scheduled times from {start} to {end}; "
            "split the range"
        ]
    if count == 0:
        return 0, [f"spec.backfill: the schedule {schedule!r} has no time from {start} to {end}"]
    return count, []


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
    """Resource names are valid and the parent chain (``parents``: every other existing queue → its parent)
    has no cycle. A parent that does not exist (yet) is allowed, like a Kueue cohort: the queue waits,
    disabled, until it appears; and since the chain is read from the existing queues, a cycle built in two
    steps is refused at its second step. Without ``parents``, only being one's own parent is a cycle."""
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
    if name and model.spec.parent:
        parents = parents or {}
        chain = [name]
        current: str | None = model.spec.parent
        while current is not None and current not in chain:
            chain.append(current)
            current = parents.get(current)
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
    if kind in ("WorkflowTemplate", "ClusterWorkflowTemplate"):
        return validate_template(kind, obj)
    return parse(kind, obj)[1]


def validate_template(kind: str, obj: Mapping[str, Any]) -> list[str]:
    """A WorkflowTemplate's spec is a Workflow spec, which may not itself come from a template."""
    model, problems = parse(kind, obj)
    if model is None:
        return problems
    assert isinstance(model, WorkflowTemplate | ClusterWorkflowTemplate)
    if model.spec.workflow_template_ref is not None:
        return ["spec.workflowTemplateRef: a template cannot be made from another template"]
    problems = validate_workflow_spec(model.spec)
    # A template that runs itself is refused here; longer cycles need the other templates (the webhook).
    cluster = kind == "ClusterWorkflowTemplate"
    namespace = None if cluster else str((obj.get("metadata") or {}).get("namespace") or "default")
    key = template_key(namespace, model.metadata.name or "", cluster)
    refs = sub_workflow_refs(model.spec, namespace)
    cycle = sub_workflow_cycle(key, [r for r in refs if r == key], {}) if key in refs else None
    return problems + ([cycle] if cycle else [])


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
        if step.template is None:  # a sub-workflow: its pods are its template's, checked with it
            continue
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
    if isinstance(model, Workflow | WorkflowTemplate):
        return _workflow_pods(model.spec, "spec", meta, namespace)
    if isinstance(model, CronWorkflow):
        # The pods belong to each run's Workflow, named like meson.workflow.cron.child_name: {cron}-{minute}.
        run = {**meta, "name": f"{meta.get('name') or 'cron'}-{int(time.time()) // 60}", "uid": None}
        return _workflow_pods(model.spec.workflow_template.spec, "spec.workflowTemplate.spec", run, namespace)
    if isinstance(model, StreamJob):
        template = model.spec.template.model_dump(by_alias=True, exclude_none=True)
        return [("spec.template", _pod(meta.get("name") or "streamjob", namespace, template))]
    return []
