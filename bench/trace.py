"""Pure workload definitions for `make bench` (no cluster): Kueue's baseline trace and the workflow shapes.

The Kueue trace is the one `bench.core` models (its generator config rebuilt in
:func:`bench.core.kueue_baseline`); here it is turned into timed arrivals that can be created on a real API
server, either as single-step Workflows (Meson) or as the same pods directly (raw).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.core import BASELINE_CLASSES, CPU, kueue_baseline

SIM_DURATION = "sim.meson.dev/duration"
LABEL_QUEUE = "bench.meson.dev/queue"
LABEL_CLASS = "bench.meson.dev/class"
LABEL_ITEM = "bench.meson.dev/item"


@dataclass(frozen=True)
class Arrival:
    """One workload of the trace: created at ``at`` seconds after the start, runs ``runtime`` seconds."""

    name: str  # a DNS label, unique in the trace (cq-0-1-small-12)
    queue: str
    cohort: str
    cls: str
    at: float
    runtime: float
    priority: int
    cpu_m: int


@dataclass(frozen=True)
class QueueDef:
    name: str
    parent: str | None = None
    guaranteed_m: int | None = None
    limit_m: int | None = None


def scaled(count: int, scale: float) -> int:
    """A count scaled down (never below 1)."""
    return max(1, math.ceil(count * scale))


def kueue_trace(scale: float = 1.0) -> tuple[list[QueueDef], list[Arrival]]:
    """Kueue's baseline (5 cohorts x 6 queues, 500 workloads per queue), each class's count scaled.

    Scaling keeps the queues, quotas, rates and runtimes, and keeps the first ``ceil(count * scale)``
    workloads of every class in every queue (so the arrival period shrinks with the scale).
    """
    queues, trace = kueue_baseline()
    keep = {cls: scaled(count, scale) for cls, count, *_ in BASELINE_CLASSES}
    defs = [
        QueueDef(
            q.name,
            q.parent,
            q.guaranteed.get("cpu") if q.parent else None,
            q.limit.get("cpu") if q.parent and q.limit is not None else None,
        )
        for q in queues
    ]
    parent = {q.name: q.parent for q in queues}
    out: list[Arrival] = []
    for item in trace:
        w = item.workload
        queue, rest = w.key.split("/")
        cls, idx = rest.rsplit("-", 1)
        if int(idx) >= keep[cls]:
            continue
        out.append(
            Arrival(
                name=f"{queue}-{cls}-{idx}",
                queue=queue,
                cohort=parent[queue] or queue,
                cls=cls,
                at=w.created,
                runtime=item.duration,
                priority=w.priority,
                cpu_m=w.total["cpu"],
            )
        )
    out.sort(key=lambda a: (a.at, a.name))
    return defs, out


def floor_seconds(arrivals: list[Arrival], capacity_m: int) -> float:
    """Makespan floor: max(total work / capacity, last arrival + its runtime)."""
    work = sum(a.runtime * a.cpu_m for a in arrivals) / capacity_m
    return max(work, max((a.at + a.runtime for a in arrivals), default=0.0))


def duration(seconds: float) -> str:
    """A Go duration for kwok's stage delay ("200ms")."""
    return f"{round(seconds * 1000)}ms"


def pod_template(*, cpu_m: int, runtime: float | None, labels: dict[str, str] | None = None) -> dict:
    """The pod template of a bench step; ``runtime=None`` keeps the pod running."""
    annotations = (
        {SIM_DURATION: duration(runtime)} if runtime is not None else {"sim.meson.dev/keep-running": "true"}
    )
    return {
        "metadata": {"labels": dict(labels or {}), "annotations": annotations},
        "spec": {
            "containers": [
                {"name": "c", "image": "busybox", "resources": {"requests": {"cpu": f"{cpu_m}m"}}}
            ],
            "terminationGracePeriodSeconds": 0,
        },
    }


def fan_steps(width: int, runtime: float, cpu_m: int) -> list[dict]:
    """A fan-out/fan-in DAG of ``width + 2`` pods: start -> a foreach over ``width`` items -> join."""
    tpl = pod_template(cpu_m=cpu_m, runtime=runtime)
    return [
        {"name": "start", "template": tpl},
        {"name": "fan", "dependencies": ["start"], "foreach": {"items": list(range(width))}, "template": tpl},
        {"name": "join", "dependencies": ["fan"], "template": tpl},
    ]


def instances(step: dict) -> list[str]:
    """The pods a step runs, by suffix: its name, or name-i for each foreach item."""
    items = (step.get("foreach") or {}).get("items")
    return [step["name"]] if items is None else [f"{step['name']}-{i}" for i in range(len(items))]


def dag_levels(steps: list[dict]) -> list[list[str]]:
    """Steps grouped by depth (each level depends only on earlier ones): what a raw client must sequence."""
    depth: dict[str, int] = {}
    by_name = {s["name"]: s for s in steps}

    def d(name: str) -> int:
        if name not in depth:
            deps = by_name[name].get("dependencies") or []
            depth[name] = 1 + max((d(x) for x in deps), default=-1)
        return depth[name]

    levels: dict[int, list[str]] = {}
    for s in steps:
        levels.setdefault(d(s["name"]), []).append(s["name"])
    return [levels[k] for k in sorted(levels)]


CAPACITY_M = 600 * CPU  # the trace's quota total: 5 cohorts x 6 queues x 20 cores
