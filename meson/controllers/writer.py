"""The loop's writes to the API server: pods, status patches, deletions, Events.

Every call goes through :mod:`meson.adapters.kube` (retries with backoff) on a pool of worker threads,
so a cycle's writes run concurrently. Pods (creates and deletions: admissions and evictions) have their
own workers, so they never wait behind the status patches and template dry runs of every workflow that
arrived before them; pod creates of one namespace hold at most half of those workers, so a namespace whose
creates are throttled or slow (a webhook, a ResourceQuota admission under contention) cannot stall the
others. The in-memory view belongs to the event loop's thread:
results are handed back to it with ``call_soon_threadsafe``, never written from a worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import ValidationError

from meson.adapters import events, kube, metrics
from meson.controllers import translate
from meson.controllers.store import Key, Store

log = logging.getLogger("meson.writer")
API_VERSION = kube.API_VERSION
# Above this many transitions of one workflow in one cycle, Normal events are summarised in one.
EVENTS_PER_CYCLE = 30
# Events waiting to be posted, at most (as client-go's event broadcaster queues 1,000): beyond it they are
# dropped and counted, so that under load they neither pile up in memory nor keep the API server busy
# long after the burst that made them.
MAX_QUEUED_EVENTS = 1000


class Writer:
    def __init__(self, clients: kube.Clients, store: Store, workers: int = 16) -> None:
        self.clients = clients
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="meson-write")
        self._pods = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="meson-pods")
        self._events = ThreadPoolExecutor(max_workers=2, thread_name_prefix="meson-events")
        self._events_queued = 0
        self._events_lock = threading.Lock()
        # Checks (pod-template dry runs) gate a new workflow's first offer: never queued behind writes, and
        # as many as the writes (4 made Kueue's trace, whose templates all differ, twice as slow).
        self._checks = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="meson-checks")
        self._loop: asyncio.AbstractEventLoop | None = None
        # One namespace's slow creates or status writes may hold at most this share of their pool.
        self._namespace_share = max(1, workers // 2)
        self._creating: dict[str, asyncio.Semaphore] = {}
        self._patching: dict[str | None, asyncio.Semaphore] = {}
        # Status patches wait for a worker here, not in the pool's queue, so that the body is made only
        # when it is sent (see patch_status).
        self._status_slots = asyncio.Semaphore(workers)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def shutdown(self) -> None:
        """Abandon queued writes (they are idempotent and recomputed after a restart)."""
        kube.stop_retrying()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pods.shutdown(wait=False, cancel_futures=True)
        self._events.shutdown(wait=False, cancel_futures=True)
        self._checks.shutdown(wait=False, cancel_futures=True)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(*args))

    async def run_pod_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pods, lambda: fn(*args))

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Fire and forget a background check on its own pool."""
        self._checks.submit(fn, *args)

    def in_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """Writers run in worker threads; the view belongs to the event loop's thread."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(fn, *args)

    # --- pods ------------------------------------------------------------------------------------
    async def create_pods(self, kind: str, owner: dict, pods: Sequence[dict]) -> list[str]:
        """Create ``pods`` owned by ``owner``; the API server's messages for those it refused."""
        meta = owner["metadata"]
        namespace = meta["namespace"]
        ref = owner_reference(kind, owner)
        slots = self._creating.setdefault(namespace, asyncio.Semaphore(self._namespace_share))

        async def create(pod: dict) -> str | None:
            body = {**pod, "metadata": {**pod["metadata"], "namespace": namespace, "ownerReferences": [ref]}}
            async with slots:
                return await self.run_pod_call(self._create_pod, namespace, body)

        return [m for m in await asyncio.gather(*(create(pod) for pod in pods)) if m]

    def _create_pod(self, namespace: str, body: dict) -> str | None:
        try:
            # Raw JSON back: building and flattening V1Pod models costs more CPU than the request itself.
            created = kube.create(
                self.clients.core.create_namespaced_pod,
                namespace,
                quantities_as_strings(body),
                field_validation="Strict",  # a misspelt field is refused, never dropped
                _preload_content=False,
            )
        except kube.ApiException as e:
            message = _server_message(e)
            log.warning("pod %s/%s refused: %s", namespace, body["metadata"]["name"], message)
            return message or str(e.reason)
        except ValidationError as e:  # the client's own check of the body, before any request
            log.warning("pod %s/%s refused by the client: %s", namespace, body["metadata"]["name"], e)
            return f"invalid pod: {e}"
        if created is not None:
            self.in_loop(self.store.on_pod, "ADDED", json.loads(created.data))
        return None

    async def delete_pod(self, namespace: str, name: str, preempted_reason: str | None) -> None:
        def run() -> None:
            if preempted_reason is not None:
                # Mark first, so the deletion is known to be Meson's (no retry used), even if the
                # operator restarts before it sees the pod go.
                patch = {
                    "metadata": {"annotations": {translate.PREEMPTED_ANNOTATION: preempted_reason[:256]}}
                }
                try:
                    kube.call(self.clients.core.patch_namespaced_pod, name, namespace, patch)
                except kube.ApiException as e:
                    if e.status == 404:
                        self.in_loop(self.store.vanished, namespace, name, True)
                        return
                    raise
            # A pod deleted with a reason (preempted, or its admission rolled back) gets its own
            # termination grace period (SIGTERM first: a chance to checkpoint); the others go at once.
            grace = {} if preempted_reason is not None else {"grace_period_seconds": 0}
            if not kube.delete(
                self.clients.core.delete_namespaced_pod, name, namespace, **grace
            ):  # already gone: if the view still has it, the watch missed its deletion
                self.in_loop(self.store.vanished, namespace, name, preempted_reason is not None)

        await self.run_pod_call(run)

    # --- Meson objects ---------------------------------------------------------------------------
    async def delete_workflow(self, key: Key) -> None:
        await self.run(
            kube.delete,
            self.clients.custom.delete_namespaced_custom_object,
            kube.GROUP,
            kube.VERSION,
            key[0],
            "workflows",
            key[1],
        )

    async def patch_status(
        self, plural: str, namespace: str | None, name: str, body: dict | Callable[[], dict]
    ) -> dict | None:
        """The object as written (``{}`` if the server did not say), or None if it is gone. ``body`` may be
        a function, called on the loop's thread once a worker is free: a write that waited in line behind
        others then sends the newest status instead of the one current when it was queued."""
        slots = self._patching.setdefault(namespace, asyncio.Semaphore(self._namespace_share))
        async with slots, self._status_slots:
            sent = body() if callable(body) else body
            return await self.run(kube.patch_status, self.clients, plural, namespace, name, sent)

    async def create_revision(self, namespace: str, body: dict) -> dict | None:
        """A StreamJob's ControllerRevision (None: it existed already)."""
        create = self.clients.apps.create_namespaced_controller_revision
        created = await self.run(lambda: kube.create(create, namespace, body, _preload_content=False))
        return None if created is None else json.loads(created.data)

    async def delete_revision(self, namespace: str, name: str) -> None:
        await self.run(kube.delete, self.clients.apps.delete_namespaced_controller_revision, name, namespace)

    def create_workflow(self, cron_key: Key, body: dict) -> None:
        created = kube.create(
            self.clients.custom.create_namespaced_custom_object,
            kube.GROUP,
            kube.VERSION,
            cron_key[0],
            "workflows",
            body,
        )
        if created is not None:
            self.in_loop(self.store.on_workflow, "ADDED", created)

    # --- events ----------------------------------------------------------------------------------
    def event(self, obj: dict, type_: str, reason: str, message: str) -> None:
        """Best-effort and off the cycle's critical path."""
        self._submit_event(events.post, self.clients, obj, type_, reason, message, api_version=API_VERSION)

    def workflow_events(self, wf: dict, evs: list) -> None:
        if evs:
            self._submit_event(self._post_events, wf, list(evs))

    def _submit_event(self, fn: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        with self._events_lock:
            if self._events_queued >= MAX_QUEUED_EVENTS:
                metrics.EVENTS_DROPPED.inc()
                return
            self._events_queued += 1
        try:
            self._events.submit(fn, *args, **kwargs).add_done_callback(self._event_done)
        except RuntimeError:  # shut down
            self._event_done(None)

    def _event_done(self, _: object) -> None:
        with self._events_lock:
            self._events_queued -= 1

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


def owner_reference(kind: str, obj: dict) -> dict:
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


def merge_patch(new: dict, old: dict | None) -> dict:
    """A JSON merge patch turning ``old`` into ``new``: keys ``new`` dropped are set to null, in nested
    maps too (a merge patch keeps what it does not name, so ``usage: {}`` alone would change nothing)."""
    body = dict(new)
    for k, was in (old or {}).items():
        if k not in body:
            body[k] = None
        elif isinstance(was, dict) and isinstance(body[k], dict):
            body[k] = merge_patch(body[k], was)
    return body


def quantities_as_strings(pod: dict) -> dict:
    """``pod`` with every resource quantity a string. The API server takes ``nvidia.com/gpu: 4``, but the
    kubernetes client (v37) checks a pod body against its own types first and refuses a number there, so a
    template that the API server's dry run accepted would never make its pod."""
    spec = pod.get("spec") or {}

    def strings(resources: Any) -> Any:
        if not isinstance(resources, dict):
            return resources
        return {
            k: str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
            for k, v in resources.items()
        }

    def container(c: Any) -> Any:
        res = c.get("resources") if isinstance(c, dict) else None
        if not isinstance(res, dict):
            return c
        return {
            **c,
            "resources": {k: strings(v) if k in ("requests", "limits") else v for k, v in res.items()},
        }

    new = dict(spec)
    for field in ("containers", "initContainers", "ephemeralContainers"):
        if isinstance(spec.get(field), list):
            new[field] = [container(c) for c in spec[field]]
    if isinstance(spec.get("overhead"), dict):
        new["overhead"] = strings(spec["overhead"])
    if isinstance(spec.get("resources"), dict):
        new["resources"] = container({"resources": spec["resources"]})["resources"]
    return {**pod, "spec": new}


def _server_message(exc: kube.ApiException) -> str:
    """The API server's own words (the Status message), e.g. 'pods "x" is forbidden: no PriorityClass…'."""
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.body or exc.reason)
