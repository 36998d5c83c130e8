"""Validating admission webhook for the Meson kinds, served by the operator through kopf.

What the CRD schema and its CEL rules cannot check is checked here, at ``kubectl apply`` time:
dependency cycles, foreach/condition/placeholder references, CEL conditions that do not compile, cron
schedules and time zones, queue hierarchy cycles (see :mod:`meson.api.validation`), and every pod template
against the real Kubernetes pod rules by a server-side dry-run Pod create (``dryRun=All``: nothing is
persisted, but the API server's defaulting, validation and admission plugins all run; and
``fieldValidation=Strict``: a misspelt pod field is refused with its path, not silently dropped).

A Queue whose parent does not exist yet is allowed (it waits, disabled, like a Kueue cohort); its parent
chain is read from the existing queues, so a cycle built one queue at a time is refused at its last step.

Two ways to serve it (``meson operator --webhook``):

* ``in-cluster`` (the chart's default; :func:`configure_in_cluster`): every replica serves on all addresses
  behind the chart's Service, with the certificate of the Secret that :mod:`meson.controllers.webhook_certs`
  keeps (the leader creates, rotates and injects its CA into the chart's ValidatingWebhookConfiguration),
  or of a directory (cert-manager's mounted Secret). :class:`ReloadingWebhookServer` swaps the certificate
  of the listening socket in place when it changes. kopf does not manage the configuration: the chart owns
  it (``failurePolicy``, ``timeoutSeconds``; ``clientConfig.service.path`` is ``/<handler id>``).
* ``loopback`` (development; :func:`configure_webhook`): kopf's webhook server on 127.0.0.1 with a
  self-signed certificate for 127.0.0.1/localhost, and ``settings.admission.managed`` set to
  ``validate.meson.dev`` so kopf creates and keeps that ValidatingWebhookConfiguration
  (``<handler>.validate.meson.dev`` webhooks, ``failurePolicy: Fail``) and removes its webhooks on exit. This
  fits a control plane whose API server reaches the operator on loopback.

When the webhook is off, the controllers call :func:`review` (or :func:`meson.api.validation.validate`)
themselves and refuse a bad object with the condition from :func:`meson.api.validation.invalid_condition`,
before any pod is created.

Only CREATE and UPDATE of the main resource are reviewed; an UPDATE that leaves ``spec`` unchanged (labels,
finalizers, kopf's own annotations) is allowed at once. Status writes go through the status subresource and
are never reviewed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kopf

from meson.adapters import dryrun, kube
from meson.adapters.dryrun import PodDryRun, _api_message  # noqa: F401 - re-exported
from meson.api.common import GROUP, VERSION
from meson.api.validation import (
    TemplateKey,
    parse,
    sub_workflow_cycle,
    sub_workflow_refs,
    template_key,
    validate,
)
from meson.api.workflowtemplate import ClusterWorkflowTemplate, WorkflowTemplate
from meson.controllers import webhook_certs
from meson.controllers.templates import template_problem
from meson.workflow.templates import unresolved_ref

__all__ = [
    "WEBHOOK_CONFIGURATION",
    "PodDryRun",
    "ReloadingWebhookServer",
    "configure_in_cluster",
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


def template_exists(namespace: str, ref: Mapping[str, Any], memo: Any = None) -> bool:
    """Whether the WorkflowTemplate (or ClusterWorkflowTemplate) a Workflow refers to exists."""
    custom = _clients(memo).custom
    name = str(ref.get("name") or "")
    try:
        if ref.get("clusterScope"):
            kube.call(custom.get_cluster_custom_object, GROUP, VERSION, "clusterworkflowtemplates", name)
        else:
            kube.call(
                custom.get_namespaced_custom_object, GROUP, VERSION, namespace, "workflowtemplates", name
            )
    except kube.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def template_refs(memo: Any = None) -> dict[TemplateKey, list[TemplateKey]]:
    """Every existing template and the templates its steps run as sub-workflows (for cycle checks)."""
    custom = _clients(memo).custom
    refs: dict[TemplateKey, list[TemplateKey]] = {}
    for plural, kind in (
        ("workflowtemplates", "WorkflowTemplate"),
        ("clusterworkflowtemplates", "ClusterWorkflowTemplate"),
    ):
        found = kube.call(custom.list_cluster_custom_object, GROUP, VERSION, plural)
        for item in found.get("items", []):
            model, _ = parse(kind, item)
            if isinstance(model, WorkflowTemplate | ClusterWorkflowTemplate):
                ns = item["metadata"].get("namespace") if kind == "WorkflowTemplate" else None
                key = template_key(ns, item["metadata"]["name"], kind == "ClusterWorkflowTemplate")
                refs[key] = sub_workflow_refs(model.spec, ns)
    return refs


def cycle_problem(
    kind: str,
    body: Mapping[str, Any],
    namespace: str | None,
    existing: Mapping[TemplateKey, list[TemplateKey]] | None = None,
    memo: Any = None,
) -> str | None:
    """Why a template would run itself through its sub-workflows (None: it would not, or it runs none)."""
    model, _ = parse(kind, body)
    if not isinstance(model, WorkflowTemplate | ClusterWorkflowTemplate):
        return None
    cluster = kind == "ClusterWorkflowTemplate"
    ns = None if cluster else namespace or (body.get("metadata") or {}).get("namespace") or "default"
    refs = sub_workflow_refs(model.spec, ns)
    if not refs:
        return None
    key = template_key(ns, str((body.get("metadata") or {}).get("name") or ""), cluster)
    return sub_workflow_cycle(key, refs, template_refs(memo) if existing is None else existing)


def review(
    kind: str,
    body: Mapping[str, Any],
    *,
    namespace: str | None = None,
    dry_run: PodDryRun | None = None,
    parents: Mapping[str, str | None] | None = None,
    check_pods: bool = True,
    templates: Mapping[TemplateKey, list[TemplateKey]] | None = None,
    memo: Any = None,
) -> list[str]:
    """Every problem of ``body``: pure checks, then (when those pass) the pod dry runs.

    ``parents`` (queue → parent) is looked up in the cluster for a Queue when not given, and so are
    ``templates`` (template → the templates its sub-workflow steps run) for a template that runs some.
    """
    if kind == "Queue" and parents is None:
        parents = queue_parents(exclude=(body.get("metadata") or {}).get("name"), memo=memo)
    problems = validate(kind, body, queue_parents=parents)
    ref = unresolved_ref(body.get("spec") or {}) if kind == "Workflow" else None
    if not problems and ref is not None:
        ns = namespace or (body.get("metadata") or {}).get("namespace") or "default"
        problem = template_problem(ref, ns, template_exists(ns, ref, memo))
        problems += [problem] if problem else []
    if not problems and kind in ("WorkflowTemplate", "ClusterWorkflowTemplate"):
        cycle = cycle_problem(kind, body, namespace, templates, memo)
        problems += [cycle] if cycle else []
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


@kopf.on.validate(GROUP, VERSION, "workflowtemplates", id="workflowtemplate", operations=["CREATE", "UPDATE"])
def validate_workflowtemplate(
    body: kopf.Body, old: Any, operation: str, namespace: Any, memo: kopf.Memo | None = None, **_: Any
) -> None:
    _admit("WorkflowTemplate", body, old, operation, namespace, memo)


@kopf.on.validate(
    GROUP, VERSION, "clusterworkflowtemplates", id="clusterworkflowtemplate", operations=["CREATE", "UPDATE"]
)
def validate_clusterworkflowtemplate(
    body: kopf.Body, old: Any, operation: str, namespace: Any, memo: kopf.Memo | None = None, **_: Any
) -> None:
    _admit("ClusterWorkflowTemplate", body, old, operation, namespace, memo)


@kopf.on.validate(GROUP, VERSION, "queues", id="queue", operations=["CREATE", "UPDATE"])
def validate_queue(
    body: kopf.Body, old: Any, operation: str, namespace: Any, memo: kopf.Memo | None = None, **_: Any
) -> None:
    _admit("Queue", body, old, operation, namespace, memo)


def self_signed_certificate(
    directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
) -> tuple[Path, Path]:
    """Write a self-signed ``tls.crt``/``tls.key`` (CA:TRUE, SANs for ``hosts``), for the loopback mode."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_pem, key_pem = webhook_certs.self_signed(hosts, webhook_certs.now_utc(), 3650 * webhook_certs.DAY)
    cert, key = directory / "tls.crt", directory / "tls.key"
    cert.write_bytes(cert_pem)
    key.touch(mode=0o600)
    key.write_bytes(key_pem)
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
    directory = certdir or Path(tempfile.mkdtemp(prefix="meson-webhook-"))
    cert, key = self_signed_certificate(directory, tuple(dict.fromkeys((host, addr, "localhost"))))
    server = kopf.WebhookServer(addr=addr, host=host, port=port, certfile=cert, pkeyfile=key, cafile=cert)
    settings.admission.server = server
    settings.admission.managed = managed
    return server


# --- in-cluster: behind a Service, with the Secret's certificate ---------------------------------------


class ReloadingWebhookServer(kopf.WebhookServer):
    """kopf's HTTPS webhook server with a certificate replaced in place: :meth:`load` swaps the
    certificate of the listening socket's TLS context, so connections in progress finish and new ones get
    the new certificate, with no restart (kopf's own file watching restarts the listener, refusing
    connections meanwhile). It starts listening once a certificate is loaded."""

    def __init__(self, *, addr: str | None, port: int) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        super().__init__(addr=addr, port=port, context=context)
        self.digest: str | None = None
        self.loaded = asyncio.Event()

    def load(self, cert_pem: bytes, key_pem: bytes) -> bool:
        """Serve this certificate from now on; False when it is the one served already."""
        digest = webhook_certs.digest(cert_pem, key_pem)
        if digest == self.digest:
            return False
        # ssl only loads from files: a private temporary file (0600), removed at once.
        with tempfile.NamedTemporaryFile(prefix="meson-webhook-", suffix=".pem") as f:
            f.write(key_pem + b"\n" + cert_pem)
            f.flush()
            assert self.context is not None
            self.context.load_cert_chain(f.name)
        self.digest = digest
        self.loaded.set()
        return True

    def _build_ssl(self) -> tuple[bytes | None, ssl.SSLContext | None]:  # kopf's hook, overridden
        return None, self.context

    async def __call__(self, fn: Any) -> Any:  # an async generator, like kopf's
        await self.loaded.wait()
        async for client_config in super().__call__(fn):
            yield client_config


def _may_write(memo: Any) -> bool:
    """Only the leader (or the only replica) creates and rotates the certificate."""
    if not memo.get("election"):
        return True
    elector = memo.get("elector")
    return elector is not None and bool(elector.leading)


def _read_cert_dir(directory: Path) -> dict[str, bytes] | None:
    try:
        return {
            webhook_certs.TLS_CERT: (directory / "tls.crt").read_bytes(),
            webhook_certs.TLS_KEY: (directory / "tls.key").read_bytes(),
        }
    except OSError:
        return None


async def _keep_certificate(
    server: ReloadingWebhookServer,
    manager: webhook_certs.CertificateManager | None,
    options: Mapping[str, Any],
) -> None:
    """Every ``webhook_check_interval`` seconds: reconcile the Secret (operator-managed) or read the
    mounted files (cert-manager), and serve what is there."""
    interval = float(options.get("webhook_check_interval") or 30)
    cert_dir = options.get("webhook_cert_dir")
    loop = asyncio.get_running_loop()
    waiting_logged = False
    while True:
        try:
            if manager is not None:
                data = await loop.run_in_executor(None, manager.reconcile)
            else:
                data = _read_cert_dir(Path(cert_dir))
            if data and webhook_certs.TLS_CERT in data and webhook_certs.TLS_KEY in data:
                if server.load(data[webhook_certs.TLS_CERT], data[webhook_certs.TLS_KEY]):
                    logger.info(
                        "webhook serving certificate %s", webhook_certs.summary(data[webhook_certs.TLS_CERT])
                    )
            elif not waiting_logged:
                logger.info("webhook waiting for its certificate (%s)", cert_dir or "the leader creates it")
                waiting_logged = True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the next pass tries again; the served certificate stays
            logger.warning("webhook certificate check failed: %s", exc)
        await asyncio.sleep(interval)


def configure_in_cluster(settings: kopf.OperatorSettings, memo: Any) -> ReloadingWebhookServer:
    """Serve the webhooks on all addresses (port ``webhook_port``) with the certificate of the Secret
    (operator-managed) or of ``webhook_cert_dir`` (cert-manager's mounted Secret). The chart owns the
    ValidatingWebhookConfiguration: kopf does not manage it (``settings.admission.managed`` stays None)."""
    options = memo.get("options") or {}
    server = ReloadingWebhookServer(addr=options.get("webhook_address") or None, port=options["webhook_port"])
    settings.admission.server = server
    settings.admission.managed = None
    manager = None
    if not options.get("webhook_cert_dir"):
        namespace = options.get("webhook_namespace") or os.environ.get("POD_NAMESPACE") or "default"
        manager = webhook_certs.CertificateManager(
            clients=_clients(memo),
            namespace=namespace,
            secret=options["webhook_secret"],
            configuration=options["webhook_configuration"],
            service=options["webhook_service"],
            policy=webhook_certs.CertPolicy(
                ca_validity=float(options["webhook_ca_validity"]),
                cert_validity=float(options["webhook_cert_validity"]),
            ),
            may_write=lambda: _may_write(memo),
        )
    memo["webhook_certificate_task"] = asyncio.create_task(
        _keep_certificate(server, manager, options), name="meson-webhook-certificate"
    )
    return server


@kopf.on.startup(id="webhook-in-cluster")
async def _start_in_cluster(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    if (memo.get("options") or {}).get("webhook") == "in-cluster":
        configure_in_cluster(settings, memo)


@kopf.on.cleanup(id="webhook-in-cluster")
async def _stop_in_cluster(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("webhook_certificate_task")
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
