"""Building blocks shared by every Meson kind: the base model, quantities, conditions, pod templates."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

from meson.api.quantity import parse_quantity

__all__ = [
    "API_VERSION",
    "DNS_LABEL",
    "GROUP",
    "IDENTIFIER",
    "VERSION",
    "ApiModel",
    "Condition",
    "LabelSelector",
    "LabelSelectorRequirement",
    "ObjectMeta",
    "PodTemplate",
    "PodTemplateMetadata",
    "Quantity",
    "QuantityValue",
    "ResourceList",
    "x_validation",
]

GROUP = "meson.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

#: Names that end up in pod names and labels: RFC 1123 labels.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: Names usable in template placeholders and CEL: ``params.<name>``.
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"


def x_validation(
    rule: str, message: str, *, reason: str | None = None, field_path: str | None = None
) -> dict:
    """One ``x-kubernetes-validations`` entry (a CEL rule evaluated by the API server)."""
    entry: dict[str, Any] = {"rule": rule, "message": message}
    if reason:
        entry["reason"] = reason
    if field_path:
        entry["fieldPath"] = field_path
    return entry


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, snake_case in Python.

    Subclasses may declare ``__x_validations__`` (a list made with :func:`x_validation`); the CRD
    generator attaches them to the model's schema node as ``x-kubernetes-validations``.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        use_attribute_docstrings=False,
        validate_default=False,
    )
    __x_validations__: ClassVar[list[dict]] = []

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = handler(core_schema)
        rules = cls.__dict__.get("__x_validations__")
        if rules:
            target = handler.resolve_ref_schema(schema)
            target["x-kubernetes-validations"] = [dict(rule) for rule in rules]
        return schema

    def to_dict(self) -> dict[str, Any]:
        """The wire form (camelCase, no unset/None fields), ready for a Kubernetes patch or body."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def _check_quantity(value: Any) -> Any:
    parse_quantity(value)
    return value


#: The syntax of a non-negative Kubernetes quantity (resource.Quantity's own pattern, without "-"). An
#: OpenAPI pattern costs nothing against the API server's CEL budget: on Kubernetes 1.33 a CEL quantity
#: rule on every value of a 32-entry quota map is refused as too costly.
QUANTITY_PATTERN = (
    r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)

#: A Kubernetes quantity: an integer or a string such as ``"500m"`` or ``"16Gi"`` (see meson.api.quantity).
Quantity = Annotated[
    int | str,
    BeforeValidator(_check_quantity),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "minimum": 0,
            "pattern": QUANTITY_PATTERN,
            "maxLength": 64,
        }
    ),
]

#: A quantity reported by the controller (status): not validated again by the API server.
QuantityValue = Annotated[
    int | str,
    WithJsonSchema({"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}),
]

ResourceList = Annotated[
    dict[str, Quantity],
    Field(json_schema_extra={"maxProperties": 32}),
]


class Condition(ApiModel):
    """The standard Kubernetes condition (metav1.Condition): one aspect of an object's state."""

    type: str = Field(description="Type of the condition in CamelCase, e.g. Admitted, Valid, Progressing.")
    status: Literal["True", "False", "Unknown"] = Field(description="Status of the condition.")
    reason: str | None = Field(
        default=None, description="Machine-readable CamelCase reason for the last transition."
    )
    message: str | None = Field(default=None, description="Human-readable details about the transition.")
    last_transition_time: str | None = Field(
        default=None, description="When the condition last changed status (RFC 3339)."
    )
    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation the condition was computed from."
    )


class LabelSelectorRequirement(ApiModel):
    """A label selector requirement: a key, an operator and values."""

    key: str = Field(description="The label key the selector applies to.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How the key relates to the values."
    )
    values: list[str] | None = Field(
        default=None, description="Values for In and NotIn; must be empty for Exists and DoesNotExist."
    )


class LabelSelector(ApiModel):
    """A standard Kubernetes label selector; an empty selector matches everything."""

    match_labels: dict[str, str] | None = Field(
        default=None, description="Labels that must all be present with these values."
    )
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None, description="Requirements that must all hold."
    )


class ObjectMeta(ApiModel):
    """The subset of Kubernetes object metadata Meson reads; other fields are kept as they are."""

    model_config = ConfigDict(extra="allow")

    name: str | None = Field(default=None, description="Name of the object.")
    namespace: str | None = Field(default=None, description="Namespace of the object.")
    uid: str | None = Field(default=None, description="UID of the object.")
    generation: int | None = Field(default=None, description="Generation of the spec.")
    labels: dict[str, str] | None = Field(default=None, description="Labels of the object.")
    annotations: dict[str, str] | None = Field(default=None, description="Annotations of the object.")


class PodTemplateMetadata(ApiModel):
    """Labels and annotations copied onto every pod made from the template."""

    labels: dict[str, str] | None = Field(default=None, description="Labels added to the pods.")
    annotations: dict[str, str] | None = Field(default=None, description="Annotations added to the pods.")


_CONTAINER_SCHEMA = {
    "type": "object",
    "description": "A container, exactly as in a Kubernetes pod (core/v1 Container).",
    "x-kubernetes-preserve-unknown-fields": True,
    "required": ["name", "image"],
    "properties": {
        "name": {"type": "string", "description": "Name of the container (an RFC 1123 label)."},
        "image": {"type": "string", "description": "Container image, e.g. ghcr.io/acme/etl:1.4."},
    },
}

POD_SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "The pod spec (core/v1 PodSpec), exactly as in a Kubernetes pod. Kept verbatim by the API server and "
        "validated with the real Kubernetes rules by a server-side dry-run Pod create at admission (and "
        "again by the controller before any pod is created). Strings may contain {{ ... }} placeholders."
    ),
    "x-kubernetes-preserve-unknown-fields": True,
    "required": ["containers"],
    "properties": {
        "containers": {
            "type": "array",
            "minItems": 1,
            "description": "The containers of the pod; at least one.",
            "items": _CONTAINER_SCHEMA,
        },
        "initContainers": {
            "type": "array",
            "description": "Init containers of the pod, as in core/v1 PodSpec.",
            "items": _CONTAINER_SCHEMA,
        },
    },
}


class PodTemplate(ApiModel):
    """A pod template: the real Kubernetes pod spec plus labels and annotations for the pods."""

    metadata: PodTemplateMetadata | None = Field(
        default=None, description="Labels and annotations for the pods made from this template."
    )
    spec: Annotated[dict[str, Any], WithJsonSchema(POD_SPEC_SCHEMA)] = Field(
        description=POD_SPEC_SCHEMA["description"]
    )

    def containers(self) -> list[dict[str, Any]]:
        """The containers of the template (never missing in a valid object)."""
        return list(self.spec.get("containers") or [])
