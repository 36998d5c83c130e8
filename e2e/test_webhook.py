"""The in-cluster webhook on the real API server, with the operator-managed certificate, and the chart's Helm
life cycle: install, upgrade (a changed value), test, uninstall, and values refused by the schema.

The chart is installed as a user would (``webhook.mode=in-cluster``, the default). Its pods sit on kwok nodes
and never run, so the operator runs as a local process with the Deployment's own arguments and the chart's
ServiceAccount token (its RBAC, nothing more), and the chart's webhook Service is routed to it
(e2e/webhook_endpoint.py: selector-less, one EndpointSlice to this host; the API server resolves webhook
Services through their endpoints). The API server then calls ``https://<host>:<port>/workflow`` checking the
certificate against ``<service>.<namespace>.svc`` and the caBundle the operator injected, exactly as in a
cluster.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from e2e.conftest import Cluster
from e2e.helpers import wait_for
from e2e.operator import free_port
from e2e.test_helm_rbac import Release, operator_process, service_account_kubeconfig
from e2e.webhook_endpoint import route_service_to_host

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "meson"
KINDS = ("workflow", "cronworkflow", "streamjob", "queue", "workflowtemplate", "clusterworkflowtemplate")
DENIED = 'admission webhook "workflow.validate.meson.dev" denied the request'
UNREACHABLE = 'failed calling webhook "workflow.validate.meson.dev"'


@dataclass
class Install:
    """The release, and two local operator processes with the Deployment's arguments (a leader and a warm
    standby, like the chart's 2 replicas), each serving the webhook on its own port of this host; the
    webhook Service has one endpoint per process."""

    release: Release
    cluster: Cluster
    ports: list[int]  # one per operator replica
    ip: str
    workdir: Path
    operators: list = field(default_factory=list)  # (context manager, Popen, log path)

    @property
    def ns(self) -> str:
        return self.release.namespace

    @property
    def service(self) -> str:
        return f"{self.release.name}-webhook"

    @property
    def configuration(self) -> str:
        return f"{self.release.name}-webhook"

    def chart_args(self) -> tuple[str, ...]:
        deployment = json.loads(
            self.cluster.kubectl("get", "deployment", self.release.name, "-n", self.ns, "-o", "json").stdout
        )
        return tuple(deployment["spec"]["template"]["spec"]["containers"][0]["args"][1:])

    def start_operators(self) -> None:
        self.stop_operators()
        kubeconfig = service_account_kubeconfig(
            self.cluster, self.release, self.workdir / "operator.kubeconfig"
        )
        for port in self.ports:
            log_path = self.workdir / f"operator-{port}-{time.monotonic_ns()}.log"
            # The chart's arguments, then the port of this host its Service endpoint names (last one wins).
            cm = operator_process(kubeconfig, log_path, (*self.chart_args(), "--webhook-port", str(port)))
            proc, _ = cm.__enter__()
            self.operators.append((cm, proc, log_path))

        def answer() -> bool:
            self.assert_alive()
            try:
                for port in self.ports:
                    self.served_certificate(port)
            except (OSError, ValueError):  # not listening yet, or no caBundle yet (first start)
                return False
            return True

        wait_for(answer, 120, "every operator replica to serve the webhook", interval=0.5)

    def stop_operators(self) -> None:
        while self.operators:
            cm, _, _ = self.operators.pop()
            cm.__exit__(None, None, None)

    def assert_alive(self) -> None:
        for _, proc, _ in self.operators:
            assert proc.poll() is None, f"operator exited ({proc.returncode}):\n{self.log()}"

    def logs(self) -> list[str]:
        return [path.read_text() if path.exists() else "" for _, _, path in self.operators]

    def log(self) -> str:
        return "\n".join(f"--- replica {i}:\n{text[-4000:]}" for i, text in enumerate(self.logs()))

    def upgrade(self, *values: str) -> None:
        """helm upgrade --reuse-values with ``values``; the upgrade restores the Service's selector (it is in
        the chart), so the Service is routed to this host again."""
        self.cluster.helm(
            "upgrade", self.release.name, str(CHART), "--namespace", self.ns, "--reuse-values", *values,
            "--wait", "--timeout", "120s",
        )  # fmt: skip
        route_service_to_host(self.cluster, self.ns, self.service, self.ports)

    def ca_bundles(self) -> list[str]:
        vwc = json.loads(
            self.cluster.kubectl(
                "get", "validatingwebhookconfiguration", self.configuration, "-o", "json"
            ).stdout
        )
        return [(w["clientConfig"].get("caBundle") or "") for w in vwc["webhooks"]]

    def served_certificate(self, port: int) -> x509.Certificate:
        """Connect as the API server does (to an endpoint, checking the Service's DNS name) and verify the
        served certificate against the caBundle of the ValidatingWebhookConfiguration at that moment."""
        bundle = base64.b64decode(self.ca_bundles()[0]).decode()
        ctx = ssl.create_default_context(cadata=bundle)
        name = f"{self.service}.{self.ns}.svc"
        with (
            socket.create_connection((self.ip, port), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname=name) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)


def cyclic_workflow(name: str, namespace: str) -> dict:
    def step(n: str, dep: str) -> dict:
        return {
            "name": n,
            "dependencies": [dep],
            "template": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}},
        }

    return {
        "apiVersion": "meson.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"queue": "default", "steps": [step("a", "c"), step("b", "a"), step("c", "b")]},
    }


def valid_workflow(name: str, namespace: str) -> dict:
    wf = cyclic_workflow(name, namespace)
    wf["spec"]["steps"][0].pop("dependencies")
    return wf


def apply(cluster: Cluster, obj: dict, *extra: str):
    return cluster.kubectl("apply", *extra, "-f", "-", input=yaml.safe_dump(obj), check=False)


@pytest.fixture(scope="module")
def install(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    namespace = f"t-wh-{uuid.uuid4().hex[:8]}"
    name = f"meson-{namespace}"
    cluster.kubectl("create", "namespace", namespace)
    inst = Install(
        release=Release(name=name, namespace=namespace, service_account=name),
        cluster=cluster,
        ports=[free_port(), free_port()],
        ip="",
        workdir=tmp_path_factory.mktemp("webhook"),
    )
    try:
        cluster.helm(
            "install", name, str(CHART), "--namespace", namespace,
            "--set-string", r"podAnnotations.sim\.meson\.dev/keep-running=true",
            "--set", "webhook.certificate.checkIntervalSeconds=1",
            "--wait", "--timeout", "120s",
        )  # fmt: skip
        inst.ip = route_service_to_host(cluster, namespace, inst.service, inst.ports)
        inst.start_operators()
        yield inst
    finally:
        inst.stop_operators()
        cluster.helm("uninstall", name, "--namespace", namespace, "--wait", "--timeout", "120s", check=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    # helm uninstall removes the release's cluster-scoped objects and the certificate Secret with it.
    for kind, obj in (
        ("validatingwebhookconfiguration", inst.configuration),
        ("clusterrole", name),
        ("clusterrole", f"{name}-webhook-ca-injector"),
        ("clusterrolebinding", f"{name}-webhook-ca-injector"),
    ):
        assert cluster.kubectl("get", kind, obj, check=False).returncode != 0, f"{kind} {obj} left behind"


def wait_injected(inst: Install) -> None:
    def injected() -> bool:
        inst.assert_alive()
        return all(inst.ca_bundles())

    wait_for(injected, 90, "the caBundle injected into every webhook", interval=1)


def test_webhook_serves_the_operator_managed_certificate(install: Install) -> None:
    wait_injected(install)
    secret = json.loads(
        install.cluster.kubectl(
            "get", "secret", f"{install.release.name}-webhook-tls", "-n", install.ns, "-o", "json"
        ).stdout
    )
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert set(data) == {"ca.crt", "ca.key", "tls.crt", "tls.key"}
    # Every webhook trusts exactly the Secret's CA bundle; the served certificate is the Secret's.
    assert set(install.ca_bundles()) == {base64.b64encode(data["ca.crt"]).decode()}
    for port in install.ports:  # by the leader that wrote it and by the standby
        wait_for(
            lambda port=port: (
                install.served_certificate(port) == x509.load_pem_x509_certificate(data["tls.crt"])
            ),
            30,
            "the Secret's certificate to be served",
        )
    # One writer: only the leader issued it.
    assert sum("webhook certificate: issued a new CA" in text for text in install.logs()) == 1, install.log()
    # Helm's ownership labels survived the operator's writes (it patches data only).
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_notes_give_the_next_steps(install: Install) -> None:
    notes = install.cluster.helm("get", "notes", install.release.name, "-n", install.ns).stdout
    for line in (
        f"kubectl -n {install.ns} rollout status deployment/{install.release.name}",
        f"helm test {install.release.name} -n {install.ns}",
        f"ValidatingWebhookConfiguration {install.configuration}",
        "failurePolicy Fail: while no operator replica answers, Meson objects cannot be created or changed",
        f"Secret {install.release.name}-webhook-tls",
        "kubectl create -f examples/etl-workflow.yaml",
        f"kubectl auth can-i --list --as=system:serviceaccount:{install.ns}:{install.release.name}",
    ):
        assert line in notes, (line, notes)


def test_cyclic_workflow_is_refused_at_kubectl_apply(install: Install) -> None:
    wait_injected(install)
    proc = apply(install.cluster, cyclic_workflow("cyclic", install.ns))
    assert proc.returncode != 0
    assert DENIED in proc.stderr and "dependency cycle" in proc.stderr, proc.stderr
    assert install.cluster.kubectl("get", "workflow", "cyclic", "-n", install.ns, check=False).returncode != 0
    ok = apply(install.cluster, valid_workflow("acyclic", install.ns), "--dry-run=server")
    assert ok.returncode == 0, ok.stderr


def test_helm_upgrade_changes_a_value_and_the_certificate_rotates_while_the_webhook_works(
    install: Install,
) -> None:
    """helm upgrade lowers the certificate validities (20 s serving, 60 s CA): the leader renews the CA (two
    steps) and the serving certificate again and again, and both replicas pick each one up; throughout,
    every certificate either replica serves verifies against the caBundle of that moment and every apply of
    a cyclic workflow (answered by either replica) is refused by the webhook."""
    wait_injected(install)
    cluster = install.cluster
    before = install.served_certificate(install.ports[0])
    install.upgrade(
        "--set", "webhook.certificate.validitySeconds=20", "--set", "webhook.certificate.caValiditySeconds=60"
    )
    status = yaml.safe_load(
        cluster.helm("status", install.release.name, "-n", install.ns, "-o", "yaml").stdout
    )
    assert status["version"] == 2 and status["info"]["status"] == "deployed"
    args = install.chart_args()
    assert args[args.index("--webhook-cert-validity") + 1] == "20"
    install.start_operators()  # the upgraded Deployment's arguments

    served: dict[int, set[int]] = {port: set() for port in install.ports}
    issuers: set[x509.Name] = set()
    refusals = 0
    deadline = time.monotonic() + 300
    while len(issuers - {before.issuer}) < 2 or min(len(v) for v in served.values()) < 4:
        assert time.monotonic() < deadline, f"served {served} from {len(issuers)} CAs:\n{install.log()}"
        install.assert_alive()
        for port in install.ports:
            cert = install.served_certificate(port)  # verified against the caBundle of this moment
            served[port].add(cert.serial_number)
            issuers.add(cert.issuer)
        proc = apply(cluster, cyclic_workflow(f"cyclic-{refusals}", install.ns), "--dry-run=server")
        assert DENIED in proc.stderr and "dependency cycle" in proc.stderr, (proc.stderr, install.log())
        refusals += 1
        time.sleep(1)
    logs = install.logs()
    # One writer (the leader) renewed; the standby served what it wrote.
    writers = [i for i, text in enumerate(logs) if "webhook certificate: renewed" in text]
    assert len(writers) == 1, install.log()
    assert "renewed the CA" in logs[writers[0]] and "renewed the serving certificate" in logs[writers[0]]
    # helm upgrade left the operator's data in the chart's Secret: the CA was renewed, not issued afresh.
    assert not any("issued a new CA" in text for text in logs), install.log()
    standby = install.ports[1 - writers[0]]
    assert len(served[standby]) >= 4
    seen = ", ".join(str(len(v)) for v in served.values())
    print(
        f"rotation: {len(set().union(*served.values()))} serving certificates from {len(issuers)} CAs, "
        f"served by both replicas ({seen} seen), {refusals} refusals"
    )


def test_failure_policy_fail_refuses_while_no_replica_answers(install: Install) -> None:
    wait_injected(install)
    cluster = install.cluster
    vwc = json.loads(
        cluster.kubectl("get", "validatingwebhookconfiguration", install.configuration, "-o", "json").stdout
    )
    assert {w["failurePolicy"] for w in vwc["webhooks"]} == {"Fail"}
    assert {w["timeoutSeconds"] for w in vwc["webhooks"]} == {10}
    assert sorted(w["name"] for w in vwc["webhooks"]) == sorted(f"{k}.validate.meson.dev" for k in KINDS)
    existing = apply(cluster, valid_workflow("existing", install.ns))
    assert existing.returncode == 0, existing.stderr
    install.stop_operators()
    try:
        proc = apply(cluster, valid_workflow("while-down", install.ns))
        assert proc.returncode != 0 and UNREACHABLE in proc.stderr, proc.stderr
        assert cluster.kubectl("get", "workflow", "while-down", "-n", install.ns, check=False).returncode != 0
        # Only creates and updates of Meson objects are gated: deleting one, and any other kind, work.
        cluster.kubectl("delete", "workflow", "existing", "-n", install.ns, "--wait=false")
        cluster.kubectl("create", "configmap", "unaffected", "-n", install.ns)
        # The alternative policy, Ignore: accepted unchecked while no replica answers (the controller
        # still refuses a bad object with Valid=False once it runs).
        install.upgrade("--set", "webhook.failurePolicy=Ignore")
        accepted = apply(cluster, valid_workflow("while-down", install.ns))
        assert accepted.returncode == 0, accepted.stderr
        cluster.kubectl("delete", "workflow", "while-down", "-n", install.ns, "--wait=false")
        install.upgrade("--set", "webhook.failurePolicy=Fail")
    finally:
        install.start_operators()
    wait_for(lambda: apply(cluster, valid_workflow("back", install.ns), "--dry-run=server").returncode == 0,
             60, "the webhook to answer again")  # fmt: skip


def test_helm_test_runs_the_test_hook(install: Install) -> None:
    """`helm test` creates the chart's test pod and reports its outcome. On kwok the pod's container never
    runs: kwok ends it per the sim.meson.dev annotations, so this proves the hook's wiring (created,
    scheduled, its phase read, a failure reported), not the check inside it."""
    cluster = install.cluster
    ok = cluster.helm("test", install.release.name, "-n", install.ns, "--timeout", "120s")
    assert "Phase:          Succeeded" in ok.stdout and f"{install.release.name}-test" in ok.stdout, ok.stdout
    install.upgrade("--set-string", r"tests.podAnnotations.sim\.meson\.dev/exit-code=1")
    bad = cluster.helm("test", install.release.name, "-n", install.ns, "--timeout", "120s", check=False)
    assert bad.returncode != 0 and "failed" in (bad.stderr + bad.stdout).lower(), (bad.stdout, bad.stderr)


def test_cert_dir_mode_serves_and_reloads_a_mounted_certificate(install: Install, tmp_path: Path) -> None:
    """The cert-manager path of the operator (``--webhook-cert-dir``, the chart's mounted Secret) without
    cert-manager (not installed here): the test plays cert-manager (writes tls.crt/tls.key, then renews
    them in place) and cainjector (patches the caBundle). The operator writes nothing and reloads the
    files."""
    from meson.controllers import webhook_certs as wc

    cluster = install.cluster
    install.stop_operators()
    port = install.ports[0]
    route_service_to_host(cluster, install.ns, install.service, port)
    names = wc.dns_names(install.service, install.ns)
    ca_cert, ca_key = wc.new_ca(wc.now_utc(), 3600)
    tls = tmp_path / "tls"
    tls.mkdir()

    def issue() -> x509.Certificate:
        cert, key = wc.new_serving_cert(ca_cert, ca_key, names, wc.now_utc(), 600)
        (tls / "tls.key.new").write_bytes(key)
        (tls / "tls.crt.new").write_bytes(cert)
        (tls / "tls.key.new").rename(tls / "tls.key")
        (tls / "tls.crt.new").rename(tls / "tls.crt")
        return x509.load_pem_x509_certificate(cert)

    first = issue()
    bundle = base64.b64encode(ca_cert).decode()
    patch = [{"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": bundle} for i in range(4)]
    cluster.kubectl(
        "patch",
        "validatingwebhookconfiguration",
        install.configuration,
        "--type=json",
        "-p",
        json.dumps(patch),
    )
    kubeconfig = service_account_kubeconfig(cluster, install.release, install.workdir / "certdir.kubeconfig")
    log_path = install.workdir / "operator-certdir.log"
    args = (*install.chart_args(), "--webhook-port", str(port), "--webhook-cert-dir", str(tls))
    with operator_process(kubeconfig, log_path, args) as (proc, _):

        def serves(cert: x509.Certificate) -> bool:
            assert proc.poll() is None, log_path.read_text()[-4000:]
            try:
                return install.served_certificate(port) == cert
            except OSError:
                return False

        wait_for(lambda: serves(first), 90, "the mounted certificate to be served", interval=0.5)
        refused = apply(cluster, cyclic_workflow("cyclic-certdir", install.ns), "--dry-run=server")
        assert DENIED in refused.stderr and "dependency cycle" in refused.stderr, refused.stderr
        second = issue()  # cert-manager renews: the kubelet updates the mounted files
        wait_for(lambda: serves(second), 30, "the renewed certificate to be served", interval=0.5)
        refused = apply(cluster, cyclic_workflow("cyclic-certdir", install.ns), "--dry-run=server")
        assert DENIED in refused.stderr, refused.stderr
    log = log_path.read_text()
    assert "webhook certificate:" not in log and "CA bundle injected" not in log, log  # it wrote nothing
    assert cluster.kubectl("get", "validatingwebhookconfiguration", install.configuration, "-o",
                           "jsonpath={.webhooks[0].clientConfig.caBundle}").stdout == bundle  # fmt: skip


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "webhook.failurePolicy=Sometimes",
            "at '/webhook/failurePolicy': value must be one of 'Fail', 'Ignore'",
        ),
        ("replicas=0", "at '/replicas': minimum: got 0, want 1"),
        ("webhook.timeoutSeconds=60", "at '/webhook/timeoutSeconds': maximum: got 60, want 30"),
        ("replica=3", "additional properties 'replica' not allowed"),
    ],
)
def test_helm_install_refuses_bad_values(cluster: Cluster, value: str, message: str) -> None:
    name = f"bad-{uuid.uuid4().hex[:6]}"
    proc = cluster.helm("install", name, str(CHART), "--namespace", "default", "--set", value, check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
    assert name not in cluster.helm("list", "-A", "-q").stdout
    with contextlib.suppress(Exception):
        cluster.helm("uninstall", name, "-n", "default", check=False)
