"""Sub-workflows (pure): a step with ``workflowTemplateRef`` runs a WorkflowTemplate as a child Workflow.

The engine treats the child like the pods of a step: a Pending instance asks for its child of run
``run + 1`` (:attr:`Plan.create_workflows`, named by :func:`child_name`, so a create repeated after a crash
is an AlreadyExists); the child is then observed (:class:`ChildObservation`, read as a pseudo pod by
:func:`as_pod`) and adopted by its labels; its Succeeded is the step's (the step's result is the child's
``status.outputs`` as a JSON object), its Failed is a failed attempt of the step (FailedExit, retried by the
step's retryPolicy with a new child). A child deleted before it finished is a lost attempt (Evicted).
A child the engine would delete (the step stopped by FailFast, Terminate, the workflow timeout) is
terminated instead (``spec.shutdown: Terminate``, :attr:`Plan.shutdown_workflows`), and the parent's Stop
is passed on to its running children. The child's own steps go through the child's queue like any other.

Depth: the child carries its depth (label ``meson.dev/depth``, the top workflow is at 0); a step of a
workflow at :data:`MAX_SUBWORKFLOW_DEPTH` fails instead of creating a child (a template that runs itself,
which the webhook refuses at apply time when it is on).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from meson.api.common import API_VERSION
from meson.api.workflow import MAX_SUBWORKFLOW_DEPTH
from meson.workflow.pods import (
    LABEL_ATTEMPT,
    LABEL_INSTANCE,
    LABEL_RUN,
    LABEL_STEP,
    bounded_name,
    label_value,
)
from meson.workflow.types import ChildObservation, PodObservation

__all__ = [
    "LABEL_DEPTH",
    "LABEL_PARENT",
    "MAX_SUBWORKFLOW_DEPTH",
    "as_pod",
    "child_manifest",
    "child_name",
    "depth_of",
]

#: On a child Workflow: the name of its parent Workflow (same namespace; the ownerReference says which one).
LABEL_PARENT = "meson.dev/parent"
LABEL_DEPTH = "meson.dev/depth"


def child_name(workflow: str, instance: str, run: int) -> str:
    """``{workflow}-{instance}-r{run}``; over 63 characters, truncated with a stable hash (as pod names)."""
    return bounded_name(f"{workflow}-{instance}", f"-r{run}")


def depth_of(meta: Mapping[str, Any]) -> int:
    """A workflow's sub-workflow depth (0: not a child), from its label; never below 0."""
    text = str((meta.get("labels") or {}).get(LABEL_DEPTH) or "0")
    return max(0, int(text)) if text.isdigit() else 0


def child_manifest(
    *,
    name: str,
    parent: str,
    step: str,
    instance: str,
    run: int,
    attempt: int,
    depth: int,
    ref: Mapping[str, Any],
    arguments: list[dict[str, Any]],
) -> dict[str, Any]:
    """The child Workflow: made from its template by the controller like any Workflow with a
    workflowTemplateRef (the arguments are its parameter values). No namespace or ownerReferences."""
    spec: dict[str, Any] = {
        "workflowTemplateRef": {"name": ref["name"], "clusterScope": bool(ref.get("clusterScope"))}
    }
    if arguments:
        spec["parameters"] = arguments
    labels = {
        LABEL_PARENT: label_value(parent),
        LABEL_STEP: step,
        LABEL_INSTANCE: instance,
        LABEL_RUN: str(run),
        LABEL_ATTEMPT: str(attempt),
        LABEL_DEPTH: str(depth),
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "Workflow",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }


def depth_problem(depth: int) -> str | None:
    """Why a workflow at ``depth`` may not create a child (None: it may)."""
    if depth + 1 <= MAX_SUBWORKFLOW_DEPTH:
        return None
    return (
        f"sub-workflow not created: more than {MAX_SUBWORKFLOW_DEPTH} levels of sub-workflows "
        "(does a template run itself?)"
    )


def as_pod(child: ChildObservation) -> PodObservation:
    """The child as the engine's pod observation of its instance and run: alive until it finishes."""
    if child.phase in ("Succeeded", "Failed"):
        phase = child.phase
    elif child.gone:
        phase = "Gone"
    else:
        phase = "Running"
    result = None
    if phase == "Succeeded":
        result = json.dumps(dict(child.outputs or {}), sort_keys=True, separators=(",", ":"))
    return PodObservation(
        name=child.name,
        instance=child.instance,
        run=child.run,
        attempt=child.attempt,
        phase=phase,
        node=None,
        exit_code=None,
        failure="Evicted" if phase == "Gone" else None,
        created=child.created,
        started=child.created,
        finished=child.finished,
        deleting=child.deleting or child.shutdown == "Terminate",
        result=result,
    )


def failure_text(child: ChildObservation | None, name: str) -> str:
    """How a child's attempt failed, for the step's message."""
    if child is None or (child.gone and child.phase != "Failed"):
        return f"sub-workflow {name} deleted"
    return f"sub-workflow {name} failed" + (f": {child.message}" if child.message else "")
