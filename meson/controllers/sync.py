"""Semaphores across workflows (``spec.synchronization.semaphore``), derived from the view every cycle.

Level-triggered, so nothing is lost across an operator restart: a workflow *holds* its semaphore from its
first admission until it finishes (it has an instance with a run in its status, a pod, or an admission
recorded before its pods exist); the other unfinished workflows naming it *wait*, ordered by priority
(highest first), then creation time, then name. Each cycle the first ``limit - holders`` waiters may offer
their steps to the queues; the rest are held back before the core with a reason that says where they stand
(it shows in their steps' messages). The limit is the smallest any unfinished workflow of that name declares.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Mapping
from typing import Any

from meson.workflow import parse_time

__all__ = ["Semaphores"]

Key = tuple[str, str]
_FINISHED = ("Succeeded", "Failed")


def _semaphore(wf: Mapping[str, Any]) -> tuple[str, int] | None:
    sem = ((wf.get("spec") or {}).get("synchronization") or {}).get("semaphore")
    if not isinstance(sem, Mapping) or not sem.get("name"):
        return None
    limit = sem.get("limit", 1)
    return str(sem["name"]), limit if isinstance(limit, int) and limit >= 1 else 1


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
    ) -> None:
        """Work out this cycle's holders and waiters of every semaphore (``reserved``: request keys
        ``ns/workflow/instance`` admitted whose pods are not seen yet)."""
        groups: dict[tuple[str, str], list[tuple[Key, Mapping[str, Any], int]]] = defaultdict(list)
        for key, wf in workflows.items():
            spec = wf.get("spec")
            if not spec or "synchronization" not in spec:  # the common case, every cycle: kept cheap
                continue
            sem = _semaphore(wf)
            if sem is None or (wf.get("status") or {}).get("phase") in _FINISHED:
                continue
            groups[(key[0], sem[0])].append((key, wf, sem[1]))
        admitted = {tuple(k.split("/", 2)[:2]) for k in reserved} if groups else set()
        holds: dict[Key, str] = {}
        for (_, name), members in groups.items():
            limit = min(m[2] for m in members)
            holders = sorted(k[1] for k, wf, _ in members if _started(wf) or has_pods(k) or k in admitted)
            waiting = sorted(
                ((k, wf) for k, wf, _ in members if k[1] not in holders),
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
