"""Revision names, pod names, labels and manifests of stream replicas (pure)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from meson.workflow.pods import LABEL_QUEUE, LABEL_RUN, label_value, pod_request
from meson.workflow.types import InstanceRequest

__all__ = [
    "LABEL_QUEUE",
    "LABEL_REVISION",
    "LABEL_RUN",
    "LABEL_SLOT",
    "LABEL_STREAMJOB",
    "pod_name",
    "replica_request",
    "revision_name",
    "selector",
]

LABEL_STREAMJOB = "meson.dev/streamjob"
LABEL_REVISION = "meson.dev/revision"
LABEL_SLOT = "meson.dev/slot"

MAX_NAME = 63


def revision_name(template: Mapping[str, Any]) -> str:
    """A short stable hash of a pod template: the first 10 hex digits of sha256 of its canonical JSON."""
    text = json.dumps(template, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def pod_name(job: str, revision: str, slot: int, run: int) -> str:
    """``{job}-{revision}-{slot}-{run}``; a long job name is truncated and followed by a stable hash."""
    suffix = f"-{revision}-{slot}-{run}"
    if len(job) + len(suffix) <= MAX_NAME:
        return job + suffix
    digest = hashlib.sha256(job.encode()).hexdigest()[:8]
    keep = MAX_NAME - len(suffix) - len(digest) - 1
    return f"{job[:keep].rstrip('-.')}-{digest}{suffix}"


def selector(job: str) -> str:
    """The label selector of the job's pods, as a string (scale subresource, HPA)."""
    return f"{LABEL_STREAMJOB}={label_value(job)}"


def _manifest(
    name: str, job: str, revision: str, slot: int, run: int, queue: str, template: Mapping[str, Any]
) -> dict[str, Any]:
    meta = template.get("metadata") or {}
    labels = dict(meta.get("labels") or {})
    labels.update(
        {
            LABEL_STREAMJOB: label_value(job),
            LABEL_REVISION: revision,
            LABEL_SLOT: str(slot),
            LABEL_RUN: str(run),
            LABEL_QUEUE: queue,
        }
    )
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if meta.get("annotations"):
        metadata["annotations"] = dict(meta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template.get("spec") or {}}


def finish_spec(spec: Mapping[str, Any], priority_class_name: str | None) -> dict[str, Any]:
    """The pod spec as created: restartPolicy Always unless set, the job's priorityClassName."""
    out = dict(spec)
    out.setdefault("restartPolicy", "Always")
    if priority_class_name:
        out["priorityClassName"] = priority_class_name
    return out


def replica_request(
    *,
    namespace: str,
    job: str,
    revision: str,
    slot: int,
    run: int,
    queue: str,
    template: Mapping[str, Any] | None,
    priority_class_name: str | None,
    created: float,
    current: bool,
    pending: bool,
) -> InstanceRequest:
    """The request of one replica: pending (its manifest in ``pods``), else the admitted pod
    ``pod_name(job, revision, slot, run)`` (``template`` None: its revision is no longer recorded, the
    request is then empty). The key is ``{ns}/{job}/{slot}`` for a pod of the
    current revision, ``{ns}/{job}/{slot}/{revision}`` for an older one still held during a rollout."""
    key = f"{namespace}/{job}/{slot}" if current else f"{namespace}/{job}/{slot}/{revision}"
    pods: tuple[dict[str, Any], ...] = ()
    request: dict[str, int] = {}
    if template is not None:
        spec = finish_spec(template.get("spec") or {}, priority_class_name)
        request = pod_request(spec)
        if pending:
            full = {"metadata": template.get("metadata") or {}, "spec": spec}
            pods = (_manifest(pod_name(job, revision, slot, run), job, revision, slot, run, queue, full),)
    return InstanceRequest(
        key=key,
        instance=str(slot),
        step=revision,
        index=slot,
        run=run,
        attempt=run,
        pod_count=1,
        gang=False,
        pod_request=request,
        created=created + 1e-6 * slot,
        pods=pods,
    )
