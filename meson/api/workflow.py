"""Workflow: a namespaced DAG of steps, each a pod template admitted through a Queue.

Placeholders. Strings anywhere in a step's pod template may contain ``{{ expr }}`` placeholders, replaced
when the pod is made (see :mod:`meson.api.template`):

* ``{{ params.NAME }}`` — the value of a workflow parameter,
* ``{{ item }}`` / ``{{ item.KEY }}`` — the current element of the step's ``foreach`` (and a key of it),
* ``{{ step.name }}``, ``{{ step.index }}`` — the step name and the foreach index (0 without foreach),
* ``{{ workflow.name }}``, ``{{ workflow.namespace }}``, ``{{ workflow.uid }}``.

* ``{{ steps.NAME.outputs.result }}``, ``{{ steps.NAME.outputs.json.KEY }}`` — the output of an upstream step.

Conditions. ``when`` is a CEL expression over ``params`` (a map of parameter values) and ``steps``
(``steps.NAME.phase``, ``steps.NAME.exitCode``, ``steps.NAME.result``, ``steps.NAME.outputs.result``,
``steps.NAME.outputs.json``) of the step's upstream steps.

Outputs. A step's result is the termination message of its main container (the first container; of pod 0 of
a gang), at most 4 KiB as Kubernetes caps it, kept in ``status.outputs`` and read as JSON when it is JSON.
Only steps without foreach have outputs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from meson.api.common import (
    API_VERSION,
    DNS_LABEL,
    IDENTIFIER,
    ApiModel,
    Condition,
    ObjectMeta,
    PodTemplate,
    x_validation,
)

__all__ = [
    "MAX_DEPENDENCIES",
    "MAX_FOREACH_ITEMS",
    "MAX_PARAMETERS",
    "MAX_STEPS",
    "MAX_SUBWORKFLOW_DEPTH",
    "MAX_WORKFLOW_INSTANCES",
    "Backoff",
    "ConfigMapKeyRef",
    "ExitStep",
    "Foreach",
    "MemoRecord",
    "Memoize",
    "Parameter",
    "RestartRecord",
    "RetryPolicy",
    "Semaphore",
    "Step",
    "StepCounts",
    "StepPreemption",
    "StepStatus",
    "StepWorkflowRef",
    "SubWorkflowArgument",
    "Synchronization",
    "Workflow",
    "WorkflowSpec",
    "WorkflowStatus",
    "WorkflowTemplateRef",
]

#: Explicit steps per workflow. Fan-out (foreach, parallelism) multiplies them at run time.
MAX_STEPS = 150
MAX_DEPENDENCIES = 16
MAX_PARAMETERS = 64
#: Elements of one foreach (inline items or a list parameter).
MAX_FOREACH_ITEMS = 10000
#: Bytes of one step's result: Kubernetes' own cap on a termination message.
MAX_RESULT_BYTES = 4096
#: A reference to a step's output: ``steps.NAME.outputs.result`` or ``steps.NAME.outputs.json[.KEY...]``.
OUTPUT_REFERENCE = r"^steps\.[a-z0-9]([-a-z0-9]*[a-z0-9])?\.outputs\.(result|json(\.[A-Za-z0-9_-]+)*)$"
#: Step instances of one workflow (foreach elements of all steps, plus the other steps): keeps the status,
#: which records every instance, within its budget (see meson.workflow.status).
MAX_WORKFLOW_INSTANCES = 50000
#: Nesting of sub-workflows: a Workflow made by a step of a Workflow at this depth (the top one is at 0) is
#: not created and the step fails. Catches a cycle of templates the webhook did not see (webhook off).
MAX_SUBWORKFLOW_DEPTH = 5

FailureMode = Literal["StopScheduling", "FailFast", "Continue"]
RetryOn = Literal["FailedExit", "NodeLost", "Evicted", "Timeout"]
WorkflowPhase = Literal["Pending", "Running", "Suspended", "Succeeded", "Failed"]
Shutdown = Literal["Stop", "Terminate"]
FailureKind = Literal["FailedExit", "NodeLost", "Evicted", "Timeout", "Preempted"]
StepPhase = Literal[
    "Waiting", "Pending", "Running", "Retrying", "Succeeded", "Failed", "Skipped", "Omitted", "Cached"
]


class Parameter(ApiModel):
    """A workflow parameter: a named value with a default, usable as {{ params.NAME }} and in CEL."""

    name: str = Field(max_length=63, pattern=IDENTIFIER, description="Name of the parameter (an identifier).")
    default: Any = Field(
        default=None,
        description="Default value (any JSON value: string, number, list, object).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    value: Any = Field(
        default=None,
        description="Value for this run; overrides default (set when submitting or by a CronWorkflow).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    description: str | None = Field(default=None, max_length=1024, description="What the parameter means.")

    @property
    def effective(self) -> Any:
        """The value used at run time: value when set, else default."""
        return self.value if self.value is not None else self.default


class Foreach(ApiModel):
    """Fan-out: one instance of the step per element of a list, of a list parameter or of a list an upstream
    step produced (set exactly one)."""

    items: list[Any] | None = Field(
        default=None,
        description="The elements to fan out over (strings, numbers or objects); {{ item }} in the template.",
        json_schema_extra={"maxItems": MAX_FOREACH_ITEMS},
    )
    parameter: str | None = Field(
        default=None,
        max_length=63,
        pattern=IDENTIFIER,
        description="Name of a workflow parameter whose value is the list to fan out over.",
    )
    from_output: str | None = Field(
        default=None,
        max_length=256,
        pattern=OUTPUT_REFERENCE,
        description="An upstream step's output that is the list to fan out over, e.g. "
        "steps.list-partitions.outputs.json.partitions (read when the step becomes ready).",
    )
    max_concurrency: int | None = Field(
        default=None, ge=1, description="Most instances running at the same time. Unlimited when not set."
    )


class Backoff(ApiModel):
    """Exponential backoff between attempts: initial * factor^(attempt-1), capped at max."""

    __x_validations__ = [
        x_validation(
            "!has(self.maxSeconds) || self.maxSeconds >= self.initialSeconds",
            "maxSeconds must be greater than or equal to initialSeconds",
        )
    ]

    initial_seconds: int = Field(default=10, ge=0, le=86400, description="Delay before the first retry.")
    factor: float = Field(default=2.0, ge=1, le=10, description="Multiplier applied to the delay per retry.")
    max_seconds: int | None = Field(
        default=None, ge=0, le=86400, description="Cap on the delay between retries."
    )


class RetryPolicy(ApiModel):
    """How a failed step is retried."""

    limit: int = Field(default=0, ge=0, le=100, description="Retries after the first attempt (0: never).")
    backoff: Backoff | None = Field(
        default=None, description="Delay between attempts. 10s doubling when not set."
    )
    retry_on: list[RetryOn] = Field(
        default=["FailedExit", "NodeLost", "Evicted"],
        description="Failures that are retried: FailedExit (a container exited non-zero), NodeLost (the node "
        "went away), Evicted (the pod was evicted or preempted), Timeout (the step's timeout passed).",
        json_schema_extra={"x-kubernetes-list-type": "set", "maxItems": 4},
    )


class StepPreemption(ApiModel):
    """How long a step's pods are protected from preemption once admitted."""

    min_runtime_seconds: int | None = Field(
        default=None,
        ge=0,
        le=31536000,
        description="The step is never chosen as a preemption victim before it has run this long (the larger "
        "of this and its queue's preemption.minRuntimeSeconds applies).",
    )


class Memoize(ApiModel):
    """Skip the step when a run of a step with the same key succeeded in this namespace within maxAge."""

    key: str = Field(
        min_length=1,
        max_length=1024,
        description="The cache key; placeholders as in the template, e.g. "
        "'extract-{{ params.date }}' or '{{ steps.list.outputs.result }}'.",
    )
    max_age_seconds: int = Field(
        ge=1, le=31536000, description="How old a successful run may be to be reused, in seconds."
    )


class MemoRecord(ApiModel):
    """The cache entry a memoized step left: the key it ran (or was cached) under and when its run ended."""

    key: str = Field(max_length=64, description="SHA-256 of the rendered key (hex, first 32 characters).")
    at: str = Field(description="When the run whose result this is ended (RFC 3339).")


class SubWorkflowArgument(ApiModel):
    """A parameter value handed to a sub-workflow."""

    name: str = Field(max_length=63, pattern=IDENTIFIER, description="Name of the template's parameter.")
    value: Any = Field(
        description="The value (any JSON value); strings may hold placeholders as in a step's template, "
        "e.g. '{{ params.day }}' or '{{ steps.list.outputs.json.rows }}'.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class WorkflowTemplateRef(ApiModel):
    """A WorkflowTemplate of the workflow's namespace, or a ClusterWorkflowTemplate."""

    name: str = Field(
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        description="Name of the template.",
    )
    cluster_scope: bool = Field(
        default=False,
        description="true: a ClusterWorkflowTemplate; false: a WorkflowTemplate of this namespace.",
    )


class StepWorkflowRef(WorkflowTemplateRef):
    """A step that runs a WorkflowTemplate (or ClusterWorkflowTemplate) as a child Workflow."""

    parameters: list[SubWorkflowArgument] | None = Field(
        default=None,
        description="Values of the template's parameters for the child (the others keep their defaults).",
        json_schema_extra={
            "maxItems": MAX_PARAMETERS,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )


class ConfigMapKeyRef(ApiModel):
    """A key of a ConfigMap in the workflow's namespace."""

    name: str = Field(max_length=253, description="Name of the ConfigMap.")
    key: str = Field(max_length=253, pattern=r"^[-._a-zA-Z0-9]+$", description="Key in its data.")


class Semaphore(ApiModel):
    """A named counting semaphore of the namespace: at most ``limit`` holders (workflows, and step instances
    of steps that name it) run at once. The limit is given inline or read from a ConfigMap (set exactly
    one)."""

    # No schema default for limit: the API server would set it beside configMapKeyRef. Neither set means
    # a mutex (limit 1), as before configMapKeyRef existed.
    __x_validations__ = [
        x_validation(
            "!(has(self.limit) && has(self.configMapKeyRef))",
            "limit and configMapKeyRef are exclusive: set one (neither: a mutex)",
        )
    ]

    name: str = Field(max_length=63, pattern=DNS_LABEL, description="Name of the semaphore (per namespace).")
    limit: int | None = Field(
        default=None,
        ge=1,
        le=10000,
        description="Holders at once: workflows and step instances, one each (1, the default when "
        "configMapKeyRef is not set either: a mutex). When workflows or steps name the same semaphore with "
        "different limits, the smallest applies.",
    )
    config_map_key_ref: ConfigMapKeyRef | None = Field(
        default=None,
        description="Read the limit from this ConfigMap key (a positive integer), so it can change without "
        "editing workflows. A missing ConfigMap or key, or another value, holds the workflow (or the step) "
        "back, its steps saying why, until it is fixed.",
    )


class Synchronization(ApiModel):
    """Mutual exclusion across workflows and steps."""

    semaphore: Semaphore = Field(
        description="A workflow holds it from its first admitted step until it finishes; a step instance "
        "from its first admission until it ends, through its retries. Waiters start in priority order (then "
        "oldest workflow first). A workflow's and a step's semaphore of the same name share one count."
    )


#: The description of a step's (and the exit step's) synchronization: what kubectl explain shows.
STEP_SYNCHRONIZATION = (
    "A semaphore (or mutex: limit 1) each instance of this step holds (a foreach element, or the step; a "
    "gang is one holder) from its first admission until it ends, between retries too, shared with the "
    "workflows and steps naming it in this namespace. Waiting instances stay Pending, with the reason in "
    "their message; the workflow's other steps are not held. Not on a sub-workflow step."
)


class Step(ApiModel):
    """One node of the DAG: a pod template run once, as a gang (parallelism), or fanned out (foreach); or a
    WorkflowTemplate run as a child Workflow (a sub-workflow: workflowTemplateRef instead of template)."""

    __x_validations__ = [
        x_validation(
            "!has(self.dependencies) || !(self.name in self.dependencies)",
            "a step cannot depend on itself",
            field_path=".dependencies",
        ),
        x_validation(
            "has(self.template) != has(self.workflowTemplateRef)",
            "exactly one of template and workflowTemplateRef must be set",
        ),
    ]

    name: str = Field(
        max_length=40, pattern=DNS_LABEL, description="Name of the step, unique in the workflow."
    )
    template: PodTemplate | None = Field(
        default=None, description="The pod to run: a Kubernetes pod template (or set workflowTemplateRef)."
    )
    workflow_template_ref: StepWorkflowRef | None = Field(
        default=None,
        description="Run this WorkflowTemplate as a child Workflow (a sub-workflow) instead of a pod: its "
        "steps are admitted through its own queue; the step succeeds when the child succeeds (its result: "
        "the child's outputs as a JSON object) and fails, then is retried as any step, when the child "
        "fails. The child is owned by this workflow and named {workflow}-{step}-r{run}.",
    )
    dependencies: list[Annotated[str, StringConstraints(max_length=40)]] | None = Field(
        default=None,
        description="Names of the steps that must succeed before this one starts.",
        json_schema_extra={"maxItems": MAX_DEPENDENCIES, "x-kubernetes-list-type": "set"},
    )
    parallelism: int = Field(
        default=1,
        ge=1,
        le=10000,
        description="Size of the gang: identical pods admitted together, all or none (1: a single pod).",
    )
    foreach: Foreach | None = Field(default=None, description="Fan out over a list or a list parameter.")
    when: str | None = Field(
        default=None,
        max_length=4096,
        description="CEL condition evaluated when the dependencies are done; the step is Skipped when false. "
        "Sees params.NAME and steps.NAME.phase/exitCode/result/outputs of upstream steps, e.g. "
        "params.env == 'prod' && steps.extract.outputs.json.rows > 0.",
    )
    retry_policy: RetryPolicy | None = Field(default=None, description="Retries of failed attempts.")
    timeout_seconds: int | None = Field(
        default=None, ge=1, description="Deadline for one attempt, from the pods' start."
    )
    memoize: Memoize | None = Field(
        default=None,
        description="Skip the step (phase Cached, its result reused) when a step with the same key succeeded "
        "in this namespace within maxAgeSeconds. Not with foreach.",
    )
    expected_duration_seconds: int | None = Field(
        default=None,
        ge=1,
        le=31536000,
        description="Expected runtime of one attempt, in seconds: used for time budgets, backfill and queue "
        "ETAs. When not set, learned from the step's past runs (see the README, Runtime estimates).",
    )
    preemption: StepPreemption | None = Field(
        default=None, description="Protection of this step's pods from preemption."
    )
    synchronization: Synchronization | None = Field(default=None, description=STEP_SYNCHRONIZATION)

    def deps(self) -> list[str]:
        """The dependency names (empty list when none)."""
        return list(self.dependencies or [])


class ExitStep(ApiModel):
    """A step that always runs once every other step is finished, whatever the outcome (cleanup, notify)."""

    name: str = Field(
        default="on-exit", max_length=40, pattern=DNS_LABEL, description="Name of the exit step."
    )
    template: PodTemplate = Field(description="The pod to run; {{ workflow.phase }} is not available here.")
    retry_policy: RetryPolicy | None = Field(default=None, description="Retries of failed attempts.")
    timeout_seconds: int | None = Field(default=None, ge=1, description="Deadline for one attempt.")
    synchronization: Synchronization | None = Field(default=None, description=STEP_SYNCHRONIZATION)


class WorkflowSpec(ApiModel):
    """The desired run: a DAG of steps, the queue to admit it through and what to do on failure."""

    __x_validations__ = [
        x_validation(
            "has(self.steps) || has(self.workflowTemplateRef)",
            "steps are required unless workflowTemplateRef is set",
            field_path=".steps",
        ),
        x_validation(
            "!has(self.steps) || self.steps.all(s, !has(s.dependencies) || "
            "s.dependencies.all(d, self.steps.exists(t, t.name == d)))",
            "every dependency must name a step of this workflow",
            field_path=".steps",
        ),
        x_validation(
            "!has(self.onExit) || !has(self.steps) || !self.steps.exists(s, s.name == self.onExit.name)",
            "onExit.name must differ from the names of the steps",
            field_path=".onExit.name",
        ),
    ]

    queue: str = Field(
        default="default",
        max_length=63,
        pattern=DNS_LABEL,
        description="Name of the Queue that admits the steps.",
    )
    priority_class_name: str | None = Field(
        default=None,
        max_length=253,
        description="PriorityClass of the workflow: orders it in its queue and is set on its pods.",
    )
    parameters: list[Parameter] | None = Field(
        default=None,
        description="Parameters with defaults, usable as {{ params.NAME }} and in conditions.",
        json_schema_extra={
            "maxItems": MAX_PARAMETERS,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )
    synchronization: Synchronization | None = Field(
        default=None,
        description="A semaphore (or mutex: limit 1) the workflow holds while it runs; its steps wait, with "
        "the reason in their message, until it is its turn. For one step only, set the step's "
        "synchronization instead.",
    )
    workflow_template_ref: WorkflowTemplateRef | None = Field(
        default=None,
        description="Make this workflow from a WorkflowTemplate (or ClusterWorkflowTemplate): the controller "
        "copies the template's spec into this one once, before it runs; this workflow's parameter values and "
        "the fields it sets to other than their defaults win. Leave steps out.",
    )
    steps: list[Step] = Field(
        default_factory=list,
        min_length=1,
        description="The steps of the DAG; names are unique and dependencies name other steps. Required "
        "unless workflowTemplateRef is set (then copied from the template).",
        json_schema_extra={
            "maxItems": MAX_STEPS,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )
    failure_mode: FailureMode = Field(
        default="StopScheduling",
        description="After a step fails for good: StopScheduling (start no new steps, let running ones "
        "finish), FailFast (also stop the running ones), Continue (run every step that does not depend on "
        "the failed one).",
    )
    on_exit: ExitStep | None = Field(default=None, description="A step that always runs at the end.")
    timeout_seconds: int | None = Field(
        default=None, ge=1, description="Deadline of the whole workflow from its start; it then fails."
    )
    suspend: bool = Field(
        default=False, description="While true no new step is admitted; running steps go on."
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, description="Delete the workflow this long after it finished. Kept when not set."
    )
    shutdown: Shutdown | None = Field(
        default=None,
        description="Stop the workflow: Stop (start no new steps, let running ones finish, run the exit "
        "step, then fail with 'stopped') or Terminate (delete the running pods, skip the exit step, "
        "fail with 'terminated').",
    )
    restarts: int = Field(
        default=0,
        ge=0,
        description="Increase to rerun a finished or failing workflow from its failed steps: failed and "
        "omitted steps (and the exit step) run again, succeeded steps are kept.",
    )
    restart_from: str | None = Field(
        default=None,
        max_length=40,
        pattern=DNS_LABEL,
        description="With the next increase of restarts, also rerun this step and every step downstream of "
        "it, whatever their phase; steps upstream keep their results (meson workflow restart --from).",
    )

    def step(self, name: str) -> Step:
        """The step called ``name`` (KeyError when absent)."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    def parameter_values(self) -> dict[str, Any]:
        """Effective parameter values (value, else default) by name."""
        return {p.name: p.effective for p in self.parameters or []}


class StepStatus(ApiModel):
    """Compact state of one step instance (one entry per foreach element; a gang is one entry), or of the
    instances of a large foreach step that share a state (``indexes``)."""

    name: str = Field(description="Step name.")
    index: int | None = Field(
        default=None, description="Foreach index of this instance; absent without foreach."
    )
    indexes: str | None = Field(
        default=None,
        description="Foreach indexes of the instances this entry stands for, as ranges (e.g. 0-4999,5001): "
        "large fan-outs are recorded one entry per state, not one per instance.",
    )
    phase: StepPhase = Field(
        description="Waiting (for dependencies), Pending (in the queue), Running, Retrying (backing off), "
        "Succeeded, Failed, Skipped (condition false), Omitted (not run after a failure), Cached (memoized: "
        "a run with the same key succeeded; its result reused)."
    )
    attempts: int | None = Field(default=None, description="Attempts started so far.")
    start: int | None = Field(
        default=None, description="Start of the current attempt, seconds after status.startedAt."
    )
    end: int | None = Field(default=None, description="End of the step, seconds after status.startedAt.")
    node: str | None = Field(default=None, description="Node of the (first) pod of the current attempt.")
    position: int | None = Field(default=None, description="Position in the queue while Pending (1: next).")
    eta: str | None = Field(
        default=None,
        description="While Pending: predicted admission time (RFC 3339, rounded up to the minute), from a "
        "replay of the queues with runtime estimates; refreshed every 30 s. Absent when no prediction.",
    )
    exit_code: int | None = Field(default=None, description="Exit code of the last attempt.")
    message: str | None = Field(default=None, description="Why the step is in this phase, when not obvious.")
    run: int | None = Field(
        default=None,
        description="Launches so far (attempts plus relaunches after preemption); names the pods.",
    )
    retry_at: int | None = Field(
        default=None, description="While Retrying: when the next attempt may start, seconds after startedAt."
    )
    reason: FailureKind | None = Field(
        default=None,
        description="How the last attempt failed: FailedExit, NodeLost, Evicted, Timeout or Preempted.",
    )


class RestartRecord(ApiModel):
    """One restart the controller acted on."""

    restart: int = Field(description="The spec.restarts value of this restart.")
    at: str = Field(description="When the controller acted on it (RFC 3339).")
    from_step: str | None = Field(
        default=None,
        alias="from",
        description="The step it reran from (spec.restartFrom); absent: failed steps.",
    )
    rerun: int | None = Field(default=None, description="Step instances reset to run again.")
    parameters: str | None = Field(
        default=None, description="The parameter values it ran with (name=JSON, capped at 256 bytes)."
    )


class StepCounts(ApiModel):
    """Number of step instances per phase."""

    total: int = Field(default=0, description="All step instances known so far.")
    pending: int = Field(default=0, description="Waiting or Pending.")
    running: int = Field(default=0, description="Running or Retrying.")
    succeeded: int = Field(default=0, description="Succeeded.")
    failed: int = Field(default=0, description="Failed.")
    skipped: int = Field(default=0, description="Skipped or Omitted.")


class WorkflowStatus(ApiModel):
    """The observed state of a workflow, written by the Meson controller."""

    phase: WorkflowPhase | None = Field(
        default=None, description="Pending, Running, Suspended, Succeeded or Failed."
    )
    progress: str | None = Field(default=None, description="Finished steps over all steps, e.g. 3/20.")
    message: str | None = Field(default=None, description="Why the workflow is in this phase.")
    started_at: str | None = Field(
        default=None,
        description="When the controller started the workflow (RFC 3339); step times are relative to it.",
    )
    finished_at: str | None = Field(default=None, description="When the workflow finished (RFC 3339).")
    counts: StepCounts | None = Field(default=None, description="Step instances per phase.")
    eta: str | None = Field(
        default=None, description="The earliest predicted admission time of the workflow's pending steps."
    )
    steps: list[StepStatus] | None = Field(
        default=None,
        description="State of every step instance; a foreach step of more than 100 instances is recorded "
        "one entry per state (indexes), and only the first 100 pending instances show their position.",
    )
    conditions: list[Condition] | None = Field(
        default=None,
        description="Conditions: Valid, Admitted, Completed.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation the controller last acted on."
    )
    restarts: int | None = Field(
        default=None,
        description="The spec.restarts the controller last acted on (restarts from failed steps).",
    )
    history: list[RestartRecord] | None = Field(
        default=None,
        description="The last 10 restarts the controller acted on, oldest first.",
        json_schema_extra={"maxItems": 10},
    )
    memo: dict[str, MemoRecord] | None = Field(
        default=None,
        description="Memoized steps that succeeded (or were cached), by step name: the memoization cache, "
        "read by later workflows of the namespace while this one exists.",
        json_schema_extra={"maxProperties": MAX_STEPS},
    )
    outputs: dict[str, Annotated[str, StringConstraints(max_length=MAX_RESULT_BYTES)]] | None = Field(
        default=None,
        description="Result of each finished step without foreach, by step name: the termination message of "
        "its main container (at most 4 KiB; all results at most 64 KiB).",
        json_schema_extra={"maxProperties": MAX_STEPS + 1},
    )


class Workflow(ApiModel):
    """A Workflow is a DAG of steps, each a Kubernetes pod template, admitted through a Meson Queue: with
    dependencies, gangs, foreach fan-out, CEL conditions, retries, timeouts, an exit step and parameters."""

    api_version: str = Field(default=API_VERSION, description=API_VERSION)
    kind: str = Field(default="Workflow", description="Workflow")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard object metadata.")
    spec: WorkflowSpec = Field(description="Desired run.")
    status: WorkflowStatus | None = Field(default=None, description="Observed state.")
