"""Cluster capacity awareness: the Mesos-offer analogue.

Quota says what a queue *may* use; the nodes say what can actually run *now*. Admitting work that
cannot be placed would only flood kube-scheduler with unschedulable pods, so each cycle the core
takes the observed free capacity of schedulable nodes and places pods on it (first fit, nodes in
name order) as it admits: a gang needs every pod placed at once, other workloads at least one
(kube-scheduler starts the rest as room frees). This is an estimate of kube-scheduler's placement,
not a replacement for it: taints, affinity and topology stay kube-scheduler's job.

A pod bigger than every node's allocatable, or a gang that could not fit even on an empty cluster,
is reported as never fitting instead of being queued forever. Node fit uses a pod's *whole*
request, including resources no quota names: quota may leave a resource unlimited, nodes never do.
Every pod also takes one of a node's ``pods`` slots; those are checked when the nodes report them
(every Kubernetes node does, 110 by default; simulated nodes may leave them out).
"""

from __future__ import annotations

from collections.abc import Sequence

from meson.core.model import NodeCapacity, Workload
from meson.core.resources import PODS, Resources, total_of


def _pods_fitting(free: dict[str, int] | Resources, req: Resources, want: int) -> int:
    n = want
    for k, v in req.items():
        if v > 0:
            m = free.get(k, 0) // v
            if m < n:
                n = m
                if n <= 0:
                    return 0
    return n


class ClusterCapacity:
    """Per-cycle view of node free capacity; placements made here only live for the cycle."""

    __slots__ = (
        "_alloc",
        "_free",
        "_never",
        "_no_room",
        "_pods",
        "_requests",
        "_skip",
        "observed",
        "total_free",
    )

    def __init__(self, nodes: Sequence[NodeCapacity] | None) -> None:
        self.observed = nodes is not None
        ordered = sorted(nodes or (), key=lambda n: n.name)
        self._alloc: list[Resources] = [n.allocatable for n in ordered]
        self._free: list[dict[str, int]] = [n.free.as_dict() for n in ordered]
        self.total_free: dict[str, int] = total_of(n.free for n in ordered).as_dict()
        self._never: dict[tuple[Resources, int, bool], str | None] = {}
        # Free capacity only shrinks within a cycle, so "does not fit now" stays true: cache it.
        self._no_room: dict[tuple[Resources, int, bool], str] = {}
        # For each pod request, nodes before this index cannot fit even one such pod (for the same
        # reason): first fit can start there.
        self._skip: dict[Resources, int] = {}
        self._pods = any(PODS in n.allocatable for n in ordered)
        self._requests: dict[Resources, Resources] = {}

    def _request(self, w: Workload) -> Resources:
        """What one pod of ``w`` takes from a node (its ``pods`` slot only if nodes report slots)."""
        req = w.pod_request
        if self._pods or PODS not in req:
            return req
        got = self._requests.get(req)
        if got is None:
            got = self._requests[req] = Resources({k: v for k, v in req.items() if k != PODS})
        return got

    def never_fits(self, w: Workload) -> str | None:
        """A reason if ``w`` could not be placed even on an empty cluster, else None."""
        if not self.observed:
            return None
        req = self._request(w)
        key = (req, w.pod_count if w.gang else 1, w.gang)
        if key in self._never:
            return self._never[key]
        want = key[1]
        placed = 0
        for alloc in self._alloc:
            placed += _pods_fitting(alloc, req, want - placed)
            if placed >= want:
                break
        reason: str | None = None
        if placed == 0:
            reason = f"never fits: a pod needs {_per_pod(req)}, more than any node can offer"
        elif placed < want:
            reason = (
                f"never fits: gang of {want} pods needs {_per_pod(req)} each at once, "
                f"the cluster can hold only {placed}"
            )
        self._never[key] = reason
        return reason

    def blocked(self, w: Workload) -> str | None:
        """None if ``w`` can start now, else a reason. Does not change the view."""
        if not self.observed:
            return None
        want = w.pod_count if w.gang else 1
        req = self._request(w)
        key = (req, want, w.gang)
        known = self._no_room.get(key)
        if known is not None:
            return known
        # Cheap reject on the aggregate before walking the nodes.
        if _pods_fitting(self.total_free, req, want) < want:
            reason = self._no_room[key] = self._reason(w, 0, want)
            return reason
        placed = 0
        frees = self._free
        start = self._skip.get(req, 0)
        for i in range(start, len(frees)):
            n = _pods_fitting(frees[i], req, want - placed)
            if n == 0 and i == start:
                start += 1
            placed += n
            if placed >= want:
                break
        self._skip[req] = start
        if placed >= want:
            return None
        reason = self._no_room[key] = self._reason(w, placed, want)
        return reason

    def _reason(self, w: Workload, placed: int, want: int) -> str:
        free = Resources(self.total_free).positive().describe()
        if w.gang and w.pod_count > 1:
            return (
                f"waiting for node capacity: gang of {want} pods needs room for all at once, "
                f"{placed} fit now (cluster free: {free})"
            )
        return (
            f"waiting for node capacity: no node has room for a pod of {_per_pod(w.pod_request)} "
            f"(cluster free: {free})"
        )

    def place(self, w: Workload) -> int:
        """Place as many of ``w``'s pods as fit now (first fit); returns how many were placed."""
        if not self.observed:
            return w.pod_count
        req = self._request(w)
        left = w.pod_count
        frees = self._free
        for i in range(self._skip.get(req, 0), len(frees)):
            free = frees[i]
            n = _pods_fitting(free, req, left)
            if n:
                for k, v in req.items():
                    free[k] = free.get(k, 0) - v * n
                    self.total_free[k] = self.total_free.get(k, 0) - v * n
                left -= n
                if not left:
                    break
        return w.pod_count - left


def _per_pod(req: Resources) -> str:
    """A pod's request for reasons, without its ``pods: 1`` (every pod has that)."""
    return Resources({k: v for k, v in req.items() if k != PODS}).describe()
