"""Values exchanged between the workflow engine and the runtime (no Kubernetes, no kopf)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

__all__ = [
    "LIVE_POD_PHASES",
    "ChildObservation",
    "FailureKind",
    "InstanceRequest",
    "MemoLookup",
    "Plan",
    "PodObservation",
    "WorkflowEvent",
]

FailureKind = Literal["FailedExit", "NodeLost", "Evicted", "Timeout", "Preempted"]
#: Every :data:`FailureKind` (to check a kind read back from a persisted status).
FAILURE_KINDS: frozenset[str] = frozenset(get_args(FailureKind))

#: A memoization lookup: the SHA-256 id of a rendered key (:func:`meson.workflow.memo.memo_id`) -> (result,
#: epoch when the run that produced it ended) of the newest success under that key, None when none.
MemoLookup = Callable[[str], tuple[str, float] | None]

#: Pod phases of a pod that still holds (or may hold) its resources.
LIVE_POD_PHASES = frozenset({"Pending", "Running", "Unknown"})


@dataclass(frozen=True, slots=True)
class PodObservation:
    """One pod of a workflow as the runtime sees it (built from a Pod, or from its deletion).

    ``phase`` is the Kubernetes pod phase, or ``Gone`` for a pod deleted before it finished. ``failure`` is
    set by the runtime for Gone/Failed pods when it knows why: Preempted (Meson evicted it), NodeLost (its
    node was deleted), Evicted (deleted or evicted by someone else).
    """

    name: str
    instance: str  # label meson.dev/instance
    run: int  # label meson.dev/run
    attempt: int  # label meson.dev/attempt
    phase: str  # Pending | Running | Succeeded | Failed | Unknown | Gone
    node: str | None
    exit_code: int | None  # first non-zero container exit code, else 0 when terminated
    failure: FailureKind | None
    created: float  # epoch seconds
    started: float | None  # epoch seconds the pod started running
    finished: float | None
    deleting: bool = False  # deletionTimestamp is set
    result: str | None = None  # termination message of the main container (at most 4 KiB)


@dataclass(frozen=True, slots=True)
class ChildObservation:
    """A child Workflow of a sub-workflow step as the runtime sees it (built from the Workflow, or from its
    deletion). ``phase`` is its status.phase (None before its first status), ``gone`` set once it was
    deleted (its last seen state is kept)."""

    name: str
    instance: str  # label meson.dev/instance
    run: int  # label meson.dev/run
    attempt: int  # label meson.dev/attempt
    phase: str | None
    message: str | None  # status.message
    created: float  # epoch seconds
    finished: float | None  # status.finishedAt
    outputs: dict[str, str] | None = None  # status.outputs
    shutdown: str | None = None  # spec.shutdown
    gone: bool = False
    deleting: bool = False  # deletionTimestamp is set


@dataclass(frozen=True, slots=True)
class InstanceRequest:
    """A step instance that needs admission now (``Plan.pending``) or holds admitted pods (``Plan.admitted``).

    ``pods`` (pending requests only) are the Pod manifests to create on admission, without namespace and
    ownerReferences. Their ``spec`` and ``labels`` objects may be shared with the engine's cache: copy them
    before mutating (adding namespace/ownerReferences to the top-level ``metadata`` dict is fine, it is
    fresh on every call).
    """

    key: str  # f"{namespace}/{workflow}/{instance}": stable across runs and attempts
    instance: str  # "extract", "transform-3" (foreach index), "on-exit"
    step: str
    index: int | None
    run: int  # the run to launch (pending) or the run holding the pods (admitted)
    attempt: int
    pod_count: int
    gang: bool
    pod_request: dict[str, int]  # canonical per-pod request: cpu millicores, bytes, counts
    created: float  # FIFO key: workflow creation epoch + 1e-6 * ordinal of the instance in the DAG
    pods: tuple[dict[str, Any], ...] = ()


@dataclass(slots=True)
class WorkflowEvent:
    """A Kubernetes event to record on the Workflow."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    # For StepRetrying/StepFailed: the kind of failure (metrics count by it, never by the message text).
    failure: FailureKind | None = None


@dataclass(slots=True)
class Plan:
    """What to do for one workflow this cycle (see :func:`meson.workflow.plan`)."""

    # The complete new status (wire form, within meson.workflow.status.PLAN_BUDGET_BYTES); patch it when it
    # differs from the old one.
    status: dict[str, Any]
    pending: list[InstanceRequest] = field(default_factory=list)
    admitted: list[InstanceRequest] = field(default_factory=list)
    delete_pods: list[str] = field(default_factory=list)
    events: list[WorkflowEvent] = field(default_factory=list)
    wake_at: float | None = None
    finished: bool = False
    delete_workflow: bool = False
    #: Pods of an admitted gang that should exist but were not observed (the runtime crashed while creating
    #: the gang, or its cache lags): create them; AlreadyExists is harmless.
    create_pods: list[dict[str, Any]] = field(default_factory=list)
    #: Child Workflows of sub-workflow steps to create (no namespace, no ownerReferences: the runtime adds
    #: them); deterministic names, so AlreadyExists means done.
    create_workflows: list[dict[str, Any]] = field(default_factory=list)
    #: Child Workflows to stop: name -> the spec.shutdown to set (Stop or Terminate).
    shutdown_workflows: dict[str, str] = field(default_factory=dict)
