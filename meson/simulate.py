"""`meson simulate`: what each queue would see, before and after a change of Queues, replayed by the
scheduling core the operator runs (:class:`meson.core.simulator.Simulator` driving
:class:`meson.core.Scheduler`, with Queue objects converted by the operator's own
:func:`meson.controllers.translate.queue_config`): never a copy of the policy.

The work replayed is either a trace file or the live cluster (its pending and running work at this
instant, no future arrivals). Per queue it reports time to admission (p50/p90), utilisation of its
guarantee, the share of its usage that was borrowed, and preemptions of its workloads.

Trace files (one workload a row; times in seconds from the start of the trace):

* CSV with a header: ``arrival``, ``queue``, ``duration`` (required), ``priority`` (integer, default 0),
  ``pods`` (default 1), ``gang`` (true/false), ``name``; every other column is a resource requested per
  pod, as a Kubernetes quantity (``cpu``: ``500m``, ``memory``: ``2Gi``, ``nvidia.com/gpu``: ``1``).
* JSON: a list of objects (or ``{"workloads": [...]}``) with the same keys and the resources in
  ``resources``: ``{"arrival": 0, "queue": "team-a", "resources": {"cpu": "2"}, "duration": 60}``.

A malformed file is refused whole with its line and field; nothing is simulated.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from meson.api.quantity import canonical
from meson.api.validation import validate_queue
from meson.controllers import translate
from meson.core import QueueConfig, Resources, Workload
from meson.core.model import Decisions, Snapshot
from meson.core.queuecheck import check_queues
from meson.core.simulator import Simulator, TraceItem

KNOWN_COLUMNS = ("arrival", "queue", "duration", "priority", "pods", "gang", "name")
DEFAULT_DURATION = 600.0  # live work with no declared expectedDurationSeconds
LONG_RUNNING = 1e9  # a stream replica: it never ends within the replay


class InputError(ValueError):
    """A trace or queue file that cannot be used: the message names the file, the line and the field."""


# --- trace files --------------------------------------------------------------------------------------


def _number(value: Any, where: str, field_name: str, *, integer: bool = False, minimum: float = 0) -> float:
    try:
        number = int(value) if integer and not isinstance(value, float) else float(value)
    except (TypeError, ValueError):
        raise InputError(
            f"{where}, field {field_name}: {value!r} is not {'an integer' if integer else 'a number'}"
        ) from None
    if (isinstance(number, float) and not math.isfinite(number)) or number < minimum:
        raise InputError(f"{where}, field {field_name}: {value!r} must be a finite number >= {minimum:g}")
    return number


def _row(raw: Mapping[str, Any], resources: Mapping[str, Any], where: str, index: int) -> TraceItem:
    for required in ("arrival", "queue", "duration"):
        if raw.get(required) in (None, ""):
            raise InputError(f"{where}, field {required}: missing")
    queue = str(raw["queue"]).strip()
    request: dict[str, int] = {}
    for name, value in resources.items():
        if value in (None, ""):
            continue
        try:
            request[name] = canonical(name, value)
        except (ValueError, TypeError, ArithmeticError):
            raise InputError(
                f"{where}, field {name}: {value!r} is not a quantity (e.g. 500m, 2, 4Gi)"
            ) from None
    if not request:
        raise InputError(f"{where}: no resource requested (add a column such as cpu)")
    gang = str(raw.get("gang", "false")).strip().lower()
    if gang not in ("true", "false", ""):
        raise InputError(f"{where}, field gang: {raw.get('gang')!r} is not true or false")
    workload = Workload(
        key=str(raw.get("name") or f"row-{index}"),
        queue=queue,
        priority=int(_number(raw.get("priority") or 0, where, "priority", integer=True, minimum=-(2**31))),
        created=_number(raw["arrival"], where, "arrival"),
        pod_request=Resources(request),
        pod_count=int(_number(raw.get("pods") or 1, where, "pods", integer=True, minimum=1)),
        gang=gang == "true",
    )
    return TraceItem(workload, _number(raw["duration"], where, "duration"))


def load_trace(path: str | Path) -> list[TraceItem]:
    """The trace's workloads (CSV or JSON by content); :class:`InputError` at the first bad row."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}") from None
    items: list[TraceItem] = []
    if text.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: line {e.lineno}: not JSON: {e.msg}") from None
        rows = data.get("workloads") if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise InputError(f'{path}: expected a list of workloads (or {{"workloads": [...]}})')
        lines = _json_item_lines(text, len(rows))
        for i, raw in enumerate(rows):
            where = f"{path}: line {lines[i]} (workload {i + 1})"
            if not isinstance(raw, dict):
                raise InputError(f"{where}: expected an object")
            unknown = set(raw) - {*KNOWN_COLUMNS, "resources"}
            if unknown:
                known = ", ".join((*KNOWN_COLUMNS, "resources"))
                raise InputError(f"{where}, field {sorted(unknown)[0]}: unknown (known: {known})")
            resources = raw.get("resources")
            if not isinstance(resources, dict):
                raise InputError(f'{where}, field resources: expected an object such as {{"cpu": "2"}}')
            items.append(_row(raw, resources, where, i + 1))
    else:
        reader = csv.DictReader(io.StringIO(text))
        header = reader.fieldnames or []
        missing = [c for c in ("arrival", "queue", "duration") if c not in header]
        if missing:
            raise InputError(
                f"{path}: line 1, field {missing[0]}: missing from the header ({', '.join(header)})"
            )
        for i, raw in enumerate(reader):
            where = f"{path}: line {reader.line_num}"
            if None in raw:
                raise InputError(f"{where}: more values than the header has columns")
            resources = {k: v for k, v in raw.items() if k not in KNOWN_COLUMNS}
            items.append(_row(raw, resources, where, i + 1))
    if not items:
        raise InputError(f"{path}: no workloads")
    keys = [t.workload.key for t in items]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise InputError(f"{path}: field name: {dup!r} names two workloads")
    return items


def _json_item_lines(text: str, count: int) -> list[int]:
    """The line each top-level item of a JSON list starts on (for messages)."""
    decoder = json.JSONDecoder()
    start = (
        text.index("[") + 1
        if text.lstrip().startswith("[")
        else text.index("[", text.index('"workloads"')) + 1
    )
    lines, pos = [], start
    for _ in range(count):
        while text[pos] in " \t\r\n,":
            pos += 1
        lines.append(text.count("\n", 0, pos) + 1)
        _, pos = decoder.raw_decode(text, pos)
    return lines


# --- queue files --------------------------------------------------------------------------------------


def _line_of(node: yaml.Node, path: str) -> int:
    """The line of ``path`` (``spec.quota.cpu.guaranteed``, ``spec.steps[2]``) in a composed YAML
    document, as deep as it exists."""
    import re

    line = node.start_mark.line + 1
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            if found is None:
                key = next((k for k, _ in node.value if getattr(k, "value", None) == part), None)
                return key.start_mark.line + 1 if key is not None else line
            node = found
        elif isinstance(node, yaml.SequenceNode) and part.startswith("["):
            index = int(part[1:-1])
            if index >= len(node.value):
                return line
            node = node.value[index]
        else:
            return line
        line = node.start_mark.line + 1
    return line


def load_queues(path: str | Path) -> list[dict]:
    """Queue objects from a YAML file (several documents, or a List), each checked as the API server and
    the webhook would; :class:`InputError` with the line and field of the first problem."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}") from None
    return load_queues_text(text, str(path))


def load_queues_text(text: str, path: str = "<queues>") -> list[dict]:
    """:func:`load_queues` of YAML text."""
    try:
        nodes = list(yaml.compose_all(text))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise InputError(
            f"{path}: line {mark.line + 1 if mark else '?'}: not YAML: {getattr(e, 'problem', e)}"
        ) from None
    queues: list[dict] = []
    for node in nodes:
        if node is None:
            continue
        doc = yaml.safe_load(yaml.serialize(node))
        items = [(doc, node)]
        if isinstance(doc, dict) and doc.get("kind") == "List":
            seq = next((v for k, v in node.value if k.value == "items"), None)
            items = list(zip(doc.get("items") or [], seq.value if seq is not None else [], strict=False))
        for obj, obj_node in items:
            line = obj_node.start_mark.line + 1
            if not isinstance(obj, dict) or obj.get("kind") != "Queue":
                kind = obj.get("kind") if isinstance(obj, dict) else type(obj).__name__
                raise InputError(f"{path}: line {line}, field kind: {kind!r} is not a Queue")
            problems = validate_queue(obj)
            if problems:
                where, _, message = problems[0].partition(": ")
                raise InputError(f"{path}: line {_line_of(obj_node, where)}, field {where}: {message}")
            queues.append(obj)
    if not queues:
        raise InputError(f"{path}: no Queue in the file")
    return queues


def merge(current: Iterable[dict], changes: Iterable[dict]) -> list[dict]:
    """The current Queues with ``changes`` applied: a queue of the same name is replaced, a new one added."""
    by_name = {q["metadata"]["name"]: q for q in current}
    for q in changes:
        by_name[q["metadata"]["name"]] = q
    return list(by_name.values())


# --- the live cluster ---------------------------------------------------------------------------------


@dataclass
class LiveWork:
    """The work of a cluster at ``start`` (epoch seconds): pending as trace items arrived at or before it,
    running as (item with its remaining duration, when it was admitted)."""

    start: float
    pending: list[TraceItem] = field(default_factory=list)
    running: list[tuple[TraceItem, float]] = field(default_factory=list)


def live_work(
    workflows: Iterable[dict],
    streamjobs: Iterable[dict],
    pods: Iterable[dict],
    priorities: Mapping[str, int],
    now: float,
    default_duration: float = DEFAULT_DURATION,
) -> LiveWork:
    """What waits and what runs, from the objects as listed: pending workflow step instances (one
    workload each, a gang as one), waiting stream replicas, and Meson's running pods. Durations are the
    declared ``expectedDurationSeconds`` (running work: what is left of it), else ``default_duration``;
    stream replicas run for the whole replay."""
    from meson import views
    from meson.workflow.pods import LABEL_QUEUE, LABEL_STEP, LABEL_WORKFLOW

    work = LiveWork(start=now)
    steps_of: dict[tuple[str, str], dict[str, dict]] = {}
    for wf in workflows:
        meta, spec = wf.get("metadata") or {}, wf.get("spec") or {}
        steps_of[(meta.get("namespace", ""), meta.get("name", ""))] = {
            s["name"]: s for s in spec.get("steps") or []
        }
    specs = {
        (w.get("metadata", {}).get("namespace"), w.get("metadata", {}).get("name")): w for w in workflows
    }
    jobs = {
        (j.get("metadata", {}).get("namespace"), j.get("metadata", {}).get("name")): j for j in streamjobs
    }
    for row in views.pending_rows(list(specs.values()), list(jobs.values())):
        if row.kind == "Workflow":
            wf = specs[(row.namespace, row.name)]
            step = steps_of[(row.namespace, row.name)].get(row.workload.split("[")[0]) or {}
            template = step.get("template") or {}
            duration = float(step.get("expectedDurationSeconds") or default_duration)
            pod_count, gang = int(step.get("parallelism") or 1), int(step.get("parallelism") or 1) > 1
            created = translate.epoch((wf.get("metadata") or {}).get("creationTimestamp")) or now
        else:
            job = jobs[(row.namespace, row.name)]
            template = (job.get("spec") or {}).get("template") or {}
            duration, pod_count, gang = LONG_RUNNING, 1, False
            created = translate.epoch((job.get("metadata") or {}).get("creationTimestamp")) or now
        workload = Workload(
            key=f"{row.namespace}/{row.name}/{row.workload}",
            queue=row.queue,
            priority=priorities.get(row.priority, priorities.get("", 0)),
            created=created,
            pod_request=Resources(translate.pod_request(template.get("spec") or {})),
            pod_count=pod_count,
            gang=gang,
        )
        for i in range(row.count):  # a compact entry of a big fan-out stands for several instances
            w = workload if row.count == 1 else _renamed(workload, f"{workload.key}#{i}")
            work.pending.append(TraceItem(w, duration))
    for pod in pods:
        meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
        labels = meta.get("labels") or {}
        if (
            LABEL_QUEUE not in labels
            or status.get("phase") not in ("Running", "Pending")
            or not spec.get("nodeName")
        ):
            continue
        started = translate.epoch(status.get("startTime")) or now
        if labels.get(LABEL_WORKFLOW):
            step = steps_of.get((meta.get("namespace", ""), labels[LABEL_WORKFLOW]), {}).get(
                labels.get(LABEL_STEP, ""), {}
            )
            declared = float(step.get("expectedDurationSeconds") or default_duration)
            left = max(1.0, declared - (now - started))
        else:
            left = LONG_RUNNING
        workload = Workload(
            key=f"{meta.get('namespace')}/{meta.get('name')}",
            queue=labels[LABEL_QUEUE],
            priority=int(spec.get("priority") or 0),
            created=started,
            pod_request=Resources(translate.pod_request(spec)),
        )
        work.running.append((TraceItem(workload, left), started))
    return work


def _renamed(w: Workload, key: str) -> Workload:
    return Workload(key, w.queue, w.priority, w.created, w.pod_request, w.pod_count, w.gang)


# --- the replay ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueStats:
    queue: str
    workloads: int  # arrived (running at the start not included)
    admitted: int
    tta_p50: float | None  # seconds from arrival to first admission
    tta_p90: float | None
    utilisation: float | None  # mean usage of its guarantee of `resource` over the replay (1.0 = all)
    borrowed_share: float | None  # share of its usage of `resource` beyond its guarantee
    preemptions: int  # its workloads preempted
    resource: str
    disabled: str = ""  # why the core disables this queue under this set (its work is never admitted)


def _pct(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def replay(
    queue_objects: Sequence[dict],
    trace: Sequence[TraceItem],
    running: Sequence[tuple[TraceItem, float]] = (),
    start: float = -math.inf,
) -> dict[str, QueueStats]:
    """Replay ``trace`` (and ``running`` work from ``start``) under these Queue objects with the core
    the operator runs; the statistics per leaf queue that has work. A trace naming a queue that does not
    exist is refused; a live cluster's work (``start`` given) of such a queue is left out."""
    configs: list[QueueConfig] = [translate.queue_config(q) for q in queue_objects]
    disabled = check_queues(configs).disabled
    by_name = {c.name: c for c in configs}
    unknown = sorted({t.workload.queue for t in trace} - set(by_name))
    if unknown and start == -math.inf:
        raise InputError(f"workloads name queues that do not exist: {', '.join(unknown)}")
    # A live cluster may run pods of a queue deleted since, and hold work for one not created yet: the
    # operator admits neither, so neither is replayed.
    trace = [t for t in trace if t.workload.queue in by_name]
    running = [(t, at) for t, at in running if t.workload.queue in by_name]
    usage: dict[str, dict[str, float]] = {}  # queue -> resource -> integral of usage
    borrowed: dict[str, dict[str, float]] = {}
    last: list[Any] = [None, {}]  # time of the last cycle, usage per queue after it

    def integrate(until: float) -> None:
        t0, current = last
        if t0 is None or until <= t0:
            return
        for q, vec in current.items():
            guaranteed = by_name[q].guaranteed if q in by_name else Resources({})
            for r, v in vec.items():
                usage.setdefault(q, {}).setdefault(r, 0.0)
                usage[q][r] += v * (until - t0)
                over = max(0, v - guaranteed.get(r, 0))
                borrowed.setdefault(q, {}).setdefault(r, 0.0)
                borrowed[q][r] += over * (until - t0)

    def on_cycle(snap: Snapshot, d: Decisions) -> None:
        integrate(snap.now)
        current: dict[str, dict[str, int]] = {}
        pending = {w.key: w for w in snap.pending}
        admitted = [pending[a.key] for a in d.admit if a.key in pending]
        for w in [a.workload for a in snap.admitted] + admitted:
            vec = current.setdefault(w.queue, {})
            for r, v in w.total.items():
                vec[r] = vec.get(r, 0) + v
        last[0], last[1] = snap.now, current

    sim = Simulator(configs, trace, on_cycle=on_cycle, running=running, start=start)
    finite = [t.workload.created + t.duration for t in trace if t.duration < LONG_RUNNING]
    finite += [start + t.duration for t, _ in running if t.duration < LONG_RUNNING]
    # Every finite workload is done by then even one at a time; long-running replicas never are.
    bound = max(finite, default=0.0) + sum(t.duration for t in trace if t.duration < LONG_RUNNING)
    result = sim.run(until=bound)
    origin = start if start > -math.inf else min((t.workload.created for t in trace), default=0.0)
    end = max([r.finished for r in result.records.values() if r.finished is not None] + [origin + 1e-9])
    end = max(end, last[0] or origin)
    arrived = {t.workload.key for t in trace}
    victims: dict[str, int] = {}
    for _, _, victim in result.preemptions:
        q = result.records[victim].queue
        victims[q] = victims.get(q, 0) + 1
    stats: dict[str, QueueStats] = {}
    for q in sorted({t.workload.queue for t in trace} | {t.workload.queue for t, _ in running}):
        recs = [r for k, r in result.records.items() if r.queue == q and k in arrived]
        waits = [r.first_admitted - max(r.arrival, origin) for r in recs if r.first_admitted is not None]
        config = by_name.get(q)
        names = [*config.guaranteed] if config else []
        resource = "cpu" if "cpu" in names else (names[0] if names else "cpu")
        guaranteed = config.guaranteed.get(resource, 0) if config else 0
        used = usage.get(q, {}).get(resource, 0.0)
        horizon = max(end - origin, 1e-9)
        stats[q] = QueueStats(
            queue=q,
            workloads=len(recs),
            admitted=len(waits),
            tta_p50=_pct(waits, 50),
            tta_p90=_pct(waits, 90),
            utilisation=used / (horizon * guaranteed) if guaranteed else None,
            borrowed_share=borrowed.get(q, {}).get(resource, 0.0) / used if used else None,
            preemptions=victims.get(q, 0),
            resource=resource,
            disabled=disabled.get(q, ""),
        )
    return stats


def compare_table(before: Mapping[str, QueueStats], after: Mapping[str, QueueStats] | None) -> Any:
    """Per queue, each figure as ``before → after`` (only before without a change)."""
    from rich.table import Table
    from rich.text import Text

    from meson.views import duration

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.0f}%"

    def cells(s: QueueStats | None) -> list[str]:
        if s is None:
            return ["-"] * 5
        never = "" if s.admitted == s.workloads else f" ({s.workloads - s.admitted} never)"
        return [
            duration(s.tta_p50) + never,
            duration(s.tta_p90),
            pct(s.utilisation),
            pct(s.borrowed_share),
            str(s.preemptions),
        ]

    table = Table(title=None, caption="before → after" if after is not None else None, caption_justify="left")
    for col in ("QUEUE (RESOURCE)", "WORK", "TTA p50", "TTA p90", "UTIL", "BORROWED", "PREEMPTED", "NOTES"):
        table.add_column(col, justify="left" if col in ("QUEUE (RESOURCE)", "NOTES") else "right")
    for q in sorted(set(before) | set(after or {})):
        first = before.get(q) or (after or {}).get(q)
        assert first is not None
        old = cells(before.get(q))
        row = old if after is None else [f"{a} → {b}" for a, b in zip(old, cells(after.get(q)), strict=True)]
        notes = [
            f"{label}disabled: {side[q].disabled}"
            for label, side in (("", before), ("after: ", after or {}))
            if side.get(q) is not None and side[q].disabled
        ]
        table.add_row(f"{q} ({first.resource})", str(first.workloads), *row, Text("; ".join(notes), "red"))
    return table


def as_data(before: Mapping[str, QueueStats], after: Mapping[str, QueueStats] | None) -> dict:
    from dataclasses import asdict

    out: dict[str, Any] = {"before": {q: asdict(s) for q, s in before.items()}}
    if after is not None:
        out["after"] = {q: asdict(s) for q, s in after.items()}
    return out
