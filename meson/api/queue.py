"""Queue: the cluster-scoped unit of flow control (quotas, borrowing, fair share, admission rate)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from meson.api.common import (
    API_VERSION,
    DNS_LABEL,
    ApiModel,
    Condition,
    LabelSelector,
    ObjectMeta,
    Quantity,
    QuantityValue,
)
from meson.api.quantity import canonical, parse_quantity

__all__ = [
    "AdmissionRate",
    "NamespacePolicy",
    "PreemptionPolicy",
    "Queue",
    "QueueSpec",
    "QueueStatus",
    "ResourceQuota",
]

QueueingStrategy = Literal["StrictFIFO", "BestEffortFIFO"]
StopPolicy = Literal["None", "Hold", "HoldAndDrain"]


class ResourceQuota(ApiModel):
    """The quota of one resource: an amount guaranteed to the queue and a limit it may reach by borrowing."""

    guaranteed: Quantity = Field(
        default=0,
        description=(
            "Amount reserved for this queue's workloads (cpu in cores or millicores such as 500m, memory in "
            "bytes such as 64Gi, counts for pods and extended resources such as nvidia.com/gpu)."
        ),
    )
    limit: Quantity | None = Field(
        default=None,
        description=(
            "Most this queue may use by borrowing what its siblings leave unused. Defaults to guaranteed "
            "(no borrowing). Always capped by the parent queue's limit."
        ),
    )

    # Checked here (webhook and controller), not in CEL: quantity() on each value of the quota map is over
    # the API server's CEL cost budget on Kubernetes 1.33.
    @model_validator(mode="after")
    def _guaranteed_within_limit(self) -> ResourceQuota:
        if self.limit is not None and parse_quantity(self.guaranteed) > parse_quantity(self.limit):
            raise PydanticCustomError(
                "guaranteed_above_limit",
                "guaranteed ({guaranteed}) must be less than or equal to limit ({limit})",
                {"guaranteed": self.guaranteed, "limit": self.limit},
            )
        return self

    def guaranteed_amount(self, resource: str) -> int:
        """Canonical integer of the guaranteed amount (see :func:`meson.api.quantity.canonical`)."""
        return canonical(resource, self.guaranteed)

    def limit_amount(self, resource: str) -> int:
        """Canonical integer of the limit (the guaranteed amount when no limit is set)."""
        return canonical(resource, self.limit if self.limit is not None else self.guaranteed)


class AdmissionRate(ApiModel):
    """A token bucket on pod starts that protects the cluster from thundering herds."""

    pods_per_second: float = Field(gt=0, le=10000, description="Sustained rate of pods admitted per second.")
    burst: int = Field(
        default=1, ge=1, le=100000, description="Pods that may be admitted at once above the rate."
    )


class PreemptionPolicy(ApiModel):
    """When admitted workloads may be preempted to make room for others."""

    within_queue: Literal["Never", "LowerPriority"] = Field(
        default="Never",
        description="Never: no preemption inside the queue. LowerPriority: a pending workload may preempt "
        "lower-priority admitted workloads of the same queue.",
    )
    reclaim_borrowed: bool = Field(
        default=False,
        description="Whether this queue may preempt workloads of sibling queues that borrowed its guaranteed "
        "capacity, to get that capacity back.",
    )


class NamespacePolicy(ApiModel):
    """Which namespaces may submit workloads to the queue: the union of names and selector."""

    names: list[str] | None = Field(
        default=None,
        description="Namespaces allowed by name.",
        json_schema_extra={"maxItems": 256, "x-kubernetes-list-type": "set"},
    )
    selector: LabelSelector | None = Field(
        default=None,
        description="Namespaces allowed by label; an empty selector ({}) allows every namespace.",
    )


class QueueSpec(ApiModel):
    """The desired configuration of a queue."""

    parent: str | None = Field(
        default=None,
        max_length=63,
        pattern=DNS_LABEL,
        description="Name of the parent queue. Children borrow what their siblings leave unused, and the "
        "parent's limits cap the children's total.",
    )
    quota: dict[str, ResourceQuota] | None = Field(
        default=None,
        description="Per-resource quota, keyed by resource name: cpu, memory, pods, nvidia.com/gpu or any "
        "extended resource. A resource not listed is not limited by this queue.",
        json_schema_extra={"maxProperties": 32},
    )
    weight: int = Field(
        default=1,
        ge=0,
        le=10000,
        description="Fair-share weight: unused capacity is lent to sibling queues in proportion to weight. "
        "0 means the queue only borrows after every weighted sibling is satisfied.",
    )
    max_admitted: int | None = Field(
        default=None, ge=1, description="Cap on the number of workloads admitted (running) at the same time."
    )
    admission_rate: AdmissionRate | None = Field(
        default=None, description="Rate limit on pods started for this queue. Unlimited when not set."
    )
    queueing_strategy: QueueingStrategy = Field(
        default="BestEffortFIFO",
        description="StrictFIFO: the head workload blocks the ones behind it until it fits. BestEffortFIFO: "
        "workloads that do not fit are skipped so smaller ones behind them can start (within priority).",
    )
    preemption: PreemptionPolicy | None = Field(
        default=None, description="Preemption policy. No preemption when not set."
    )
    namespaces: NamespacePolicy | None = Field(
        default=None, description="Namespaces that may submit to this queue. Every namespace when not set."
    )
    stop_policy: StopPolicy = Field(
        default="None",
        description="None: admit normally. Hold: admit nothing new, let admitted workloads finish. "
        "HoldAndDrain: admit nothing new and evict admitted workloads.",
    )

    def guaranteed(self) -> dict[str, int]:
        """Canonical guaranteed amounts per resource (cpu millicores, bytes, counts)."""
        return {name: q.guaranteed_amount(name) for name, q in (self.quota or {}).items()}

    def limit(self) -> dict[str, int]:
        """Canonical limits per resource (guaranteed when no limit is set)."""
        return {name: q.limit_amount(name) for name, q in (self.quota or {}).items()}


class QueueStatus(ApiModel):
    """The observed state of a queue, written by the Meson controller."""

    pending: int | None = Field(default=None, description="Workloads waiting for admission.")
    admitted: int | None = Field(default=None, description="Workloads admitted and not finished.")
    usage: dict[str, QuantityValue] | None = Field(
        default=None, description="Resources used by admitted workloads, per resource."
    )
    borrowed: dict[str, QuantityValue] | None = Field(
        default=None, description="Part of the usage above guaranteed, borrowed from sibling queues."
    )
    conditions: list[Condition] | None = Field(
        default=None,
        description="Conditions of the queue (Active, Valid).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation the controller last acted on."
    )


class Queue(ApiModel):
    """A Queue is the cluster-scoped unit of flow control: quotas per resource, borrowing between sibling
    queues under a parent, fair-share weight, a cap on admitted workloads, an admission rate, the queueing
    and preemption strategies, the namespaces allowed to submit, and a stop policy."""

    api_version: str = Field(default=API_VERSION, description=API_VERSION)
    kind: str = Field(default="Queue", description="Queue")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard object metadata.")
    spec: QueueSpec = Field(default_factory=QueueSpec, description="Desired configuration of the queue.")
    status: QueueStatus | None = Field(default=None, description="Observed state of the queue.")
