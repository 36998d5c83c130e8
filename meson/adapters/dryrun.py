"""Server-side dry-run creates of the pods an object would make: the real Kubernetes pod rules.

Shared by the admission webhook (at apply time) and the scheduling loop (before the first pod of a
workflow is made, which is what protects a cluster whose webhook is off).

The dry runs use strict field validation (``fieldValidation=Strict``): by default the API server drops an
unknown field of a pod with only a warning, so a misspelt ``resorces`` would make a pod that requests
nothing (and escapes its queue's quota) instead of an error naming the field.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from meson.api.validation import sample_pods

logger = logging.getLogger("meson.dryrun")

#: (namespace, pod manifest) -> the API server's message when the pod is invalid, else None.
PodDryRun = Callable[[str, dict[str, Any]], str | None]

_CANNOT_HANDLE = " cannot be handled as a "
#: dryRun: nothing is persisted; fieldValidation: an unknown or duplicate field is an error, not a warning.
_QUERY = (("dryRun", "All"), ("fieldValidation", "Strict"))


def _api_message(exc: ApiException) -> str:
    return _body_message(exc.body, exc.reason)


def _body_message(body: str | bytes | None, reason: Any) -> str:
    try:
        message = json.loads(body or "{}").get("message") or str(reason)
    except (ValueError, AttributeError):
        message = str(body or reason)
    # 'Pod "wf-step-" is invalid: spec.containers[0]...' -> 'spec.containers[0]...'
    if " is invalid: " in message:
        message = message.split(" is invalid: ", 1)[1]
    # 'Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field "spec.x"'
    # -> 'strict decoding error: unknown field "spec.x"'
    elif _CANNOT_HANDLE in message:
        message = message.split(_CANNOT_HANDLE, 1)[1].split(": ", 1)[-1]
    return message


class Inconclusive(Exception):
    """The dry run said nothing about the pod itself (a missing ServiceAccount, a full ResourceQuota, an
    unreachable server): such failures may change before the pod is made."""


def pod_verdict(api: client.ApiClient, namespace: str, pod: dict[str, Any]) -> str | None:
    """Server-side dry-run create of ``pod``: the API server's message when it is invalid, None when valid,
    :class:`Inconclusive` when the answer says nothing about the pod (any status but 400/422)."""
    # The raw request: the typed client would validate (and reject) the body before the server sees it.
    method, url, headers, body, post = api.param_serialize(
        "POST",
        "/api/v1/namespaces/{namespace}/pods",
        path_params={"namespace": namespace},
        query_params=list(_QUERY),
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
        body=pod,
        auth_settings=["BearerToken"],
    )
    try:
        response = api.call_api(method, url, header_params=headers, body=body, post_params=post)
        response.read()
    except ApiException as exc:
        status, message = exc.status, _api_message(exc)
    else:
        if response.status < 400:
            return None
        status, message = response.status, _body_message(response.data, response.reason)
    if status in (400, 422):
        return message
    raise Inconclusive(f"{status}: {message}")


def pod_dry_run(api: client.ApiClient, namespace: str, pod: dict[str, Any]) -> str | None:
    """Server-side dry-run create of ``pod``; the API server's message when it is invalid.

    Unknown fields are errors (strict field validation), named by their path in the pod, e.g.
    ``strict decoding error: unknown field "spec.containers[0].resorces"``.

    Only a definite verdict on the pod itself counts (422 Invalid, 400 BadRequest); other failures (a
    missing ServiceAccount, a full ResourceQuota, an unreachable server) are logged and let through, since
    they say nothing about the template and may change before the pod is made.
    """
    try:
        return pod_verdict(api, namespace, pod)
    except Inconclusive as exc:
        logger.warning("pod dry run inconclusive (%s)", exc)
        return None


#: A label value the API server accepts (apimachinery's IsValidLabelValue): at most 63 characters.
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
#: Annotations far below the API server's limit (256 KiB for keys and values together).
_SMALL_ANNOTATIONS = 64 * 1024
_KUBERNETES_KEY = re.compile(r"(^|\.)(kubernetes\.io|k8s\.io)/")


def _verdict_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a pod's metadata its verdict depends on. Label and annotation values vary per workload
    (an item, a runtime, a run id) while the API server checks them by syntax and size alone, so values
    that pass the same checks here are left out of the key: a thousand workloads of one template that
    differ only in such values cost one dry run. A value that fails them stays in the key (its own
    verdict, with the server's message). An admission webhook that judges a value is not asked again for
    each value: what it refuses is refused at the pod create and shows on the step."""
    out = {k: v for k, v in meta.items() if k not in ("generateName", "name")}
    labels = out.get("labels")
    if isinstance(labels, Mapping):
        out["labels"] = {
            k: "" if isinstance(v, str) and len(v) <= 63 and _LABEL_VALUE.fullmatch(v) else v
            for k, v in labels.items()
        }
    notes = out.get("annotations")
    if (
        isinstance(notes, Mapping)
        and all(isinstance(v, str) for v in notes.values())
        and sum(len(k) + len(v) for k, v in notes.items()) <= _SMALL_ANNOTATIONS
    ):
        # Kubernetes' own annotations (seccomp, AppArmor) have values the API server checks: kept.
        out["annotations"] = {k: v if _KUBERNETES_KEY.search(k) else "" for k, v in notes.items()}
    return out


class VerdictCache:
    """Remembers definite dry-run verdicts per (namespace, pod template), so a thousand workflows made from
    one template cost one dry run, not a thousand (profiled: one API call per new workflow was the second
    cost of the operator on Kueue's trace). Inconclusive answers are never kept; a verdict is kept for
    ``ttl`` seconds (admission plugins and the API server's version may change what is valid), and at most
    ``size`` of them, least recently used first out. Thread-safe: the dry runs run in worker threads."""

    def __init__(
        self,
        verdict: Callable[[str, dict[str, Any]], str | None],
        *,
        size: int = 4096,
        ttl: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._verdict = verdict
        self._size, self._ttl, self._clock = size, ttl, clock
        self._kept: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, namespace: str, pod: dict[str, Any]) -> str | None:
        meta = _verdict_metadata(pod.get("metadata") or {})
        key = json.dumps([namespace, meta, pod.get("spec")], sort_keys=True)
        now = self._clock()
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and now - kept[0] < self._ttl:
                self._kept.move_to_end(key)
                return kept[1]
        try:
            verdict = self._verdict(namespace, pod)
        except Inconclusive as exc:
            logger.warning("pod dry run inconclusive (%s)", exc)
            return None
        with self._lock:
            self._kept[key] = (now, verdict)
            self._kept.move_to_end(key)
            while len(self._kept) > self._size:
                self._kept.popitem(last=False)
        return verdict


def dry_run_pods(kind: str, body: Mapping[str, Any], namespace: str | None, run: PodDryRun) -> list[str]:
    """Dry-run every pod template of ``body`` (rendered as it would be); messages for the invalid ones."""
    if not namespace:
        return []
    problems: list[str] = []
    seen: dict[str, str | None] = {}
    for where, pod in sample_pods(kind, body):
        pod["metadata"]["namespace"] = namespace
        meta = {k: v for k, v in pod["metadata"].items() if k != "generateName"}
        key = json.dumps([meta, pod["spec"]], sort_keys=True)
        if key not in seen:
            seen[key] = run(namespace, pod)
        if seen[key]:
            problems.append(f"{where}: invalid pod: {seen[key]}")
    return problems
