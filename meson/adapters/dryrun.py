"""Server-side dry-run creates of the pods an object would make: the real Kubernetes pod rules.

Shared by the admission webhook (at apply time) and the scheduling loop (before the first pod of a
workflow is made, which is what protects a cluster whose webhook is off).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from meson.api.validation import sample_pods

logger = logging.getLogger("meson.dryrun")

#: (namespace, pod manifest) -> the API server's message when the pod is invalid, else None.
PodDryRun = Callable[[str, dict[str, Any]], str | None]


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
    return message


def pod_dry_run(api: client.ApiClient, namespace: str, pod: dict[str, Any]) -> str | None:
    """Server-side dry-run create of ``pod``; the API server's message when it is invalid.

    Only a definite verdict on the pod itself counts (422 Invalid, 400 BadRequest); other failures (a
    missing ServiceAccount, a full ResourceQuota, an unreachable server) are logged and let through, since
    they say nothing about the template and may change before the pod is made.
    """
    # The raw request: the typed client would validate (and reject) the body before the server sees it.
    method, url, headers, body, post = api.param_serialize(
        "POST",
        "/api/v1/namespaces/{namespace}/pods",
        path_params={"namespace": namespace},
        query_params=[("dryRun", "All")],
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
    logger.warning("pod dry run inconclusive (%s): %s", status, message)
    return None


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
