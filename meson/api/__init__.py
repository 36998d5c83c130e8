"""The Meson API (group ``meson.dev``, version ``v1alpha1``): pydantic models, the single source of truth.

The CRDs in ``crds/`` and ``helm/meson/crds/`` are generated from these models by
``python -m meson.api.generate`` (``make crds``). Wire names are camelCase; Python attributes snake_case.
"""

from meson.api.common import (
    API_VERSION,
    GROUP,
    VERSION,
    ApiModel,
    Condition,
    LabelSelector,
    ObjectMeta,
    PodTemplate,
    Quantity,
)
from meson.api.cronworkflow import CronWorkflow, CronWorkflowSpec, CronWorkflowStatus, WorkflowTemplate
from meson.api.queue import (
    AdmissionRate,
    NamespacePolicy,
    PreemptionPolicy,
    Queue,
    QueueSpec,
    QueueStatus,
    ResourceQuota,
)
from meson.api.streamjob import RestartBudget, StreamJob, StreamJobSpec, StreamJobStatus, UpdateStrategy
from meson.api.workflow import (
    Backoff,
    ExitStep,
    Foreach,
    Parameter,
    RetryPolicy,
    Step,
    StepCounts,
    StepStatus,
    Workflow,
    WorkflowSpec,
    WorkflowStatus,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "AdmissionRate",
    "ApiModel",
    "Backoff",
    "Condition",
    "CronWorkflow",
    "CronWorkflowSpec",
    "CronWorkflowStatus",
    "ExitStep",
    "Foreach",
    "LabelSelector",
    "NamespacePolicy",
    "ObjectMeta",
    "Parameter",
    "PodTemplate",
    "PreemptionPolicy",
    "Quantity",
    "Queue",
    "QueueSpec",
    "QueueStatus",
    "ResourceQuota",
    "RestartBudget",
    "RetryPolicy",
    "Step",
    "StepCounts",
    "StepStatus",
    "StreamJob",
    "StreamJobSpec",
    "StreamJobStatus",
    "UpdateStrategy",
    "Workflow",
    "WorkflowSpec",
    "WorkflowStatus",
    "WorkflowTemplate",
]
