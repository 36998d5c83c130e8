"""What the views show, computed from the API objects as the API server returns them (plain dicts).

Pure: no Kubernetes client, no I/O. The CLI (and `make demo`) read the objects through
:mod:`meson.adapters.kube` and hand them here; :mod:`meson.views.render` turns the rows into `rich`
renderables, and ``-o json|yaml`` prints :func:`as_data` of the same rows.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from meson.api.quantity import canonical

# The Admitted condition of a StreamJob names its waiting replicas: "replica 3 (position 2): reason".
_REPLICA_WAITING = re.compile(r"replica (\d+)(?: \(position (\d+)\))?: (.*?)(?=; replica \d+|$)")


@dataclass(frozen=True)
class ResourceUsage:
    """One resource of a queue, in canonical units (cpu millicores, bytes, counts)."""

    resource: str
    guaranteed: int
    limit: int | None  # None: not limited by this queue
    usage: int
    borrowed: int = 0


@dataclass(frozen=True)
class QueueRow:
    name: str
    parent: str | None
    depth: int  # 0 for a root queue
    last: bool = field(default=True, metadata={"layout": True})  # last child of its parent (tree glyphs)
    weight: int = 1
    resources: list[ResourceUsage] = field(default_factory=list)
    admitted: int = 0
    pending: int = 0
    active: bool = True
    message: str = ""
    rate: str = ""  # "2/s burst 2" when the queue is rate-limited
    strategy: str = "BestEffortFIFO"
    stop_policy: str = "None"
    # For each ancestor below the root: was it the last child (tree glyphs).
    ancestors_last: tuple[bool, ...] = field(default=(), metadata={"layout": True})


@dataclass(frozen=True)
class PendingRow:
    """One workload waiting for admission: a workflow step instance or a stream job replica."""

    queue: str
    position: int | None  # 1: next in its queue; None when the operator has not placed it (yet)
    kind: str  # "Workflow" or "StreamJob"
    namespace: str
    name: str  # the workflow or stream job
    workload: str  # "step[index]" or "replica N"
    priority: str  # PriorityClass name ("" when none)
    reason: str
    count: int = 1  # a compact status entry of a big fan-out stands for several instances
    eta: float | None = None  # predicted admission (epoch seconds), where the operator's prediction is known


@dataclass(frozen=True)
class WorkflowRow:
    namespace: str
    name: str
    queue: str
    priority: str
    phase: str
    total: int
    succeeded: int
    running: int
    pending: int
    failed: int
    progress: str
    message: str = ""
    preempted: int = 0  # step instances whose last attempt ended Preempted


@dataclass(frozen=True)
class StreamRow:
    namespace: str
    name: str
    queue: str
    phase: str
    desired: int
    replicas: int
    ready: int
    revision: str
    waiting: int
    message: str = ""


@dataclass
class Snapshot:
    """Every object the views need, as listed from the API server."""

    queues: list[dict] = field(default_factory=list)
    workflows: list[dict] = field(default_factory=list)
    streamjobs: list[dict] = field(default_factory=list)


def as_data(rows: Iterable[Any]) -> list[dict]:
    """Rows as plain data for ``-o json|yaml``: field names in camelCase like the API, amounts in canonical
    units (cpu in millicores, memory in bytes), without the fields that only lay out the tree."""

    def camel(name: str) -> str:
        head, *rest = name.split("_")
        return head + "".join(p.title() for p in rest)

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {
                camel(f.name): convert(getattr(value, f.name))
                for f in dataclasses.fields(value)
                if not f.metadata.get("layout")
            }
        if isinstance(value, list | tuple):
            return [convert(v) for v in value]
        return value

    return [convert(r) for r in rows]


# --- queues -------------------------------------------------------------------------------------------


def _amount(resource: str, value: Any) -> int:
    try:
        return canonical(resource, value)
    except (ValueError, TypeError, ArithmeticError):
        return 0


def _queue_resources(queue: dict) -> list[ResourceUsage]:
    spec = queue.get("spec") or {}
    status = queue.get("status") or {}
    quota = spec.get("quota") or {}
    usage = status.get("usage") or {}
    borrowed = status.get("borrowed") or {}
    names = list(quota) + sorted(r for r in usage if r not in quota)
    rows = []
    for name in names:
        q = quota.get(name) or {}
        guaranteed = _amount(name, q.get("guaranteed", 0))
        limit = _amount(name, q["limit"]) if q.get("limit") is not None else (guaranteed if q else None)
        rows.append(
            ResourceUsage(
                resource=name,
                guaranteed=guaranteed,
                limit=limit,
                usage=_amount(name, usage.get(name, 0)),
                borrowed=_amount(name, borrowed.get(name, 0)),
            )
        )
    return rows


def _condition(obj: dict, kind: str) -> dict | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return c
    return None


def _rate(spec: dict) -> str:
    rate = spec.get("admissionRate")
    if not rate:
        return ""
    pps = rate.get("podsPerSecond")
    text = f"{pps:g}/s" if isinstance(pps, int | float) else f"{pps}/s"
    return f"{text} burst {rate.get('burst', 1)}"


def queue_rows(queues: Iterable[dict]) -> list[QueueRow]:
    """The queues as a tree, depth first (children by name); a queue whose parent is missing is a root,
    and queues in a parent cycle are listed last as roots (their Active=False condition says why)."""
    by_name = {q["metadata"]["name"]: q for q in queues}
    children: dict[str | None, list[str]] = {}
    for name, q in by_name.items():
        parent = (q.get("spec") or {}).get("parent")
        children.setdefault(parent if parent in by_name else None, []).append(name)
    rows: list[QueueRow] = []
    seen: set[str] = set()

    def visit(name: str, depth: int, last: bool, ancestors: tuple[bool, ...]) -> None:
        if name in seen:
            return
        seen.add(name)
        q = by_name[name]
        spec = q.get("spec") or {}
        status = q.get("status") or {}
        active = _condition(q, "Active")
        rows.append(
            QueueRow(
                name=name,
                parent=spec.get("parent"),
                depth=depth,
                last=last,
                weight=int(spec.get("weight", 1)),
                resources=_queue_resources(q),
                admitted=int(status.get("admitted") or 0),
                pending=int(status.get("pending") or 0),
                active=active is None or active.get("status") != "False",
                message=(active or {}).get("message", "")
                if active and active.get("status") == "False"
                else "",
                rate=_rate(spec),
                strategy=spec.get("queueingStrategy", "BestEffortFIFO"),
                stop_policy=spec.get("stopPolicy", "None"),
                ancestors_last=ancestors,
            )
        )
        kids = sorted(children.get(name, []))
        for i, child in enumerate(kids):
            visit(child, depth + 1, i == len(kids) - 1, (*ancestors, last) if depth else ancestors)

    roots = sorted(children.get(None, []))
    for i, root in enumerate(roots):
        visit(root, 0, i == len(roots) - 1, ())
    for name in sorted(set(by_name) - seen):  # a parent cycle: no root reaches them
        visit(name, 0, True, ())
    return rows


def subtree(rows: list[QueueRow], name: str) -> set[str]:
    """``name`` and every queue below it."""
    parents = {r.name: r.parent for r in rows}
    out = set()
    for r in rows:
        cur: str | None = r.name
        hops = 0
        while cur is not None and hops <= len(parents):
            if cur == name:
                out.add(r.name)
                break
            cur, hops = parents.get(cur), hops + 1
    return out


# --- pending work -------------------------------------------------------------------------------------


def _instance(entry: dict) -> tuple[str, int]:
    name = entry.get("name", "?")
    if entry.get("indexes"):
        indexes = str(entry["indexes"])
        count = 0
        for part in indexes.split(","):
            lo, _, hi = part.partition("-")
            try:
                count += int(hi or lo) - int(lo) + 1
            except ValueError:
                count += 1
        return f"{name}[{indexes}]", max(count, 1)
    if entry.get("index") is not None:
        return f"{name}[{entry['index']}]", 1
    return name, 1


def pending_rows(
    workflows: Iterable[dict], streamjobs: Iterable[dict] = (), queues: set[str] | None = None
) -> list[PendingRow]:
    """Every workload waiting for admission, by queue then position (unplaced ones last, by name)."""
    rows: list[PendingRow] = []
    for wf in workflows:
        spec, status = wf.get("spec") or {}, wf.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            continue
        meta = wf.get("metadata") or {}
        for entry in status.get("steps") or []:
            if entry.get("phase") != "Pending":
                continue
            workload, count = _instance(entry)
            rows.append(
                PendingRow(
                    queue=spec.get("queue", ""),
                    position=entry.get("position"),
                    kind="Workflow",
                    namespace=meta.get("namespace", ""),
                    name=meta.get("name", ""),
                    workload=workload,
                    priority=spec.get("priorityClassName") or "",
                    reason=entry.get("message") or "",
                    count=count,
                    eta=_parse_time(entry.get("eta")),
                )
            )
    for job in streamjobs:
        spec, meta = job.get("spec") or {}, job.get("metadata") or {}
        admitted = _condition(job, "Admitted")
        if admitted is None or admitted.get("status") != "False":
            continue
        message = admitted.get("message") or ""
        for m in _REPLICA_WAITING.finditer(message):
            rows.append(
                PendingRow(
                    queue=spec.get("queue", ""),
                    position=int(m.group(2)) if m.group(2) else None,
                    kind="StreamJob",
                    namespace=meta.get("namespace", ""),
                    name=meta.get("name", ""),
                    workload=f"replica {m.group(1)}",
                    priority=((spec.get("template") or {}).get("spec") or {}).get("priorityClassName") or "",
                    reason=m.group(3).strip(),
                )
            )
    if queues is not None:
        rows = [r for r in rows if r.queue in queues]
    big = 1 << 62
    rows.sort(key=lambda r: (r.queue, r.position or big, r.namespace, r.name, r.workload))
    return rows


def workload_key(row: PendingRow) -> str | None:
    """The scheduling core's key of a pending row's workload (None for a compact range entry):
    ``ns/workflow/step`` or ``ns/workflow/step-INDEX``, ``ns/streamjob/SLOT``."""
    if row.kind == "StreamJob":
        return f"{row.namespace}/{row.name}/{row.workload.removeprefix('replica ')}"
    found = re.fullmatch(r"([^\[]+)(?:\[(\d+)\])?", row.workload)
    if found is None:
        return None
    step, index = found.groups()
    return f"{row.namespace}/{row.name}/{step}" + (f"-{index}" if index is not None else "")


def with_etas(rows: Iterable[PendingRow], eta: Any) -> list[PendingRow]:
    """The rows with their predicted admission time from ``eta`` (workload key -> epoch seconds or
    None), as the operator's dashboard knows it."""
    out = []
    for row in rows:
        key = workload_key(row)
        predicted = eta(key) if key is not None else None
        out.append(dataclasses.replace(row, eta=predicted) if predicted is not None else row)
    return out


# --- workflows and stream jobs ------------------------------------------------------------------------


def workflow_rows(workflows: Iterable[dict]) -> list[WorkflowRow]:
    rows = []
    for wf in workflows:
        spec, status, meta = wf.get("spec") or {}, wf.get("status") or {}, wf.get("metadata") or {}
        counts = status.get("counts") or {}
        preempted = sum(1 for s in status.get("steps") or [] if s.get("reason") == "Preempted")
        rows.append(
            WorkflowRow(
                namespace=meta.get("namespace", ""),
                name=meta.get("name", ""),
                queue=spec.get("queue", ""),
                priority=spec.get("priorityClassName") or "",
                phase=status.get("phase") or "Pending",
                total=int(counts.get("total", 0)),
                succeeded=int(counts.get("succeeded", 0)),
                running=int(counts.get("running", 0)),
                pending=int(counts.get("pending", 0)),
                failed=int(counts.get("failed", 0)),
                progress=status.get("progress") or "",
                message=status.get("message") or "",
                preempted=preempted,
            )
        )
    rows.sort(key=lambda r: (r.namespace, r.name))
    return rows


def stream_rows(streamjobs: Iterable[dict]) -> list[StreamRow]:
    rows = []
    for job in streamjobs:
        spec, status, meta = job.get("spec") or {}, job.get("status") or {}, job.get("metadata") or {}
        admitted = _condition(job, "Admitted")
        waiting = 0
        if admitted is not None and admitted.get("status") == "False":
            found = re.match(r"(\d+) replica", admitted.get("message") or "")
            waiting = int(found.group(1)) if found else 0
        rows.append(
            StreamRow(
                namespace=meta.get("namespace", ""),
                name=meta.get("name", ""),
                queue=spec.get("queue", ""),
                phase=status.get("phase") or "Pending",
                desired=int(spec.get("replicas", 1)),
                replicas=int(status.get("replicas") or 0),
                ready=int(status.get("readyReplicas") or 0),
                revision=status.get("currentRevision") or "",
                waiting=waiting,
                message=status.get("message") or "",
            )
        )
    rows.sort(key=lambda r: (r.namespace, r.name))
    return rows


# --- one workflow: its DAG ----------------------------------------------------------------------------

# The phase a step shows when its instances differ: the first of these that any instance is in.
_STEP_PHASE_ORDER = (
    "Failed",
    "Running",
    "Retrying",
    "Pending",
    "Waiting",
    "Succeeded",
    "Cached",
    "Skipped",
    "Omitted",
)


@dataclass(frozen=True)
class StepNode:
    """One step of a workflow's DAG (all its foreach instances together), as `meson workflow get` and the
    dashboard show it."""

    name: str
    dependencies: tuple[str, ...]
    phase: str  # the step's phase (see _STEP_PHASE_ORDER when its instances differ)
    instances: int
    phases: dict[str, int]  # instances per phase
    attempts: int  # attempts started, over all instances
    node: str  # the node of its pod, "N nodes" for several, "" before any
    duration: float | None  # seconds from its first start to its last end (or to now while running)
    position: int | None = None  # best queue position of its pending instances
    message: str = ""
    exit_step: bool = False  # the workflow's onExit step


@dataclass(frozen=True)
class WorkflowDetail:
    namespace: str
    name: str
    queue: str
    priority: str
    phase: str
    progress: str
    message: str
    started_at: str
    steps: list[StepNode]


def _parse_time(value: str | None) -> float | None:
    from datetime import datetime

    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _expanded(entry: dict) -> int:
    return _instance(entry)[1]


def workflow_detail(wf: dict, now: float | None = None) -> WorkflowDetail:
    """The DAG of one workflow: its steps in spec order with dependencies, each with the phase, attempts,
    node and duration of its instances from ``status.steps``. ``now`` (epoch seconds) times running
    steps; without it they show no duration."""
    spec, status, meta = wf.get("spec") or {}, wf.get("status") or {}, wf.get("metadata") or {}
    started = _parse_time(status.get("startedAt"))
    elapsed = None if now is None or started is None else max(0.0, now - started)
    entries: dict[str, list[dict]] = {}
    for entry in status.get("steps") or []:
        entries.setdefault(entry.get("name", "?"), []).append(entry)
    declared = [(s, False) for s in spec.get("steps") or []]
    if spec.get("onExit"):
        declared.append(({"name": spec["onExit"].get("name", "on-exit")}, True))
    nodes = []
    for step, is_exit in declared:
        name = step.get("name", "?")
        mine = entries.get(name, [])
        phases: dict[str, int] = {}
        for e in mine:
            phases[e.get("phase", "Waiting")] = phases.get(e.get("phase", "Waiting"), 0) + _expanded(e)
        phase = next((p for p in _STEP_PHASE_ORDER if phases.get(p)), "Waiting")
        starts = [e["start"] for e in mine if e.get("start") is not None]
        ends = [e["end"] if e.get("end") is not None else elapsed for e in mine if e.get("start") is not None]
        duration = None
        if starts and None not in ends:
            duration = float(max(ends)) - float(min(starts))  # type: ignore[type-var]
        hosts = sorted({e["node"] for e in mine if e.get("node")})
        positions = [e["position"] for e in mine if e.get("position") is not None]
        messages = [e["message"] for e in mine if e.get("message")]
        nodes.append(
            StepNode(
                name=name,
                dependencies=tuple(step.get("dependencies") or ()),
                phase=phase,
                instances=sum(phases.values()) or 1,
                phases=phases,
                attempts=sum(int(e.get("attempts") or 0) for e in mine),
                node=hosts[0] if len(hosts) == 1 else (f"{len(hosts)} nodes" if hosts else ""),
                duration=None if duration is None else max(0.0, duration),
                position=min(positions) if positions else None,
                message=messages[0] if messages else "",
                exit_step=is_exit,
            )
        )
    return WorkflowDetail(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        queue=spec.get("queue", ""),
        priority=spec.get("priorityClassName") or "",
        phase=status.get("phase") or "Pending",
        progress=status.get("progress") or "",
        message=status.get("message") or "",
        started_at=status.get("startedAt") or "",
        steps=nodes,
    )


def dag_levels(steps: list[StepNode]) -> dict[str, int]:
    """Each step's column in a drawing of the DAG: the length of the longest dependency chain before it
    (the exit step after every other). Dependencies on unknown steps and cycles are ignored."""
    by_name = {s.name: s for s in steps}
    level: dict[str, int] = {}

    def depth(name: str, seen: frozenset[str]) -> int:
        if name in level:
            return level[name]
        deps = [d for d in by_name[name].dependencies if d in by_name and d not in seen]
        level[name] = 1 + max((depth(d, seen | {name}) for d in deps), default=-1)
        return level[name]

    for s in steps:
        if not s.exit_step:
            depth(s.name, frozenset())
    last = max(level.values(), default=-1)
    for s in steps:
        if s.exit_step:
            level[s.name] = last + 1
    return level


# --- one stream job: revisions and replicas -----------------------------------------------------------


@dataclass(frozen=True)
class RevisionRow:
    revision: str
    replicas: int  # pods of this revision
    current: bool = False
    stable: bool = False  # the last revision that became stable
    failed: bool = False  # rolled back from, not retried until the template changes


@dataclass(frozen=True)
class ReplicaRow:
    pod: str
    slot: str
    revision: str
    phase: str
    ready: bool
    node: str
    restarts: int


@dataclass(frozen=True)
class StreamDetail:
    namespace: str
    name: str
    queue: str
    phase: str
    desired: int
    replicas: int
    ready: int
    updated: int
    restarts: int
    message: str
    revisions: list[RevisionRow]
    pods: list[ReplicaRow]


def _ready(pod: dict) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def stream_detail(job: dict, pods: Iterable[dict] = ()) -> StreamDetail:
    """A stream job's revisions (newest first: the current one, then ``status.revisionHistory``) with
    the pods of each, and its replica pods (``pods``: the job's pods as listed, may be empty)."""
    from meson.stream import LABEL_REVISION, LABEL_SLOT

    spec, status, meta = job.get("spec") or {}, job.get("status") or {}, job.get("metadata") or {}
    replicas = []
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        replicas.append(
            ReplicaRow(
                pod=pod["metadata"]["name"],
                slot=labels.get(LABEL_SLOT, ""),
                revision=labels.get(LABEL_REVISION, ""),
                phase=(pod.get("status") or {}).get("phase") or "Pending",
                ready=_ready(pod),
                node=(pod.get("spec") or {}).get("nodeName") or "",
                restarts=sum(int(s.get("restartCount") or 0) for s in statuses),
            )
        )
    replicas.sort(key=lambda r: (int(r.slot) if r.slot.isdigit() else 1 << 30, r.pod))
    current = status.get("currentRevision") or ""
    order = [current] if current else []
    for rev in reversed(status.get("revisionHistory") or []):
        if rev not in order:
            order.append(rev)
    for rev in (status.get("previousRevision"), status.get("stableRevision"), status.get("failedRevision")):
        if rev and rev not in order:
            order.append(rev)
    order += sorted({r.revision for r in replicas if r.revision and r.revision not in order})
    revisions = [
        RevisionRow(
            revision=rev,
            replicas=sum(1 for r in replicas if r.revision == rev),
            current=rev == current,
            stable=rev == status.get("stableRevision"),
            failed=rev == status.get("failedRevision"),
        )
        for rev in order
    ]
    return StreamDetail(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        queue=spec.get("queue", ""),
        phase=status.get("phase") or "Pending",
        desired=int(spec.get("replicas", 1)),
        replicas=int(status.get("replicas") or 0),
        ready=int(status.get("readyReplicas") or 0),
        updated=int(status.get("updatedReplicas") or 0),
        restarts=int(status.get("restarts") or 0),
        message=status.get("message") or "",
        revisions=revisions,
        pods=replicas,
    )
