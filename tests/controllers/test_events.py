"""Kubernetes Events are best-effort: posted off the cycle's path, and under load a bounded backlog."""

from __future__ import annotations

import threading
from typing import Any

from kubernetes import client

from meson.adapters import kube, metrics
from meson.controllers import writer as writer_module
from meson.controllers.store import Store
from meson.controllers.writer import Writer
from meson.workflow.types import WorkflowEvent


def test_events_beyond_the_backlog_bound_are_dropped_and_counted(monkeypatch) -> None:
    """While the API server is slow, at most MAX_QUEUED_EVENTS wait: a burst of 10,000 workflows' events
    must not keep posting for minutes after it (measured: an 'idle' minute after 10,000 workflows settled
    spent 16 s of CPU posting old events). Those that waited are all posted once it answers again."""
    monkeypatch.setattr(writer_module, "MAX_QUEUED_EVENTS", 20)
    clients = kube.Clients.from_config(client.Configuration(host="https://127.0.0.1:6443"))
    w = Writer(clients, Store())
    release = threading.Event()
    posted: list[str] = []

    def post(_clients: Any, obj: dict, type_: str, reason: str, message: str, **_: Any) -> None:
        release.wait(10)
        posted.append(message)

    monkeypatch.setattr(writer_module.events, "post", post)
    dropped = metrics.EVENTS_DROPPED._value.get()
    wf = {"metadata": {"namespace": "ns", "name": "w", "uid": "u"}}
    for i in range(30):
        w.workflow_events(wf, [WorkflowEvent("Normal", "StepStarted", f"step {i}")])
    w.event(wf, "Normal", "Other", "one more")
    assert metrics.EVENTS_DROPPED._value.get() - dropped == 11
    release.set()
    w._events.shutdown(wait=True)
    assert sorted(posted, key=lambda m: int(m.split()[1])) == [f"step {i}" for i in range(20)]


def test_an_event_refused_says_why_in_the_log(monkeypatch, caplog) -> None:
    """An Event refused by the API server is logged with the server's answer, not only its reason: a 403
    because the namespace is being deleted (NamespaceTerminating) is not a missing permission, and the
    RBAC e2e test tells the two apart by it."""
    from kubernetes.client.exceptions import ApiException

    from meson.adapters import events

    clients = kube.Clients.from_config(client.Configuration(host="https://127.0.0.1:6443"))
    refusal = ApiException(status=403, reason="Forbidden")
    refusal.body = '{"reason":"Forbidden","details":{"causes":[{"reason":"NamespaceTerminating"}]}}'

    def refuse(*_: Any, **__: Any) -> Any:
        raise refusal

    monkeypatch.setattr(events, "call", refuse)
    with caplog.at_level("WARNING", logger=events.log.name):
        events.post(clients, {"metadata": {"namespace": "gone", "name": "clicks"}}, "Warning", "X", "m")
    assert "Forbidden" in caplog.text and "NamespaceTerminating" in caplog.text
