"""Pod creation through the real kubernetes client: what the API server accepts must make a pod.

The client (v37) checks a pod body against its own types before sending it; a template that the API
server's dry run accepted (``nvidia.com/gpu: 4``, a number) must still be created, and a body the client
refuses must come back as the step's refusal, not as an exception that leaves the step waiting.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from meson.adapters import kube
from meson.controllers.store import Store
from meson.controllers.writer import Writer


class _Created:
    status, reason = 201, "Created"

    def __init__(self, body: Any) -> None:
        self.data = json.dumps(body).encode()
        self.response = self  # what the client hands back when the content is not preloaded

    def read(self) -> bytes:
        return self.data


def _writer(monkeypatch: pytest.MonkeyPatch, sent: list[dict]) -> Writer:
    """A Writer on a real ApiClient whose transport records each body and answers 201."""
    clients = kube.Clients.from_config(client.Configuration(host="https://127.0.0.1:6443"))

    def call_api(
        method: str, url: str, header_params: Any = None, body: Any = None, *_: Any, **__: Any
    ) -> _Created:
        sent.append(json.loads(body) if isinstance(body, str | bytes) else body)
        return _Created(body)

    monkeypatch.setattr(clients.api, "call_api", call_api)
    writer = Writer(clients, Store())
    writer.in_loop = lambda fn, *args: None  # type: ignore[method-assign]  # no event loop in this test
    return writer


def _pod(resources: dict) -> dict:
    container = {"name": "main", "image": "busybox:1.36", "resources": resources}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "wf-train-0"},
        "spec": {"containers": [container]},
    }


def test_a_pod_with_numeric_quantities_is_created(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[dict] = []
    writer = _writer(monkeypatch, sent)
    refused = writer._create_pod("team-a", _pod({"limits": {"nvidia.com/gpu": 4}, "requests": {"cpu": 0.5}}))
    assert refused is None
    assert sent[0]["spec"]["containers"][0]["resources"] == {
        "limits": {"nvidia.com/gpu": "4"},
        "requests": {"cpu": "0.5"},
    }


def test_a_body_the_client_refuses_is_a_refusal_not_an_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[dict] = []
    writer = _writer(monkeypatch, sent)
    pod = _pod({})
    pod["spec"]["containers"][0]["ports"] = [{"containerPort": "eighty"}]
    refused = writer._create_pod("team-a", pod)
    assert refused is not None and refused.startswith("invalid pod:") and "containerPort" in refused
    assert sent == []  # nothing reached the API server
