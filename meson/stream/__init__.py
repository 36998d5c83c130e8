"""The pure stream engine: StreamJob replicas, rolling updates, rollback and the restart budget
(see :mod:`meson.stream.engine`). No Kubernetes, no kopf."""

from meson.stream.engine import plan_stream
from meson.stream.pods import (
    LABEL_QUEUE,
    LABEL_REVISION,
    LABEL_RUN,
    LABEL_SLOT,
    LABEL_STREAMJOB,
    pod_name,
    revision_name,
    selector,
)
from meson.stream.types import (
    DeleteReason,
    InstanceRequest,
    PodDeletion,
    ReplicaPod,
    StreamPlan,
    WorkflowEvent,
)

__all__ = [
    "LABEL_QUEUE",
    "LABEL_REVISION",
    "LABEL_RUN",
    "LABEL_SLOT",
    "LABEL_STREAMJOB",
    "DeleteReason",
    "InstanceRequest",
    "PodDeletion",
    "ReplicaPod",
    "StreamPlan",
    "WorkflowEvent",
    "plan_stream",
    "pod_name",
    "revision_name",
    "selector",
]
