"""StreamJob: a long-running processor with rolling updates, automatic rollback and a restart budget."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, WithJsonSchema

from meson.api.common import (
    API_VERSION,
    DNS_LABEL,
    ApiModel,
    Condition,
    ObjectMeta,
    PodTemplate,
    x_validation,
)

__all__ = ["IntOrPercent", "RestartBudget", "StreamJob", "StreamJobSpec", "StreamJobStatus", "UpdateStrategy"]

StreamJobPhase = Literal["Deploying", "Running", "Updating", "RollingBack", "Suspended", "Failed"]

#: An absolute number of pods or a percentage of replicas ("25%"), like a Deployment's maxSurge.
IntOrPercent = Annotated[
    int | Annotated[str, Field(pattern=r"^[0-9]+%$")],
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-validations": [
                x_validation(
                    "type(self) == int ? self >= 0 : self.matches('^[0-9]+%$')",
                    "must be a non-negative number of pods or a percentage such as 25%",
                )
            ],
        }
    ),
]


class UpdateStrategy(ApiModel):
    """How a changed pod template is rolled out."""

    max_unavailable: IntOrPercent = Field(
        default=0, description="Pods that may be unavailable during the update (number or percentage)."
    )
    max_surge: IntOrPercent = Field(
        default=1,
        description="Pods that may be created above replicas during the update (number or percentage).",
    )


class RestartBudget(ApiModel):
    """Failures tolerated per time window before the job is marked Failed."""

    max_restarts: int = Field(default=5, ge=0, le=10000, description="Container restarts allowed per window.")
    window_seconds: int = Field(default=600, ge=1, le=604800, description="Length of the sliding window.")


class StreamJobSpec(ApiModel):
    """The desired processor: its pods, how many, how updates roll out and when to give up."""

    template: PodTemplate = Field(description="The pods of the job: a Kubernetes pod template.")
    replicas: int = Field(
        default=1,
        ge=0,
        le=100000,
        description="Number of pods; wired to the scale subresource (kubectl scale, HPA).",
    )
    update_strategy: UpdateStrategy | None = Field(
        default=None, description="Rolling-update parameters. maxUnavailable 0, maxSurge 1 when not set."
    )
    expected_duration_seconds: int | None = Field(
        default=None,
        ge=1,
        le=31536000,
        description="Expected runtime of a replica, in seconds: used for time budgets, backfill and queue "
        "ETAs. Not set: a stream job is long-running, estimated at the default (README: Runtime estimates).",
    )
    progress_deadline_seconds: int = Field(
        default=600,
        ge=1,
        description="An update that has not made all replicas ready within this time is rolled back to the "
        "previous revision.",
    )
    restart_budget: RestartBudget | None = Field(
        default=None, description="Restarts allowed per window before the job is Failed. 5 per 10 minutes."
    )
    desired_state: Literal["Running", "Suspended"] = Field(
        default="Running", description="Running, or Suspended (all pods removed, the spec kept)."
    )
    queue: str = Field(
        default="default",
        max_length=63,
        pattern=DNS_LABEL,
        description="Name of the Queue that admits the pods.",
    )
    priority_class_name: str | None = Field(
        default=None, max_length=253, description="PriorityClass of the job and its pods."
    )
    min_ready_seconds: int = Field(
        default=10,
        ge=0,
        le=86400,
        description="A pod counts as available (and a revision as stable) once Ready this long without a "
        "restart.",
    )
    revision_history_limit: int = Field(
        default=10, ge=0, le=1000, description="Old revisions (ControllerRevisions) kept for rollback."
    )
    restarts: int = Field(
        default=0,
        ge=0,
        description="Incremented to restart a Failed job (meson streamjob restart): clears the failure and "
        "redeploys.",
    )


class StreamJobStatus(ApiModel):
    """The observed state of a stream job, written by the Meson controller."""

    phase: StreamJobPhase | None = Field(
        default=None, description="Deploying, Running, Updating, RollingBack, Suspended or Failed."
    )
    message: str | None = Field(default=None, description="Why the job is in this phase.")
    current_revision: str | None = Field(default=None, description="Revision (template hash) being run.")
    previous_revision: str | None = Field(
        default=None, description="The revision before the current one, the rollback target."
    )
    replicas: int | None = Field(default=None, description="Pods that exist (for the scale subresource).")
    ready_replicas: int | None = Field(default=None, description="Pods ready.")
    updated_replicas: int | None = Field(default=None, description="Pods of the current revision.")
    restarts: int | None = Field(default=None, description="Container restarts since the job started.")
    restarts_in_window: int | None = Field(
        default=None, description="Restarts within the restart budget's current window."
    )
    selector: str | None = Field(
        default=None,
        description="Label selector of the pods, as a string (for the scale subresource and HPA).",
    )
    conditions: list[Condition] | None = Field(
        default=None,
        description="Conditions: Valid, Available, Progressing.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation the controller last acted on."
    )
    stable_revision: str | None = Field(
        default=None, description="The last revision that became stable (every replica available)."
    )
    failed_revision: str | None = Field(
        default=None,
        description="A revision rolled back for missing its deadline: not retried until the "
        "template changes again.",
    )
    rollout_started_at: str | None = Field(
        default=None, description="When the rollout of currentRevision started (unset once it is stable)."
    )
    desired_replicas: int | None = Field(default=None, description="spec.replicas last acted on.")
    revision_history: list[str] | None = Field(
        default=None, description="Revisions, oldest first (bounded by revisionHistoryLimit)."
    )
    restart_log: list[list[int]] | None = Field(
        default=None,
        description="Restarts within the budget window: [bucket start epoch seconds, count] pairs (bounded).",
    )
    pod_restarts: dict[str, int] | None = Field(
        default=None, description="Container restart counts already counted, per pod (bounded)."
    )
    slot_failures: list[dict[str, int]] | None = Field(
        default=None,
        description="Slots whose last pod failed: slot, run, failures (consecutive), at (epoch seconds).",
    )
    failed: bool | None = Field(default=None, description="The restart budget was exceeded.")
    observed_restarts: int | None = Field(default=None, description="spec.restarts last acted on.")


class StreamJob(ApiModel):
    """A StreamJob is a long-running processor: replicas of a pod template admitted through a Meson Queue,
    rolled out with surge and unavailability bounds, rolled back when an update misses its progress
    deadline, and failed when it restarts more than its budget allows. Scalable with kubectl scale and HPA."""

    api_version: str = Field(default=API_VERSION, description=API_VERSION)
    kind: str = Field(default="StreamJob", description="StreamJob")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard object metadata.")
    spec: StreamJobSpec = Field(description="Desired processor.")
    status: StreamJobStatus | None = Field(default=None, description="Observed state.")
