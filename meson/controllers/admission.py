"""Validating admission webhook for the Meson kinds, served by the operator through kopf.

What the CRD schema and its CEL rules cannot check is checked here, at ``kubectl apply`` time:
dependency cycles, foreach/condition/placeholder references, CEL conditions that do not compile, cron
schedules and time zones, queue hierarchy cycles (see :mod:`meson.api.validation`), and every pod template
against the real Kubernetes pod rules by a server-side dry-run Pod create (``dryRun=All``: nothing is
persisted, but the API server's defaulting, validation and admission plugins all run; and
``fieldValidation=Strict``: a misspelt pod field is refused with its path, not silently dropped).

A Queue whose parent does not exist yet is allowed (it waits, disabled, like a Kueue cohort); its parent
chain is read from the existing queues, so a cycle built one queue at a time is refused at its last step.

Using it from the operator entry point::

    import kopf
    from meson.controllers import admission  # importing registers the @kopf.on.validate handlers

    @kopf.on.startup()
    def configure(settings: kopf.OperatorSettings, **_):
        admission.configure_webhook(settings)            # loopback server, self-signed cert, managed config

``configure_webhook`` starts kopf's webhook server on 127.0.0.1 (port 9443 by default) with a self-signed
certificate for 127.0.0.1/localhost (made with ``openssl``; kopf's own generator is used instead when
``certbuilder`` is installed and openssl is not), and sets ``settings.admission.managed`` to
``validate.meson.dev`` so kopf creates and keeps the ValidatingWebhookConfiguration of that name
(``<handler>.validate.meson.dev`` webhooks with the right caBundle and URLs) and removes its webhooks on exit.
This fits a control plane whose API server reaches the operator on loopback (the e2e cluster); in a real
cluster pass ``host``/``addr`` of a Service or use kopf's other servers.

The webhooks use ``failurePolicy: Fail``: while the operator runs, a bad object cannot get in. When the
webhook is off, the controllers call :func:`review` (or :func:`meson.api.validation.validate`) themselves and
refuse a bad object with the condition from :func:`meson.api.validation.invalid_condition`, before any pod
is created.

Only CREATE and UPDATE of the main resource are reviewed; an UPDATE that leaves ``spec`` unchanged (labels,
finalizers, kopf's own annotations) is allowed at once. Status writes go through the status subresource and
are never reviewed.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kopf

from meson.adapters import dryrun, kube
from meson.adapters.dryrun import PodDryRun, _api_message  # noqa: F401 - re-exported
from meson.api.common import GROUP, VERSION
from meson.api.validation import validate

__all__ = [
    "WEBHOOK_CONFIGURATION",
    "PodDryRun",
    "configure_webhook",
    "dry_run_pods",
    "queue_parents",
    "review",
    "self_signed_certificate",
]

logger = logging.getLogger(__name__)

WEBHOOK_CONFIGURATION = "validate.meson.dev"
DEFAULT_PORT = 9443


def _clients(memo: Any = None) -> kube.Clients:
    """The operator's clients (kept in kopf's memo at start-up), else ones from the default config."""
    clients = (memo or {}).get("clients") if memo is not None else None
    if clients is None:
        clients = kube.Clients.from_config(kube.load_client_config())
        if memo is not None:
            memo["clients"] = clients
    return clients


def kubernetes_pod_dry_run(namespace: str, pod: dict[str, Any], memo: Any = None) -> str | None:
    """Server-side dry-run create of ``pod`` (see :func:`meson.adapters.dryrun.pod_dry_run`)."""
    return dryrun.pod_dry_run(_clients(memo).api, namespace, pod)


def dry_run_pods(
    kind: str, body: Mapping[str, Any], namespace: str | None, dry_run: PodDryRun | None = None
) -> list[str]:
    """Dry-run every pod template of ``body`` (rendered as it would be); messages for the invalid ones."""
    return dryrun.dry_run_pods(kind, body, namespace, dry_run or kubernetes_pod_dry_run)


def queue_parents(exclude: str | None = None, memo: Any = None) -> dict[str, str | None]:
    """Every existing queue and its parent (for hierarchy-cycle checks), without ``exclude``."""
    custom = _clients(memo).custom
    queues = kube.call(custom.list_cluster_custom_object, GROUP, VERSION, "queues")
    return {
        item["metadata"]["name"]: (item.get("spec") or {}).get("parent")
        for item in queues.get("items", [])
        if item["metadata"]["name"] != exclude
    }


def review(
    kind: str,
    body: Mapping[str, Any],
    *,
    namespace: str | None = None,
    dry_run: PodDryRun | None = None,
    parents: Mapping[str, str | None] | None = None,
    check_pods: bool = True,
    memo: Any = None,
) -> list[str]:
    """Every problem of ``body``: pure checks, then (when those pass) the pod dry runs.

    ``parents`` (queue → parent) is looked up in the cluster for a Queue when not given.
    """
    if kind == "Queue" and parents is None:
        parents = queue_parents(exclude=(body.get("metadata") or {}).get("name"), memo=memo)
    problems = validate(kind, body, queue_parents=parents)
    if not problems and check_pods and kind != "Queue":
        ns = namespace or (body.get("metadata") or {}).get("namespace")
        problems += dry_run_pods(kind, body, ns, dry_run or (lambda n, p: kubernetes_pod_dry_run(n, p, memo)))
    return problems


def _admit(
    kind: str,
    body: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    operation: str,
    namespace: Any,
    memo: Any,
) -> None:
    if operation == "UPDATE" and old is not None and old.get("spec") == body.get("spec"):
        return
    problems = review(kind, body, namespace=namespace, memo=memo)
    if problems:
        raise kopf.AdmissionError("; ".join(problems), code=422)


@kopf.on.validate(GROUP, VERSION, "workflows", id="workflow", operations=["CREATE", "UPDATE"])
def validate_workflow(
    body: kopf.Body, old: Any, operation: str, namespace: Any, memo: kopf.Memo | None = None, **_: Any
) -> None:
    _admit("Workflow", body, old, operation, namespace, memo)


@kopf.on.validate(GROUP, VERSION, "cronworkflows", id="cronworkflow", operations=["CREATE", "UPDATE"])
def validate_cronworkflow(
    body: kopf.Body, old: Any, operation: str, namespace: Any, memo: kopf.Memo | None = None, **_: Any
) -> None:
    _admit("CronWorkflow", body, old, operation, namespace, memo)


@kopf.on.validate(GROUP, VERSION, "streamjobs", id="streamjob", operations=["CREATE", "UPDATE"])
def validate_streamjob(
    body: kopf.Body, old: Any, operation: str, namespace: Any, memo: kopf.Memo | None = None, **_: Any
) -> None:
    _admit("StreamJob", body, old, operation, namespace, memo)


@kopf.on.validate(GROUP, VERSION, "queues", id="queue", operations=["CREATE", "UPDATE"])
def validate_queue(
    body: kopf.Body, old: Any, operation: str, namespace: Any, memo: kopf.Memo | None = None, **_: Any
) -> None:
    _admit("Queue", body, old, operation, namespace, memo)


def self_signed_certificate(
    directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
) -> tuple[Path, Path]:
    """Write a self-signed ``tls.crt``/``tls.key`` (CA:TRUE, SANs for ``hosts``) with openssl."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "tls.crt", directory / "tls.key"
    sans = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() or ":" in h else f"DNS:{h}" for h in hosts)
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "3650",
            "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={hosts[0]}",
            "-addext", f"subjectAltName={sans}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
            "-addext", "extendedKeyUsage=serverAuth",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    key.chmod(0o600)
    return cert, key


def configure_webhook(
    settings: kopf.OperatorSettings,
    *,
    addr: str = "127.0.0.1",
    host: str | None = None,
    port: int = DEFAULT_PORT,
    certdir: Path | None = None,
    managed: str = WEBHOOK_CONFIGURATION,
) -> kopf.WebhookServer:
    """Serve the validating webhooks on ``addr:port`` with a self-signed certificate; let kopf manage the
    ValidatingWebhookConfiguration ``managed``. Call from a ``@kopf.on.startup`` handler."""
    host = host or addr
    if shutil.which("openssl"):
        directory = certdir or Path(tempfile.mkdtemp(prefix="meson-webhook-"))
        cert, key = self_signed_certificate(directory, tuple(dict.fromkeys((host, addr, "localhost"))))
        server = kopf.WebhookServer(addr=addr, host=host, port=port, certfile=cert, pkeyfile=key, cafile=cert)
    else:  # kopf generates one itself (needs the certbuilder package)
        server = kopf.WebhookServer(addr=addr, host=host, port=port)
    settings.admission.server = server
    settings.admission.managed = managed
    return server
