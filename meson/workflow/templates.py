"""A Workflow made from a WorkflowTemplate (pure): the template's spec with the Workflow's own choices.

``spec.workflowTemplateRef`` is resolved once, by the controller, which writes the result into the
Workflow's spec (so the run never changes when the template is edited later, and an operator restart finds
it resolved). The Workflow's parameter values win over the template's (by name; a parameter the template
does not declare is kept too), and so does every other field the Workflow sets to something else than its
default (the API server fills in defaults, so a default cannot be told from an explicit one: it leaves the
template's value).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from meson.api.workflow import WorkflowSpec

__all__ = ["resolve_template", "unresolved_ref"]

_DEFAULTS = {
    name: field.get_default()
    for name, field in WorkflowSpec.model_fields.items()
    if not field.is_required() and field.default_factory is None
}
_BY_ALIAS = {field.alias or name: name for name, field in WorkflowSpec.model_fields.items()}


def unresolved_ref(spec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The workflowTemplateRef of a spec not yet made from its template (None: nothing to resolve)."""
    ref = spec.get("workflowTemplateRef")
    return ref if isinstance(ref, Mapping) and not spec.get("steps") else None


def resolve_template(spec: Mapping[str, Any], template: Mapping[str, Any]) -> dict[str, Any]:
    """The Workflow's spec made from ``template`` (a template's spec), as described above."""
    out = copy.deepcopy(dict(template))
    for key, value in spec.items():
        if key in ("parameters", "workflowTemplateRef"):
            continue
        default = _DEFAULTS.get(_BY_ALIAS.get(key, key), object())
        if value is not None and value != default:
            out[key] = copy.deepcopy(value)
    params = [dict(p) for p in out.get("parameters") or []]
    known = {p.get("name"): p for p in params}
    for own in spec.get("parameters") or []:
        mine = known.get(own.get("name"))
        if mine is None:
            params.append(dict(own))
            continue
        for field in ("default", "value", "description"):  # value wins over default
            if own.get(field) is not None:
                mine["value" if field == "default" else field] = own[field]
    if params:
        out["parameters"] = params
    out["workflowTemplateRef"] = dict(spec["workflowTemplateRef"])
    return out
