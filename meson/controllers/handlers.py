"""kopf registration: watch events only feed the in-memory view and wake the scheduling loop.

No handler writes to the API or holds policy: the loop (``scheduling``) is the single writer. Watch-event
handlers (``kopf.on.event``) are used rather than create/update handlers, because they are level-based:
kopf adds no finalizers and keeps no per-object progress, so a restart simply re-lists the world.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import signal
import socket
import uuid
from typing import Any

import kopf

from meson.adapters import kube, watch
from meson.controllers.leader import LeaderElector
from meson.controllers.scheduling import SchedulingLoop, Tuning
from meson.controllers.store import Store
from meson.stream import LABEL_STREAMJOB

log = logging.getLogger("meson.operator")
GROUP = kube.GROUP


def _feed(kind: str):
    # async: kopf runs it on the event loop's thread, the only thread that touches the view (kopf runs
    # synchronous handlers in worker threads, which would race the loop).
    async def handler(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        view: Store | None = memo.get("store")
        obj = event.get("object") or {}
        if view is None or not obj.get("metadata"):
            return
        getattr(view, f"on_{kind}")(event.get("type") or "ADDED", obj)

    handler.__name__ = f"feed_{kind}"
    return handler


# Workflows and pods, the resources with most events, are watched by meson.adapters.watch (see start()).
kopf.on.event(GROUP, kube.VERSION, "cronworkflows")(_feed("cronworkflow"))
kopf.on.event(GROUP, kube.VERSION, "queues")(_feed("queue"))
kopf.on.event(GROUP, kube.VERSION, "streamjobs")(_feed("streamjob"))
kopf.on.event("apps", "v1", "controllerrevisions", labels={LABEL_STREAMJOB: kopf.PRESENT})(
    _feed("controller_revision")
)
kopf.on.event("", "v1", "configmaps")(_feed("config_map"))  # semaphore limits (configMapKeyRef)


def _feed_template(kind: str):
    """WorkflowTemplates feed the loop's template view (not the store: only the loop reads them)."""

    async def handler(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        templates = memo.get("templates")
        obj = event.get("object") or {}
        if templates is not None and obj.get("metadata"):
            getattr(templates, f"on_{kind}")(event.get("type") or "ADDED", obj)

    handler.__name__ = f"feed_{kind}"
    return handler


kopf.on.event(GROUP, kube.VERSION, "workflowtemplates")(_feed_template("workflowtemplate"))
kopf.on.event(GROUP, kube.VERSION, "clusterworkflowtemplates")(_feed_template("clusterworkflowtemplate"))
kopf.on.event("", "v1", "nodes")(_feed("node"))
kopf.on.event("", "v1", "namespaces")(_feed("namespace"))
kopf.on.event("scheduling.k8s.io", "v1", "priorityclasses")(_feed("priority_class"))


def _listing(fn, *args: Any, **kwargs: Any) -> dict:
    resp = kube.call(fn, *args, _preload_content=False, **kwargs)
    return json.loads(resp.data)


def _list_raw(fn, *args: Any, **kwargs: Any) -> list[dict]:
    return _listing(fn, *args, **kwargs)["items"]


#: Resources the operator watches itself (meson.adapters.watch): (view kind, API path).
WATCHED = (("workflow", f"/apis/{GROUP}/{kube.VERSION}/workflows"), ("pod", "/api/v1/pods"))


def prime(view: Store, clients: kube.Clients) -> dict[str, str]:
    """List the world once before the first cycle, so a restarted operator acts on a complete view
    (kopf's watch events do not say when the initial listing is over). Returns the resourceVersions of
    the listings of the resources in :data:`WATCHED`: their watches start there."""
    custom = clients.custom
    listings = {
        "workflow": _listing(custom.list_cluster_custom_object, GROUP, kube.VERSION, "workflows"),
        "pod": _listing(clients.core.list_pod_for_all_namespaces),
    }
    for kind, items in (
        ("node", _list_raw(clients.core.list_node)),
        ("namespace", _list_raw(clients.core.list_namespace)),
        ("priority_class", _list_raw(clients.scheduling.list_priority_class)),
        ("queue", _list_raw(custom.list_cluster_custom_object, GROUP, kube.VERSION, "queues")),
        ("workflow", listings["workflow"]["items"]),
        ("cronworkflow", _list_raw(custom.list_cluster_custom_object, GROUP, kube.VERSION, "cronworkflows")),
        ("streamjob", _list_raw(custom.list_cluster_custom_object, GROUP, kube.VERSION, "streamjobs")),
        (
            "controller_revision",
            _list_raw(
                clients.apps.list_controller_revision_for_all_namespaces, label_selector=LABEL_STREAMJOB
            ),
        ),
        ("pod", listings["pod"]["items"]),
        ("config_map", _list_raw(clients.core.list_config_map_for_all_namespaces)),
    ):
        for obj in items:
            getattr(view, f"on_{kind}")("ADDED", obj)
    return {
        kind: (listing.get("metadata") or {}).get("resourceVersion") or ""
        for kind, listing in listings.items()
    }


def forget_unlisted(view: Store, kind: str, listed: set[tuple[str, str]]) -> None:
    """After a re-list (the watch's resourceVersion was too old): the objects of ``kind`` the view holds
    but the listing lacks were deleted while nothing was watched."""
    if kind == "workflow":
        for key in [k for k in view.workflows if k not in listed]:
            view.on_workflow("DELETED", view.workflows[key])
    else:
        for namespace, name in [k for k in view.pods if k not in listed]:
            view.vanished(namespace, name, by_meson=False)


def _start_watches(memo: kopf.Memo, view: Store, cfg: Any, listings: dict) -> None:
    tasks = []
    for kind, path in WATCHED:
        watcher = watch.Watcher(
            cfg, path, getattr(view, f"on_{kind}"), functools.partial(forget_unlisted, view, kind),
            name=f"{kind}s", resource_version=listings[kind],
        )  # fmt: skip
        tasks.append(asyncio.create_task(watcher.run(), name=f"meson-watch-{kind}s"))
    memo["watch_tasks"] = tasks


def prime_templates(templates: Any, clients: kube.Clients) -> None:
    """List the templates once, as prime() does the rest of the world. A cluster whose CRDs predate them
    (helm upgrade does not update CRDs) runs on without them: a workflow referring to one is refused."""
    custom = clients.custom
    for plural in ("workflowtemplates", "clusterworkflowtemplates"):
        try:
            items = _list_raw(custom.list_cluster_custom_object, GROUP, kube.VERSION, plural)
        except kube.ApiException as exc:
            if exc.status != 404:
                raise
            log.warning("no %s.%s CRD (apply crds/): workflowTemplateRef cannot be resolved", plural, GROUP)
            continue
        for obj in items:
            getattr(templates, f"on_{plural[:-1]}")("ADDED", obj)


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: the ServiceAccount; else the kubeconfig named by --kubeconfig ($KUBECONFIG, read now:
    the kubernetes package captures it at import, before the command line is parsed)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


class _NoDiffBase(kopf.DiffBaseStorage):
    """No diff base: Meson registers only event handlers, never change handlers, yet kopf builds a diff
    base for every event with a deep copy of the whole object (profiled: as much CPU as every scheduling
    cycle together on Kueue's trace). An empty essence makes that free; nothing is stored on objects."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.watching.server_timeout = 300  # long watches stall silently otherwise
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.scanning.disabled = True  # the CRDs are installed before the operator; no CRD RBAC needed
    settings.posting.level = logging.WARNING
    settings.persistence.diffbase_storage = _NoDiffBase()
    options = memo.get("options") or {}
    cfg = kube.load_client_config(options.get("kubeconfig"))
    clients = kube.Clients.from_config(cfg)
    memo["clients"] = clients
    if options.get("webhook") == "loopback":
        from meson.controllers import admission

        admission.configure_webhook(settings, port=options.get("webhook_port", 9443))
    view = Store()
    listings = await asyncio.get_running_loop().run_in_executor(None, prime, view, clients)
    _start_watches(memo, view, cfg, listings)
    loop = SchedulingLoop.tuned(view, clients, memo.get("tuning") or Tuning())
    await asyncio.get_running_loop().run_in_executor(None, prime_templates, loop.templates, clients)
    memo["templates"] = loop.templates
    memo["store"] = view
    memo["loop"] = loop
    election = memo.get("election")
    if election:
        _elect(memo, clients, loop, election)
    else:
        memo["task"] = asyncio.create_task(loop.run(), name="meson-scheduling-loop")
    log.info(
        "view primed: %d workflows, %d queues, %d nodes, %d pods",
        len(view.workflows), len(view.queues), len(view.nodes), len(view.pods),
    )  # fmt: skip


def _elect(memo: kopf.Memo, clients: kube.Clients, loop: SchedulingLoop, election: dict) -> None:
    """Run the loop only while leading; until then this replica is a warm standby (its view is fed)."""
    elector = LeaderElector(
        clients,
        namespace=election["namespace"],
        name=election["name"],
        identity=f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}",
        lease_duration=election["lease_duration"],
        renew_deadline=election["lease_duration"] * 2 / 3,
    )
    memo["elector"] = elector

    async def begin() -> None:
        memo["task"] = asyncio.create_task(loop.run(), name="meson-scheduling-loop")

    def lost() -> None:
        # Another replica may already lead: stop writing now, and exit as controller-runtime does.
        loop.stop()
        os.kill(os.getpid(), signal.SIGTERM)

    memo["election_task"] = asyncio.create_task(elector.lead(begin, lost), name="meson-leader-election")


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    """On SIGTERM: stop the loop (its in-flight writes are idempotent, queued ones are abandoned) and
    remove the webhook registration this process made, so the API server does not call a dead endpoint."""
    loop: SchedulingLoop | None = memo.get("loop")
    if loop is not None:
        loop.stop()
    task = memo.get("task")
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, timeout=3)
    election_task = memo.get("election_task")
    if election_task is not None:
        election_task.cancel()
    await watch.stop(memo.get("watch_tasks") or [])
    elector: LeaderElector | None = memo.get("elector")
    if elector is not None:
        await asyncio.get_running_loop().run_in_executor(None, elector.release)
    if (memo.get("options") or {}).get("webhook") == "loopback" and memo.get("clients") is not None:
        await asyncio.get_running_loop().run_in_executor(None, _unregister_webhook, memo["clients"])


def _unregister_webhook(clients: kube.Clients) -> None:
    """Remove the ValidatingWebhookConfiguration kopf registered (and a Mutating twin, if it made one)."""
    from meson.controllers.admission import WEBHOOK_CONFIGURATION

    api = clients.admissionregistration
    for delete in (api.delete_validating_webhook_configuration, api.delete_mutating_webhook_configuration):
        try:
            delete(WEBHOOK_CONFIGURATION, _request_timeout=5)
        except kube.ApiException as exc:
            if exc.status not in (403, 404):  # none made, or not ours to manage
                log.warning(
                    "could not remove webhook configuration %s: %s", WEBHOOK_CONFIGURATION, exc.reason
                )
        except Exception as exc:  # best effort: the next start re-registers it anyway
            log.warning("could not remove webhook configuration %s: %s", WEBHOOK_CONFIGURATION, exc)


@kopf.on.probe(id="cycle")
def cycle_probe(memo: kopf.Memo, **_: Any) -> bool:
    task = memo.get("task") or memo.get("election_task")  # a standby is healthy while it campaigns
    return task is not None and not task.done()
