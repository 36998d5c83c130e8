"""Small builders so tests read like the scenario they describe."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from meson.core import (
    AdmittedWorkload,
    Decisions,
    NodeCapacity,
    QueueConfig,
    Resources,
    Scheduler,
    Snapshot,
    Workload,
)


def cpu(cores: float) -> Resources:
    return Resources(cpu=int(cores * 1000))


def queue(
    name: str, parent: str | None = None, g: float = 0, limit: float | None = None, **kw
) -> QueueConfig:
    lim = None if limit is None else cpu(limit)
    return QueueConfig(name, parent=parent, guaranteed=cpu(g), limit=lim, **kw)


def wl(
    key: str, q: str, cores: float = 1, prio: int = 0, created: float = 0.0, pods: int = 1, **kw
) -> Workload:
    return Workload(key, q, prio, created, cpu(cores), pods, **kw)


def running(w: Workload, at: float = 0.0) -> AdmittedWorkload:
    return AdmittedWorkload(w, at)


def node(name: str, cores: float, free: float | None = None) -> NodeCapacity:
    return NodeCapacity(name, cpu(cores), cpu(cores if free is None else free))


def cycle(
    queues: Sequence[QueueConfig],
    pending: Iterable[Workload],
    admitted: Iterable[AdmittedWorkload] = (),
    now: float = 0.0,
    sched: Scheduler | None = None,
    **kw,
) -> Decisions:
    return (sched or Scheduler()).cycle(Snapshot(now, list(queues), list(pending), list(admitted), **kw))


def admitted_keys(d: Decisions) -> list[str]:
    return [a.key for a in d.admit]
