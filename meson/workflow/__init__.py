"""The pure workflow engine (no Kubernetes, no kopf): :func:`plan` turns a Workflow object (with its persisted
status), the observed pods of the workflow and the time into a :class:`Plan` (new status, instances to admit,
pods to delete, events, when to wake up); :func:`meson.workflow.cron.plan_cron` does the same for a
CronWorkflow. See :mod:`meson.workflow.engine` for the semantics, :mod:`meson.workflow.status` for the bounded
wire form of the status and :func:`verify_status` for checking a status the runtime did not write itself.
"""

from meson.workflow.children import LABEL_DEPTH, LABEL_PARENT
from meson.workflow.children import child_name as subworkflow_name
from meson.workflow.cron import (
    LABEL_CRONWORKFLOW,
    SCHEDULED_TIME_ANNOTATION,
    ChildWorkflow,
    CronPlan,
    CronRun,
    child_name,
    plan_cron,
)
from meson.workflow.engine import parse_time, plan, refused_status, rfc3339
from meson.workflow.pods import (
    LABEL_ATTEMPT,
    LABEL_INSTANCE,
    LABEL_QUEUE,
    LABEL_RUN,
    LABEL_STEP,
    LABEL_WORKFLOW,
    pod_name,
    pod_request,
)
from meson.workflow.status import STATUS_BUDGET_BYTES, instance_entries, with_queue_positions
from meson.workflow.types import (
    LIVE_POD_PHASES,
    ChildObservation,
    FailureKind,
    InstanceRequest,
    Plan,
    PodObservation,
    WorkflowEvent,
)
from meson.workflow.verify import verify_status

__all__ = [
    "LABEL_ATTEMPT",
    "LABEL_CRONWORKFLOW",
    "LABEL_DEPTH",
    "LABEL_INSTANCE",
    "LABEL_PARENT",
    "LABEL_QUEUE",
    "LABEL_RUN",
    "LABEL_STEP",
    "LABEL_WORKFLOW",
    "LIVE_POD_PHASES",
    "SCHEDULED_TIME_ANNOTATION",
    "STATUS_BUDGET_BYTES",
    "ChildObservation",
    "ChildWorkflow",
    "CronPlan",
    "CronRun",
    "FailureKind",
    "InstanceRequest",
    "Plan",
    "PodObservation",
    "WorkflowEvent",
    "child_name",
    "instance_entries",
    "parse_time",
    "plan",
    "plan_cron",
    "pod_name",
    "pod_request",
    "refused_status",
    "rfc3339",
    "subworkflow_name",
    "verify_status",
    "with_queue_positions",
]
