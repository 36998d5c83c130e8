"""Pod names, labels, manifests and canonical requests of step instances (pure)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from meson.api.quantity import canonical

__all__ = [
    "LABEL_ATTEMPT",
    "LABEL_INSTANCE",
    "LABEL_QUEUE",
    "LABEL_RUN",
    "LABEL_STEP",
    "LABEL_WORKFLOW",
    "label_value",
    "pod_manifest",
    "pod_name",
    "pod_request",
]

LABEL_WORKFLOW = "meson.dev/workflow"
LABEL_STEP = "meson.dev/step"
LABEL_INSTANCE = "meson.dev/instance"
LABEL_RUN = "meson.dev/run"
LABEL_ATTEMPT = "meson.dev/attempt"
LABEL_QUEUE = "meson.dev/queue"

MAX_NAME = 63


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def pod_name(workflow: str, instance: str, run: int, index: int) -> str:
    """``{workflow}-{instance}-r{run}-{index}``; when over 63 characters the ``workflow-instance`` part is
    truncated and followed by a stable hash of the whole, so names stay unique and deterministic."""
    return bounded_name(f"{workflow}-{instance}", f"-r{run}-{index}")


def bounded_name(prefix: str, suffix: str) -> str:
    """``prefix + suffix``, or within 63 characters: ``prefix`` truncated, then a stable hash of it."""
    if len(prefix) + len(suffix) <= MAX_NAME:
        return prefix + suffix
    digest = _short_hash(prefix)
    keep = MAX_NAME - len(suffix) - len(digest) - 1
    return f"{prefix[:keep].rstrip('-.')}-{digest}{suffix}"


def label_value(value: str) -> str:
    """A label value of at most 63 characters (truncated with a stable hash when longer)."""
    if len(value) <= MAX_NAME:
        return value
    digest = _short_hash(value)
    return f"{value[: MAX_NAME - len(digest) - 1].rstrip('-._')}-{digest}"


def _container_request(container: Mapping[str, Any]) -> dict[str, int]:
    resources = container.get("resources") or {}
    requests = dict(resources.get("requests") or {})
    for name, value in (resources.get("limits") or {}).items():
        requests.setdefault(name, value)  # Kubernetes defaults a missing request to the limit
    return {name: canonical(name, value) for name, value in requests.items()}


def _add(into: dict[str, int], other: Mapping[str, int]) -> None:
    for name, amount in other.items():
        into[name] = into.get(name, 0) + amount


def _max(into: dict[str, int], other: Mapping[str, int]) -> None:
    for name, amount in other.items():
        if amount > into.get(name, 0):
            into[name] = amount


def pod_request(spec: Mapping[str, Any]) -> dict[str, int]:
    """Canonical per-pod request of a (rendered) pod spec, with Kubernetes' rule: the sum of the containers
    (plus restartable init containers, i.e. sidecars), max'ed with each init container (plus the sidecars
    started before it); limits stand in for absent requests; ``spec.overhead`` is added."""
    total: dict[str, int] = {}
    for container in spec.get("containers") or []:
        _add(total, _container_request(container))
    sidecars: dict[str, int] = {}
    peak: dict[str, int] = {}
    for container in spec.get("initContainers") or []:
        request = _container_request(container)
        if container.get("restartPolicy") == "Always":
            _add(sidecars, request)
            _max(peak, sidecars)
        else:
            step = dict(sidecars)
            _add(step, request)
            _max(peak, step)
    _add(total, sidecars)
    _max(total, peak)
    overhead = spec.get("overhead") or {}
    _add(total, {name: canonical(name, value) for name, value in overhead.items()})
    return {name: amount for name, amount in sorted(total.items()) if amount}


def pod_manifest(
    *,
    name: str,
    workflow: str,
    step: str,
    instance: str,
    run: int,
    attempt: int,
    queue: str,
    template: Mapping[str, Any],
    priority_class_name: str | None,
) -> dict[str, Any]:
    """The Pod to create for one member of a run: ``template`` is the rendered pod template (metadata, spec).

    No namespace, ownerReferences or nodeName: the runtime adds the first two; Meson never picks a node.
    """
    meta = template.get("metadata") or {}
    labels = dict(meta.get("labels") or {})
    labels.update(
        {
            LABEL_WORKFLOW: label_value(workflow),
            LABEL_STEP: step,
            LABEL_INSTANCE: instance,
            LABEL_RUN: str(run),
            LABEL_ATTEMPT: str(attempt),
            LABEL_QUEUE: queue,
        }
    )
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if meta.get("annotations"):
        metadata["annotations"] = dict(meta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}


def finish_spec(spec: Mapping[str, Any], priority_class_name: str | None) -> dict[str, Any]:
    """The pod spec as created: restartPolicy Never unless set, the workflow's priorityClassName."""
    out = dict(spec)
    out.setdefault("restartPolicy", "Never")
    if priority_class_name:
        out["priorityClassName"] = priority_class_name
    return out
