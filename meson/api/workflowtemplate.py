"""WorkflowTemplate (namespaced) and ClusterWorkflowTemplate: a reusable Workflow spec, instantiated by a
Workflow whose ``spec.workflowTemplateRef`` names it (with its own parameter values)."""

from __future__ import annotations

from pydantic import Field

from meson.api.common import API_VERSION, ApiModel, ObjectMeta
from meson.api.workflow import WorkflowSpec

__all__ = ["ClusterWorkflowTemplate", "TemplateStatus", "WorkflowTemplate"]


class TemplateStatus(ApiModel):
    """Templates have no controller-written state (the status subresource is kept for symmetry)."""

    observed_generation: int | None = Field(default=None, description="Unused: templates are only read.")


class WorkflowTemplate(ApiModel):
    """A WorkflowTemplate is a Workflow spec kept for reuse: a Workflow in the same namespace with
    spec.workflowTemplateRef {name} runs its steps with the Workflow's parameter values."""

    api_version: str = Field(default=API_VERSION, description=API_VERSION)
    kind: str = Field(default="WorkflowTemplate", description="WorkflowTemplate")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard object metadata.")
    spec: WorkflowSpec = Field(description="The Workflow spec each Workflow made from it starts from.")
    status: TemplateStatus | None = Field(default=None, description="Unused.")


class ClusterWorkflowTemplate(ApiModel):
    """A ClusterWorkflowTemplate is a WorkflowTemplate every namespace can use
    (spec.workflowTemplateRef {name, clusterScope: true})."""

    api_version: str = Field(default=API_VERSION, description=API_VERSION)
    kind: str = Field(default="ClusterWorkflowTemplate", description="ClusterWorkflowTemplate")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard object metadata.")
    spec: WorkflowSpec = Field(description="The Workflow spec each Workflow made from it starts from.")
    status: TemplateStatus | None = Field(default=None, description="Unused.")
