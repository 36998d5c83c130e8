"""Turn the pydantic models into CustomResourceDefinitions (apiextensions.k8s.io/v1, structural schemas).

The models are the single source of truth; :func:`build_crds` derives everything else: the OpenAPI v3
schema (refs inlined, Optional unwrapped, CEL rules attached), names, short names, the ``meson`` category,
printer columns and the status and scale subresources.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from typing import Any

from meson.api.common import GROUP, VERSION, ApiModel, x_validation
from meson.api.cronworkflow import CronWorkflow
from meson.api.queue import Queue
from meson.api.streamjob import StreamJob
from meson.api.workflow import Workflow
from meson.api.workflowtemplate import ClusterWorkflowTemplate, WorkflowTemplate

__all__ = ["KINDS", "CrdKind", "build_crd", "build_crds", "crd_filename", "to_structural"]

# JSON-schema keywords the apiextensions v1 schema accepts (besides properties/items/... handled apart).
_KEPT = {
    "type",
    "format",
    "description",
    "enum",
    "maximum",
    "minimum",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxProperties",
    "minProperties",
    "required",
    "nullable",
    "default",
}


@dataclass(frozen=True)
class CrdKind:
    """What a CRD needs besides the schema."""

    model: type[ApiModel]
    plural: str
    short_names: tuple[str, ...]
    scope: str
    printer_columns: tuple[dict[str, Any], ...]
    scale: bool = False
    root_validations: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    #: Names become pod-name prefixes and label values (63 characters at most).
    max_name_length: int | None = None

    @property
    def kind(self) -> str:
        return self.model.__name__

    @property
    def name(self) -> str:
        return f"{self.plural}.{GROUP}"


_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}

KINDS: tuple[CrdKind, ...] = (
    CrdKind(
        model=Queue,
        plural="queues",
        short_names=("mq",),
        scope="Cluster",
        printer_columns=(
            {
                "name": "Pending",
                "type": "integer",
                "jsonPath": ".status.pending",
                "description": "Waiting workloads.",
            },
            {
                "name": "Admitted",
                "type": "integer",
                "jsonPath": ".status.admitted",
                "description": "Admitted workloads.",
            },
            {
                "name": "Weight",
                "type": "integer",
                "jsonPath": ".spec.weight",
                "description": "Fair-share weight.",
            },
            {"name": "Parent", "type": "string", "jsonPath": ".spec.parent", "description": "Parent queue."},
            {
                "name": "Stop",
                "type": "string",
                "jsonPath": ".spec.stopPolicy",
                "priority": 1,
                "description": "Stop policy.",
            },
            _AGE,
        ),
        root_validations=(
            x_validation(
                "!has(self.spec) || !has(self.spec.parent) || self.spec.parent != self.metadata.name",
                "a queue cannot be its own parent",
                field_path=".spec.parent",
            ),
        ),
    ),
    CrdKind(
        model=Workflow,
        plural="workflows",
        short_names=("mwf",),
        scope="Namespaced",
        printer_columns=(
            {
                "name": "Phase",
                "type": "string",
                "jsonPath": ".status.phase",
                "description": "Phase of the run.",
            },
            {"name": "Queue", "type": "string", "jsonPath": ".spec.queue", "description": "Admitting queue."},
            {
                "name": "Priority",
                "type": "string",
                "jsonPath": ".spec.priorityClassName",
                "description": "PriorityClass.",
            },
            {
                "name": "Progress",
                "type": "string",
                "jsonPath": ".status.progress",
                "description": "Finished over all steps.",
            },
            {
                "name": "ETA",
                "type": "string",
                "jsonPath": ".status.eta",
                "description": "Predicted admission of its next pending step.",
            },
            {
                "name": "Message",
                "type": "string",
                "jsonPath": ".status.message",
                "priority": 1,
                "description": "Why the workflow is in this phase.",
            },
            _AGE,
        ),
        max_name_length=63,
    ),
    CrdKind(
        model=CronWorkflow,
        plural="cronworkflows",
        short_names=("mcwf",),
        scope="Namespaced",
        printer_columns=(
            {
                "name": "Schedule",
                "type": "string",
                "jsonPath": ".spec.schedule",
                "description": "Cron schedule.",
            },
            {"name": "TimeZone", "type": "string", "jsonPath": ".spec.timeZone", "description": "Time zone."},
            {"name": "Suspend", "type": "boolean", "jsonPath": ".spec.suspend", "description": "Suspended."},
            {
                "name": "Queue",
                "type": "string",
                "jsonPath": ".spec.workflowTemplate.spec.queue",
                "description": "Admitting queue.",
            },
            {
                "name": "Last Schedule",
                "type": "date",
                "jsonPath": ".status.lastScheduleTime",
                "description": "Last run.",
            },
            _AGE,
        ),
        max_name_length=52,
    ),
    CrdKind(
        model=StreamJob,
        plural="streamjobs",
        short_names=("msj",),
        scope="Namespaced",
        printer_columns=(
            {
                "name": "Phase",
                "type": "string",
                "jsonPath": ".status.phase",
                "description": "Phase of the job.",
            },
            {
                "name": "Replicas",
                "type": "integer",
                "jsonPath": ".spec.replicas",
                "description": "Desired pods (spec.replicas).",
            },
            {
                "name": "Ready",
                "type": "integer",
                "jsonPath": ".status.readyReplicas",
                "description": "Ready pods.",
            },
            {
                "name": "Revision",
                "type": "string",
                "jsonPath": ".status.currentRevision",
                "description": "Current revision.",
            },
            {
                "name": "Updated",
                "type": "integer",
                "jsonPath": ".status.updatedReplicas",
                "description": "Pods of the current revision.",
            },
            {
                "name": "Queue",
                "type": "string",
                "jsonPath": ".spec.queue",
                "priority": 1,
                "description": "Admitting queue.",
            },
            _AGE,
        ),
        scale=True,
    ),
    *(
        CrdKind(
            model=model,
            plural=plural,
            short_names=(short,),
            scope=scope,
            printer_columns=(
                {
                    "name": "Queue",
                    "type": "string",
                    "jsonPath": ".spec.queue",
                    "description": "Admitting queue of the workflows made from it.",
                },
                _AGE,
            ),
        )
        for model, plural, short, scope in (
            (WorkflowTemplate, "workflowtemplates", "mwft", "Namespaced"),
            (ClusterWorkflowTemplate, "clusterworkflowtemplates", "mcwft", "Cluster"),
        )
    ),
)


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline every $ref (models are not recursive)."""
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].split("/")[-1]])
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        node = {**target, **siblings}  # a field's own description/default win over the model's
    return {key: _resolve(value, defs) for key, value in node.items()}


def _unwrap_optional(node: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [X, {type: null}]`` (pydantic's Optional) becomes X, keeping the field's own keywords."""
    options = node.get("anyOf")
    if not options or node.get("x-kubernetes-int-or-string"):
        return node
    rest = [option for option in options if option.get("type") != "null"]
    if len(rest) != len(options) and len(rest) == 1:
        merged = {**rest[0], **{k: v for k, v in node.items() if k != "anyOf"}}
        if "description" in node:
            merged["description"] = node["description"]
        return _unwrap_optional(merged)
    return node


def _clean_description(text: str) -> str:
    """Docstrings and wrapped strings become single-line paragraphs (kubectl explain re-wraps them)."""
    paragraphs = [" ".join(p.split()) for p in inspect.cleandoc(text).split("\n\n")]
    return "\n\n".join(p for p in paragraphs if p)


def to_structural(node: Any) -> Any:
    """Convert one (ref-resolved) pydantic JSON-schema node to a structural OpenAPI v3 schema node."""
    if not isinstance(node, dict):
        return node
    node = _unwrap_optional(node)
    out: dict[str, Any] = {}
    if node.get("x-kubernetes-int-or-string"):
        out["x-kubernetes-int-or-string"] = True
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    elif "anyOf" in node:
        raise ValueError(f"cannot express anyOf in a structural schema: {node}")
    if "const" in node:
        out["type"] = "string" if isinstance(node["const"], str) else node.get("type", "string")
        out["enum"] = [node["const"]]
    for key, value in node.items():
        if key == "description" and isinstance(value, str):
            out[key] = _clean_description(value)
        elif key in _KEPT or (key.startswith("x-kubernetes-") and key != "x-kubernetes-int-or-string"):
            out[key] = copy.deepcopy(value)
    if isinstance(node.get("exclusiveMinimum"), int | float) and not isinstance(
        node["exclusiveMinimum"], bool
    ):
        out["minimum"], out["exclusiveMinimum"] = node["exclusiveMinimum"], True
    if isinstance(node.get("exclusiveMaximum"), int | float) and not isinstance(
        node["exclusiveMaximum"], bool
    ):
        out["maximum"], out["exclusiveMaximum"] = node["exclusiveMaximum"], True
    if "properties" in node:
        out["type"] = "object"
        out["properties"] = {name: to_structural(sub) for name, sub in node["properties"].items()}
    if isinstance(node.get("additionalProperties"), dict):
        out["type"] = "object"
        out["additionalProperties"] = to_structural(node["additionalProperties"])
    if "items" in node and isinstance(node["items"], dict):
        out["items"] = to_structural(node["items"])
        out.setdefault("type", "array")
    if "enum" in out:
        out.setdefault("type", "string")
    # Keywords structural schemas reject or that add nothing.
    if out.get("default") is None or out.get("default") in ([], {}):
        out.pop("default", None)
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "type" not in out and not out.get("x-kubernetes-int-or-string"):
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("type") == "array" and "items" not in out:
        out["items"] = {"x-kubernetes-preserve-unknown-fields": True}
    if out.get("required") == []:
        out.pop("required")
    return out


def _model_schema(model: type[ApiModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return to_structural(_resolve(raw, defs))


def _metadata_schema(spec: CrdKind) -> dict[str, Any]:
    # Only metadata.name and metadata.generateName may be constrained in a CRD schema.
    if spec.max_name_length is None:
        return {"type": "object"}
    return {
        "type": "object",
        "properties": {
            "name": {
                "type": "string",
                "maxLength": spec.max_name_length,
                "description": f"Name of the object, at most {spec.max_name_length} characters.",
            }
        },
    }


def _root_schema(spec: CrdKind) -> dict[str, Any]:
    full = _model_schema(spec.model)
    props = full["properties"]
    status = props["status"]
    # Kopf keeps its own bookkeeping under status; typed fields stay typed, unknown ones are kept.
    status["x-kubernetes-preserve-unknown-fields"] = True
    root: dict[str, Any] = {
        "type": "object",
        "description": full.get("description", ""),
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "APIVersion defines the versioned schema of this representation of an object.",
            },
            "kind": {
                "type": "string",
                "description": "Kind is a string value representing the REST resource this object "
                "represents.",
            },
            "metadata": _metadata_schema(spec),
            "spec": props["spec"],
            "status": status,
        },
        "required": ["spec"],
    }
    if spec.root_validations:
        root["x-kubernetes-validations"] = [dict(rule) for rule in spec.root_validations]
    return root


def build_crd(spec: CrdKind) -> dict[str, Any]:
    """The CustomResourceDefinition manifest of one kind."""
    subresources: dict[str, Any] = {"status": {}}
    if spec.scale:
        subresources["scale"] = {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": spec.name,
            "labels": {"app.kubernetes.io/part-of": "meson"},
            "annotations": {"meson.dev/generated-by": "python -m meson.api.generate (do not edit)"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": spec.kind,
                "listKind": f"{spec.kind}List",
                "plural": spec.plural,
                "singular": spec.kind.lower(),
                "shortNames": list(spec.short_names),
                "categories": ["meson"],
            },
            "scope": spec.scope,
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": _root_schema(spec)},
                    "subresources": subresources,
                    "additionalPrinterColumns": [dict(c) for c in spec.printer_columns],
                }
            ],
        },
    }


def crd_filename(spec: CrdKind) -> str:
    """``meson.dev_workflows.yaml`` (controller-gen's naming)."""
    return f"{GROUP}_{spec.plural}.yaml"


def build_crds() -> dict[str, dict[str, Any]]:
    """Every CRD by file name."""
    return {crd_filename(spec): build_crd(spec) for spec in KINDS}
