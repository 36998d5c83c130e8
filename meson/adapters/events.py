"""Kubernetes Events about Meson objects, so `kubectl describe` and `kubectl get events` tell the story."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from kubernetes.client.exceptions import ApiException

from meson.adapters.kube import Clients, call

log = logging.getLogger("meson.events")
COMPONENT = "meson"


def post(
    clients: Clients, obj: dict, type_: str, reason: str, message: str, *, api_version: str | None = None
) -> None:
    """Record one Event on ``obj``; failures are logged, never raised (events are best-effort)."""
    meta = obj.get("metadata", {})
    namespace = meta.get("namespace") or "default"
    now = dt.datetime.now(dt.UTC)
    body = {
        "metadata": {"name": f"{meta.get('name', 'meson')}.{uuid.uuid4().hex[:12]}", "namespace": namespace},
        "involvedObject": {
            "apiVersion": api_version or obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": now.isoformat(),
        "lastTimestamp": now.isoformat(),
        "count": 1,
    }
    try:
        # Not decoded into the client's models, but read: only a read response frees its connection.
        call(clients.core.create_namespaced_event, namespace, body, _preload_content=False).read()
    except ApiException as e:
        # With the server's answer: a 403 for a namespace being deleted says NamespaceTerminating there.
        detail = str(e.body or "").replace("\n", " ")[:600]
        log.warning("could not record event %s on %s: %s %s", reason, meta.get("name"), e.reason, detail)
