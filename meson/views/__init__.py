"""Views of the scheduler for people: the queue tree with usage bars, pending work in admission order,
workflow progress and stream job replicas. Pure (objects in, `rich` renderables or plain data out), shared by
the `meson` CLI (`meson queues`, `meson pending`) and `make demo`."""

from meson.views.model import (
    PendingRow,
    QueueRow,
    ResourceUsage,
    Snapshot,
    StreamRow,
    WorkflowRow,
    as_data,
    pending_rows,
    queue_rows,
    stream_rows,
    subtree,
    workflow_rows,
)
from meson.views.render import pending_table, queues_table, streams_table, usage_bar, workflows_table

__all__ = [
    "PendingRow",
    "QueueRow",
    "ResourceUsage",
    "Snapshot",
    "StreamRow",
    "WorkflowRow",
    "as_data",
    "pending_rows",
    "pending_table",
    "queue_rows",
    "queues_table",
    "stream_rows",
    "streams_table",
    "subtree",
    "usage_bar",
    "workflow_rows",
    "workflows_table",
]
