"""The Helm chart on the real control plane, and the operator running with exactly the chart's permissions.

``helm install`` puts the chart into a fresh namespace (webhook.mode=in-cluster, the default: its webhook
Service is routed to the local operator, see e2e/webhook_endpoint.py). Pods on kwok nodes never run
containers, so the Deployment's pod is only a stand-in (kept "Running" by the ``sim.meson.dev/keep-running``
annotation, so that kwok does not end it and the ReplicaSet does not recreate it in a loop). The real operator
runs as a local process instead, authenticated as the chart's ServiceAccount with a TokenRequest token
(``kubectl create token``): whatever it can do there, it can do in a cluster with this chart, and nothing
more.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from e2e.conftest import Cluster
from e2e.helpers import wait_for
from e2e.test_chart import EXPECTED_RULES
from e2e.webhook_endpoint import route_service_to_host

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "meson"

# What `kubectl auth can-i --list` must show for the chart's ServiceAccount beyond what every authenticated
# user gets (system:basic-user, system:discovery): the reviewed tables of e2e/test_chart.py, as the API
# server sees them. Cluster-wide (seen from any namespace): the ClusterRole, and the caBundle of the release's
# own ValidatingWebhookConfiguration by name.
EXPECTED_GRANTS = {
    **EXPECTED_RULES,
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"): frozenset({"get", "patch"}),
}


@dataclass
class Release:
    name: str
    namespace: str
    service_account: str
    webhook_port: int = 0  # where a local operator must serve the webhook (the Service is routed there)

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


@pytest.fixture(scope="module")
def release(cluster: Cluster) -> Iterator[Release]:
    """The chart installed into its own namespace (module-scoped: every test here shares one install)."""
    namespace = f"t-helm-{uuid.uuid4().hex[:8]}"
    name = f"meson-{namespace}"  # the ClusterRole/Binding are cluster-scoped: unique per run
    cluster.kubectl("create", "namespace", namespace)
    try:
        cluster.helm(
            "install", name, str(CHART), "--namespace", namespace,
            # kwok would otherwise "complete" the stand-in pod at once and the ReplicaSet would replace it
            # in a tight loop.
            "--set-string", r"podAnnotations.sim\.meson\.dev/keep-running=true",
            "--wait", "--timeout", "120s",
        )  # fmt: skip
        # helm installs crds/ first when they are absent (another test may have applied them already).
        cluster.wait_established("workflows", "cronworkflows", "queues", "streamjobs")
        # webhook.mode=in-cluster (the default): the chart's webhook Service is routed to the port the local
        # operator will serve on (e2e/webhook_endpoint.py), since the chart's pods on kwok never run.
        port = _free_port()
        route_service_to_host(cluster, namespace, f"{name}-webhook", port)
        yield Release(name=name, namespace=namespace, service_account=name, webhook_port=port)
    finally:
        cluster.helm("uninstall", name, "--namespace", namespace, "--wait", "--timeout", "120s", check=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    # Uninstall removes the cluster-scoped objects too (a leftover ClusterRoleBinding would be a grant that
    # outlives the release).
    for kind in ("clusterrole", "clusterrolebinding"):
        assert cluster.kubectl("get", kind, name, check=False).returncode != 0, f"{kind} {name} left behind"


# --- install --------------------------------------------------------------------------------------------


def test_helm_install_creates_the_operator_objects(cluster: Cluster, release: Release) -> None:
    status = cluster.helm("status", release.name, "--namespace", release.namespace, "-o", "yaml").stdout
    assert yaml.safe_load(status)["info"]["status"] == "deployed"
    ns = ("--namespace", release.namespace)
    deployment = yaml.safe_load(cluster.kubectl("get", "deployment", release.name, *ns, "-o", "yaml").stdout)
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2  # a leader and a warm standby
    assert pod["serviceAccountName"] == release.service_account
    assert pod["containers"][0]["args"][:1] == ["operator"]
    cluster.kubectl("get", "serviceaccount", release.service_account, *ns)
    cluster.kubectl("get", "service", f"{release.name}-metrics", *ns)
    role = yaml.safe_load(cluster.kubectl("get", "clusterrole", release.name, "-o", "yaml").stdout)
    assert role["metadata"]["labels"]["app.kubernetes.io/instance"] == release.name
    binding = yaml.safe_load(cluster.kubectl("get", "clusterrolebinding", release.name, "-o", "yaml").stdout)
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": release.service_account, "namespace": release.namespace}
    ]
    # The API server accepted the pod as rendered (non-root, read-only root fs, no capabilities): the
    # Deployment's ReplicaSet created it.
    wait_for(
        lambda: cluster.kubectl(
            "get", "pods", *ns, "-l", f"app.kubernetes.io/instance={release.name}", "-o", "name"
        ).stdout.strip(),
        60,
        "the operator Deployment's pod",
    )


# --- RBAC as the API server sees it --------------------------------------------------------------------


def can_i_list(
    cluster: Cluster, user: str, namespace: str = "default", names: dict | None = None
) -> dict[tuple[str, str], frozenset[str]]:
    """`kubectl auth can-i --list --as=user`, resource rows only: (group, resource[/subresource]) -> verbs.
    ``names``, when given, collects the Resource Names column: (group, resource) -> {names}."""
    out = cluster.kubectl("auth", "can-i", "--list", f"--as={user}", "--namespace", namespace).stdout
    lines = out.splitlines()
    header = lines[0]
    assert header.split()[:2] == ["Resources", "Non-Resource"], header
    urls_at = header.index("Non-Resource URLs")
    grants: dict[tuple[str, str], set[str]] = {}
    for line in lines[1:]:
        resource = line[:urls_at].strip()
        if not resource:
            continue  # a non-resource URL row (/healthz, /api, ...)
        base, _, sub = resource.partition("/")
        plural, _, group = base.partition(".")
        assert plural != "*" and group != "*", f"wildcard grant: {line}"
        verbs = line[line.rindex("[") + 1 : line.rindex("]")].split()
        if names is not None:
            named = line[header.index("Resource Names") : line.rindex("[")].strip()
            names.setdefault((group, plural + (f"/{sub}" if sub else "")), set()).update(
                named.strip("[]").split()
            )
        grants.setdefault((group, plural + (f"/{sub}" if sub else "")), set()).update(verbs)
    return {k: frozenset(v) for k, v in grants.items()}


def test_service_account_has_exactly_the_granted_verbs(cluster: Cluster, release: Release) -> None:
    granted = can_i_list(cluster, release.user)
    # The baseline: what the namespace's default ServiceAccount (no bindings) may do.
    baseline = can_i_list(cluster, f"system:serviceaccount:{release.namespace}:default")
    assert set(baseline) <= {
        ("authentication.k8s.io", "selfsubjectreviews"),
        ("authorization.k8s.io", "selfsubjectaccessreviews"),
        ("authorization.k8s.io", "selfsubjectrulesreviews"),
    }, baseline
    extra = {k: v for k, v in granted.items() if baseline.get(k) != v}
    assert extra == EXPECTED_GRANTS
    # In the release's namespace, the Roles add the Lease and the webhook certificate's Secret, by name.
    names: dict[tuple[str, str], set[str]] = {}
    in_namespace = can_i_list(cluster, release.user, release.namespace, names)
    assert {k: v for k, v in in_namespace.items() if granted.get(k) != v} == {
        ("coordination.k8s.io", "leases"): frozenset({"create", "get", "update"}),
        ("", "secrets"): frozenset({"get", "patch"}),
    }
    assert names[("", "secrets")] == {f"{release.name}-webhook-tls"}
    assert names[("coordination.k8s.io", "leases")] == {release.name}
    assert names[("admissionregistration.k8s.io", "validatingwebhookconfigurations")] == {
        f"{release.name}-webhook"
    }


@pytest.mark.parametrize(
    "what",
    [
        "secrets/{name}-webhook-tls",
        "validatingwebhookconfigurations.admissionregistration.k8s.io/{name}-webhook",
    ],
)
def test_service_account_may_patch_its_webhook_objects_by_name(
    cluster: Cluster, release: Release, what: str
) -> None:
    target = what.format(name=release.name)
    for verb in ("get", "patch"):
        proc = cluster.kubectl(
            "auth", "can-i", verb, target, f"--as={release.user}", "-n", release.namespace, check=False
        )
        assert proc.stdout.strip() == "yes", (verb, target, proc.stdout, proc.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ("get", "secrets"),
        ("list", "secrets", "--all-namespaces"),
        ("watch", "secrets", "--all-namespaces"),
        ("get", "configmaps"),
        ("delete", "nodes"),
        ("patch", "nodes"),
        ("create", "nodes"),
        ("get", "customresourcedefinitions.apiextensions.k8s.io"),
        ("create", "customresourcedefinitions.apiextensions.k8s.io"),
        ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
        ("create", "validatingwebhookconfigurations.admissionregistration.k8s.io"),
        # The webhook certificate: its one Secret and the release's own webhook configuration, by name only.
        ("create", "secrets"),
        ("list", "secrets"),
        ("get", "secrets/another-secret"),
        ("patch", "secrets/another-secret"),
        ("delete", "secrets"),
        ("patch", "validatingwebhookconfigurations.admissionregistration.k8s.io/another-webhook"),
        ("delete", "validatingwebhookconfigurations.admissionregistration.k8s.io"),
        ("list", "validatingwebhookconfigurations.admissionregistration.k8s.io"),
        ("patch", "mutatingwebhookconfigurations.admissionregistration.k8s.io"),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
        ("create", "serviceaccounts", "--subresource=token"),
        ("create", "pods", "--subresource=exec"),
        ("get", "nodes", "--subresource=proxy"),
        ("create", "pods", "--subresource=binding"),
        ("patch", "pods", "--subresource=status"),
        ("update", "pods"),
        ("deletecollection", "pods"),
        # Leader election may create its Lease and get/update that one by name; nothing else.
        ("update", "leases.coordination.k8s.io/another-controllers-lease"),
        ("delete", "leases.coordination.k8s.io"),
        ("create", "queues.meson.dev"),
        ("delete", "cronworkflows.meson.dev"),
        ("update", "streamjobs.meson.dev"),
    ],
    ids=lambda a: " ".join(a).replace("--subresource=", "/"),
)
def test_service_account_is_denied(cluster: Cluster, release: Release, args: tuple[str, ...]) -> None:
    proc = cluster.kubectl(
        "auth", "can-i", *args, f"--as={release.user}", "--namespace", release.namespace, check=False
    )
    assert proc.stdout.strip() == "no", (args, proc.stdout, proc.stderr)


# --- the operator with the chart's permissions --------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_account_kubeconfig(cluster: Cluster, release: Release, path: Path) -> Path:
    """A kubeconfig with the chart ServiceAccount's token and the cluster's own server and CA."""
    token = cluster.kubectl(
        "create", "token", release.service_account, "--namespace", release.namespace, "--duration", "1h"
    ).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    server = next(c for c in admin["clusters"] if c["name"] == context["cluster"])["cluster"]
    ca = server.get("certificate-authority")
    if ca and not Path(ca).is_absolute():
        server = {**server, "certificate-authority": str(cluster.kubeconfig.parent / ca)}
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "meson-e2e", "cluster": server}],
                "users": [{"name": "meson-operator", "user": {"token": token}}],
                "contexts": [
                    {"name": "operator", "context": {"cluster": "meson-e2e", "user": "meson-operator"}}
                ],
                "current-context": "operator",
            }
        )
    )
    path.chmod(0o600)
    return path


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def operator_process(
    kubeconfig: Path, log_path: Path, chart_args: tuple[str, ...] = ()
) -> Iterator[tuple[subprocess.Popen, int]]:
    """`meson operator` as a local process, with the arguments the chart's Deployment passes (``chart_args``:
    leader election and scheduling flags; the ports are ours); stopped (SIGTERM, then SIGKILL) on the way
    out."""
    liveness = _free_port()
    # $KUBECONFIG is the ServiceAccount's too, so that no code path can fall back to the admin config: kopf's
    # own login (kopf.login_via_client) ignores --kubeconfig and reads $KUBECONFIG, as frozen when the
    # kubernetes package is first imported (before `meson operator` parses its arguments).
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "meson.cli", "operator", *chart_args,
                "--kubeconfig", str(kubeconfig), "--metrics-port", "0", "--liveness-port", str(liveness),
            ],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            yield proc, liveness
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


def test_operator_runs_a_workflow_with_only_the_chart_permissions(
    cluster: Cluster, release: Release, tmp_path: Path
) -> None:
    kubeconfig = service_account_kubeconfig(cluster, release, tmp_path / "operator.kubeconfig")
    # The token really is the ServiceAccount's (and not the admin's).
    whoami = cluster.kubectl("--kubeconfig", str(kubeconfig), "auth", "whoami", "-o", "yaml").stdout
    assert yaml.safe_load(whoami)["status"]["userInfo"]["username"] == release.user

    ns = release.namespace
    queue = f"helm-rbac-{ns.removeprefix('t-helm-')}"
    workflow = "helm-rbac"
    step_pod = {
        "metadata": {"annotations": {"sim.meson.dev/duration": "1s"}},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                }
            ]
        },
    }
    manifests = [
        {
            "apiVersion": "meson.dev/v1alpha1",
            "kind": "Queue",
            "metadata": {"name": queue},
            "spec": {
                "quota": {"cpu": {"guaranteed": "4", "limit": "4"}, "memory": {"guaranteed": "8Gi"}},
                "namespaces": {"names": [ns]},
            },
        },
        # A sub-workflow two levels down: the webhook lists the templates (cycle check), the operator
        # creates the child Workflows and makes each from its template (a patch of its spec).
        {
            "apiVersion": "meson.dev/v1alpha1",
            "kind": "WorkflowTemplate",
            "metadata": {"name": "helm-rbac-inner", "namespace": ns},
            "spec": {"queue": queue, "steps": [{"name": "leaf", "template": step_pod}]},
        },
        {
            "apiVersion": "meson.dev/v1alpha1",
            "kind": "WorkflowTemplate",
            "metadata": {"name": "helm-rbac-outer", "namespace": ns},
            "spec": {
                "queue": queue,
                "steps": [{"name": "inner", "workflowTemplateRef": {"name": "helm-rbac-inner"}}],
            },
        },
        {
            "apiVersion": "meson.dev/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": workflow, "namespace": ns},
            "spec": {
                "queue": queue,
                "steps": [
                    {"name": "first", "template": step_pod},
                    {"name": "second", "dependencies": ["first"], "template": step_pod},
                    {
                        "name": "sub",
                        "dependencies": ["first"],
                        "workflowTemplateRef": {"name": "helm-rbac-outer"},
                    },
                ],
            },
        },
    ]
    log_path = tmp_path / "operator.log"

    def log_tail() -> str:
        return log_path.read_text()[-6000:] if log_path.exists() else "(no log)"

    deployment = yaml.safe_load(
        cluster.kubectl("get", "deployment", release.name, "-n", ns, "-o", "yaml").stdout
    )
    chart_args = tuple(deployment["spec"]["template"]["spec"]["containers"][0]["args"][1:])
    assert "--leader-elect" in chart_args  # so the Lease permissions are exercised below
    assert "in-cluster" in chart_args  # and the webhook certificate's (Secret, caBundle)
    chart_args = (*chart_args, "--webhook-port", str(release.webhook_port))  # where the Service is routed
    try:
        with operator_process(kubeconfig, log_path, chart_args) as (proc, liveness):
            # The liveness endpoint the chart's probes use answers once the operator has started.
            deadline = time.monotonic() + 90
            while not _healthy(liveness):
                assert proc.poll() is None, f"operator exited ({proc.returncode}):\n{log_tail()}"
                assert time.monotonic() < deadline, f"operator not healthy after 90s:\n{log_tail()}"
                time.sleep(0.5)

            # As leader it fills the chart's Secret with a CA and a serving certificate and injects the CA
            # into the chart's ValidatingWebhookConfiguration; the Workflow and Queue below pass through it.
            def injected() -> bool:
                assert proc.poll() is None, f"operator exited ({proc.returncode}):\n{log_tail()}"
                out = cluster.kubectl(
                    "get", "validatingwebhookconfiguration", f"{release.name}-webhook",
                    "-o", "jsonpath={.webhooks[*].clientConfig.caBundle}",
                ).stdout.split()  # fmt: skip
                return len(out) == 6  # one webhook per kind (workflow ... clusterworkflowtemplate)

            wait_for(injected, 90, "the webhook CA bundle injected", interval=1)
            cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(manifests))

            def phase() -> str | None:
                assert proc.poll() is None, f"operator exited ({proc.returncode}):\n{log_tail()}"
                out = cluster.kubectl(
                    "get", "workflow", workflow, "-n", ns, "-o", "jsonpath={.status.phase}", check=False
                ).stdout
                assert out not in ("Failed", "Error"), f"workflow {out}:\n{log_tail()}"
                return out == "Succeeded" and out

            try:
                wait_for(phase, 180, f"workflow {ns}/{workflow} to succeed", interval=1)
            except AssertionError as e:
                status = cluster.kubectl("get", "workflow", workflow, "-n", ns, "-o", "yaml", check=False)
                raise AssertionError(
                    f"{e}\n--- workflow:\n{status.stdout}\n--- operator log:\n{log_tail()}"
                ) from e

            # Both steps ran as pods the operator created in the namespace.
            pods = cluster.kubectl("get", "pods", "-n", ns, "-o", "yaml").stdout
            phases = [
                p["status"].get("phase")
                for p in yaml.safe_load(pods)["items"]
                if not p["metadata"]["name"].startswith(release.name)
            ]
            assert phases.count("Succeeded") >= 3, phases  # first, second and the sub-sub-workflow's leaf

            # queues/status: the loop wrote the queue's counters through the status subresource.
            def queue_status() -> dict | None:
                q = yaml.safe_load(cluster.kubectl("get", "queue", queue, "-o", "yaml").stdout)
                return (q.get("status") or {}).get("admitted") is not None and q["status"]

            wait_for(queue_status, 30, f"status on queue {queue}")

            # events: the operator recorded Kubernetes Events on the workflow.
            def workflow_events() -> list:
                out = cluster.kubectl(
                    "get", "events", "-n", ns, "-o", "yaml",
                    "--field-selector", f"involvedObject.kind=Workflow,involvedObject.name={workflow}",
                ).stdout  # fmt: skip
                return [e for e in yaml.safe_load(out)["items"] if (e.get("source") or {}).get("component")]

            wait_for(workflow_events, 30, f"events on workflow {workflow}")
            assert proc.poll() is None, f"operator exited ({proc.returncode}):\n{log_tail()}"
            # leases: it led through the chart's Role (the workflow could not have run otherwise).
            assert "became the leader" in log_path.read_text(), log_tail()
    finally:
        cluster.kubectl(
            "delete", "workflow", workflow, "-n", ns, "--ignore-not-found", "--wait=false", check=False
        )
        cluster.kubectl("delete", "queue", queue, "--ignore-not-found", "--wait=false", check=False)

    # One log record per entry (a record's traceback lines belong to it). A write refused because its
    # namespace is being deleted (another test's, at its teardown) is a 403 that no grant would avoid.
    records = re.split(r"\n(?=\[\d{4}-\d\d-\d\d )", log_path.read_text())
    log = "\n".join(r for r in records if "NamespaceTerminating" not in r)
    # A 403 status or a Forbidden reason; not the milliseconds of a timestamp such as "11:08:56,403".
    denial = re.compile(r"(?<![,.\d])403(?!\d)|forbidden", re.IGNORECASE)
    denied = [line for line in log.splitlines() if denial.search(line)]
    assert not denied, "the operator was denied something:\n" + "\n".join(denied[:40])
