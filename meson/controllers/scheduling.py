"""The scheduling loop: the operator's only writer.

One cycle, in named stages: read the in-memory view and ask the workflow engine what each workflow needs
(:meth:`SchedulingLoop._plan`); hand every step instance that needs admission to the scheduling core
together with what is already admitted and the observed node capacity (``Scheduler.cycle``); apply the
core's decisions (:meth:`_admit` reserves each admission and creates its pods, :meth:`_evict` deletes
preemption victims); then write what changed (:meth:`_write_status`: workflow and queue status, events,
TTL, cron children).

Writes are off the critical path: a cycle records its admissions in memory (a reservation, counted as
admitted by the next cycles until the pods are seen) and starts its writes in the background
(:mod:`.inflight`, one at a time per object), so a throttled or slow write delays only its own object.
A pod create the API server refuses rolls its reservation back and holds the step with a backoff and the
API server's reason in its status.

Writes are idempotent so a crash at any point is safe: pods have deterministic names (a repeated create
is a 409, taken as done), status is recomputed from the pods, and the view is updated with each write's
result so the next cycle never acts on a view older than its own writes.

Isolation: every object is planned, translated and written inside a guard (:mod:`.faults`), so an
object that cannot be handled is skipped with a condition, an Event and a metric while every other
object proceeds in the same cycle.

Incremental: a workflow is planned again only when one of its inputs moved (the object, the status this
operator last wrote, its pods, the world every workflow shares, its validity) or a time it asked to be
woken at has come; otherwise its last plan is offered again as it is. ``verify_incremental`` re-plans every
reused plan from scratch, at the time it was made, and records any difference in ``mismatches`` (the
integration tests run with it).

Status is a record, not an input: the engine is fed the status this operator last wrote (kept in
memory), not the one on the object, so a status edited by someone else is ignored and overwritten.
After a restart, when there is no memory, the observed status is first checked against the pods
(``verify_status``): claims the pods do not back are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from meson.adapters import kube, metrics
from meson.controllers import faults, translate
from meson.controllers.checks import SpecChecks
from meson.controllers.cronworkflows import CronWorkflows
from meson.controllers.estimates import Policies
from meson.controllers.faults import Faults
from meson.controllers.inflight import Inflight, Write
from meson.controllers.memo import memo_lookup
from meson.controllers.queues import Queues
from meson.controllers.store import Key, Store, resource_version
from meson.controllers.streamjobs import StreamJobs
from meson.controllers.subworkflows import SubWorkflows
from meson.controllers.sync import Semaphores
from meson.controllers.templates import Templates
from meson.controllers.writer import Writer, merge_patch
from meson.core import AdmittedWorkload, Resources, Scheduler, Snapshot, Workload
from meson.core.eta import EtaBoard
from meson.workflow import (
    InstanceRequest,
    Plan,
    plan,
    refused_status,
    rfc3339,
    verify_status,
    with_queue_positions,
)
from meson.workflow.status import QUEUE_POSITIONS_MAX
from meson.workflow.templates import unresolved_ref

log = logging.getLogger("meson.scheduling")
# A cycle runs at least this often even when nothing happened, as a safety net for missed wake-ups.
RESYNC_SECONDS = 30.0
WORKFLOW = "Workflow"
# A refused pod create is retried after this backoff (doubling per refusal, capped).
REFUSAL_BACKOFF = (2.0, 60.0)
# A workflow status refused as too large is not resent before this many seconds (it should not happen:
# the engine bounds its status; this is the safety net).
TOO_LARGE_BACKOFF = 60.0
# An admission whose pods were created but are still not in the view after this long is offered again
# (a create repeated by then finds the pod and is taken as done).
RESERVATION_TTL = 120.0
# Queue positions cost status writes: every admission moves everything behind it. A status shows exact
# positions only for the first POSITIONS_SHOWN of a queue (further back: a message that does not move),
# and a status whose only change is positions is rewritten at most every POSITIONS_REFRESH seconds.
POSITIONS_SHOWN = QUEUE_POSITIONS_MAX
POSITIONS_REFRESH = 5.0
# What a status write may be put off for (Tuning.status_interval): progress, which the pods show again.
# A change of any other field (outputs, restarts, history, memo...) is a record later plans start from.
_PROGRESS_FIELDS = frozenset(
    {"phase", "progress", "counts", "steps", "eta", "startedAt", "observedGeneration", "conditions"}
)
# Under write pressure (more status writes waiting for a worker than there are workers) progress is
# written less often, by that ratio and at most this many times the status interval: the API server
# is what is slow, and a write put off is often one saved (a short step's Running).
STATUS_STRETCH_MAX = 5.0
# Workflow phase metrics and forgetting what is gone (both O(all objects)) run at most this often.
HOUSEKEEPING_SECONDS = 2.0
# Cycles visit the workflows whose inputs were touched (see Store.touched) and those not at rest or
# parked; at least this often, and whenever nodes, queues, namespaces or priorities change, every one.
FULL_SCAN_SECONDS = 5.0


@dataclass(frozen=True)
class Tuning:
    """The operator's scheduling settings (``meson operator --help``; the chart's ``scheduler`` values)."""

    preempt_after: float = 1.0  # seconds a workload waits for capacity to free before it may preempt
    reserve_after: float = 60.0  # seconds a blocked head may be overtaken before it reserves capacity
    global_rate: float | None = None  # pods admitted per second over all queues (None: no cap)
    global_burst: int = 1
    # Seconds between two status writes of a workflow that is not finishing: a workflow admitted and
    # started within this time is written once, not as Pending then Running (each write costs the API
    # server a full object update and a watch event to every watcher).
    status_interval: float = 1.0


@dataclass
class CycleResult:
    admitted: int = 0
    preempted: int = 0
    pending: int = 0
    writes: int = 0
    visited: int = 0  # workflows the cycle offered or planned (the rest were at rest)
    wake_at: float | None = None


@dataclass
class _Refusal:
    """The API server refused the pods of an admission: held back until ``until``."""

    message: str
    count: int
    until: float


@dataclass
class _Planned:
    """A workflow's last plan, and what it was made from (compared by identity: any change replans)."""

    inputs: tuple
    now: float
    plan: Plan
    admitted: list[AdmittedWorkload]
    placement: tuple[str, int, str | None]
    # The queue positions with which this plan's status last needed no write (None: not yet).
    settled: dict | None = None
    positions_at: float = float("-inf")  # when a status with new positions was last written
    checked_at: float = float("-inf")  # when its positions were last looked up (see _positions_unmoved)
    refresh_due: float | None = None  # positions moved then: when their refresh may be written


@dataclass
class _Parked:
    """A workflow whose plan, offer and status are as the last cycle found them (see _park): each cycle
    hands its requests and admitted work to the core as they are, without planning, offering or writing it."""

    planned: _Planned
    owned: list[str]  # its pending requests' keys
    requests: dict[str, tuple[str, Key, InstanceRequest]]
    queue_of: dict[str, str]
    pending: list[Workload]
    runs: dict[str, InstanceRequest]  # its admitted requests (with pods), by key: what a preemption deletes


@dataclass
class _Reservation:
    """An admission recorded before its pods exist: counted as admitted until the pods are seen."""

    owner: tuple[str, Key]  # (kind, key) of the object whose request it is
    at: float
    created: bool = False  # every pod create returned


@dataclass
class _Inputs:
    """What one cycle hands the core, built from the view (see :meth:`SchedulingLoop._plan`)."""

    plans: dict[Key, Plan] = field(default_factory=dict)
    # Every request needing admission, by workload key: (kind of its owner, owner's key, request).
    requests: dict[str, tuple[str, Key, InstanceRequest]] = field(default_factory=dict)
    pending: list[Workload] = field(default_factory=list)
    admitted: list[AdmittedWorkload] = field(default_factory=list)
    # Requests held back before the core (not counted in any queue), with the reason shown on the step.
    held: dict[str, tuple[int, str]] = field(default_factory=dict)
    # Requests waiting for a semaphore's verdict (see SchedulingLoop._grant_semaphores): (request, queue,
    # priority).
    contending: dict[str, tuple[InstanceRequest, str, int]] = field(default_factory=dict)
    wakes: list[float] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    queue_of: dict[str, str] = field(default_factory=dict)  # request key -> its queue
    owned: dict[tuple[str, Key], list[str]] = field(default_factory=dict)  # (kind, key) -> request keys
    # Reserved admissions whose owner still asks for them (their pods are not in the view yet).
    reserved: set[str] = field(default_factory=set)
    # Queues admitting a retry of a refused pod create this cycle: their figures wait for its outcome.
    retrying: set[str] = field(default_factory=set)


@dataclass
class _OwnStatus:
    """The last status this operator wrote (or verified) for a workflow, and the object's version then."""

    uid: str
    status: dict
    resource_version: int  # -1: verified but never written by this process


@dataclass
class SchedulingLoop:
    store: Store
    clients: kube.Clients
    scheduler: Scheduler = field(default_factory=Scheduler)
    clock: Callable[[], float] = time.time
    workers: int = 16
    tuning: Tuning = field(default_factory=Tuning)
    writer: Writer = field(init=False)
    faults: Faults = field(init=False)
    checks: SpecChecks = field(init=False)
    crons: CronWorkflows = field(init=False)
    queues: Queues = field(init=False)
    policies: Policies = field(init=False)
    streams: StreamJobs = field(init=False)
    subworkflows: SubWorkflows = field(init=False)  # child Workflows of sub-workflow steps (#14)
    templates: Templates = field(default_factory=Templates)  # WorkflowTemplates, fed by handlers (#14)
    semaphores: Semaphores = field(default_factory=Semaphores)  # synchronization of workflows, steps (#14)
    inflight: Inflight = field(init=False)
    _reserved: dict[str, _Reservation] = field(default_factory=dict)
    _planned: dict[Key, _Planned] = field(default_factory=dict)
    _workloads: dict[str, tuple[InstanceRequest, str, int, Workload]] = field(default_factory=dict)
    verify_incremental: bool = False
    incremental: bool = True  # False: plan every workflow every cycle (the benchmark's baseline)
    mismatches: list[str] = field(default_factory=list)  # what verify_incremental found
    replans: int = 0  # workflows planned from scratch (the rest reused their plan)
    _own: dict[Key, _OwnStatus] = field(default_factory=dict)
    _ready_since: dict[str, float] = field(default_factory=dict)
    _refused: dict[str, _Refusal] = field(default_factory=dict)
    _write_backoff: dict[Key, float] = field(default_factory=dict)
    _written_at: dict[Key, float] = field(default_factory=dict)  # last status write (or first sight)
    _put_off: dict[Key, float] = field(default_factory=dict)  # status write first put off for an admission
    _admitted_at: dict[Key, float] = field(default_factory=dict)  # a workflow's latest admission
    # Workflows at rest (see _rest_if_idle) and the plan that found them so: skipped until an input moves.
    _dormant: dict[Key, _Planned] = field(default_factory=dict)
    # Waiting workflows parked (see _park), the earliest time their positions were looked up, and their
    # requests as each cycle starts from them.
    _parked: dict[Key, _Parked] = field(default_factory=dict)
    _parked_checked: float = float("inf")
    _parked_requests: dict[str, tuple[str, Key, InstanceRequest]] = field(default_factory=dict)
    _parked_queue_of: dict[str, str] = field(default_factory=dict)
    _parked_pending: dict[str, Workload] = field(default_factory=dict)
    _parked_admitted: dict[str, AdmittedWorkload] = field(default_factory=dict)
    _parked_owner: dict[str, Key] = field(default_factory=dict)  # admitted request key -> its workflow
    # The next cycle that compares every workflow with its plan's inputs, and the world it last saw.
    _full_scan_at: float = float("-inf")
    _scan_world: int = -1
    # Workflows whose status patch waits for a write worker, and the newer status planned meanwhile
    # (sent instead when a worker is free: under load, one write instead of a queue of stale ones).
    _queued: dict[Key, Plan | None] = field(default_factory=dict)
    _newer: dict[Key, tuple[dict, dict, Plan]] = field(default_factory=dict)
    _stopping: bool = False
    _housekeeping_at: float = float("-inf")
    # When anything queue positions and the core's reasons depend on last moved (see _note_movement).
    _moved_at: float = float("-inf")
    _fingerprint: tuple = ()
    _core_wake: float | None = None

    def __post_init__(self) -> None:
        self.writer = Writer(self.clients, self.store, self.workers)
        self.inflight = Inflight(self.store.wake.set)
        self.faults = Faults(report=self._report_fault)
        self.checks = SpecChecks(self.writer, self.store.wake.set)
        self.crons = CronWorkflows(self.store, self.writer, self.checks, self.faults)
        self.queues = Queues(self.store, self.writer, self.checks, self.faults, self.scheduler)
        self.policies = Policies(self.store)  # runtime estimates and minimum runtimes (issue 13)
        self.streams = StreamJobs(self)
        self.subworkflows = SubWorkflows(self.store, self.writer, self.inflight.busy)
        # Predicted start times (issue 15): each cycle's snapshot, predicted again every 30 s.
        tuning = (self.scheduler.reserve_after, self.scheduler.preempt_after)
        self.etas = EtaBoard(lambda: Scheduler(*tuning), on_refresh=metrics.observe_etas)

    @classmethod
    def tuned(cls, store: Store, clients: kube.Clients, tuning: Tuning) -> SchedulingLoop:
        scheduler = Scheduler(reserve_after=tuning.reserve_after, preempt_after=tuning.preempt_after)
        return cls(store=store, clients=clients, scheduler=scheduler, tuning=tuning)

    # --- running ---------------------------------------------------------------------------------
    async def run(self) -> None:
        self.writer.bind(asyncio.get_running_loop())
        wake_at: float | None = None
        while not self._stopping:
            timeout = (
                RESYNC_SECONDS if wake_at is None else max(0.0, min(RESYNC_SECONDS, wake_at - self.clock()))
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.store.wake.wait(), timeout=timeout)
            self.store.wake.clear()
            started = time.perf_counter()
            try:
                result = await self.cycle()
                wake_at = result.wake_at
            except Exception:  # a bug in the loop itself; objects' own failures never get here
                log.exception("scheduling cycle failed; retrying")
                wake_at = self.clock() + 1.0
            spent = time.perf_counter() - started
            metrics.CYCLE_SECONDS.observe(spent)
            # Let a burst of watch events coalesce into the next cycle. The watches are read on this
            # thread too: after a costly cycle, give them at least as long (cycles at most half the time),
            # or under load they fall behind and the cycle keeps planning with ended pods still counted.
            await asyncio.sleep(max(0.05, spent))

    def stop(self) -> None:
        """Stop after the current cycle's writes; queued writes are abandoned (they are idempotent)."""
        self._stopping = True
        self.store.wake.set()
        self.inflight.cancel()
        self.writer.shutdown()

    # --- one cycle ---------------------------------------------------------------------------------
    async def cycle(self) -> CycleResult:
        now = self.clock()
        if self.verify_incremental:
            scratch = {
                n: {k: v for k, v in u.items() if v} for n, u in self.store.node_usage_from_scratch().items()
            }
            if {n: u for n, u in scratch.items() if u} != self.store.node_usage():
                self._mismatch("node usage kept pod by pod differs from a sum over every pod")
        queues, unreadable = self.queues.configs()
        store = self.store
        if self._moved_at > self._parked_checked and now >= self._parked_checked + POSITIONS_REFRESH:
            # Positions may have moved since the parked ones were looked up: look again, at most this often.
            self._unpark_waiting()
        touched = store.take_touched()
        world_moved = store.world_version != self._scan_world
        every = not self.incremental or world_moved or now >= self._full_scan_at
        # verify_incremental compares every workflow, and checks that those that moved were touched.
        full = every or self.verify_incremental
        if full:  # every workflow compared with what its plan was made of (a touch missed costs no more)
            self._full_scan_at, self._scan_world = now + FULL_SCAN_SECONDS, store.world_version
            keys: Collection[Key] = list(store.workflows)
        else:  # the unsettled and the touched: a cycle's cost follows what moved, not what waits or ended
            keys = (store.workflows.keys() - self._parked.keys() - self._dormant.keys()) | touched
        self.semaphores.refresh(
            store.workflows,
            lambda k: bool(store.workflow_pods.get(k)),
            self._reserved,
            store.priority_of,
            store.config_maps,
            pods_of=store.observations,
            pods_version=lambda k: store.pod_versions.get(k, 0),
            changed=None if every else touched,
        )
        # The parked ones' requests, as they are (see _park).
        inputs = _Inputs(
            requests=dict(self._parked_requests),
            pending=list(self._parked_pending.values()),
            admitted=list(self._parked_admitted.values()),
            queue_of=dict(self._parked_queue_of),
        )
        dormant: dict[Key, _Planned] = self._dormant if self.incremental else {}
        parked = self._parked
        replans = self.replans
        resting: list[Key] = []
        for key in keys:
            wf = store.workflows.get(key)
            if wf is None:  # deleted
                self._unpark(key)
                dormant.pop(key, None)
                continue
            rest = dormant.get(key)
            if rest is not None:
                if self._unchanged(rest.inputs, key, wf):
                    if not self.verify_incremental:
                        continue  # at rest (finished, written): nothing to offer, plan or write
                    resting.append(key)  # planned anyway, and must come out at rest again
                elif self.verify_incremental and key not in touched and not world_moved:
                    self._mismatch(f"workflow {key}: at rest, moved without a touch")
                del dormant[key]
            park = parked.get(key)
            if park is not None:
                if self._unchanged(park.planned.inputs, key, wf):
                    if self.verify_incremental:
                        self._verify_parked(key, wf, park, now)
                    continue
                if self.verify_incremental and key not in touched and not world_moved:
                    self._mismatch(f"workflow {key}: parked, moved without a touch")
                self._unpark(key)
            if not self._reuse(key, wf, now, inputs):
                self.faults.guard("Workflow", key, "plan", self._plan, key, wf, now, inputs)
        self._grant_semaphores(inputs)
        self.streams.plan_all(now, inputs)
        decisions = self.scheduler.cycle(
            self.etas.seen(
                Snapshot(
                    now=now,
                    queues=queues,
                    pending=inputs.pending,
                    admitted=inputs.admitted,
                    nodes=translate.node_capacities(self.store.nodes, self.store.node_usage()),
                    disabled=unreadable,
                    global_rate=self.tuning.global_rate,
                    global_burst=self.tuning.global_burst,
                )
            )
        )
        if decisions.wake_at is not None:
            inputs.wakes.append(decisions.wake_at)
        self._note_movement(inputs, decisions, now, replanned=self.replans != replans)
        if parked and self._moved_at > self._parked_checked:
            inputs.wakes.append(self._parked_checked + POSITIONS_REFRESH)
        if self.verify_incremental:
            for key, park in parked.items():
                # Nothing moved since its positions were looked up: they must be the same.
                inputs.owned.setdefault((WORKFLOW, key), park.owned)
                unmoved = park.planned.checked_at >= self._moved_at
                if unmoved and self._positions(inputs, decisions, WORKFLOW, key, now) != park.planned.settled:
                    self._mismatch(f"workflow {key}: parked, but its queue positions moved")
        result = CycleResult(
            pending=len(inputs.pending), preempted=len(decisions.preempt), visited=len(inputs.plans)
        )
        result.admitted = self._admit(inputs, decisions, now)
        self._evict(inputs, decisions)
        result.writes = self._write_status(inputs, decisions, now)
        for key in resting:
            if key not in self._dormant:
                self._mismatch(f"workflow {key}: skipped as at rest, but a cycle has work for it")
        self._settle_reservations(inputs, now)
        if now >= self._housekeeping_at:  # O(all objects): not every cycle
            self._housekeeping_at = now + HOUSEKEEPING_SECONDS
            self._count_phases()
            self._forget_gone(inputs.requests)
        result.wake_at = min(inputs.wakes) if inputs.wakes else None
        return result

    # --- stage 1: plan -----------------------------------------------------------------------------
    def _plan(self, key: Key, wf: dict, now: float, inputs: _Inputs) -> None:
        """Plan one workflow and add what it needs to ``inputs`` (all at once: a failure adds nothing)."""
        if unresolved_ref(wf.get("spec") or {}) is not None:  # made from a template first (#14)
            write = self.templates.resolution(key, wf, self.writer, self.faults, now)
            inputs.writes.extend([write] if write else [])
            return
        problems = self.checks.workflow_problems(wf)
        if problems is None and not self.store.workflow_pods.get(key):
            return  # its pod templates are being dry-run; nothing of it runs yet
        if problems:
            refused = refused_status(wf, problems, now, wf["metadata"].get("generation"))
            if refused != (wf.get("status") or {}):
                inputs.writes.append(
                    ((WORKFLOW, key), self._patch_workflow_status(key, wf, refused, None, now))
                )
            return
        planned = self._reusable(key, wf, now)
        if planned is None:
            planned = self._planned[key] = self._plan_from_scratch(key, wf, now)
            self.replans += 1
        elif self.verify_incremental:
            # At the time it was made: a transition not yet recorded (its status write in flight) is
            # stamped with the time of the plan that found it, and reusing that plan keeps the stamp.
            fresh = self._plan_from_scratch(key, wf, planned.now)
            if (fresh.plan, fresh.admitted, fresh.placement) != (
                planned.plan,
                planned.admitted,
                planned.placement,
            ):
                self._mismatch(f"workflow {key}: reused plan differs from a plan from scratch")
        self._offer_planned(key, planned, now, inputs)

    def _mismatch(self, message: str) -> None:
        # Recorded, not raised: a plan's failure is caught by its object's guard.
        log.error("incremental cycle: %s", message)
        self.mismatches.append(message)

    def _reuse(self, key: Key, wf: dict, now: float, inputs: _Inputs) -> bool:
        """Offer a workflow's last plan again if nothing it was made of moved (the fast path: most
        workflows, most cycles; with ``verify_incremental`` every plan goes through :meth:`_plan`)."""
        planned = None if self.verify_incremental else self._reusable(key, wf, now)
        if planned is None:
            return False
        self._offer_planned(key, planned, now, inputs)
        return True

    def _reusable(self, key: Key, wf: dict, now: float) -> _Planned | None:
        """The workflow's last plan if nothing it was made of moved and no wake time it set has come."""
        planned = self._planned.get(key)
        if (
            planned is None
            or not self.incremental
            or (planned.plan.wake_at is not None and now >= planned.plan.wake_at)
            or not self._unchanged(planned.inputs, key, wf)
        ):
            return None
        return planned

    def _offer_planned(self, key: Key, planned: _Planned, now: float, inputs: _Inputs) -> None:
        p = planned.plan
        inputs.plans[key] = p
        # Each cycle, not in the plan: a plan may be reused after a holder of its semaphore finished.
        gate = self.semaphores.gate(key)
        self.offer(
            WORKFLOW, key, p.pending, planned.admitted, planned.placement, p.wake_at, now, inputs, gate
        )

    def _grant_semaphores(self, inputs: _Inputs) -> None:
        """Offer the requests that contended for a semaphore and got it this cycle; hold back the others
        with the reason (see meson.controllers.sync)."""
        if not inputs.contending:
            return
        for request_key, reason in self.semaphores.decide().items():
            req, queue, priority = inputs.contending[request_key]
            if reason is None:
                inputs.pending.append(self._workload_of(req, queue, priority))
            else:
                inputs.held[request_key] = (0, reason)

    def _inputs_of(self, key: Key, wf: dict) -> tuple:
        """What a workflow's plan is made of, besides the clock (objects compared by identity)."""
        own = self._own.get(key)
        return (
            wf,
            own,
            own and own.status,
            own and own.resource_version,
            self.store.pod_versions.get(key, 0),
            self.store.world_version,
        )

    def _unchanged(self, made_of: tuple, key: Key, wf: dict) -> bool:
        """Whether ``made_of`` (from :meth:`_inputs_of`) still holds. Asked for every workflow in every
        cycle, so it compares in place instead of building the tuple again."""
        own = self._own.get(key)
        return (
            made_of[0] is wf
            and made_of[1] is own
            and (own is None or (made_of[2] is own.status and made_of[3] == own.resource_version))
            and made_of[4] == self.store.pod_versions.get(key, 0)
            and made_of[5] == self.store.world_version
        )

    def _plan_from_scratch(self, key: Key, wf: dict, now: float) -> _Planned:
        observations = self.store.observations(key)
        children = self.store.child_observations(key)
        view, nodes = self._engine_view(key, wf, observations, children), set(self.store.nodes)
        memo = memo_lookup(self.store.workflows, key[0])
        p = plan(view, observations, now, nodes=nodes, memo=memo, children=children)
        self.policies.learn(key, wf, observations)
        spec = wf.get("spec") or {}
        queue_name = spec.get("queue", "default")
        priority_class = spec.get("priorityClassName")
        priority = self.store.priority_of(priority_class)
        hold = self.hold_reason(key, queue_name, priority_class)
        started: dict[tuple[str, int], float] = {}
        for o in observations:
            started[(o.instance, o.run)] = min(started.get((o.instance, o.run), o.created), o.created)
        admitted = [
            # When its first pod was made: preemption picks the newest admissions first.
            AdmittedWorkload(
                self.workload(req, queue_name, priority), started.get((req.instance, req.run), now)
            )
            for req in p.admitted
        ]
        # Taken after planning: reading the status may have recorded it as this operator's own.
        return _Planned(self._inputs_of(key, wf), now, p, admitted, (queue_name, priority, hold))

    def offer(
        self,
        kind: str,
        key: Key,
        pending: list[InstanceRequest],
        admitted: list[AdmittedWorkload],
        placement: tuple[str, int, str | None],
        wake_at: float | None,
        now: float,
        inputs: _Inputs,
        gate: Callable[[InstanceRequest], bool] | None = None,
    ) -> None:
        """Add one object's requests to the cycle: ``placement`` is (queue, priority, why it is held back
        before the core, if it is); a request refused by the API server a moment ago waits out its backoff,
        and one already admitted (reserved) whose pods are not in the view yet counts as admitted. A request
        ``gate`` takes waits for a semaphore: offered or held once every workflow is planned."""
        queue, priority, hold = placement
        owned = inputs.owned.setdefault((kind, key), [])
        for req in pending:
            owned.append(req.key)
            reservation = self._reserved.get(req.key)
            if reservation is not None:
                inputs.reserved.add(req.key)
                inputs.requests[req.key] = (kind, key, req)
                inputs.admitted.append(AdmittedWorkload(self.workload(req, queue, priority), reservation.at))
                continue
            reason = hold or self.refusal_hold(req.key, now, inputs.wakes)
            if reason is not None:
                inputs.held[req.key] = (0, reason)
            elif gate is not None and gate(req):
                inputs.contending[req.key] = (req, queue, priority)
            else:
                inputs.pending.append(self._workload_of(req, queue, priority))
            inputs.queue_of[req.key] = queue
            inputs.requests[req.key] = (kind, key, req)
            self._ready_since.setdefault(req.key, now)
        inputs.admitted += admitted
        if wake_at is not None:
            inputs.wakes.append(wake_at)

    def _workload_of(self, req: InstanceRequest, queue: str, priority: int) -> Workload:
        """The request's workload, made once while the request (a reused plan's) stays the same."""
        known = self._workloads.get(req.key)
        if known is not None and known[0] is req and known[1] == queue and known[2] == priority:
            return known[3]
        w = self.workload(req, queue, priority)
        self._workloads[req.key] = (req, queue, priority, w)
        return w

    @classmethod
    def waiting(
        cls, inputs: _Inputs, decisions, kind: str, keys: Iterable[Key]
    ) -> Iterator[tuple[Key, InstanceRequest, tuple[int, str]]]:
        """The requests of the objects ``keys`` of ``kind`` not admitted this cycle, with their (queue
        position, reason)."""
        for key in keys:
            for request_key in inputs.owned.get((kind, key), ()):
                info = cls._waiting_info(inputs, decisions, request_key)
                if info is not None:
                    yield key, inputs.requests[request_key][2], (max(0, info[0]), info[1])

    def _positions(self, inputs: _Inputs, decisions, kind: str, key: Key, now: float) -> dict[str, tuple]:
        """One object's waiting requests: instance -> (queue position, reason[, predicted start]). A status
        shows at most QUEUE_POSITIONS_MAX of them, the first by position: those far back in the queue only
        fill the room the others leave."""
        out, back = {}, []
        for request_key in inputs.owned.get((kind, key), ()):
            info = self._waiting_info(inputs, decisions, request_key)
            if info is None:
                continue
            eta = self._eta_text(request_key, now)
            if eta is not None:
                info = (*info, eta)
            instance = inputs.requests[request_key][2].instance
            if info[0] < 0:
                back.append((instance, (0, info[1])))
            else:
                out[instance] = info
        out.update(back[: max(0, QUEUE_POSITIONS_MAX - len(out))])
        return out

    def _eta_text(self, request_key: str, now: float) -> str | None:
        """The predicted admission time of a waiting request (see meson.core.eta), rounded up to the
        minute so that a status is rewritten when the prediction moves by a minute, not by a second."""
        at = self.etas.at(request_key)
        if at is None or at <= now:
            return None
        return rfc3339(math.ceil(at / 60) * 60)

    @staticmethod
    def _waiting_info(inputs: _Inputs, decisions, request_key: str) -> tuple[int, str] | None:
        """Why a request waits, and where (0: no position); beyond the first POSITIONS_SHOWN of a queue,
        no position (-1 here) and a reason that does not move."""
        info = inputs.held.get(request_key)
        if info is None and request_key in decisions.pending:
            pi = decisions.pending[request_key]
            if pi.position > POSITIONS_SHOWN:
                queue = inputs.queue_of.get(request_key, "")
                return -1, f"more than {POSITIONS_SHOWN} workloads ahead in queue {queue}"
            return pi.position, pi.reason
        return info

    def workload(self, req: InstanceRequest, queue: str, priority: int) -> Workload:
        """A request as the core's workload: the full request (the core counts against a queue only what
        its tree names, and fits nodes on everything), its runtime estimate and minimum runtime."""
        estimate, min_runtime = self.policies.of(req)
        return Workload(
            key=req.key,
            queue=queue,
            priority=priority,
            created=req.created,
            pod_request=Resources(req.pod_request),
            pod_count=req.pod_count,
            gang=req.gang,
            estimate=estimate.seconds,
            min_runtime=min_runtime,
        )

    def hold_reason(self, key: Key, queue_name: str, priority_class: str | None) -> str | None:
        """Why a workflow's pending steps cannot even be offered to the core (None: they can)."""
        queue_obj = self.store.queues.get(queue_name)
        if queue_obj is not None and not translate.namespace_allowed(
            queue_obj, key[0], self.store.namespaces.get(key[0])
        ):
            return f"namespace {key[0]} may not submit to queue {queue_name}"
        if priority_class and priority_class not in self.store.priorities:
            return f'PriorityClass "{priority_class}" not found: create it or change spec.priorityClassName'
        return None

    def refusal_hold(self, request_key: str, now: float, wakes: list[float]) -> str | None:
        refusal = self._refused.get(request_key)
        if refusal is None or now >= refusal.until:
            return None
        wakes.append(refusal.until)
        return self._refusal_text(refusal)

    @staticmethod
    def _refusal_text(refusal: _Refusal) -> str:
        # No countdown: the message (so the status) stays the same from one retry to the next.
        return f"pod creation refused by the API server: {refusal.message} (retried with backoff)"

    def _engine_view(self, key: Key, wf: dict, observations: list, children: list) -> dict:
        """The workflow with the status the engine should trust: the one this operator last wrote, or
        after a restart the observed one checked against the pods."""
        uid = wf["metadata"].get("uid", "")
        own = self._own.get(key)
        observed = wf.get("status") or {}
        if own is None or own.uid != uid:
            status, corrections = verify_status(wf, observations, children)
            own = self._own[key] = _OwnStatus(uid, status, -1 if corrections else resource_version(wf))
            if corrections:
                self._status_corrected(wf, "; ".join(corrections))
        elif (
            observed != own.status
            and resource_version(wf) > own.resource_version >= 0
            # A write of ours still in flight may already be in the watch event: judged when it returns.
            and not self.inflight.busy((WORKFLOW, key))
        ):
            # Someone else wrote the status after our last write: keep ours, and write it back.
            self._status_corrected(wf, "status was edited by someone other than the operator; restored")
            own.resource_version = -1
        return {**wf, "status": own.status}

    def _status_corrected(self, wf: dict, message: str) -> None:
        metrics.STATUS_CORRECTIONS.inc()
        meta = wf["metadata"]
        log.warning("workflow %s/%s: %s", meta.get("namespace"), meta.get("name"), message)
        self.writer.event(wf, "Warning", "StatusCorrected", message)

    # --- stage 2: admit ----------------------------------------------------------------------------
    def _admit(self, inputs: _Inputs, decisions, now: float) -> int:
        """Reserve each admission in memory and create its pods in the background."""
        admitted = 0
        for adm in decisions.admit:
            kind, owner_key, req = inputs.requests[adm.key]
            owner = self._object(kind, owner_key)
            if owner is None:
                continue
            self._reserved[req.key] = _Reservation((kind, owner_key), now)
            if kind == WORKFLOW:
                self._admitted_at[owner_key] = now
                self._unpark(owner_key)  # planned again: this request is now reserved
            refusal = self._refused.get(req.key)
            if refusal is not None:
                # A retry: until its create works, the step still says why it waited.
                inputs.held[req.key] = (0, self._refusal_text(refusal))
                inputs.retrying.update(self.queues.chain(adm.queue))
            write = self._admit_one(kind, owner_key, owner, req, adm.queue, now)
            admitted += self.inflight.start(("admit", req.key), write)
        creating = {r.owner for r in self._reserved.values() if not r.created}
        for key, p in inputs.plans.items():
            # Gang members of an admitted run never created (a crash mid-creation): finish the job.
            if p.create_pods and key in self.store.workflows and (WORKFLOW, key) not in creating:
                write = self._guarded(key, self._create, key, p.create_pods)
                self.inflight.start(("create", key), write)
        return admitted

    async def _guarded(self, key: Key, fn: Callable[..., Any], *args: Any) -> None:
        """A workflow's write whose coroutine is made only when it runs (a skipped write leaves none)."""
        await self.faults.guard_write(WORKFLOW, key, fn(*args))

    async def _admit_one(
        self, kind: str, key: Key, owner: dict, req: InstanceRequest, queue: str, now: float
    ) -> None:
        refused = await self.writer.create_pods(kind, owner, req.pods)
        if refused:
            self._reserved.pop(req.key, None)
            await self._roll_back(key, owner, req, queue, refused[0], now)
            return
        reservation = self._reserved.get(req.key)
        if reservation is not None:
            reservation.created = True
        self._refused.pop(req.key, None)
        waited = now - self._ready_since.pop(req.key, now)
        metrics.ADMISSION_WAIT.labels(queue=queue).observe(waited)
        metrics.ADMISSIONS.labels(queue=queue).inc()

    def _settle_reservations(self, inputs: _Inputs, now: float) -> None:
        """Forget reservations whose pods are in the view (their owner no longer asks for them)."""
        for request_key, reservation in list(self._reserved.items()):
            if self.inflight.busy(("admit", request_key)):
                continue
            if request_key not in inputs.reserved or now - reservation.at > RESERVATION_TTL:
                del self._reserved[request_key]
        metrics.RESERVATIONS.set(len(self._reserved))

    async def _create(self, key: Key, pods: list[dict]) -> None:
        wf = self.store.workflows.get(key)
        if wf is not None:
            refused = await self.writer.create_pods("Workflow", wf, pods)
            if refused:
                raise RuntimeError(f"pod creation refused: {refused[0]}")

    async def _roll_back(
        self, key: Key, owner: dict, req: InstanceRequest, queue: str, message: str, now: float
    ) -> None:
        """The API server refused a pod of this admission: undo it and hold the step back with backoff."""
        previous = self._refused.get(req.key)
        count = previous.count + 1 if previous else 1
        backoff = min(REFUSAL_BACKOFF[1], REFUSAL_BACKOFF[0] * 2 ** (count - 1))
        self._refused[req.key] = _Refusal(message[: faults.MESSAGE_MAX], count, now + backoff)
        metrics.POD_CREATE_REFUSALS.labels(queue=queue).inc()
        if count == 1:
            self.writer.event(owner, "Warning", "PodCreateRefused", f"{req.instance}: {message}")
        # Members of a gang that were created go too, marked as Meson's (no retry is used).
        names = [p["metadata"]["name"] for p in req.pods]
        deletes = [
            self.writer.delete_pod(key[0], n, f"admission rolled back: {message}")
            for n in names
            if (key[0], n) in self.store.pods
        ]
        await asyncio.gather(*deletes, return_exceptions=True)
        self.store.wake.set()

    # --- stage 3: evict ----------------------------------------------------------------------------
    def _evict(self, inputs: _Inputs, decisions) -> None:
        victims = {p.victim_key: p for p in decisions.preempt}
        deletes: list[Write] = []
        runs: list[tuple[Key, InstanceRequest]] = []
        for key, p in inputs.plans.items():
            deletes += [self.deletion(key[0], name, None) for name in p.delete_pods]
            runs += [(key, req) for req in p.admitted if req.key in victims]
        owners = set()
        for request_key in victims.keys() & self._parked_owner.keys():
            owner = self._parked_owner[request_key]
            runs.append((owner, self._parked[owner].runs[request_key]))
            owners.add(owner)
        for owner in owners:  # planned again next cycle, with its pods going (after all its victims)
            self._unpark(owner)
        for key, req in runs:
            victim = victims[req.key]
            queue = (self.store.workflows[key].get("spec") or {}).get("queue", "")
            metrics.PREEMPTIONS.labels(queue=queue).inc()
            metrics.PREEMPTION_WORK_LOST.labels(queue=queue).inc(victim.work_lost)
            deletes += [self.deletion(key[0], name, victim.reason) for name in self._pods_of_run(key, req)]
        deletes += self.streams.deletions(victims)
        # Pods bound to a deleted node are lost; remove ours at once (as the pod garbage collector would,
        # after its quarantine) so the engine retries them now and nothing reports a dead pod's success.
        for (ns, name), rec in self.store.pods.items() if self.store.deleted_nodes else ():
            ours = rec.workflow is not None or rec.stream is not None
            if ours and rec.node in self.store.deleted_nodes and not rec.terminal:
                deletes.append(self.deletion(ns, name, None))
        self.inflight.start_all(deletes)

    def deletion(self, namespace: str, name: str, preempted_reason: str | None) -> Write:
        """The deletion of one of Meson's pods, as a background write (``preempted_reason``: see
        :meth:`Writer.delete_pod`)."""
        return ("delete", namespace, name), self._delete(namespace, name, preempted_reason)

    async def _delete(self, namespace: str, name: str, preempted_reason: str | None) -> None:
        try:
            await self.writer.delete_pod(namespace, name, preempted_reason)
        except Exception as exc:  # the pod is still in the view: the next cycle deletes it again
            log.warning("pod %s/%s deletion failed (retried): %s", namespace, name, faults.describe(exc))

    def _pods_of_run(self, key: Key, req: InstanceRequest) -> list[str]:
        return [
            o.name
            for o in self.store.observations(key)
            if o.instance == req.instance
            and o.run == req.run
            and o.phase not in ("Succeeded", "Failed", "Gone")
        ]

    def _note_movement(self, inputs: _Inputs, decisions, now: float, replanned: bool) -> None:
        """Record whether this cycle may have moved a queue position or a reason the core gives: a plan
        made (or a workflow gone), an admission, a preemption, a timer of the core come due, nodes' usage,
        queues, namespaces or priorities changed, new predictions. Otherwise every waiting workflow's
        positions are what they were, and :meth:`_write_status` does not look them up (an idle cycle with
        thousands waiting costs what changed, not what waits)."""
        fingerprint = (
            len(inputs.pending),
            len(inputs.held),
            len(inputs.contending),
            len(inputs.admitted),
            len(self._reserved),
            self.store.world_version,
            self.store.usage_version,
            id(self.etas.prediction),
        )
        timer = self._core_wake is not None and now >= self._core_wake
        if replanned or decisions.admit or decisions.preempt or timer or fingerprint != self._fingerprint:
            self._moved_at = now
        self._fingerprint, self._core_wake = fingerprint, decisions.wake_at

    def _positions_unmoved(self, planned: _Planned | None, now: float, wakes: list[float]) -> bool:
        """Whether a settled status's positions need no look-up this cycle: nothing moved since they were
        last looked up, or that was less than POSITIONS_REFRESH ago (the most often they are rewritten;
        a refresh already due is kept)."""
        if planned is None or planned.settled is None or self.verify_incremental:
            return False
        due = planned.refresh_due
        if due is not None:
            if now >= due:
                return False
            wakes.append(due)
            return True
        if planned.checked_at >= self._moved_at:
            return True
        if now < planned.checked_at + POSITIONS_REFRESH:
            wakes.append(planned.checked_at + POSITIONS_REFRESH)
            return True
        return False

    # --- stage 4: write status ---------------------------------------------------------------------
    def _write_status(self, inputs: _Inputs, decisions, now: float) -> int:
        writes = inputs.writes
        for key, p in inputs.plans.items():
            wf = self.store.workflows.get(key)
            if wf is None:
                continue
            if p.delete_workflow:
                write = self._guarded(key, self.writer.delete_workflow, key)
                writes.append(((WORKFLOW, key), write))
                continue
            if p.create_workflows or p.shutdown_workflows:
                writes += self.subworkflows.writes(key, p, now, inputs.wakes)
            planned = self._planned.get(key)
            reused = planned is not None and planned.plan is p
            busy = self.inflight.busy((WORKFLOW, key))
            if busy and key in self._queued:
                newer = self._newer.get(key)
                if p is not (newer[2] if newer else self._queued[key]):  # the waiting write sends this plan
                    waiting = self._positions(inputs, decisions, WORKFLOW, key, now)
                    status = with_queue_positions(p.status, waiting)
                    self._newer[key] = (wf, faults.without_condition(status, faults.RECONCILED), p)
            if busy and not self.verify_incremental:
                continue  # its last status is still being written; the write's end wakes the loop
            if reused and self._positions_unmoved(planned, now, inputs.wakes):
                continue
            waiting = self._positions(inputs, decisions, WORKFLOW, key, now)
            if p.create_workflows:
                waiting.update(self.subworkflows.held(key, p))
            settled = reused and planned.settled == waiting
            if reused:
                planned.checked_at, planned.refresh_due = now, None
            if settled and not self.verify_incremental:
                self._rest_if_idle(key, planned)
                self._park(key, planned, inputs)
                continue  # the same plan, the same positions: the same status, already written
            if (
                reused
                and planned.settled is not None
                and now < planned.positions_at + POSITIONS_REFRESH
                and not self.verify_incremental
            ):
                # Only queue positions (or the core's reasons) moved since this plan's status was written
                # a moment ago: refreshed at most every POSITIONS_REFRESH. No cycle is due for a status
                # that has not moved (a queue on Hold rests).
                planned.refresh_due = planned.positions_at + POSITIONS_REFRESH
                inputs.wakes.append(planned.refresh_due)
                continue
            status = with_queue_positions(p.status, waiting)
            status = faults.without_condition(status, faults.RECONCILED)
            if settled and status != (wf.get("status") or {}):
                self._mismatch(f"workflow {key}: a settled status needs a write")
            if self._needs_write(key, wf, status, now):
                due = self._write_due(key, status, wf.get("status") or {}, now)
                if due > now:
                    inputs.wakes.append(due)
                    continue
                self._written_at[key] = now
                self._put_off.pop(key, None)
                writes.append(self._status_write(key, wf, status, p, now))
                if planned is not None:
                    planned.positions_at = now
            elif reused and status == (wf.get("status") or {}):
                planned.settled, planned.positions_at = waiting, now
                self._rest_if_idle(key, planned)
                self._park(key, planned, inputs)
        for key, fault in self.faults.at_stage("Workflow", "plan"):
            wf = self.store.workflows.get(key)
            if wf is not None:
                status = faults.with_condition(wf.get("status") or {}, faults.fault_condition(fault))
                if status != (wf.get("status") or {}):
                    writes.append(((WORKFLOW, key), self._patch_workflow_status(key, wf, status, None, now)))
        writes += self.queues.status_writes(decisions, inputs.retrying, inputs.wakes)
        writes += self.crons.writes(now, inputs.wakes)
        writes += self.streams.status_writes(inputs, decisions)
        return self.inflight.start_all(writes)

    def _rest_if_idle(self, key: Key, planned: _Planned) -> None:
        """Let a workflow whose status is written as planned rest if its plan asks for nothing (no request,
        no admitted work counted against a queue, no pod, child or deletion, no time to wake at): a
        finished workflow, mostly. Cycles skip it until something it was planned from moves (a cluster
        keeps thousands of finished ones)."""
        p = planned.plan
        if not (p.pending or p.admitted) and self._quiet(key, p):
            self._dormant[key] = planned

    def _quiet(self, key: Key, p: Plan) -> bool:
        """Whether a plan asks for nothing but its requests and admitted work: no pod, child or deletion
        to make, no time to wake at, no status write under way, no fault."""
        return not (
            p.wake_at is not None
            or p.create_pods
            or p.delete_pods
            or p.delete_workflow
            or p.create_workflows
            or p.shutdown_workflows
            or self.inflight.busy((WORKFLOW, key))
            or key in self._queued
            or self.faults.of("Workflow", key) is not None
        )

    def _park(self, key: Key, planned: _Planned, inputs: _Inputs) -> None:
        """Park a workflow whose status is written as planned and whose plan only waits or runs: every
        pending request offered to the core as it is (none reserved, refused, held back or contending for
        a semaphore), admitted work all with pods, nothing to create or delete, no time to wake at. Cycles
        then hand its requests and admitted work to the core as they are, until an input of its plan
        moves, one of its requests is admitted or preempted, or, for one that waits, queue positions moved
        and POSITIONS_REFRESH passed since they were looked up (those are then all looked at again)."""
        p = planned.plan
        if (
            not self.incremental
            or not (p.pending or p.admitted)
            or not self._quiet(key, p)
            or planned.placement[2] is not None
            or self.semaphores.gate(key) is not None
        ):
            return
        owned = inputs.owned.get((WORKFLOW, key), [])
        pending = []
        for request_key in owned:
            known = self._workloads.get(request_key)
            if (
                known is None
                or request_key in self._reserved
                or request_key in self._refused
                or request_key in inputs.held
                or request_key in inputs.contending
            ):
                return
            pending.append(known[3])
        requests = {k: inputs.requests[k] for k in owned}
        queue_of = {k: inputs.queue_of[k] for k in owned}
        runs = {req.key: req for req in p.admitted}
        self._parked[key] = _Parked(planned, owned, requests, queue_of, pending, runs)
        self._parked_requests.update(requests)
        self._parked_queue_of.update(queue_of)
        self._parked_pending.update((w.key, w) for w in pending)
        self._parked_admitted.update((a.key, a) for a in planned.admitted)
        self._parked_owner.update((k, key) for k in runs)
        if owned:  # positions to refresh
            self._parked_checked = min(self._parked_checked, planned.checked_at)

    def _unpark(self, key: Key) -> None:
        park = self._parked.pop(key, None)
        if park is not None:
            for request_key in park.owned:
                del self._parked_requests[request_key]
                del self._parked_queue_of[request_key]
                del self._parked_pending[request_key]
            for request_key in park.runs:
                self._parked_admitted.pop(request_key, None)
                self._parked_owner.pop(request_key, None)
            self.store.touched.add(key)  # visited next cycle, whatever happens in this one

    def _unpark_waiting(self) -> None:
        """Queue positions may have moved: the parked with pending requests are looked at again."""
        for key in [k for k, park in self._parked.items() if park.owned]:
            self._unpark(key)
        self._parked_checked = float("inf")

    def _verify_parked(self, key: Key, wf: dict, park: _Parked, now: float) -> None:
        """verify_incremental: a parked workflow planned and offered from scratch offers what it parked."""
        planned = park.planned
        fresh = self._plan_from_scratch(key, wf, planned.now)
        made = (fresh.plan, fresh.admitted, fresh.placement)
        if made != (planned.plan, planned.admitted, planned.placement):
            self._mismatch(f"workflow {key}: parked plan differs from a plan from scratch")
            return
        scratch = _Inputs()
        p = fresh.plan
        gate = self.semaphores.gate(key)
        self.offer(WORKFLOW, key, p.pending, fresh.admitted, fresh.placement, p.wake_at, now, scratch, gate)
        if (
            scratch.requests != park.requests
            or scratch.queue_of != park.queue_of
            or scratch.pending != park.pending
            or scratch.admitted != park.planned.admitted
            or scratch.held
            or scratch.contending
            or scratch.wakes
        ):
            self._mismatch(f"workflow {key}: parked offer differs from an offer from scratch")

    def _needs_write(self, key: Key, wf: dict, status: dict, now: float) -> bool:
        if self._write_backoff.get(key, 0.0) > now or self.inflight.busy((WORKFLOW, key)):
            return False  # its last status was refused as too large: not resent every cycle
        if status == (wf.get("status") or {}):
            own = self._own.get(key)
            if own is not None and own.status == status:
                own.resource_version = max(own.resource_version, resource_version(wf))
            return False
        own = self._own.get(key)
        # The watch has not caught up with our own write yet: nothing to do.
        return not (own is not None and own.status == status and resource_version(wf) <= own.resource_version)

    def _write_due(self, key: Key, status: dict, wf_status: dict, now: float) -> float:
        """When a workflow's status may next be written: at once when it finishes (its end is news) or
        records something later plans start from (see _PROGRESS_FIELDS), else
        ``status_interval`` after its last write (or after it was first seen, so a workflow admitted at
        once is first written as Running, not Pending then Running), and not before ``status_interval``
        after its latest admission (a step shorter than that goes from Pending to Succeeded in one
        write, and a refused create is written when it is rolled back), but never more than
        ``status_interval`` after it was first put off for that: a fan-out admitting all the time is
        still shown. Under write pressure the interval stretches (STATUS_STRETCH_MAX)."""
        old = wf_status
        if status.get("phase") in ("Succeeded", "Failed") or any(
            status.get(k) != old.get(k) for k in status.keys() | old.keys() if k not in _PROGRESS_FIELDS
        ):
            return now  # an end, or a record the next plan starts from (outputs, a restart, memo): at once
        waiting = len(self._queued) / self.workers  # status writes waiting for a worker, per worker
        interval = self.tuning.status_interval * min(STATUS_STRETCH_MAX, max(1.0, waiting))
        due = self._written_at.setdefault(key, now) + interval
        admitted = self._admitted_at.get(key)
        if admitted is not None and admitted + interval > now:
            since = self._put_off.setdefault(key, now)
            due = max(due, min(admitted, since) + interval)
        return due

    def _status_write(self, key: Key, wf: dict, status: dict, p: Plan | None, now: float) -> Write:
        return (WORKFLOW, key), self._patch_workflow_status(key, wf, status, p, now)

    async def _patch_workflow_status(
        self, key: Key, wf: dict, status: dict, p: Plan | None, now: float
    ) -> None:
        sent = (wf, status, p)

        def body() -> dict:
            nonlocal sent
            self._queued.pop(key, None)
            newer = self._newer.pop(key, None)
            # Planned while this write waited, from the same status: it says all this one says, and more
            # (a plan's events are its transitions from that status).
            if newer is not None and newer[0].get("status") == wf.get("status"):
                sent = newer
                metrics.STATUS_WRITES_SUPERSEDED.inc()
            return merge_patch(sent[1], sent[0].get("status"))

        self._queued[key] = p
        try:
            written = await self.writer.patch_status("workflows", key[0], key[1], body)
        except kube.ApiException as exc:
            wf = sent[0]
            self.faults.record("Workflow", key, "write", exc)
            if kube.too_large(exc):
                self._write_backoff[key] = now + TOO_LARGE_BACKOFF
            await self._write_fallback_status(key, wf)
            return
        finally:
            self._queued.pop(key, None)
            self._newer.pop(key, None)
        wf, status, p = sent
        self.faults.clear("Workflow", key, "write")
        self._write_backoff.pop(key, None)
        if written is None:
            return  # the workflow is gone
        if p is not None:
            self._count_outcomes(p)
            self.writer.workflow_events(wf, list(p.events))
        rv = resource_version(written)
        self._own[key] = _OwnStatus(wf["metadata"].get("uid", ""), status, rv)
        current = self.store.workflows.get(key)
        self.store.touched.add(key)
        if current is not None and rv and resource_version(current) <= rv:
            # Our own write, at once, as the server has it: its watch event (the same resourceVersion)
            # then changes nothing, and the plan made from it is reused.
            self.store.workflows[key] = written
        elif current is not None and not rv:
            self.store.workflows[key] = {**current, "status": status}  # the watch event will supersede it

    async def _write_fallback_status(self, key: Key, wf: dict) -> None:
        """A status the API server refused (too large, say): say so on the object with a small write."""
        fault = self.faults.of("Workflow", key)
        if fault is None:
            return
        old = wf.get("status") or {}
        status = faults.with_condition(old, faults.fault_condition(fault))
        if status == old:
            return
        with contextlib.suppress(kube.ApiException):
            written = await self.writer.patch_status(
                "workflows", key[0], key[1], {"conditions": status["conditions"]}
            )
            rv = resource_version(written or {})
            own = self._own.get(key)
            if rv and own is not None:
                # Our own write: the next cycle must not take it for someone else's edit.
                own.status, own.resource_version = status, rv
                self.store.touched.add(key)

    @staticmethod
    def _count_outcomes(p: Plan) -> None:
        for ev in p.events:
            metrics.STEP_OUTCOMES.labels(reason=ev.reason).inc()
            if ev.reason == "StepRetrying":
                metrics.RETRIES.labels(kind=ev.failure or "other").inc()

    # --- faults ------------------------------------------------------------------------------------
    def _report_fault(self, fault: faults.Fault, key: Any) -> None:
        obj = self._object(fault.kind, key)
        if obj is not None:
            self.writer.event(obj, "Warning", fault.reason, f"{fault.stage} failed: {fault.message}")

    def _object(self, kind: str, key: Any) -> dict | None:
        table = {
            "Workflow": self.store.workflows,
            "CronWorkflow": self.store.cronworkflows,
            "Queue": self.store.queues,
            "StreamJob": self.store.streamjobs,
        }
        return table.get(kind, {}).get(key)

    # --- bookkeeping -------------------------------------------------------------------------------
    def _count_phases(self) -> None:
        phases = Counter(
            (wf.get("status") or {}).get("phase") or "Pending" for wf in self.store.workflows.values()
        )
        for phase in ("Pending", "Running", "Suspended", "Succeeded", "Failed"):
            metrics.WORKFLOWS.labels(phase=phase).set(phases.get(phase, 0))

    def _forget_gone(self, requests: dict) -> None:
        """Drop bookkeeping of objects and requests that no longer exist (a long-lived process)."""
        live = self.store.workflows
        for key in [k for k in self._own if k not in live]:
            del self._own[key]
        for key in [k for k in self._planned if k not in live]:
            del self._planned[key]
        for key in [k for k in self._dormant if k not in live]:
            del self._dormant[key]
        for key in [k for k in self._parked if k not in live]:
            self._unpark(key)
        for key in [k for k in self._write_backoff if k not in live]:
            del self._write_backoff[key]
        for key in [k for k in self._written_at if k not in live]:
            del self._written_at[key]
        for key in [k for k in self._put_off if k not in live]:
            del self._put_off[key]
        for key in [k for k in self._admitted_at if k not in live]:
            del self._admitted_at[key]
        for key in [k for k in self._workloads if k not in requests]:
            del self._workloads[key]
        for key in [k for k in self._ready_since if k not in requests]:
            del self._ready_since[key]
        for key in [k for k in self._refused if k not in requests]:
            del self._refused[key]
        self.subworkflows.forget()
        self.store.forget_tombstones()
        self.checks.forget({
            SpecChecks.key(kind, obj)
            for kind, table in (
                ("Workflow", live), ("CronWorkflow", self.store.cronworkflows), ("Queue", self.store.queues),
                ("StreamJob", self.store.streamjobs),
            )
            for obj in table.values()
        })  # fmt: skip
        self.faults.forget(lambda kind, key: self._object(kind, key) is not None)
