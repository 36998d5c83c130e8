"""Queue: the cluster-scoped unit of flow control (quotas, borrowing, fair share, admission rate)."""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
    x_validation,
)
from meson.api.quantity import canonical, parse_quantity

__all__ = [
    "AdmissionRate",
    "Budget",
    "BudgetStatus",
    "FairSharing",
    "NamespacePolicy",
    "PreemptionPolicy",
    "Queue",
    "QueueSpec",
    "QueueStatus",
    "ResourceQuota",
]

QueueingStrategy = Literal["StrictFIFO", "BestEffortFIFO", "Backfill"]
#: A resource name: cpu, memory, nvidia.com/gpu (an optional DNS prefix and a name).
RESOURCE_NAME = r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
YEAR_SECONDS = 31536000
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
    min_runtime_seconds: int | None = Field(
        default=None,
        ge=0,
        le=YEAR_SECONDS,
        description="A workload of this queue (or of a queue below it) is never preempted before it has run "
        "this long, whoever asks; the preemptor waits. A victim's pods get their termination grace period.",
    )


class Budget(ApiModel):
    """A time-window budget: how much of one resource the queue's subtree may use per window."""

    __x_validations__ = [
        x_validation(
            "self.window != 'Sliding' || has(self.slidingWindowSeconds)",
            "a Sliding window needs slidingWindowSeconds",
            field_path=".slidingWindowSeconds",
        )
    ]

    resource: str = Field(
        max_length=253,
        pattern=RESOURCE_NAME,
        description="The resource: cpu, memory, nvidia.com/gpu or any extended resource.",
    )
    resource_hours: float = Field(
        ge=0,
        le=1e12,
        description="Resource-hours allowed per window, counted from admission to the end of each pod: "
        "GPU-hours for nvidia.com/gpu (1 GPU for 1 hour), core-hours for cpu, GiB-hours for memory.",
    )
    window: Literal["Day", "Week", "Sliding"] = Field(
        default="Week",
        description="Day or Week: calendar windows in timeZone (a week starts on Monday 00:00). Sliding: the "
        "last slidingWindowSeconds.",
    )
    time_zone: str = Field(
        default="UTC",
        max_length=64,
        pattern=r"^[A-Za-z0-9_+\-/]+$",
        description="IANA time zone of the calendar window, e.g. Europe/Paris.",
    )
    sliding_window_seconds: int | None = Field(
        default=None, ge=1, le=YEAR_SECONDS, description="Length of a Sliding window, in seconds."
    )
    on_exhausted: Literal["Wait", "Evict"] = Field(
        default="Wait",
        description="Wait: new workloads wait for the next window and running ones finish. Evict: running "
        "workloads using the resource are also preempted once the budget is used up.",
    )

    # Checked here (webhook and controller): the API server cannot look up time zones.
    @model_validator(mode="after")
    def _known_time_zone(self) -> Budget:
        if self.window == "Sliding" and self.sliding_window_seconds is None:
            raise PydanticCustomError("sliding_without_length", "a Sliding window needs slidingWindowSeconds")
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise PydanticCustomError(
                "unknown_time_zone",
                "unknown time zone {zone}: use an IANA name such as Europe/Paris or UTC",
                {"zone": self.time_zone},
            ) from None
        return self


class FairSharing(ApiModel):
    """How this queue's children share what their guarantees leave over."""

    half_life_seconds: int = Field(
        ge=1,
        le=YEAR_SECONDS,
        description="Order the children by their usage decayed with this half-life (a child that used a lot "
        "recently yields to the others) instead of their usage at this instant.",
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
        "workloads that do not fit are skipped so smaller ones behind them can start (within priority). "
        "Backfill: the head that does not fit reserves quota at its earliest feasible time (by running "
        "work's runtime estimates); the ones behind it start only if they end before then or leave it room.",
    )
    budgets: list[Budget] | None = Field(
        default=None,
        description="Time-window budgets on this queue's subtree, at most one per resource.",
        json_schema_extra={
            "maxItems": 8,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["resource"],
        },
    )
    fair_sharing: FairSharing | None = Field(
        default=None,
        description="On a parent: order its children by decayed usage (a half-life). Instantaneous weighted "
        "DRF when not set.",
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


class BudgetBucket(ApiModel):
    """Use of a Sliding budget in one slice of its window."""

    start: float = Field(description="Start of the slice (Unix seconds).")
    resource_seconds: float = Field(description="Use in the slice, in resource-seconds (canonical units).")


class BudgetStatus(ApiModel):
    """One budget's use, as the controller accounts it."""

    resource: str = Field(description="The budgeted resource.")
    window: str | None = Field(default=None, description="Day, Week or Sliding.")
    window_start: str | None = Field(default=None, description="Start of the current window (RFC 3339).")
    resets_at: str | None = Field(default=None, description="When a calendar window resets (RFC 3339).")
    used_resource_hours: str | None = Field(default=None, description="Resource-hours used in the window.")
    limit_resource_hours: str | None = Field(default=None, description="Resource-hours allowed per window.")
    used_resource_seconds: float | None = Field(
        default=None,
        description="Exact use in the window, in resource-seconds (what a restart resumes from).",
    )
    as_of: float | None = Field(default=None, description="Time the use is accounted up to (Unix seconds).")
    buckets: list[BudgetBucket] | None = Field(
        default=None, description="A Sliding window's use per slice.", json_schema_extra={"maxItems": 25}
    )


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
    decayed_usage: dict[str, float] | None = Field(
        default=None,
        description="Under a parent with fairSharing: usage decayed with its half-life, per resource, in "
        "resource-seconds (canonical units), as of decayedAsOf (a restarted operator resumes from it).",
    )
    decayed_as_of: float | None = Field(
        default=None, description="When decayedUsage was taken (Unix seconds)."
    )
    budgets: list[BudgetStatus] | None = Field(
        default=None,
        description="Each budget's use in its current window (persisted: a restarted operator resumes "
        "from it).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["resource"]},
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
