"""CronWorkflow: a Workflow template started on a cron schedule."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from meson.api.common import API_VERSION, ApiModel, Condition, ObjectMeta, PodTemplateMetadata
from meson.api.workflow import WorkflowSpec

__all__ = [
    "MAX_BACKFILL_RUNS",
    "SCHEDULE_PATTERN",
    "Backfill",
    "BackfillStatus",
    "CronWorkflow",
    "CronWorkflowSpec",
    "CronWorkflowStatus",
    "RunStrategy",
    "WorkflowTemplate",
]

#: Runs one backfill may create.
MAX_BACKFILL_RUNS = 1000
#: RFC 3339 in UTC, seconds precision, as `meson cron backfill` writes it.
_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"

# Five fields of digits, names, * , - / ? (or a @-macro). Full parsing is done by the admission webhook.
SCHEDULE_PATTERN = (
    r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|"
    r"([0-9A-Za-z*,/?-]+\s+){4}[0-9A-Za-z*,/?-]+)$"
)


class WorkflowTemplate(ApiModel):
    """The Workflow each run creates: labels and annotations, and a full Workflow spec."""

    metadata: PodTemplateMetadata | None = Field(
        default=None, description="Labels and annotations put on each created Workflow."
    )
    spec: WorkflowSpec = Field(description="Spec of each created Workflow.")


class Backfill(ApiModel):
    """Create the runs the schedule would have created between two times (meson cron backfill)."""

    from_time: str = Field(
        alias="from",
        max_length=20,
        pattern=_TIME,
        description="First scheduled time (inclusive), RFC 3339 UTC.",
    )
    to_time: str = Field(
        alias="to", max_length=20, pattern=_TIME, description="Last scheduled time (inclusive), RFC 3339 UTC."
    )
    parallel: int = Field(default=1, ge=1, le=100, description="Most backfill runs unfinished at once.")


class BackfillStatus(ApiModel):
    """Progress of one backfill (the same range is never backfilled twice)."""

    from_time: str = Field(alias="from", description="First scheduled time of the range.")
    to_time: str = Field(alias="to", description="Last scheduled time of the range.")
    total: int = Field(description="Scheduled times in the range.")
    created: int = Field(default=0, description="Runs created (times whose run already existed not counted).")
    next: str | None = Field(default=None, description="The next scheduled time to create; absent when done.")
    completed_at: str | None = Field(default=None, description="When every run of the range was created.")


class RunStrategy(ApiModel):
    """How runs of a CronWorkflow follow each other (Maestro's run strategies; first-only and last-only are
    concurrencyPolicy Forbid and Replace)."""

    type: Literal["Sequential", "StrictSequential", "Parallel"] = Field(
        description="Sequential: one run at a time, the others queued in order; StrictSequential: the same, "
        "and no new run after a run failed (until a run succeeds again, e.g. the failed one restarted); "
        "Parallel: at most limit runs at a time, the others queued in order."
    )
    limit: int = Field(default=1, ge=1, le=1000, description="Runs at a time with Parallel.")


class CronWorkflowSpec(ApiModel):
    """When to start workflows, from which template, and how runs may overlap."""

    schedule: str = Field(
        max_length=256,
        pattern=SCHEDULE_PATTERN,
        description="Cron schedule: five fields (minute hour day-of-month month day-of-week), "
        "e.g. '0 2 * * *', "
        "or a macro such as @daily.",
    )
    time_zone: str | None = Field(
        default=None,
        max_length=64,
        description="IANA time zone of the schedule, e.g. Europe/Paris. UTC when not set.",
    )
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = Field(
        default="Allow",
        description="When a run is due while the previous one is still active: Allow (start it anyway), "
        "Forbid (skip it), Replace (delete the active run and start the new one).",
    )
    starting_deadline_seconds: int | None = Field(
        default=None,
        ge=0,
        description="A run that could not start within this many seconds after its time is skipped.",
    )
    successful_workflows_history_limit: int = Field(
        default=3, ge=0, le=1000, description="Succeeded workflows kept."
    )
    failed_workflows_history_limit: int = Field(
        default=1, ge=0, le=1000, description="Failed workflows kept."
    )
    suspend: bool = Field(default=False, description="While true no new run is started.")
    workflow_template: WorkflowTemplate = Field(
        description="The Workflow each run creates; a parameter named scheduledTime gets the run's scheduled "
        "time (RFC 3339)."
    )
    run_strategy: RunStrategy | None = Field(
        default=None,
        description="Queue runs instead of overlapping them: each run holds the semaphore cron-NAME "
        "(limit 1, or limit with Parallel), so runs start in order. Needs concurrencyPolicy Allow.",
    )
    backfill: Backfill | None = Field(
        default=None,
        description="Runs for the scheduled times of a past range, created in order, at most parallel "
        "unfinished at once, named like scheduled runs (so a time is never run twice); set by "
        "meson cron backfill.",
    )


class CronWorkflowStatus(ApiModel):
    """The observed state of a CronWorkflow."""

    active: list[str] | None = Field(default=None, description="Names of the workflows still running.")
    last_schedule_time: str | None = Field(
        default=None,
        description="Scheduled time of the last run handled: started, or skipped by Forbid or the starting "
        "deadline (RFC 3339).",
    )
    last_successful_time: str | None = Field(
        default=None, description="When a run last succeeded (RFC 3339)."
    )
    next_schedule_time: str | None = Field(default=None, description="When the next run is due (RFC 3339).")
    backfills: list[BackfillStatus] | None = Field(
        default=None,
        description="The last 10 backfills, oldest first: progress of the current one, and the ranges done.",
        json_schema_extra={"maxItems": 10},
    )
    conditions: list[Condition] | None = Field(
        default=None,
        description="Conditions: Valid.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation the controller last acted on."
    )


class CronWorkflow(ApiModel):
    """A CronWorkflow starts a Workflow from its template on a cron schedule in a time zone, with a
    concurrency policy, a starting deadline and history limits."""

    api_version: str = Field(default=API_VERSION, description=API_VERSION)
    kind: str = Field(default="CronWorkflow", description="CronWorkflow")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard object metadata.")
    spec: CronWorkflowSpec = Field(description="Schedule and template.")
    status: CronWorkflowStatus | None = Field(default=None, description="Observed state.")
