"""Values exchanged between the stream engine and the runtime (no Kubernetes, no kopf).

Reused from the workflow engine: :class:`~meson.workflow.types.InstanceRequest` (a replica needing admission
or holding an admitted pod: one pod, never a gang) and :class:`~meson.workflow.types.WorkflowEvent` (an
Event to record on the StreamJob). :class:`~meson.workflow.types.PodObservation` does not fit a replica pod:
it has no revision, slot, readiness or restart count, and carries a workflow's attempt and exit code, so
replica pods are observed as :class:`ReplicaPod`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from meson.workflow.types import InstanceRequest, WorkflowEvent

__all__ = ["DeleteReason", "InstanceRequest", "PodDeletion", "ReplicaPod", "StreamPlan", "WorkflowEvent"]

#: Why the engine deletes a pod. All are Meson's decision (preempt-like: not a failure of the pod) except
#: ``Failed`` (a pod that ended, removed before its replacement).
DeleteReason = Literal["ScaledDown", "Rollout", "Suspended", "RestartBudgetExceeded", "Failed", "Orphaned"]


@dataclass(frozen=True, slots=True)
class ReplicaPod:
    """One pod of a stream job as the runtime sees it.

    ``phase`` is the Kubernetes pod phase, or ``Gone`` for a tombstone: a pod that disappeared without Meson
    deleting it (its node was lost, someone else deleted or evicted it). Pods Meson deleted are simply no
    longer reported.
    """

    name: str
    revision: str  # label meson.dev/revision
    slot: int  # label meson.dev/slot
    run: int  # label meson.dev/run
    phase: str  # Pending | Running | Succeeded | Failed | Unknown | Gone
    ready: bool = False  # condition Ready is True
    ready_since: float | None = None  # lastTransitionTime of the Ready condition (epoch seconds)
    restart_count: int = 0  # sum of containerStatuses[].restartCount
    crash_looping: bool = False  # a container is waiting with reason CrashLoopBackOff
    created: float = 0.0
    deleting: bool = False  # deletionTimestamp is set
    node: str | None = None


@dataclass(frozen=True, slots=True)
class PodDeletion:
    """A pod to delete, and why (see :data:`DeleteReason`)."""

    name: str
    reason: DeleteReason


@dataclass(slots=True)
class StreamPlan:
    """What to do for one stream job this cycle (see :func:`meson.stream.plan_stream`).

    ``pending``: one request per replica pod to create (``pods`` holds its one manifest, without namespace
    and ownerReferences); ``admitted``: one per live pod holding quota (``pods`` empty; the pod's name is
    :func:`meson.stream.pod_name` of (job, ``step`` = revision, ``index`` = slot, ``run``)).
    ``record_revisions``/``forget_revisions``: ControllerRevisions to create/delete (name -> pod template).
    """

    status: dict[str, Any]
    pending: list[InstanceRequest] = field(default_factory=list)
    admitted: list[InstanceRequest] = field(default_factory=list)
    delete_pods: list[PodDeletion] = field(default_factory=list)
    events: list[WorkflowEvent] = field(default_factory=list)
    record_revisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    forget_revisions: list[str] = field(default_factory=list)
    wake_at: float | None = None
