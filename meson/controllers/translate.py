"""Translation between Kubernetes objects (plain dicts as watched) and the core's and engine's values.

Pure functions: no API calls. Quantities are parsed once here, into the canonical integers the core
uses (cpu millicores, memory bytes, counts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from meson.api.quantity import canonical
from meson.core import NodeCapacity, QueueConfig, Resources
from meson.core.budget import Budget, from_hours
from meson.stream import LABEL_REVISION, LABEL_SLOT, ReplicaPod
from meson.workflow import (
    LABEL_ATTEMPT,
    LABEL_INSTANCE,
    LABEL_RUN,
    ChildObservation,
    PodObservation,
    parse_time,
)

TERMINAL = ("Succeeded", "Failed")
PREEMPTED_ANNOTATION = "meson.dev/preempted"


def epoch(ts: str | None) -> float | None:
    return parse_time(ts) if ts else None


def _resources(values: Mapping[str, Any] | None) -> dict[str, int]:
    return {k: canonical(k, v) for k, v in (values or {}).items()}


def pod_request(spec: Mapping[str, Any]) -> dict[str, int]:
    """Kubernetes' effective request of a pod: sum of containers, max'ed with each init container,
    plus overhead; a container's limit stands in for a missing request (as the API server defaults)."""

    def container(c: Mapping[str, Any]) -> dict[str, int]:
        res = c.get("resources") or {}
        out = _resources(res.get("limits"))
        out.update(_resources(res.get("requests")))
        return out

    total: dict[str, int] = {}
    for c in spec.get("containers") or []:
        for k, v in container(c).items():
            total[k] = total.get(k, 0) + v
    for c in spec.get("initContainers") or []:
        for k, v in container(c).items():
            total[k] = max(total.get(k, 0), v)
    for k, v in _resources(spec.get("overhead")).items():
        total[k] = total.get(k, 0) + v
    total["pods"] = 1
    return total


def queue_config(obj: Mapping[str, Any]) -> QueueConfig:
    """The core's view of a Queue. Its quota keys become ``listed``: the resources this queue limits
    (even at 0), so "a resource not listed is not limited by this queue" holds in the core."""
    spec = obj.get("spec") or {}
    quota = spec.get("quota") or {}
    guaranteed = {k: canonical(k, q.get("guaranteed", 0)) for k, q in quota.items()}
    limit = {
        k: canonical(k, q["limit"] if q.get("limit") is not None else q.get("guaranteed", 0))
        for k, q in quota.items()
    }
    rate = spec.get("admissionRate") or {}
    preemption = spec.get("preemption") or {}
    half_life = (spec.get("fairSharing") or {}).get("halfLifeSeconds")
    return QueueConfig(
        name=obj["metadata"]["name"],
        parent=spec.get("parent"),
        guaranteed=Resources(guaranteed),
        # A queue with no quota at all only inherits its ancestors' caps.
        limit=Resources(limit) if quota else None,
        # The core needs a positive weight; weight 0 ("borrow last") becomes a tiny one.
        weight=float(spec.get("weight", 1)) or 1e-6,
        max_admitted=spec.get("maxAdmitted"),
        admission_rate=rate.get("podsPerSecond"),
        admission_burst=int(rate.get("burst", 1)),
        strategy=spec.get("queueingStrategy", "BestEffortFIFO"),
        preempt_within_queue=preemption.get("withinQueue", "Never"),
        reclaim_borrowed=bool(preemption.get("reclaimBorrowed", False)),
        stop_policy=spec.get("stopPolicy", "None"),
        listed=frozenset(quota),
        min_runtime=float(preemption.get("minRuntimeSeconds") or 0),
        budgets=tuple(budget(b) for b in spec.get("budgets") or ()),
        fair_half_life=float(half_life) if half_life else None,
    )


def budget(spec: Mapping[str, Any]) -> Budget:
    """A Queue's budget entry as the core's (resource-hours to resource-seconds in canonical units)."""
    resource = spec["resource"]
    return Budget(
        resource=resource,
        limit=from_hours(resource, float(spec.get("resourceHours", 0))),
        window=spec.get("window", "Week"),
        time_zone=spec.get("timeZone", "UTC"),
        sliding_seconds=float(spec.get("slidingWindowSeconds") or 0),
        evict=spec.get("onExhausted") == "Evict",
    )


def namespace_allowed(queue: Mapping[str, Any], namespace: str, labels: Mapping[str, str] | None) -> bool:
    policy = (queue.get("spec") or {}).get("namespaces")
    if not policy:
        return True
    if namespace in (policy.get("names") or []):
        return True
    selector = policy.get("selector")
    if selector is None:
        return False
    return selector_matches(selector, labels or {})


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for req in selector.get("matchExpressions") or []:
        key, op, values = req["key"], req["operator"], req.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def child_observation(
    wf: Mapping[str, Any], parent_uid: str, *, gone: bool = False
) -> ChildObservation | None:
    """What the workflow engine needs to know of a child Workflow of a sub-workflow step (None: not a
    child of the parent whose uid this is, or without the labels that place it)."""
    meta = wf["metadata"]
    if not any(
        ref.get("uid") == parent_uid and ref.get("controller") for ref in meta.get("ownerReferences") or []
    ):
        return None
    labels = meta.get("labels") or {}
    run, attempt = str(labels.get(LABEL_RUN) or ""), str(labels.get(LABEL_ATTEMPT) or "")
    if not labels.get(LABEL_INSTANCE) or not run.isdigit() or not attempt.isdigit():
        return None
    status = wf.get("status") or {}
    outputs = status.get("outputs")
    return ChildObservation(
        name=meta["name"],
        instance=labels[LABEL_INSTANCE],
        run=int(run),
        attempt=int(attempt),
        phase=status.get("phase"),
        message=status.get("message"),
        created=epoch(meta.get("creationTimestamp")) or 0.0,
        finished=epoch(status.get("finishedAt")),
        outputs={k: v for k, v in outputs.items() if isinstance(v, str)}
        if isinstance(outputs, dict)
        else None,
        shutdown=(wf.get("spec") or {}).get("shutdown"),
        gone=gone,
        deleting=bool(meta.get("deletionTimestamp")),
    )


def pod_observation(
    pod: Mapping[str, Any], *, gone: bool = False, nodes: Iterable[str] = ()
) -> PodObservation:
    """What the workflow engine needs to know of one of its pods (``gone``: it was deleted)."""
    meta = pod["metadata"]
    labels = meta.get("labels") or {}
    status = pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    exit_code = None
    finished = None
    started = epoch(status.get("startTime")) if phase != "Pending" else None
    for cs in status.get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if term:
            code = int(term.get("exitCode", 0))
            exit_code = code if exit_code in (None, 0) else exit_code
            finished = max(finished or 0.0, epoch(term.get("finishedAt")) or 0.0) or None
    failure = None
    node = (pod.get("spec") or {}).get("nodeName")
    annotations = meta.get("annotations") or {}
    result = _termination_message(pod) if phase == "Succeeded" else None
    if phase == "Failed":
        reason = status.get("reason") or ""
        if reason in ("Evicted", "Preempting", "Terminated") or any(
            c.get("type") == "DisruptionTarget" and c.get("status") == "True"
            for c in status.get("conditions") or []
        ):
            failure = "NodeLost" if reason == "NodeLost" else "Evicted"
        else:
            failure = "FailedExit"
        if PREEMPTED_ANNOTATION in annotations:
            failure = "Preempted"
    if gone and phase not in TERMINAL:
        phase = "Gone"
        if PREEMPTED_ANNOTATION in annotations:
            failure = "Preempted"
        elif node and node not in set(nodes):
            failure = "NodeLost"
        else:
            failure = "Evicted"
    if phase in TERMINAL and finished is None:
        finished = epoch(status.get("startTime"))
    return PodObservation(
        name=meta["name"],
        instance=labels.get(LABEL_INSTANCE, ""),
        run=int(labels.get(LABEL_RUN, "1")),
        attempt=int(labels.get(LABEL_ATTEMPT, "1")),
        phase=phase,
        node=node,
        exit_code=exit_code,
        failure=failure,
        created=epoch(meta.get("creationTimestamp")) or 0.0,
        started=started,
        finished=finished,
        deleting=bool(meta.get("deletionTimestamp")),
        result=result,
    )


def _termination_message(pod: Mapping[str, Any]) -> str | None:
    """The termination message of the pod's main container (its first): a workflow step's result."""
    containers = (pod.get("spec") or {}).get("containers") or []
    main = containers[0].get("name") if containers else None
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == main:
            message = ((cs.get("state") or {}).get("terminated") or {}).get("message")
            return message if isinstance(message, str) and message else None
    return None


def node_schedulable(node: Mapping[str, Any]) -> bool:
    spec = node.get("spec") or {}
    # Tainted nodes still count: a tolerating pod may land there, and kube-scheduler decides that.
    if spec.get("unschedulable"):
        return False
    conds = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def node_capacities(
    nodes: Mapping[str, Mapping[str, Any]], used: Mapping[str, Mapping[str, int]]
) -> list[NodeCapacity]:
    """Schedulable nodes' allocatable minus the requests of their non-terminal pods."""
    out = []
    for name, node in sorted(nodes.items()):
        if not node_schedulable(node):
            continue
        alloc = Resources(_resources((node.get("status") or {}).get("allocatable")))
        out.append(NodeCapacity(name=name, allocatable=alloc, free=alloc - Resources(used.get(name, {}))))
    return out


def replica_pod(pod: Mapping[str, Any], *, gone: bool = False) -> ReplicaPod:
    """What the stream engine needs to know of one replica pod (``gone``: it was deleted). A pod Meson
    deleted carries the preemption annotation and is not reported Gone: the engine decided it."""
    meta = pod["metadata"]
    labels = meta.get("labels") or {}
    status = pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    if gone and phase not in TERMINAL and PREEMPTED_ANNOTATION not in (meta.get("annotations") or {}):
        phase = "Gone"
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None) or {}
    statuses = status.get("containerStatuses") or []
    return ReplicaPod(
        name=meta["name"],
        revision=labels.get(LABEL_REVISION, ""),
        slot=_label_int(labels.get(LABEL_SLOT)),
        run=_label_int(labels.get(LABEL_RUN), 1),
        phase=phase,
        ready=ready.get("status") == "True",
        ready_since=epoch(ready.get("lastTransitionTime")) if ready.get("status") == "True" else None,
        restart_count=sum(int(cs.get("restartCount") or 0) for cs in statuses),
        crash_looping=any(
            ((cs.get("state") or {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff"
            for cs in statuses
        ),
        created=epoch(meta.get("creationTimestamp")) or 0.0,
        deleting=bool(meta.get("deletionTimestamp")),
        node=(pod.get("spec") or {}).get("nodeName"),
    )


def _label_int(value: str | None, default: int = 0) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default
