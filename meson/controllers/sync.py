"""Semaphores across workflows (``spec.synchronization.semaphore``), derived from the view every cycle.

Level-triggered, so nothing is lost across an operator restart: a workflow *holds* its semaphore from its
first admission until it finishes (it has an instance with a run in its status, a pod, or an admission
recorded before its pods exist); the other unfinished workflows naming it *wait*, ordered by priority
(highest first), then creation time, then name. Each cycle the first ``limit - holders`` waiters may offer
their steps to the queues; the rest are held back before the core with a reason that says where they stand
(it shows in their steps' messages). The limit is the smallest any unfinished workflow of that name declares.

A limit may come from a ConfigMap key (``configMapKeyRef``), read from the view each cycle, so a changed value
applies at the next cycle. A workflow whose ConfigMap or key is missing, or whose value is not a positive
integer, is held back (not failed) with that reason, and takes its turn once the ConfigMap is fixed; if it
already holds the semaphore it keeps it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Mapping
from typing import Any

from meson.workflow import parse_time

__all__ = ["ConfigMapData", "Semaphores", "resolve_limit"]

Key = tuple[str, str]
_FINISHED = ("Succeeded", "Failed")


#: What the view keeps of a ConfigMap's data (Store.on_config_map); None: a value too long to be a limit.
ConfigMapData = Mapping[str, str | None]


def resolve_limit(
    sem: Mapping[str, Any], namespace: str, config_maps: Mapping[Key, ConfigMapData]
) -> int | str:
    """A semaphore's limit, or why it cannot be read (its ConfigMap or key is missing, or not a positive
    integer)."""
    ref = sem.get("configMapKeyRef")
    if not isinstance(ref, Mapping):
        limit = sem.get("limit", 1)  # a workflow stored before limits could be omitted was defaulted to 1
        return limit if isinstance(limit, int) and limit >= 1 else 1
    name, key, cm_name = sem.get("name"), ref.get("key"), ref.get("name")
    data = config_maps.get((namespace, str(cm_name)))
    if data is None:
        return f"semaphore {name}: ConfigMap {cm_name} not found (it sets the limit)"
    if key not in data:
        return f"semaphore {name}: ConfigMap {cm_name} has no key {key} (it sets the limit)"
    value = data[key]
    text = (value or "").strip()
    if value is None or not text.isdecimal() or int(text) < 1:
        shown = "too long" if value is None else repr(value)
        return f"semaphore {name}: ConfigMap {cm_name} key {key} is {shown}, not a positive integer"
    return int(text)


def _semaphore(wf: Mapping[str, Any]) -> Mapping[str, Any] | None:
    sem = ((wf.get("spec") or {}).get("synchronization") or {}).get("semaphore")
    return sem if isinstance(sem, Mapping) and sem.get("name") else None


def _started(wf: Mapping[str, Any]) -> bool:
    return any(isinstance(s, Mapping) and s.get("run") for s in (wf.get("status") or {}).get("steps") or [])


class Semaphores:
    def __init__(self) -> None:
        self._holds: dict[Key, str] = {}  # waiting workflow -> why it waits

    def refresh(
        self,
        workflows: Mapping[Key, Mapping[str, Any]],
        has_pods: Callable[[Key], bool],
        reserved: Collection[str],
        priority_of: Callable[[str | None], int],
        config_maps: Mapping[Key, ConfigMapData] | None = None,
    ) -> None:
        """Work out this cycle's holders and waiters of every semaphore (``reserved``: request keys
        ``ns/workflow/instance`` admitted whose pods are not seen yet; ``config_maps``: the data of the
        ConfigMaps by (namespace, name), for limits given by ``configMapKeyRef``)."""
        groups: dict[tuple[str, str], list[tuple[Key, Mapping[str, Any], int | str]]] = defaultdict(list)
        for key, wf in workflows.items():
            spec = wf.get("spec")
            if not spec or "synchronization" not in spec:  # the common case, every cycle: kept cheap
                continue
            sem = _semaphore(wf)
            if sem is None or (wf.get("status") or {}).get("phase") in _FINISHED:
                continue
            limit = resolve_limit(sem, key[0], config_maps or {})
            groups[(key[0], str(sem["name"]))].append((key, wf, limit))
        admitted = {tuple(k.split("/", 2)[:2]) for k in reserved} if groups else set()
        holds: dict[Key, str] = {}
        for (_, name), members in groups.items():
            holders = sorted(k[1] for k, wf, _ in members if _started(wf) or has_pods(k) or k in admitted)
            limits = [m[2] for m in members if isinstance(m[2], int)]
            waiting = []
            for k, wf, limit in members:
                if k[1] in holders:
                    continue
                if isinstance(limit, str):  # its limit cannot be read: held back, not in line
                    holds[k] = limit
                else:
                    waiting.append((k, wf))
            if not waiting:
                continue
            limit = min(limits)  # waiting members all have a limit, so there is one
            waiting.sort(
                key=lambda m: (
                    -priority_of((m[1].get("spec") or {}).get("priorityClassName")),
                    parse_time((m[1].get("metadata") or {}).get("creationTimestamp")) or 0.0,
                    m[0][1],
                ),
            )
            free = limit - len(holders)
            held_by = ", ".join(holders[:3]) + (", ..." if len(holders) > 3 else "")
            for position, (key, _) in enumerate(waiting, 1):
                if position > free:
                    holds[key] = (
                        f"waiting for semaphore {name}: {len(holders)}/{limit} held"
                        + (f" by {held_by}" if holders else "")
                        + f"; {position - max(free, 0)} in line"
                    )
        self._holds = holds

    def hold(self, key: Key) -> str | None:
        """Why the workflow may not offer its steps this cycle (None: it may)."""
        return self._holds.get(key)
