"""CronWorkflow planning (pure): which Workflow to create now, which children to delete, the new status.

* The schedule is read in ``spec.timeZone`` (IANA, UTC when not set) with croniter; daylight-saving gaps and
  repeats are croniter's (a time that does not exist is run at the next existing minute).
* At most ONE missed run is caught up: the latest scheduled time after ``status.lastScheduleTime`` (or the
  creation of the CronWorkflow) that is not after now, like a Kubernetes CronJob. It is skipped when older
  than ``startingDeadlineSeconds``.
* A due run is *handled* once: started, or skipped (Forbid while a child is active, or past the starting
  deadline); either way ``lastScheduleTime`` becomes its time, so nothing is retried later (level-triggered).
* Child names are ``{cron}-{scheduled // 60}``: creating twice is harmless (AlreadyExists), and a child that
  already exists for the due time is never created again.
* Replace deletes the active children and creates the new one in the same plan (delete first).
* History limits keep the newest finished children (by scheduled time) per outcome.
* suspend: nothing is created and ``lastScheduleTime`` does not move, so the latest run missed while
  suspended starts on resume (within the starting deadline); ``nextScheduleTime`` is not shown.
* A template parameter named ``scheduledTime`` gets the run's scheduled time (RFC 3339) as its value.
* Backfill (``spec.backfill``, set by ``meson cron backfill``): the scheduled times of a past range get their
  runs, in order, at most ``parallel`` backfill runs unfinished at once (label ``meson.dev/backfill``), named
  like scheduled runs, so a time that already has a run is skipped. Progress is ``status.backfills`` (a
  cursor: runs of the range deleted later by the history limits are not made again); a range once
  completed is never backfilled again. Backfill runs are not counted by concurrencyPolicy.
"""

from __future__ import annotations

import copy
import itertools
import math
import zoneinfo
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from croniter import croniter

from meson.api.common import API_VERSION
from meson.api.cronworkflow import CronWorkflow
from meson.workflow.engine import parse_time, rfc3339
from meson.workflow.types import WorkflowEvent

__all__ = [
    "LABEL_BACKFILL",
    "LABEL_CRONWORKFLOW",
    "SCHEDULED_TIME_ANNOTATION",
    "ChildWorkflow",
    "CronPlan",
    "CronRun",
    "child_name",
    "plan_cron",
    "schedule_times",
]

LABEL_CRONWORKFLOW = "meson.dev/cronworkflow"
LABEL_BACKFILL = "meson.dev/backfill"
SCHEDULED_TIME_PARAMETER = "scheduledTime"
_BACKFILLS_KEPT = 10
SCHEDULED_TIME_ANNOTATION = "meson.dev/scheduled-time"
_FINISHED = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True, slots=True)
class CronRun:
    name: str
    scheduled: float


@dataclass(frozen=True, slots=True)
class ChildWorkflow:
    """A Workflow created by the CronWorkflow (label meson.dev/cronworkflow), as the runtime lists it."""

    name: str
    scheduled: float  # from the annotation meson.dev/scheduled-time
    phase: str | None  # status.phase
    finished: float | None  # status.finishedAt (epoch), None while not finished
    backfill: bool = False  # created by a backfill (label meson.dev/backfill)


@dataclass(slots=True)
class CronPlan:
    create: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (name, Workflow manifest)
    delete: list[str] = field(default_factory=list)  # child workflow names, deleted before creating
    status: dict[str, Any] = field(default_factory=dict)
    wake_at: float | None = None
    events: list[WorkflowEvent] = field(default_factory=list)
    run: CronRun | None = None  # the run handled by this plan (created or skipped), if any


def child_name(cron: str, scheduled: float) -> str:
    """Deterministic name of the Workflow of the run scheduled at ``scheduled`` (epoch seconds)."""
    return f"{cron}-{int(scheduled) // 60}"


_models: dict[tuple[str, int], CronWorkflow] = {}


def _model(cron: Mapping[str, Any]) -> CronWorkflow:
    meta = cron.get("metadata") or {}
    key = (meta.get("uid"), meta.get("generation"))
    if key[0] and key[1] is not None:
        hit = _models.get(key)  # type: ignore[arg-type]
        if hit is not None:
            return hit
    model = CronWorkflow.model_validate({"metadata": meta, "spec": cron["spec"]})
    if key[0] and key[1] is not None:
        if len(_models) > 4096:
            _models.clear()
        _models[key] = model  # type: ignore[index]
    return model


def _is_finished(child: ChildWorkflow) -> bool:
    return child.phase in _FINISHED or child.finished is not None


def plan_cron(cron: Mapping[str, Any], now: float, children: Sequence[ChildWorkflow]) -> CronPlan:
    """The plan for one CronWorkflow at ``now`` given its existing child Workflows: the schedule's times,
    the decision about the latest one, the history limits, then the status."""
    spec = _model(cron).spec
    meta = cron.get("metadata") or {}
    name = meta.get("name") or "cron"
    old: dict[str, Any] = dict(cron.get("status") or {})
    earliest, latest, following = _schedule_times(spec, meta, old, now)
    result = CronPlan()
    active = sorted(
        (c for c in children if not _is_finished(c) and not c.backfill), key=lambda c: (c.scheduled, c.name)
    )
    last_schedule = old.get("lastScheduleTime")
    if not spec.suspend and latest > earliest:
        last_schedule = rfc3339(latest)
        active = _decide_run(cron, spec, name, latest, now, children, active, result)
    backfills, filling = _backfill(cron, spec, name, old, children, now, result)
    result.delete += _over_history_limits(spec, children, set(result.delete))
    result.status = _status(old, spec, meta, active + filling, last_schedule, children, following)
    if backfills:
        result.status["backfills"] = backfills
    if not spec.suspend:
        result.wake_at = following
    return result


def _schedule_times(spec: Any, meta: Mapping[str, Any], old: Mapping[str, Any], now: float) -> tuple:
    """(the last time already handled, the latest scheduled time at or before now, the next one)."""
    tz = zoneinfo.ZoneInfo(spec.time_zone or "UTC")
    earliest = parse_time(old.get("lastScheduleTime"))
    if earliest is None:
        earliest = parse_time(meta.get("creationTimestamp"))
    if earliest is None:
        earliest = float(math.floor(now))
    at = datetime.fromtimestamp(math.floor(now) + 1, tz)
    latest = croniter(spec.schedule, at).get_prev(datetime).timestamp()
    following = croniter(spec.schedule, datetime.fromtimestamp(math.floor(now), tz)).get_next(datetime)
    return earliest, latest, following.timestamp()


def _decide_run(
    cron: Mapping[str, Any],
    spec: Any,
    name: str,
    latest: float,
    now: float,
    children: Sequence[ChildWorkflow],
    active: list[ChildWorkflow],
    result: CronPlan,
) -> list[ChildWorkflow]:
    """Create, skip or replace for the run scheduled at ``latest``; returns the active children after it."""
    run = CronRun(child_name(name, latest), latest)
    result.run = run
    late = now - latest
    when = rfc3339(latest)
    if any(child.name == run.name for child in children):
        return active  # already created (the status write was lost): nothing to do
    if spec.starting_deadline_seconds is not None and late > spec.starting_deadline_seconds:
        result.events.append(
            WorkflowEvent(
                "Warning",
                "MissedSchedule",
                f"run of {when} skipped: {int(late)}s late, past the starting deadline "
                f"of {spec.starting_deadline_seconds}s",
            )
        )
        return active
    names = ", ".join(c.name for c in active)
    strict = spec.run_strategy is not None and spec.run_strategy.type == "StrictSequential"
    done = sorted((c for c in children if _is_finished(c)), key=lambda c: (c.scheduled, c.name))
    if strict and done and done[-1].phase == "Failed":
        message = f"run of {when} not started: run {done[-1].name} failed (runStrategy StrictSequential)"
        result.events.append(WorkflowEvent("Warning", "SkippedRun", message))
        return active
    if spec.concurrency_policy == "Forbid" and active:
        message = f"run of {when} skipped: {names} still active (concurrencyPolicy Forbid)"
        result.events.append(WorkflowEvent("Normal", "SkippedRun", message))
        return active
    if spec.concurrency_policy == "Replace" and active:
        result.delete.extend(c.name for c in active)
        result.events.append(WorkflowEvent("Normal", "ReplacedRun", f"deleting {names} (Replace)"))
        active = []
    result.create.append((run.name, _manifest(cron, name, latest)))
    result.events.append(WorkflowEvent("Normal", "StartedRun", f"created workflow {run.name} for {when}"))
    return [*active, ChildWorkflow(run.name, latest, None, None)]


def schedule_times(schedule: str, time_zone: str | None, start: float, end: float) -> Iterator[float]:
    """The scheduled times from ``start`` to ``end`` (both inclusive), in order."""
    tz = zoneinfo.ZoneInfo(time_zone or "UTC")
    times = croniter(schedule, datetime.fromtimestamp(start - 1, tz))
    while (t := times.get_next(datetime).timestamp()) <= end:
        yield t


def _backfill(
    cron: Mapping[str, Any],
    spec: Any,
    name: str,
    old: Mapping[str, Any],
    children: Sequence[ChildWorkflow],
    now: float,
    result: CronPlan,
) -> tuple[list[dict[str, Any]], list[ChildWorkflow]]:
    """(status.backfills, the unfinished backfill runs after this plan): the current backfill's next runs,
    created in order while fewer than ``parallel`` are unfinished."""
    history = [dict(b) for b in old.get("backfills") or [] if isinstance(b, Mapping)]
    filling = [c for c in children if c.backfill and not _is_finished(c)]
    wanted = spec.backfill
    if wanted is None or spec.suspend:
        return history, filling
    span = (wanted.from_time, wanted.to_time)
    entry = next((b for b in history if (b.get("from"), b.get("to")) == span), None)
    start, end = parse_time(wanted.from_time), parse_time(wanted.to_time)
    if start is None or end is None:
        return history, filling  # the schema's pattern makes this unreachable
    if entry is None:
        total = sum(
            1 for _ in itertools.islice(schedule_times(spec.schedule, spec.time_zone, start, end), 10**5)
        )
        entry = {"from": span[0], "to": span[1], "total": total, "created": 0, "next": span[0]}
        history = [*history, entry][-_BACKFILLS_KEPT:]
        result.events.append(
            WorkflowEvent(
                "Normal", "BackfillStarted", f"backfill of {total} runs from {span[0]} to {span[1]}"
            )
        )
    cursor = parse_time(entry.get("next"))
    if entry.get("completedAt") or cursor is None:
        return history, filling
    existing = {c.name for c in children}
    slots = wanted.parallel - len(filling)
    next_time: float | None = None
    for t in schedule_times(spec.schedule, spec.time_zone, cursor, end):
        run_name = child_name(name, t)
        if run_name in existing:
            continue  # this time already has a run (scheduled, or an earlier backfill's)
        if slots <= 0:
            next_time = t
            break
        result.create.append((run_name, _manifest(cron, name, t, backfill=True)))
        result.events.append(
            WorkflowEvent("Normal", "BackfillRun", f"created workflow {run_name} for {rfc3339(t)}")
        )
        filling.append(ChildWorkflow(run_name, t, None, None, backfill=True))
        entry["created"] = int(entry.get("created") or 0) + 1
        slots -= 1
    if next_time is None:
        entry.pop("next", None)
        entry["completedAt"] = rfc3339(now)
        text = f"backfill from {span[0]} to {span[1]} done: {entry['created']} runs created"
        result.events.append(WorkflowEvent("Normal", "BackfillCompleted", text))
    else:
        entry["next"] = rfc3339(next_time)
    return history, filling


def _over_history_limits(spec: Any, children: Sequence[ChildWorkflow], deleting: set[str]) -> list[str]:
    """Finished children beyond the history limits, oldest first to go."""
    out: list[str] = []
    for outcome, limit in (
        ("Succeeded", spec.successful_workflows_history_limit),
        ("Failed", spec.failed_workflows_history_limit),
    ):
        done = sorted(
            (
                c
                for c in children
                if _is_finished(c) and (c.phase or "Failed") == outcome and c.name not in deleting
            ),
            key=lambda c: (c.scheduled, c.name),
            reverse=True,
        )
        out += [child.name for child in done[limit:]]
    return out


def _status(
    old: dict[str, Any],
    spec: Any,
    meta: Mapping[str, Any],
    active: list[ChildWorkflow],
    last_schedule: str | None,
    children: Sequence[ChildWorkflow],
    following: float,
) -> dict[str, Any]:
    status = old
    status["active"] = [c.name for c in active]
    if not status["active"]:
        status.pop("active")
    if last_schedule:
        status["lastScheduleTime"] = last_schedule
    succeeded = [c.finished for c in children if c.phase == "Succeeded" and c.finished is not None]
    best = max(succeeded, default=None)
    previous = parse_time(old.get("lastSuccessfulTime"))
    if best is not None and (previous is None or best > previous):
        status["lastSuccessfulTime"] = rfc3339(best)
    if spec.suspend:
        status.pop("nextScheduleTime", None)
    else:
        status["nextScheduleTime"] = rfc3339(following)
    generation = meta.get("generation")
    if generation is not None:
        status["observedGeneration"] = generation
    return status


def _manifest(cron: Mapping[str, Any], name: str, scheduled: float, backfill: bool = False) -> dict[str, Any]:
    template = (cron.get("spec") or {}).get("workflowTemplate") or {}
    tmeta = template.get("metadata") or {}
    labels = {**(tmeta.get("labels") or {}), LABEL_CRONWORKFLOW: name}
    if backfill:
        labels[LABEL_BACKFILL] = "true"
    annotations = {**(tmeta.get("annotations") or {}), SCHEDULED_TIME_ANNOTATION: rfc3339(scheduled)}
    spec = copy.deepcopy(template.get("spec") or {})
    for parameter in spec.get("parameters") or []:
        if parameter.get("name") == SCHEDULED_TIME_PARAMETER:
            parameter["value"] = rfc3339(scheduled)
    strategy = (cron.get("spec") or {}).get("runStrategy")
    if strategy:  # runs queue behind each other on the cron's own semaphore
        limit = int(strategy.get("limit", 1)) if strategy.get("type") == "Parallel" else 1
        spec["synchronization"] = {"semaphore": {"name": f"cron-{name}", "limit": limit}}
    return {
        "apiVersion": API_VERSION,
        "kind": "Workflow",
        "metadata": {"name": child_name(name, scheduled), "labels": labels, "annotations": annotations},
        "spec": spec,
    }
