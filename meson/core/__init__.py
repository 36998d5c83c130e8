"""Meson's scheduling core: pure admission logic, no Kubernetes.

Inputs and outputs (``meson.core.model``)::

    Snapshot(now, queues=[QueueConfig...], pending=[Workload...], admitted=[AdmittedWorkload...],
             nodes=[NodeCapacity...] | None, global_rate=None, global_burst=1, disabled={name: reason})
    Scheduler().cycle(snapshot) -> Decisions(admit=[Admission(key, queue)],
                                             preempt=[Preemption(victim_key, preemptor_key, reason)],
                                             pending={key: PendingInfo(key, reason, position, never_fits)},
                                             wake_at=float | None,
                                             queues={name: QueueAccounting(pending, admitted, usage,
                                                                           borrowed)},
                                             disabled={name: reason})

Quantities are ``Resources`` (immutable name → int in canonical units: millicores, bytes, counts).
A workload carries its pods' *full* request (``pods: 1`` is added): quota counts only the resources
its queue's tree names, node fit counts everything. ``queues`` may hold invalid queues: each one,
and the queues below it, is disabled with a reason (``check_queues``); nothing else is affected.

Contract with the caller (the operator, or ``simulator``):

* apply ``admit`` (the workloads appear in ``admitted`` of later snapshots);
* apply ``preempt`` (evict; the victims disappear from ``admitted`` later). The preemptor is *not*
  admitted in the same cycle: it waits, with its capacity held, and is admitted first in the first
  cycle whose snapshot no longer contains its victims;
* run a cycle on every relevant event, and also at ``wake_at`` if set (token refill, starvation
  guard), since nothing else would trigger one then.

Modules: ``resources`` (vectors), ``model`` (values), ``queuecheck`` (which queues are valid),
``quota`` (hierarchy, borrowing, limits), ``fairshare`` (weighted DRF), ``ordering`` (priority/FIFO
strategies), ``preemption`` (victims), ``flowcontrol`` (token buckets), ``capacity`` (node fit),
``scheduler`` (the cycle), ``simulator`` (discrete-event driver for tests and benchmarks).
"""

from meson.core.model import (
    Admission,
    AdmittedWorkload,
    Decisions,
    NodeCapacity,
    PendingInfo,
    Preemption,
    QueueAccounting,
    QueueConfig,
    Snapshot,
    Workload,
)
from meson.core.queuecheck import QueueCheck, check_queues, validate_queues
from meson.core.quota import QueueTree
from meson.core.resources import ZERO, Resources
from meson.core.scheduler import Scheduler

__all__ = [
    "ZERO",
    "Admission",
    "AdmittedWorkload",
    "Decisions",
    "NodeCapacity",
    "PendingInfo",
    "Preemption",
    "QueueAccounting",
    "QueueCheck",
    "QueueConfig",
    "QueueTree",
    "Resources",
    "Scheduler",
    "Snapshot",
    "Workload",
    "check_queues",
    "validate_queues",
]
