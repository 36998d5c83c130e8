"""The one way Meson talks to the API server: typed clients plus retries with backoff.

Every write goes through :func:`call`, which retries what is worth retrying (429 with its Retry-After,
5xx, timeouts and dropped connections) with exponential backoff and jitter, and hands everything else
back at once. Whether a 409 is success depends on the call: creating an object whose deterministic name
already exists means "already done" (see :func:`create`), so that a repeated create is harmless.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException  # re-exported: callers need not import kubernetes
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from meson.adapters import metrics
from meson.api.common import API_VERSION, GROUP, VERSION  # noqa: F401 - re-exported for the controllers

log = logging.getLogger("meson.api")
T = TypeVar("T")
__all__ = ["ApiException", "Clients", "call", "create", "delete", "load_client_config", "patch_status"]

RETRIABLE_STATUS = frozenset({429, 500, 502, 503, 504})


def load_client_config(kubeconfig: str | None = None) -> client.Configuration:
    """In-cluster config when running in a pod, else the kubeconfig ($KUBECONFIG or ~/.kube/config)."""
    cfg = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=cfg)
    except config.ConfigException:
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    # The operator writes from several threads at once (the writer's four pools: 16 + 16 + 16 + 2, plus
    # leader election and the webhook's certificates): with fewer connections than threads, urllib3 drops
    # the extra ones after each call ("Connection pool is full") and the next call pays a TLS handshake.
    cfg.connection_pool_maxsize = 64
    return cfg


@dataclass
class Clients:
    """The typed API groups Meson uses, sharing one connection pool."""

    api: client.ApiClient
    core: client.CoreV1Api
    custom: client.CustomObjectsApi
    scheduling: client.SchedulingV1Api
    admissionregistration: client.AdmissionregistrationV1Api
    coordination: client.CoordinationV1Api
    apps: client.AppsV1Api

    @classmethod
    def from_config(cls, cfg: client.Configuration) -> Clients:
        api = client.ApiClient(cfg)
        return cls(
            api,
            client.CoreV1Api(api),
            client.CustomObjectsApi(api),
            client.SchedulingV1Api(api),
            client.AdmissionregistrationV1Api(api),
            client.CoordinationV1Api(api),
            client.AppsV1Api(api),
        )


def too_large(exc: BaseException) -> bool:
    """The object or request exceeds what the API server or etcd stores: retrying cannot help."""
    if not isinstance(exc, ApiException):
        return False
    return exc.status == 413 or "too large" in str(exc.body or "") or "too long" in str(exc.body or "")


def _retriable(exc: BaseException) -> bool:
    if isinstance(exc, ApiException):
        if too_large(exc):
            return False
        return exc.status in RETRIABLE_STATUS or exc.status == 0
    return isinstance(exc, urllib3.exceptions.HTTPError | TimeoutError | ConnectionError)


def _wait(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, ApiException) and exc.status == 429 and exc.headers:
        retry_after = exc.headers.get("Retry-After")
        if retry_after and retry_after.isdigit():
            return min(float(retry_after), 30.0)
    return wait_exponential_jitter(multiplier=0.2, max=10.0)(state)


def _before_sleep(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    status = getattr(exc, "status", type(exc).__name__)
    metrics.API_ERRORS.labels(status=str(status)).inc()
    log.warning("API call failed (%s), retry %d: %s", status, state.attempt_number, exc)


_stopping = threading.Event()


def stop_retrying() -> None:
    """On shutdown: calls in flight give up instead of retrying (their work is idempotent and is
    recomputed after a restart), so the process can exit within seconds."""
    _stopping.set()


def _sleep(seconds: float) -> None:
    if _stopping.wait(seconds):
        raise TimeoutError("operator is stopping")


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call an API method, retrying transient failures with backoff."""
    metrics.API_REQUESTS.labels(call=getattr(fn, "__name__", "other")).inc()
    retrying = Retrying(
        retry=retry_if_exception(_retriable),
        wait=_wait,
        stop=stop_after_attempt(12) | stop_after_delay(120) | (lambda _: _stopping.is_set()),
        before_sleep=_before_sleep,
        reraise=True,
        sleep=lambda seconds: _sleep(seconds),
    )
    try:
        return retrying(fn, *args, **kwargs)
    except ApiException as e:
        metrics.API_ERRORS.labels(status=str(e.status)).inc()
        raise


def create(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Create an object with a deterministic name; an existing one (409) counts as done and returns None."""
    try:
        return call(fn, *args, **kwargs)
    except ApiException as e:
        if e.status == 409:
            return None
        raise


def delete(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
    """Delete an object; one already gone (404) counts as done. Returns whether it existed."""
    try:
        call(fn, *args, **kwargs)
        return True
    except ApiException as e:
        if e.status == 404:
            return False
        raise


def patch_status(
    clients: Clients, plural: str, namespace: str | None, name: str, status: dict
) -> dict | None:
    """Merge-patch the status subresource of a Meson object. Returns the object as written (``{}`` if the
    server did not say), or None when the object is gone."""
    body = {"status": status}
    try:
        if namespace is None:
            out = call(clients.custom.patch_cluster_custom_object_status, GROUP, VERSION, plural, name, body)
        else:
            out = call(
                clients.custom.patch_namespaced_custom_object_status,
                GROUP, VERSION, namespace, plural, name, body,
            )  # fmt: skip
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    return out if isinstance(out, dict) else {}
