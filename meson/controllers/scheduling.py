"""The scheduling loop: the operator's only writer.

One cycle: read the in-memory view; ask the workflow engine what each workflow needs (``plan``); hand
every step instance that needs admission to the scheduling core together with what is already admitted
and the observed node capacity; apply the core's decisions (create the admitted pods, evict preemption
victims); then write what changed (workflow and queue status, events, TTL and cron children).

Writes are idempotent so a crash at any point is safe: pods have deterministic names (a repeated create
is a 409, taken as done), status is recomputed from the pods, and the view is updated with each write's
result so the next cycle never acts on a view older than its own writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

from meson.adapters import dryrun, events, kube, metrics
from meson.api.validation import invalid_condition, validate
from meson.controllers import translate
from meson.controllers.store import Key, Store
from meson.core import AdmittedWorkload, Resources, Scheduler, Snapshot, Workload, validate_queues
from meson.core.resources import format_quantity
from meson.workflow import InstanceRequest, Plan, plan, with_queue_positions
from meson.workflow.cron import LABEL_CRONWORKFLOW, SCHEDULED_TIME_ANNOTATION, ChildWorkflow, plan_cron

log = logging.getLogger("meson.scheduling")
API_VERSION = "meson.dev/v1alpha1"
# A cycle runs at least this often even when nothing happened, as a safety net for missed wake-ups.
RESYNC_SECONDS = 30.0
RETRY_KINDS = ("FailedExit", "NodeLost", "Evicted", "Timeout")
# Above this many transitions of one workflow in one cycle, Normal events are summarised in one.
EVENTS_PER_CYCLE = 30
# Fault injection for the crash-safety e2e test: exit abruptly after creating this many pods.
CRASH_AFTER_POD_CREATES = int(os.environ.get("MESON_TEST_CRASH_AFTER_POD_CREATES", "0"))


_creates = itertools.count(1)


@dataclass
class CycleResult:
    admitted: int = 0
    preempted: int = 0
    pending: int = 0
    writes: int = 0
    wake_at: float | None = None


@dataclass
class SchedulingLoop:
    store: Store
    clients: kube.Clients
    scheduler: Scheduler = field(default_factory=Scheduler)
    clock: Callable[[], float] = time.time
    workers: int = 16
    _pool: ThreadPoolExecutor = field(init=False)
    _events: ThreadPoolExecutor = field(init=False)
    _written_status: dict[Key, dict] = field(default_factory=dict)
    _ready_since: dict[str, float] = field(default_factory=dict)
    _invalid: dict[tuple[str, int], list[str] | None] = field(default_factory=dict)
    _queue_status: dict[str, dict] = field(default_factory=dict)
    _event_loop: asyncio.AbstractEventLoop | None = None

    def __post_init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="meson-write")
        self._events = ThreadPoolExecutor(max_workers=2, thread_name_prefix="meson-events")

    # --- running ---------------------------------------------------------------------------------
    async def run(self) -> None:
        self._event_loop = asyncio.get_running_loop()
        wake_at: float | None = None
        while True:
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
            except Exception:  # a bad cycle must not kill the loop; the next one starts from the view
                log.exception("scheduling cycle failed; retrying")
                wake_at = self.clock() + 1.0
            metrics.CYCLE_SECONDS.observe(time.perf_counter() - started)
            # Let a burst of watch events coalesce into the next cycle.
            await asyncio.sleep(0.05)

    async def _write(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(*args))

    # --- one cycle ---------------------------------------------------------------------------------
    async def cycle(self) -> CycleResult:
        now = self.clock()
        store = self.store
        result = CycleResult()
        wakes: list[float] = []

        queues = [translate.queue_config(q) for q in store.queues.values()]
        queue_errors = validate_queues(queues)
        if queue_errors:
            log.error("queue configuration is invalid, admitting nothing: %s", "; ".join(queue_errors))
            queues = []
        limited = translate.quota_resources(queues)

        plans: dict[Key, Plan] = {}
        requests: dict[str, tuple[Key, InstanceRequest]] = {}
        pending: list[Workload] = []
        admitted: list[AdmittedWorkload] = []
        blocked: dict[str, tuple[int, str]] = {}
        node_names = set(store.nodes)
        refusals = []
        for key, wf in list(store.workflows.items()):
            problems = self._problems(wf)
            if problems is None and not store.workflow_pods.get(key):
                continue  # its pod templates are being dry-run; nothing of it runs yet
            refused = self._refusal(wf, problems or [])
            if refused is not None:
                if refused != (wf.get("status") or {}) and refused != self._written_status.get(key):
                    refusals.append(self._patch_workflow_status(key, wf, refused, None))
                continue
            observations = store.observations(key)
            p = plan(wf, observations, now, nodes=node_names)
            plans[key] = p
            if p.wake_at is not None:
                wakes.append(p.wake_at)
            spec = wf.get("spec") or {}
            queue_name = spec.get("queue", "default")
            priority = store.priority_of(spec.get("priorityClassName"))
            queue_obj = store.queues.get(queue_name)
            ns_ok = queue_obj is None or translate.namespace_allowed(
                queue_obj, key[0], store.namespaces.get(key[0])
            )
            keep = limited.get(queue_name, frozenset())
            started: dict[tuple[str, int], float] = {}
            for obs in observations:
                k = (obs.instance, obs.run)
                started[k] = min(started.get(k, obs.created), obs.created)
            for req in p.admitted:
                # When its first pod was made: preemption picks the newest admissions first.
                since = started.get((req.instance, req.run), now)
                admitted.append(AdmittedWorkload(self._workload(req, queue_name, priority, keep), since))
            for req in p.pending:
                requests[req.key] = (key, req)
                self._ready_since.setdefault(req.key, now)
                if not ns_ok:
                    blocked[req.key] = (0, f"namespace {key[0]} may not submit to queue {queue_name}")
                    continue
                pending.append(self._workload(req, queue_name, priority, keep))

        decisions = self.scheduler.cycle(
            Snapshot(
                now=now,
                queues=queues,
                pending=pending,
                admitted=admitted,
                nodes=translate.node_capacities(store.nodes, store.node_usage()),
            )
        )
        if decisions.wake_at is not None:
            wakes.append(decisions.wake_at)

        # Admissions first: they are what users wait for.
        creates = []
        for adm in decisions.admit:
            wf_key, req = requests[adm.key]
            wf = store.workflows.get(wf_key)
            if wf is None:
                continue
            creates.append(self._create_pods(wf, req.pods))
            waited = now - self._ready_since.pop(adm.key, now)
            metrics.ADMISSION_WAIT.labels(queue=adm.queue).observe(waited)
            metrics.ADMISSIONS.labels(queue=adm.queue).inc()
        result.admitted = len(creates)
        for key, p in plans.items():
            # Gang members of an admitted run never created (a crash mid-creation): finish the job.
            if p.create_pods and key in store.workflows:
                creates.append(self._create_pods(store.workflows[key], p.create_pods))
        await asyncio.gather(*creates)

        victims = {p.victim_key: p for p in decisions.preempt}
        deletes = []
        for key, p in plans.items():
            for pod_name in p.delete_pods:
                deletes.append(self._delete_pod(key[0], pod_name, None))
            for req in p.admitted:
                if req.key in victims:
                    reason = victims[req.key].reason
                    metrics.PREEMPTIONS.labels(
                        queue=(store.workflows[key].get("spec") or {}).get("queue", "")
                    ).inc()
                    for pod_name in self._pods_of_run(key, req):
                        deletes.append(self._delete_pod(key[0], pod_name, reason))
        # Pods bound to a deleted node are lost; remove ours at once (as the pod garbage collector would,
        # after its quarantine) so the engine retries them now and nothing reports a dead pod's success.
        for (ns, name), rec in store.pods.items():
            if rec.workflow is not None and rec.node in store.deleted_nodes and not rec.terminal:
                deletes.append(self._delete_pod(ns, name, None))
        result.preempted = len(victims)
        await asyncio.gather(*deletes)

        # Status, events, TTL.
        writes = []
        positions: dict[Key, dict[str, tuple[int, str]]] = defaultdict(dict)
        for wkey, (key, req) in requests.items():
            info = blocked.get(wkey)
            if info is None and wkey in decisions.pending:
                pi = decisions.pending[wkey]
                info = (pi.position, pi.reason)
            if info is not None:
                positions[key][req.instance] = info
        for key, p in plans.items():
            wf = store.workflows.get(key)
            if wf is None:
                continue
            if p.delete_workflow:
                writes.append(self._delete_workflow(key))
                continue
            status = with_queue_positions(p.status, positions.get(key, {}))
            if status != (wf.get("status") or {}) and status != self._written_status.get(key):
                writes.append(self._patch_workflow_status(key, wf, status, p))
        writes += self._queue_status_writes(queues, pending, admitted, decisions)
        writes += self._cron_writes(now, wakes)
        writes += refusals
        result.writes = len(writes)
        await asyncio.gather(*writes)

        result.pending = len(pending)
        phases = Counter(
            (wf.get("status") or {}).get("phase") or "Pending" for wf in store.workflows.values()
        )
        for phase in ("Pending", "Running", "Suspended", "Succeeded", "Failed"):
            metrics.WORKFLOWS.labels(phase=phase).set(phases.get(phase, 0))
        self._forget_gone(requests)
        result.wake_at = min(wakes) if wakes else None
        return result

    # --- helpers -----------------------------------------------------------------------------------
    def _forget_gone(self, requests: dict) -> None:
        """Drop bookkeeping of workflows and requests that no longer exist (a long-lived process)."""
        live = self.store.workflows
        for key in [k for k in self._written_status if k not in live]:
            del self._written_status[key]
        for key in [k for k in self._ready_since if k not in requests]:
            del self._ready_since[key]
        uids = {
            (wf["metadata"].get("uid", ""), int(wf["metadata"].get("generation") or 0))
            for wf in live.values()
        }
        for key in [k for k in self._invalid if k not in uids]:
            del self._invalid[key]

    @staticmethod
    def _workload(req: InstanceRequest, queue: str, priority: int, limited: frozenset[str]) -> Workload:
        # Resources a queue tree names no quota for are not limited by it (see the Queue API).
        request = {k: v for k, v in req.pod_request.items() if k in limited}
        return Workload(
            key=req.key,
            queue=queue,
            priority=priority,
            created=req.created,
            pod_request=Resources(request),
            pod_count=req.pod_count,
            gang=req.gang,
        )

    def _problems(self, wf: dict) -> list[str] | None:
        """What is wrong with a workflow (empty: nothing), or None while its pods are being dry-run.

        Without the webhook, the API server accepts what only Meson can check (a dependency cycle) and pod
        templates it never validated; so every new generation is checked here, once, before any pod is made:
        the pure checks, then a server-side dry-run create of each distinct pod template."""
        meta = wf["metadata"]
        cache_key = (meta.get("uid", ""), int(meta.get("generation") or 0))
        if cache_key in self._invalid:
            return self._invalid[cache_key]
        problems = validate("Workflow", wf)
        if problems or (wf.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            self._invalid[cache_key] = problems
            return problems
        self._invalid[cache_key] = None

        def dry_run() -> None:
            try:
                found = dryrun.dry_run_pods(
                    "Workflow",
                    wf,
                    meta.get("namespace"),
                    lambda ns, pod: dryrun.pod_dry_run(self.clients.api, ns, pod),
                )
            except Exception:  # an unreachable server says nothing about the template
                log.exception(
                    "pod dry run of %s/%s failed; admitting it unchecked", meta.get("namespace"), meta["name"]
                )
                found = []
            self._call_in_loop(self._checked, cache_key, found)

        self._pool.submit(dry_run)
        return None

    def _checked(self, cache_key: tuple[str, int], problems: list[str]) -> None:
        self._invalid[cache_key] = problems
        self.store.wake.set()

    def _refusal(self, wf: dict, messages: list[str]) -> dict | None:
        """The status of a refused workflow: Failed, with a Valid=False condition; None if it is valid."""
        meta = wf["metadata"]
        if not messages:
            return None
        status = dict(wf.get("status") or {})
        if status.get("phase") == "Failed" and any(
            c.get("type") == "Valid" and c.get("status") == "False" for c in status.get("conditions") or []
        ):
            return status  # already refused; the condition's timestamp must not churn
        status.update(phase="Failed", message="invalid: " + "; ".join(messages)[:900])
        status["conditions"] = [invalid_condition(messages, generation=meta.get("generation"))]
        return status

    def _pods_of_run(self, key: Key, req: InstanceRequest) -> list[str]:
        names = []
        for obs in self.store.observations(key):
            if (
                obs.instance == req.instance
                and obs.run == req.run
                and obs.phase not in ("Succeeded", "Failed", "Gone")
            ):
                names.append(obs.name)
        return names

    async def _create_pods(self, wf: dict, pods: Sequence[dict]) -> None:
        meta = wf["metadata"]
        owner = _owner("Workflow", wf)
        calls = []
        for pod in pods:
            body = {
                **pod,
                "metadata": {**pod["metadata"], "namespace": meta["namespace"], "ownerReferences": [owner]},
            }
            calls.append(self._write(self._create_pod, meta["namespace"], body))
        await asyncio.gather(*calls)

    def _create_pod(self, namespace: str, body: dict) -> None:
        try:
            # Raw JSON back: building and flattening V1Pod models costs more CPU than the request itself.
            created = kube.create(
                self.clients.core.create_namespaced_pod, namespace, body, _preload_content=False
            )
        except ApiException as e:
            # A pod the API server refuses (a quota, an admission policy) is reported, not retried blindly.
            log.error("creating pod %s/%s failed: %s", namespace, body["metadata"]["name"], e.reason)
            return
        if created is not None:
            self._call_in_loop(self.store.on_pod, "ADDED", json.loads(created.data))
        if CRASH_AFTER_POD_CREATES and next(_creates) >= CRASH_AFTER_POD_CREATES:
            log.error("MESON_TEST_CRASH_AFTER_POD_CREATES reached: exiting mid-admission")
            os._exit(137)

    def _call_in_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """Writers run in worker threads; the view belongs to the event loop's thread."""
        assert self._event_loop is not None
        self._event_loop.call_soon_threadsafe(fn, *args)

    async def _delete_pod(self, namespace: str, name: str, preempted_reason: str | None) -> None:
        def run() -> None:
            if preempted_reason is not None:
                # Mark first, so the deletion is known to be Meson's preemption (no retry used), even
                # if the operator restarts before it sees the pod go.
                try:
                    kube.call(
                        self.clients.core.patch_namespaced_pod,
                        name,
                        namespace,
                        {
                            "metadata": {
                                "annotations": {translate.PREEMPTED_ANNOTATION: preempted_reason[:256]}
                            }
                        },
                    )
                except ApiException as e:
                    if e.status == 404:
                        return
                    raise
            kube.delete(self.clients.core.delete_namespaced_pod, name, namespace, grace_period_seconds=0)

        await self._write(run)

    async def _delete_workflow(self, key: Key) -> None:
        await self._write(
            kube.delete,
            self.clients.custom.delete_namespaced_custom_object,
            kube.GROUP,
            kube.VERSION,
            key[0],
            "workflows",
            key[1],
        )

    async def _patch_workflow_status(self, key: Key, wf: dict, status: dict, p: Plan | None) -> None:
        def run() -> None:
            ok = kube.patch_status(
                self.clients, "workflows", key[0], key[1], _replace_lists(status, wf.get("status"))
            )
            if ok and p is not None:
                for ev in p.events:
                    metrics.STEP_OUTCOMES.labels(reason=ev.reason).inc()
                    if ev.reason == "StepRetrying":
                        kind = next((k for k in RETRY_KINDS if k in ev.message), "other")
                        metrics.RETRIES.labels(kind=kind).inc()
                # Events are best-effort and must not slow the cycle down: posted in the background.
                self._events.submit(self._post_events, wf, list(p.events))

        await self._write(run)
        # Only a write that went through is remembered: a failed one is simply recomputed next cycle.
        self._written_status[key] = status
        current = self.store.workflows.get(key)
        if current is not None:
            # Record our own write at once (resourceVersion unchanged: the watch event will supersede it).
            self.store.workflows[key] = {**current, "status": status}

    def _post_events(self, wf: dict, evs: list) -> None:
        """Post a workflow's events; a huge fan-out is summarised rather than flooding the API server."""
        shown = evs
        if len(evs) > EVENTS_PER_CYCLE:
            shown = [e for e in evs if e.type == "Warning"][:EVENTS_PER_CYCLE]
        for ev in shown:
            events.post(self.clients, wf, ev.type, ev.reason, ev.message, api_version=API_VERSION)
        if len(shown) < len(evs):
            counts = Counter(e.reason for e in evs if e not in shown)
            summary = ", ".join(f"{n} {reason}" for reason, n in counts.most_common())
            events.post(self.clients, wf, "Normal", "StepTransitions", summary, api_version=API_VERSION)

    def _queue_status_writes(self, queues, pending, admitted, decisions) -> list:
        by_queue_pending = Counter(w.queue for w in pending)
        by_queue_admitted = Counter(a.queue for a in admitted)
        usage: dict[str, Resources] = defaultdict(Resources)
        parents = {q.name: q.parent for q in queues}
        for a in admitted:
            q: str | None = a.queue
            while q is not None:
                usage[q] = usage[q] + a.total
                q = parents.get(q)
        admitted_now = Counter(d.queue for d in decisions.admit)
        writes = []
        for q in queues:
            used = usage.get(q.name, Resources())
            borrowed = (used - q.guaranteed).positive()
            status = {
                "pending": by_queue_pending.get(q.name, 0) - admitted_now.get(q.name, 0),
                "admitted": by_queue_admitted.get(q.name, 0) + admitted_now.get(q.name, 0),
                "usage": {k: format_quantity(k, v) for k, v in sorted(used.items())},
                "borrowed": {k: format_quantity(k, v) for k, v in sorted(borrowed.items())},
            }
            metrics.PENDING.labels(queue=q.name).set(status["pending"])
            metrics.ADMITTED.labels(queue=q.name).set(status["admitted"])
            if self._queue_status.get(q.name) != status:
                old = (self.store.queues.get(q.name) or {}).get("status") or {}
                writes.append(self._patch_queue_status(q.name, status, _replace_lists(status, old)))
        return writes

    async def _patch_queue_status(self, name: str, status: dict, body: dict) -> None:
        await self._write(kube.patch_status, self.clients, "queues", None, name, body)
        self._queue_status[name] = status

    def _cron_writes(self, now: float, wakes: list[float]) -> list:
        writes = []
        children: dict[Key, list[ChildWorkflow]] = defaultdict(list)
        for (ns, name), wf in self.store.workflows.items():
            cron = (wf["metadata"].get("labels") or {}).get(LABEL_CRONWORKFLOW)
            if cron:
                st = wf.get("status") or {}
                scheduled = translate.epoch(
                    (wf["metadata"].get("annotations") or {}).get(SCHEDULED_TIME_ANNOTATION)
                )
                children[(ns, cron)].append(
                    ChildWorkflow(
                        name=name,
                        scheduled=scheduled
                        or translate.epoch(wf["metadata"].get("creationTimestamp"))
                        or now,
                        phase=st.get("phase") or "Pending",
                        finished=translate.epoch(st.get("finishedAt")),
                    )
                )
        for key, cron in list(self.store.cronworkflows.items()):
            cp = plan_cron(cron, now, children.get(key, []))
            if cp.wake_at is not None:
                wakes.append(cp.wake_at)
            owner = _owner("CronWorkflow", cron)
            for name in cp.delete:
                writes.append(self._delete_workflow((key[0], name)))
            for name, manifest in cp.create:
                body = {
                    **manifest,
                    "metadata": {**manifest["metadata"], "namespace": key[0], "ownerReferences": [owner]},
                }
                writes.append(self._write(self._create_workflow, key, name, body, cron))
            if cp.status != (cron.get("status") or {}):
                writes.append(
                    self._write(
                        kube.patch_status,
                        self.clients,
                        "cronworkflows",
                        key[0],
                        key[1],
                        _replace_lists(cp.status, cron.get("status")),
                    )
                )
        return writes

    def _create_workflow(self, cron_key: Key, name: str, body: dict, cron: dict) -> None:
        created = kube.create(
            self.clients.custom.create_namespaced_custom_object,
            kube.GROUP,
            kube.VERSION,
            cron_key[0],
            "workflows",
            body,
        )
        if created is not None:
            self._call_in_loop(self.store.on_workflow, "ADDED", created)
            events.post(
                self.clients,
                cron,
                "Normal",
                "WorkflowCreated",
                f"created workflow {name}",
                api_version=API_VERSION,
            )


def _owner(kind: str, obj: dict) -> dict:
    """The controller ownerReference that lets the garbage collector delete what Meson made."""
    meta = obj["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _replace_lists(new: dict, old: dict | None) -> dict:
    """A merge patch that also removes keys the new status dropped (merge patch keeps unnamed keys)."""
    body = dict(new)
    for k in old or {}:
        if k not in body:
            body[k] = None
    return body
