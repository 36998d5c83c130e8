"""Prometheus metrics served on /metrics. Names follow the Prometheus conventions (meson_ prefix)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

PENDING = Gauge("meson_queue_pending_workloads", "Workloads waiting for admission", ["queue"])
ADMITTED = Gauge("meson_queue_admitted_workloads", "Workloads admitted and not finished", ["queue"])
ADMISSIONS = Counter("meson_admissions_total", "Workloads admitted", ["queue"])
ADMISSION_WAIT = Histogram(
    "meson_admission_wait_seconds",
    "Time from a workload becoming ready to its admission",
    ["queue"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
PREEMPTIONS = Counter("meson_preemptions_total", "Workloads preempted by Meson", ["queue"])
PREEMPTION_WORK_LOST = Counter(
    "meson_preemption_work_lost_seconds_total",
    "Seconds preempted workloads had run since admission (work lost unless checkpointed)",
    ["queue"],
)
BUDGET_USED = Gauge(
    "meson_queue_budget_used_resource_hours",
    "Resource-hours a queue's budget has used in its current window",
    ["queue", "resource"],
)
BUDGET_LIMIT = Gauge(
    "meson_queue_budget_limit_resource_hours",
    "Resource-hours a queue's budget allows per window",
    ["queue", "resource"],
)
STATUS_WRITES_SUPERSEDED = Counter(
    "meson_status_writes_superseded_total",
    "Workflow status writes that waited for a worker and sent a newer plan's status instead",
)
EVENTS_DROPPED = Counter(
    "meson_events_dropped_total", "Kubernetes Events not posted because too many were waiting"
)
STEP_OUTCOMES = Counter("meson_step_outcomes_total", "Workflow step transitions", ["reason"])
RETRIES = Counter("meson_step_retries_total", "Step attempts retried", ["kind"])
CYCLE_SECONDS = Histogram(
    "meson_scheduling_cycle_seconds",
    "Duration of one scheduling cycle (plan, admit, write)",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
API_REQUESTS = Counter(
    "meson_api_requests_total",
    "API calls made by the operator's writes and reads, by client method",
    ["call"],
)
WATCH_EVENTS = Counter(
    "meson_watch_events_total",
    "Watch events read by the operator's own list-and-watch (pods, workflows), by resource",
    ["resource"],
)
API_ERRORS = Counter(
    "meson_api_errors_total", "Failed API calls (retried or not), by HTTP status", ["status"]
)
OBJECT_ERRORS = Counter(
    "meson_object_errors_total",
    "Objects that failed a stage of the scheduling loop and were skipped (each distinct failure once)",
    ["kind", "stage"],
)
POD_CREATE_REFUSALS = Counter(
    "meson_pod_create_refusals_total",
    "Admissions rolled back because the API server refused a pod (quota, missing PriorityClass, policy)",
    ["queue"],
)
STATUS_CORRECTIONS = Counter(
    "meson_status_corrections_total",
    "Workflow statuses edited by someone else and restored by the operator",
)
LEADER = Gauge("meson_leader", "1 while this operator replica holds the leader Lease (runs the loop)")
WORKFLOWS = Gauge("meson_workflows", "Workflows known to the operator, by phase", ["phase"])

STREAMJOB_REPLICAS = Gauge(
    "meson_streamjob_replicas",
    "StreamJob replicas by state: pending (no pod yet: waiting for admission or being created), starting "
    "(a pod of the current revision, not Ready), ready (current revision, Ready), old (a pod of an earlier "
    "revision still serving during a rollout)",
    ["namespace", "state"],
)
STREAMJOB_ROLLBACKS = Counter(
    "meson_streamjob_rollbacks_total",
    "Automatic StreamJob rollbacks: a revision not stable within its progress deadline",
    ["namespace"],
)
STREAMJOB_RESTARTS = Counter(
    "meson_streamjob_restarts_total",
    "StreamJob replica restarts (container restarts and replaced pods): what the restart budget counts",
    ["namespace"],
)

WRITES_IN_FLIGHT = Gauge(
    "meson_writes_in_flight", "Writes to the API server the scheduling loop has started and not yet seen end"
)
RESERVATIONS = Gauge(
    "meson_admissions_reserved", "Admissions recorded in the view whose pods are not yet seen created"
)

# Predicted start times (meson.core.eta), refreshed every 30 s by the scheduling loop.
ETA_WAIT = Gauge(
    "meson_queue_predicted_wait_seconds",
    "Predicted wait until every workload pending now in the queue is admitted (its last one's ETA)",
    ["queue"],
)
ETA_CPU = Counter("meson_eta_prediction_cpu_seconds_total", "CPU spent predicting start times")


def observe_etas(snapshot: Any, prediction: Any) -> None:
    """After each ETA refresh: per queue, the latest predicted admission of what waits there now (a
    queue with nothing pending, or nothing predicted, is removed)."""
    last: dict[str, float] = {}
    for w in snapshot.pending:
        at = prediction.at.get(w.key)
        if at is not None:
            last[w.queue] = max(last.get(w.queue, 0.0), at - snapshot.now)
    for labels in list(ETA_WAIT._metrics):  # drop queues that no longer wait
        if labels[0] not in last:
            ETA_WAIT.remove(*labels)
    for queue, wait in last.items():
        ETA_WAIT.labels(queue=queue).set(wait)
    ETA_CPU.inc(prediction.cpu_s)


def serve(port: int, addr: str = "0.0.0.0") -> None:
    start_http_server(port, addr=addr)
