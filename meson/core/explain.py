"""Explainability: a reason and a queue position for every pending workload.

Deciding is cheap; explaining 100k pending workloads every cycle is not (it is most of a pass).
So the scheduler records *why* compactly while it decides (a note per examined workload, a reason
per failed workload shape, and where each queue stopped and why) and ``PendingView`` turns that
into ``PendingInfo`` objects when they are read, one queue at a time. It is a read-only
``Mapping[str, PendingInfo]``: iterate it, index it, or call ``dict()`` on it.

Reasons are written for a person reading ``kubectl describe``: "needs cpu 4, queue team-a has 2 free
of limit 20", "throttled: queue team-a admission rate 50/s", "behind 17 higher-priority workloads
in queue team-a; first blocked: ...".
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from meson.core.model import PendingInfo, Workload
from meson.core.ordering import QueueCursor


def behind_reason(ahead: int, higher: int, queue: str, head_reason: str) -> str:
    """Reason for a workload that was not examined because its queue stopped in front of it."""
    s = "s" if ahead != 1 else ""
    who = f"{ahead} higher-priority workload{s}" if higher == ahead else f"{ahead} workload{s}"
    return f"behind {who} in queue {queue}; first blocked: {head_reason}"


class PendingView(Mapping[str, PendingInfo]):
    """Lazily materialised ``key -> PendingInfo`` for one cycle's pending workloads."""

    __slots__ = ("_admitted", "_cursors", "_done", "_fixed", "_notes", "_owner", "_size", "_stop_all")

    def __init__(
        self,
        fixed: dict[str, PendingInfo],
        cursors: dict[str, QueueCursor],
        owner: Mapping[str, Workload],
        notes: dict[str, tuple[str, bool]],
        admitted: set[str],
        stop_all: str,
    ) -> None:
        self._fixed = fixed
        self._cursors = cursors
        self._owner = owner  # key -> workload, for every pending workload in a leaf queue
        self._notes = notes
        self._admitted = admitted
        self._stop_all = stop_all
        self._done: dict[str, dict[str, PendingInfo]] = {}
        self._size = len(fixed) + sum(len(c.items) for c in cursors.values()) - len(admitted)

    def _leaf(self, leaf: str) -> dict[str, PendingInfo]:
        out = self._done.get(leaf)
        if out is not None:
            return out
        out = self._done[leaf] = {}
        cur = self._cursors[leaf]
        notes_get = self._notes.get
        failed_get = cur.failed.get
        admitted = self._admitted
        position = 0
        higher = 0  # pending workloads ahead with strictly higher priority
        same = 0
        last_prio: int | None = None
        for i, w in enumerate(cur.items):
            key = w.key
            if key in admitted:
                continue
            position += 1
            if w.priority != last_prio:
                higher += same
                same = 0
                last_prio = w.priority
            same += 1
            note = notes_get(key)
            if note is None and i < cur.idx:
                note = failed_get(w.shape)
            if note is not None:
                out[key] = PendingInfo(key, note[0], position, note[1])
                continue
            if cur.stopped:
                reason = (
                    cur.stop_reason
                    if not cur.stop_is_behind
                    else behind_reason(position - 1, higher, leaf, cur.stop_reason)
                )
            elif self._stop_all:
                reason = self._stop_all
            else:
                reason = failed_get(w.shape, ("not examined this cycle", False))[0]
            out[key] = PendingInfo(key, reason, position)
        return out

    def __getitem__(self, key: str) -> PendingInfo:
        info = self._fixed.get(key)
        if info is not None:
            return info
        w = self._owner.get(key)
        if w is None or key in self._admitted:
            raise KeyError(key)
        return self._leaf(w.queue)[key]

    def __contains__(self, key: object) -> bool:
        return key in self._fixed or (key in self._owner and key not in self._admitted)

    def __iter__(self) -> Iterator[str]:
        yield from self._fixed
        for leaf in self._cursors:
            yield from self._leaf(leaf)

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"PendingView({len(self)} pending)"
