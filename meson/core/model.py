"""The scheduling core's inputs and outputs, as plain frozen values.

The operator translates Kubernetes objects into these once per cycle (a ``Snapshot``) and applies
the ``Decisions`` that come back. Nothing here refers to Kubernetes: the core can be driven by a
simulator or a test exactly as it is driven by the operator, and the same snapshot always gives
the same decisions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from meson.core.budget import Budget
from meson.core.estimate import DEFAULT_SECONDS
from meson.core.resources import PODS, ZERO, Resources

Strategy = Literal["StrictFIFO", "BestEffortFIFO", "Backfill"]
WithinQueuePreemption = Literal["Never", "LowerPriority"]
StopPolicy = Literal["None", "Hold", "HoldAndDrain"]


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """One node of the queue tree (from the Queue API).

    ``guaranteed`` is capacity this queue can always get back; ``limit`` caps what its whole
    subtree may use including borrowing (``None``: only the ancestors' caps apply). A parent with
    no guarantee of its own is a pure container (like a Kueue cohort): its pool is the sum of its
    children's guarantees. Workloads name leaf queues. ``max_admitted``, ``admission_rate`` and
    ``stop_policy`` on a parent apply to its whole subtree.

    Which resources a quota covers ("a resource not listed is not limited", the Queue API's rule):
    a resource no queue of a tree names is not counted by that tree at all. ``listed`` is what this
    queue lists a quota for (the Queue API's ``quota`` keys, even at 0): ``limit`` caps only those,
    any other resource is capped only by the ancestors. ``listed=None`` (the default for callers
    that build configs directly) means the limit covers every resource the tree names, a missing
    one counting as 0.
    """

    name: str
    parent: str | None = None
    guaranteed: Resources = ZERO
    limit: Resources | None = None
    weight: float = 1.0
    max_admitted: int | None = None
    admission_rate: float | None = None  # pod starts per second; None = unthrottled
    admission_burst: int = 1
    strategy: Strategy = "BestEffortFIFO"
    preempt_within_queue: WithinQueuePreemption = "Never"
    reclaim_borrowed: bool = True
    stop_policy: StopPolicy = "None"
    listed: frozenset[str] | None = None
    # A workload admitted to this queue (or below it) is never a preemption victim before it has run
    # this long (``preemption``).
    min_runtime: float = 0.0
    # Time-window budgets on this queue's subtree (``budget``).
    budgets: tuple[Budget, ...] = ()
    # On a parent: order its children for spare capacity by usage decayed with this half-life
    # (seconds) instead of their usage at this instant (``fairshare``). None: instantaneous DRF.
    fair_half_life: float | None = None

    def __post_init__(self) -> None:
        if self.min_runtime < 0:
            raise ValueError(f"queue {self.name}: min_runtime must not be negative")
        if self.fair_half_life is not None and self.fair_half_life <= 0:
            raise ValueError(f"queue {self.name}: the fair-sharing half-life must be positive")
        if self.listed is not None:  # what has an amount is listed, whatever the caller said
            names = frozenset(self.listed).union(self.guaranteed, self.limit or ())
            object.__setattr__(self, "listed", names)
        if self.limit is not None and not self.guaranteed.fits_in(self.limit):
            raise ValueError(
                f"queue {self.name}: limit {self.limit.describe()} is below its guarantee "
                f"{self.guaranteed.describe()}"
            )
        if self.weight <= 0:
            raise ValueError(f"queue {self.name}: weight must be positive")
        if self.admission_rate is not None and self.admission_rate <= 0:
            raise ValueError(f"queue {self.name}: admission_rate must be positive")
        if self.admission_burst < 1:
            raise ValueError(f"queue {self.name}: admission_burst must be at least 1")

    @property
    def quota_names(self) -> frozenset[str]:
        """The resources this queue names a quota for (its tree counts the union of these)."""
        if self.listed is not None:
            return self.listed
        return frozenset(self.guaranteed).union(self.limit or ())


@dataclass(frozen=True, slots=True)
class Workload:
    """A unit of admission: ``pod_count`` pods each requesting ``pod_request``.

    ``pod_request`` is the pod's *full* request (every resource, whether a quota names it or not):
    node fit uses all of it, quota only what the queue's tree names. It always holds ``pods: 1``
    (added if missing), so a ``pods`` quota and the nodes' allocatable ``pods`` count every pod.

    ``gang`` workloads need every pod to fit on the observed nodes at once; other workloads need at
    least one pod to fit now (their pods are independent, kube-scheduler starts the rest as room
    frees). Quota is always charged for the whole workload.
    """

    key: str
    queue: str
    priority: int
    created: float
    pod_request: Resources
    pod_count: int = 1
    gang: bool = False
    preemptible: bool = True
    # Expected runtime once admitted, in seconds (``estimate``): budgets charge it up front, backfill
    # admits around a reservation only what ends before it.
    estimate: float = DEFAULT_SECONDS
    # Never preempted before it has run this long (the larger of this and its queue's applies).
    min_runtime: float = 0.0
    total: Resources = field(init=False, repr=False, compare=False)
    # Cached ordering key: the core sorts hundreds of thousands of these per pass.
    order_key: tuple[int, float, str] = field(init=False, repr=False, compare=False)
    # What decides whether it fits (everything but identity and priority), interned so equal
    # shapes are the same object and compare by identity in the scheduler's per-cycle caches.
    shape: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.pod_count < 1:
            raise ValueError(f"workload {self.key}: pod_count must be at least 1")
        object.__setattr__(self, "pod_request", _per_pod(self.pod_request))
        object.__setattr__(self, "total", self.pod_request * self.pod_count)
        object.__setattr__(self, "order_key", (-self.priority, self.created, self.key))
        shape = (tuple(sorted(self.pod_request.items())), self.pod_count, self.gang, self.preemptible)
        object.__setattr__(self, "shape", _SHAPES.setdefault(shape, shape))


# Distinct workload shapes and pod requests seen by this process. Real clusters have few
# (workloads come from a handful of templates), so these stay small; they only ever save memory
# and comparisons.
_SHAPES: dict[tuple, tuple] = {}
_REQUESTS: dict[Resources, Resources] = {}


def _per_pod(request: Mapping[str, int]) -> Resources:
    """``request`` with ``pods: 1``, interned. Callers (and the workflow engine) may leave ``pods``
    out; without it a ``pods`` quota would charge nothing and never hold anything back."""
    req = request if isinstance(request, Resources) else Resources(request)
    known = _REQUESTS.get(req)
    if known is None:
        # Names in sorted order: equal requests then read the same whatever order a caller used.
        known = Resources(sorted({**req, PODS: 1}.items()))
        _REQUESTS[req] = known
    return known


@dataclass(frozen=True, slots=True)
class AdmittedWorkload:
    """A workload already admitted (running or starting); quota usage is derived from these."""

    workload: Workload
    admitted_at: float

    @property
    def key(self) -> str:
        return self.workload.key

    @property
    def queue(self) -> str:
        return self.workload.queue

    @property
    def priority(self) -> int:
        return self.workload.priority

    @property
    def total(self) -> Resources:
        return self.workload.total


@dataclass(frozen=True, slots=True)
class NodeCapacity:
    """A schedulable node as observed: ``free`` = allocatable - requests of non-terminal pods."""

    name: str
    allocatable: Resources
    free: Resources


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one scheduling cycle looks at.

    ``nodes=None`` means cluster capacity is not observed (quota-only admission, as in Kueue's
    benchmark); an empty tuple means there are no schedulable nodes, so nothing fits.

    ``queues`` may contain invalid queues (a missing parent, a parent cycle, a limit below the
    guarantees under it): the cycle disables exactly those and the queues below them (see
    ``queuecheck``) and schedules the rest as if they did not exist.
    """

    now: float
    queues: Sequence[QueueConfig]
    pending: Sequence[Workload]
    admitted: Sequence[AdmittedWorkload] = ()
    nodes: Sequence[NodeCapacity] | None = None
    global_rate: float | None = None
    global_burst: int = 1
    # Queues the caller already knows are broken (an object it could not read), with the reason:
    # their workloads and the queues below them are disabled with it, like any invalid queue.
    disabled: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Admission:
    key: str
    queue: str


@dataclass(frozen=True, slots=True)
class Preemption:
    """Evict ``victim_key``. ``preemptor_key`` is None when a queue is draining (HoldAndDrain)."""

    victim_key: str
    preemptor_key: str | None
    reason: str
    # Seconds the victim had run since its admission: the work lost, unless it checkpointed.
    work_lost: float = 0.0


class PendingInfo(NamedTuple):
    """Why a workload is still pending, and where it stands (1 = next in its queue).

    A NamedTuple rather than a frozen dataclass: one is built per pending workload per cycle, and
    this is 2x cheaper to construct. It is just as immutable.
    """

    key: str
    reason: str
    position: int
    never_fits: bool = False


@dataclass(frozen=True, slots=True)
class QueueAccounting:
    """A valid queue after a cycle's admissions and preemptions; a parent counts its whole subtree.

    ``usage`` covers admitted workloads, this cycle's admissions included and its preemption
    victims excluded, in the resources the queue's tree names (what its quota counts).
    ``borrowed`` is the part of ``usage`` above the queue's entitlement (its guarantee, or for a
    parent what its children are guaranteed if that is more; see ``quota``).
    """

    pending: int
    admitted: int
    usage: Resources
    borrowed: Resources


@dataclass(slots=True)
class Decisions:
    admit: list[Admission] = field(default_factory=list)
    preempt: list[Preemption] = field(default_factory=list)
    # Every pending workload's reason and position; a read-only mapping built lazily on access
    # (see ``explain.PendingView``).
    pending: Mapping[str, PendingInfo] = field(default_factory=dict)
    # Earliest time a new cycle could change something without any new event (token refill,
    # a starvation guard kicking in). None: only an event (arrival, exit, config change) can.
    wake_at: float | None = None
    # Every valid queue's accounting, by name (sorted).
    queues: dict[str, QueueAccounting] = field(default_factory=dict)
    # Every disabled queue (invalid, or below an invalid one) with the reason, by name (sorted).
    disabled: dict[str, str] = field(default_factory=dict)
    # Backfill reservations: the blocked head of a Backfill queue -> when it is expected to fit.
    reservations: dict[str, float] = field(default_factory=dict)
    # Time-window budgets after the cycle, by (queue, resource) (see ``budget``).
    budgets: dict[tuple[str, str], BudgetReport] = field(default_factory=dict)
    # Decayed usage (resource-seconds) of the queues whose parent sets a half-life, as of ``now``.
    decayed: dict[str, dict[str, float]] = field(default_factory=dict)
    now: float = 0.0  # the snapshot's time


@dataclass(frozen=True, slots=True)
class BudgetReport:
    """One budget as status shows it: used in the window (resource-seconds) up to ``now``."""

    budget: Budget
    used: float
    window_start: float
    resets_at: float | None
    as_of: float
    buckets: tuple[tuple[float, float], ...] = ()
