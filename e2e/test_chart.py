"""The Helm chart (helm/meson), rendered by the real helm binary: lint, render, and a reviewed RBAC table.

The ClusterRole must equal ``EXPECTED_RULES`` exactly, and every other Role and ClusterRole of the chart (the
namespaced and by-name grants) must equal ``EXPECTED_NAMED_RULES``: widening the operator's permissions means
changing these tables in the same commit, so it is always a conscious, reviewed change. The e2e counterpart
(e2e/test_helm_rbac.py) installs the chart on a real API server and runs the operator with exactly these
permissions.

It lives with the e2e tests because it needs a built binary (the fast suite builds nothing). helm comes
from the e2e build cache (``python -m e2e.cluster bin helm``); it is built from source on first
use when missing (needs Go; a couple of minutes once).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "meson"
KUBE_VERSION = "1.36.0"  # helm template defaults to an old version the chart's kubeVersion refuses

Rule = tuple[str, str, frozenset[str]]  # (apiGroup, resource, verbs)

READ = frozenset({"get", "list", "watch"})

# What the operator may do, one line per (group, resource). See templates/clusterrole.yaml for the code path
# behind each rule.
EXPECTED_RULES: dict[tuple[str, str], frozenset[str]] = {
    ("", "pods"): READ | {"create", "delete", "patch"},
    ("", "events"): frozenset({"create", "patch"}),
    ("", "nodes"): READ,
    ("", "namespaces"): READ,
    ("", "configmaps"): frozenset({"list", "watch"}),  # semaphore limits (configMapKeyRef)
    ("scheduling.k8s.io", "priorityclasses"): READ,
    ("meson.dev", "workflows"): READ | {"create", "delete", "patch"},
    ("meson.dev", "workflows/status"): frozenset({"get", "patch"}),
    ("meson.dev", "cronworkflows"): READ,
    ("meson.dev", "workflowtemplates"): READ,
    ("meson.dev", "clusterworkflowtemplates"): READ,
    ("meson.dev", "queues"): READ,
    ("meson.dev", "cronworkflows/status"): frozenset({"get", "patch"}),
    ("meson.dev", "queues/status"): frozenset({"get", "patch"}),
    ("meson.dev", "streamjobs"): READ,
    ("meson.dev", "streamjobs/status"): frozenset({"get", "patch"}),
    ("apps", "controllerrevisions"): READ | {"create", "delete"},
}

# Added only by webhook.mode=loopback: kopf manages the ValidatingWebhookConfiguration.
LOOPBACK_WEBHOOK_RULES: dict[tuple[str, str], frozenset[str]] = {
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"): READ | {"create", "patch", "delete"},
}

# Every other Role and ClusterRole of the default install (release "rel", namespace meson-system), exactly:
# the leader-election Lease (templates/role.yaml) and the operator-managed webhook certificate
# (templates/role-webhook.yaml: the one Secret the chart creates, and the caBundle of the chart's own
# ValidatingWebhookConfiguration), each by name wherever RBAC can name it.
EXPECTED_NAMED_RULES: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("Role", "rel-meson-leader-election"): [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["rel-meson"],
         "verbs": ["get", "update"]},
    ],
    ("Role", "rel-meson-webhook-certificate"): [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["rel-meson-webhook-tls"],
         "verbs": ["get", "patch"]},
    ],
    ("ClusterRole", "rel-meson-webhook-ca-injector"): [
        {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations"],
         "resourceNames": ["rel-meson-webhook"], "verbs": ["get", "patch"]},
    ],
}  # fmt: skip


@cache
def helm_bin() -> Path:
    from e2e.cluster import build

    group = build.GROUPS["helm"]
    if not group.complete:
        build.ensure_group(group)
    return group.binary("helm")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(helm_bin()), *args], capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def set_args(values: dict[str, str] | None) -> list[str]:
    return [a for k, v in (values or {}).items() for a in ("--set", f"{k}={v}")]


@cache
def _render(values: tuple[tuple[str, str], ...] = ()) -> tuple[dict[str, Any], ...]:
    out = helm(
        "template", "rel", str(CHART), "--namespace", "meson-system", "--kube-version", KUBE_VERSION,
        *set_args(dict(values)),
    ).stdout  # fmt: skip
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def render(**values: str) -> list[dict[str, Any]]:
    return list(_render(tuple(sorted(values.items()))))


def one(docs: Iterable[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def flatten(rules: list[dict[str, Any]]) -> dict[tuple[str, str], frozenset[str]]:
    """(group, resource) -> verbs, merging rules that name the same pair."""
    table: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                table.setdefault((group, resource), set()).update(rule["verbs"])
    return {k: frozenset(v) for k, v in table.items()}


def named(docs: Iterable[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, got {len(found)}"
    return found[0]


def cluster_role(**values: str) -> dict[tuple[str, str], frozenset[str]]:
    """The operator's main (unnamed-resource) ClusterRole, as a table."""
    return flatten(named(render(**values), "ClusterRole", "rel-meson")["rules"])


def roles(docs: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Every Role and ClusterRole but the main one: (kind, name) -> rules."""
    return {
        (d["kind"], d["metadata"]["name"]): d["rules"]
        for d in docs
        if d["kind"] in ("Role", "ClusterRole") and d["metadata"]["name"] != "rel-meson"
    }


def failure(**values: str) -> str:
    proc = helm("template", "rel", str(CHART), "--kube-version", KUBE_VERSION, *set_args(values), check=False)
    assert proc.returncode != 0, "expected the chart to refuse these values"
    return proc.stderr


# --- lint and render ------------------------------------------------------------------------------------


def test_helm_lint_passes_strict() -> None:
    proc = helm("lint", "--strict", "--kube-version", KUBE_VERSION, str(CHART))
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize(
    "values",
    [
        {"webhook.mode": "loopback"},
        {"webhook.mode": "off"},
        {"webhook.certManager.enabled": "true"},
        {"exampleQueues.create": "true", "priorityClasses.create": "true"},
        {"replicas": "1", "leaderElection.enabled": "false"},
        {"metrics.enabled": "false"},
        {"serviceAccount.create": "false", "serviceAccount.name": "existing"},
    ],
)
def test_helm_lint_passes_with_other_values(values: dict[str, str]) -> None:
    helm("lint", "--strict", "--kube-version", KUBE_VERSION, str(CHART), *set_args(values))


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "meson"
    assert chart["kubeVersion"] == ">=1.33.0-0"
    assert chart["appVersion"] == "0.1.0"


def test_template_renders_the_operator_objects() -> None:
    docs = render()
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    assert kinds == [
        "ClusterRole/rel-meson", "ClusterRole/rel-meson-webhook-ca-injector",
        "ClusterRoleBinding/rel-meson", "ClusterRoleBinding/rel-meson-webhook-ca-injector",
        "Deployment/rel-meson",
        "Pod/rel-meson-test",  # the helm test hook
        "PodDisruptionBudget/rel-meson",
        "Role/rel-meson-leader-election", "Role/rel-meson-webhook-certificate",
        "RoleBinding/rel-meson-leader-election", "RoleBinding/rel-meson-webhook-certificate",
        "Secret/rel-meson-webhook-tls",
        "Service/rel-meson-metrics", "Service/rel-meson-webhook",
        "ServiceAccount/rel-meson",
        "ValidatingWebhookConfiguration/rel-meson-webhook",
    ]  # fmt: skip
    cluster_scoped = ("ClusterRole", "ClusterRoleBinding", "ValidatingWebhookConfiguration")
    for doc in docs:
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == "rel"
        if doc["kind"] not in cluster_scoped:
            assert doc["metadata"]["namespace"] == "meson-system"


def test_kube_version_older_than_1_33_is_refused() -> None:
    proc = helm("template", "rel", str(CHART), "--kube-version", "1.32.0", check=False)
    assert proc.returncode != 0 and "kubeVersion" in proc.stderr


def test_crds_ship_in_the_chart_crds_directory() -> None:
    names = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert names == [
        "meson.dev_clusterworkflowtemplates.yaml",
        "meson.dev_cronworkflows.yaml",
        "meson.dev_queues.yaml",
        "meson.dev_streamjobs.yaml",
        "meson.dev_workflows.yaml",
        "meson.dev_workflowtemplates.yaml",
    ]
    # crds/ is installed by Helm itself, before the templates; the templates must not render CRDs too.
    assert all(d["kind"] != "CustomResourceDefinition" for d in render())


# --- RBAC -----------------------------------------------------------------------------------------------


def test_cluster_role_equals_the_reviewed_table() -> None:
    assert cluster_role() == EXPECTED_RULES


def test_webhook_loopback_adds_exactly_the_webhook_configuration_rule() -> None:
    assert cluster_role(**{"webhook.mode": "loopback"}) == {**EXPECTED_RULES, **LOOPBACK_WEBHOOK_RULES}
    assert cluster_role(**{"webhook.mode": "off"}) == EXPECTED_RULES


@pytest.mark.parametrize("values", [{}, {"webhook.mode": "loopback"}])
def test_no_wildcards_no_resource_names_no_non_resource_urls(values: dict[str, str]) -> None:
    rules = named(render(**values), "ClusterRole", "rel-meson")["rules"]
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert not any("*" in item for item in rule[field]), rule
        assert "nonResourceURLs" not in rule and "resourceNames" not in rule, rule
    # Every verb is a real, named verb; the escalation verbs never appear.
    verbs = {v for rule in rules for v in rule["verbs"]}
    assert verbs <= {"get", "list", "watch", "create", "delete", "patch"}
    assert not verbs & {"escalate", "bind", "impersonate", "deletecollection", "update", "approve", "sign"}


@pytest.mark.parametrize("values", [{}, {"webhook.mode": "loopback"}])
def test_no_access_to_secrets_or_rbac_or_crds(values: dict[str, str]) -> None:
    table = cluster_role(**values)
    groups = {g for g, _ in table}
    resources = {r for _, r in table}
    assert "secrets" not in resources
    # ConfigMaps (semaphore limits) are only listed and watched: never read by name, never written.
    assert table[("", "configmaps")] == {"list", "watch"}
    dangerous = {"serviceaccounts", "serviceaccounts/token", "pods/exec", "pods/attach", "nodes/proxy"}
    assert not dangerous & resources
    assert not groups & {"rbac.authorization.k8s.io", "apiextensions.k8s.io", "kopf.dev", "zalando.org"}
    assert not groups & {"coordination.k8s.io", "certificates.k8s.io", "authentication.k8s.io"}
    # Nodes are read-only: the operator never deletes or changes them.
    assert table[("", "nodes")] == READ


def test_named_grants_equal_the_reviewed_table() -> None:
    """Everything else the operator touches spans namespaces (one ClusterRole); the Lease and the webhook's
    Secret are single objects in the release's namespace and the ValidatingWebhookConfiguration is the
    chart's own: granted by name (only the Lease's create cannot be: RBAC cannot name what does not exist
    yet; the Secret is created by Helm, so the operator needs no create at all)."""
    docs = render()
    assert roles(docs) == EXPECTED_NAMED_RULES
    sa = one(docs, "ServiceAccount")["metadata"]["name"]
    for kind, name in EXPECTED_NAMED_RULES:
        if kind == "Role":
            assert named(docs, "Role", name)["metadata"]["namespace"] == "meson-system"
        binding = named(docs, f"{kind}Binding", name)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": "meson-system"}]
    # The names granted are the names the operator is told to use.
    args = _container(docs)["args"]
    assert args[args.index("--webhook-secret") + 1] == "rel-meson-webhook-tls"
    assert args[args.index("--webhook-configuration") + 1] == "rel-meson-webhook"
    assert named(docs, "Secret", "rel-meson-webhook-tls")["type"] == "Opaque"
    assert "data" not in named(docs, "Secret", "rel-meson-webhook-tls")  # Helm never overwrites the data
    assert one(docs, "ValidatingWebhookConfiguration")["metadata"]["name"] == "rel-meson-webhook"
    assert args[args.index("--leader-election-id") + 1] == "rel-meson"
    assert args[args.index("--leader-election-namespace") + 1] == "meson-system"
    without = roles(render(replicas="1", **{"leaderElection.enabled": "false"}))
    assert ("Role", "rel-meson-leader-election") not in without
    # cert-manager (or no webhook): no Secret or webhook-configuration permission at all.
    for values in (
        {"webhook.certManager.enabled": "true"},
        {"webhook.mode": "off"},
        {"webhook.mode": "loopback"},
    ):
        assert set(roles(render(**values))) == {("Role", "rel-meson-leader-election")}, values


def test_cluster_role_binding_binds_the_chart_service_account() -> None:
    docs = render()
    sa = one(docs, "ServiceAccount")
    binding = named(docs, "ClusterRoleBinding", "rel-meson")
    role = named(docs, "ClusterRole", "rel-meson")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "meson-system"}
    ]
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]


def test_existing_service_account_is_bound_when_not_created() -> None:
    docs = render(**{"serviceAccount.create": "false", "serviceAccount.name": "existing"})
    assert all(d["kind"] != "ServiceAccount" for d in docs)
    for binding in (d for d in docs if d["kind"] in ("ClusterRoleBinding", "RoleBinding")):
        assert binding["subjects"][0]["name"] == "existing"
    assert failure(**{"serviceAccount.create": "false"}).count("serviceAccount.name is required") == 1


def _watched_resources() -> set[tuple[str, str]]:
    """(group, plural) of every kopf.on.event handler the operator registers."""
    source = (REPO / "meson" / "controllers" / "handlers.py").read_text()
    found = set()
    pattern = r'kopf\.on\.event\(\s*(GROUP|"[^"]*")\s*,\s*(?:"[^"]+"|[\w.]+)\s*,\s*"([^"]+)"'
    for group, plural in re.findall(pattern, source):
        found.add(("meson.dev" if group == "GROUP" else group.strip('"'), plural))
    return found


def test_every_resource_the_operator_watches_is_readable() -> None:
    """A new kopf.on.event handler without a matching rule would fail in the cluster with 403 on its watch."""
    watched = _watched_resources()
    assert len(watched) >= 7, watched
    table = cluster_role()
    for key in sorted(watched):
        # A watch (and prime()'s listing) needs list and watch; get is granted only where something gets.
        assert table.get(key, frozenset()) >= {"list", "watch"}, (
            f"{key} is watched by the operator but not readable"
        )


# --- Deployment -----------------------------------------------------------------------------------------


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def test_deployment_runs_the_operator_with_probes() -> None:
    docs = render()
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate"}
    c = _container(docs)
    assert [*c["command"], *c["args"]] == [
        "meson", "operator", "--metrics-port", "8080", "--liveness-port", "8081",
        "--webhook", "in-cluster", "--webhook-port", "9443", "--webhook-service", "rel-meson-webhook",
        "--webhook-namespace", "meson-system", "--webhook-secret", "rel-meson-webhook-tls",
        "--webhook-configuration", "rel-meson-webhook", "--webhook-cert-validity", "31536000",
        "--webhook-ca-validity", "315360000", "--webhook-check-interval", "30",
        "--leader-elect", "--leader-election-namespace", "meson-system", "--leader-election-id", "rel-meson",
        "--lease-duration", "10", "--preempt-after", "1", "--reserve-after", "60",
    ]  # fmt: skip
    assert c["image"] == "ghcr.io/meson-dev/meson:0.1.0"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 8080, "health": 8081, "webhook": 9443}
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_cli_accepts_the_deployment_arguments() -> None:
    """The args the chart passes parse with the real `meson` CLI (the webhook variant too)."""
    from meson.cli import build_parser

    for values in (
        {},
        {"webhook.mode": "loopback"},
        {"webhook.mode": "off"},
        {"webhook.certManager.enabled": "true"},
        {"extraArgs[0]": "--verbose"},
    ):
        args = build_parser().parse_args(_container(render(**values))["args"])
        assert args.command == "operator" and args.metrics_port == 8080 and args.liveness_port == 8081
        assert args.webhook == values.get("webhook.mode", "in-cluster")
    cert_manager = build_parser().parse_args(
        _container(render(**{"webhook.certManager.enabled": "true"}))["args"]
    )
    assert cert_manager.webhook_cert_dir == "/etc/meson/webhook-tls"


def test_webhook_loopback_passes_the_flag() -> None:
    args = _container(render(**{"webhook.mode": "loopback"}))["args"]
    assert args[args.index("--webhook") + 1] == "loopback"
    assert args[args.index("--webhook-port") + 1] == "9443"
    assert "--webhook" not in _container(render(**{"webhook.mode": "off"}))["args"]


def test_unquoted_off_is_read_as_off() -> None:
    """`mode: off` unquoted is the YAML boolean false; it must not break the chart or enable anything."""
    assert cluster_role(**{"webhook.mode": "false"}) == EXPECTED_RULES
    assert "--webhook" not in _container(render(**{"webhook.mode": "false"}))["args"]


@pytest.mark.parametrize("mode", ["service", "true", "on"])
def test_unknown_webhook_modes_are_refused(mode: str) -> None:
    assert "at '/webhook/mode'" in failure(**{"webhook.mode": mode})


@pytest.mark.parametrize("replicas", ["2", "3"])
def test_several_replicas_need_leader_election(replicas: str) -> None:
    assert "replicas must be 1 without leaderElection.enabled" in failure(
        replicas=replicas, **{"leaderElection.enabled": "false"}
    )
    without = one(render(**{"leaderElection.enabled": "false", "replicas": "1"}), "Deployment")
    assert without["spec"]["strategy"] == {"type": "Recreate"}
    assert "--leader-elect" not in without["spec"]["template"]["spec"]["containers"][0]["args"]
    assert one(render(replicas=replicas), "Deployment")["spec"]["replicas"] == int(replicas)


def test_zero_replicas_are_refused() -> None:
    assert "at '/replicas': minimum: got 0, want 1" in failure(replicas="0")


def test_security_context_is_restrictive() -> None:
    docs = render()
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    c = _container(docs)
    psc, sc = pod["securityContext"], c["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert "privileged" not in sc or sc["privileged"] is False
    assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
    # The only writable path is an emptyDir on /tmp; no hostPath.
    assert all("hostPath" not in v for v in pod["volumes"])
    assert c["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]


def test_resources_have_requests_and_a_memory_limit() -> None:
    resources = _container(render())["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]


def test_scheduling_values_reach_the_pod() -> None:
    docs = render(
        **{
            "nodeSelector.role": "control",
            "tolerations[0].key": "dedicated",
            "tolerations[0].operator": "Exists",
            "priorityClassName": "meson-critical",
            "image.tag": "1.2.3",
            "image.pullPolicy": "Always",
        }
    )
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"role": "control"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert pod["priorityClassName"] == "meson-critical"
    assert _container(docs)["image"].endswith(":1.2.3")
    assert _container(docs)["imagePullPolicy"] == "Always"


def test_scheduler_values_become_operator_flags_the_cli_accepts() -> None:
    from meson.cli import build_parser

    args = _container(
        render(**{"scheduler.preemptAfterSeconds": "1.5", "scheduler.globalAdmissionRate": "200"})
    )["args"]
    parsed = build_parser().parse_args(args)
    assert (parsed.preempt_after, parsed.reserve_after) == (1.5, 60.0)
    assert (parsed.global_admission_rate, parsed.global_admission_burst) == (200.0, 1)
    default = build_parser().parse_args(_container(render())["args"])
    assert default.global_admission_rate is None


# --- metrics --------------------------------------------------------------------------------------------


def test_metrics_service_targets_the_metrics_port() -> None:
    docs = render()
    service = named(docs, "Service", "rel-meson-metrics")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]
    selector = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == selector


def test_metrics_disabled_removes_the_service_and_turns_the_endpoint_off() -> None:
    docs = render(**{"metrics.enabled": "false"})
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Service"] == ["rel-meson-webhook"]
    args = _container(docs)["args"]
    assert args[args.index("--metrics-port") + 1] == "0"


def test_service_monitor_is_optional_and_needs_its_crd() -> None:
    assert all(d["kind"] != "ServiceMonitor" for d in render())
    assert "Prometheus Operator" in failure(**{"metrics.serviceMonitor.enabled": "true"})
    out = helm(
        "template", "rel", str(CHART), "--kube-version", KUBE_VERSION,
        "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor",
        "--set", "metrics.serviceMonitor.enabled=true",
    ).stdout  # fmt: skip
    monitor = one((d for d in yaml.safe_load_all(out) if d), "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


# --- Dockerfile -----------------------------------------------------------------------------------------


def test_dockerfile_runs_meson_as_a_non_root_user() -> None:
    lines = [
        line.strip()
        for line in (REPO / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "FROM python:3.11-slim"
    assert 'ENTRYPOINT ["meson"]' in lines
    user = [line for line in lines if line.startswith("USER ")]
    assert user and user[-1].split()[1].split(":")[0] not in ("0", "root")
    # The uid matches the chart's runAsUser.
    assert user[-1].split()[1].split(":")[0] == str(_container(render())["securityContext"]["runAsUser"])


def test_dockerfile_installs_the_lock_file_and_checks_health() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "pip install --require-hashes --no-deps -r requirements.lock" in text
    assert "pip install --no-deps --no-build-isolation ." in text  # nothing outside the lock file
    (health,) = [line for line in text.splitlines() if line.startswith("HEALTHCHECK")]
    port = str(_container(render())["livenessProbe"]["httpGet"]["port"])
    assert port == "health"
    assert "8081/healthz" in text.split("HEALTHCHECK", 1)[1].split("ENTRYPOINT")[0]
    assert "apt-get" not in text  # no system packages: the webhook certificates are made in Python
    # The webhook port the chart uses is the one the image documents.
    assert "9443" in text.split("EXPOSE", 1)[1].splitlines()[0]
    assert health


# --- the in-cluster webhook -----------------------------------------------------------------------------


def _validate_ids() -> list[str]:
    """The ids of the @kopf.on.validate handlers: kopf serves each at /<id>."""
    source = (REPO / "meson" / "controllers" / "admission.py").read_text()
    return re.findall(r'@kopf\.on\.validate\([^)]*id="([^"]+)"', source)


def test_webhook_configuration_points_every_handler_at_the_service() -> None:
    docs = render()
    vwc = one(docs, "ValidatingWebhookConfiguration")
    service = named(docs, "Service", "rel-meson-webhook")
    assert service["spec"]["ports"] == [
        {"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    ids = _validate_ids()
    assert sorted(ids) == [
        "clusterworkflowtemplate",
        "cronworkflow",
        "queue",
        "streamjob",
        "workflow",
        "workflowtemplate",
    ]
    by_name = {w["name"]: w for w in vwc["webhooks"]}
    assert sorted(by_name) == sorted(f"{i}.validate.meson.dev" for i in ids)
    for i in ids:
        hook = by_name[f"{i}.validate.meson.dev"]
        assert hook["clientConfig"] == {
            "service": {
                "name": "rel-meson-webhook",
                "namespace": "meson-system",
                "path": f"/{i}",
                "port": 443,
            }
        }  # no caBundle: the operator injects it, and Helm leaves it alone
        assert hook["rules"] == [
            {
                "apiGroups": ["meson.dev"],
                "apiVersions": ["v1alpha1"],
                "resources": [f"{i}s"],
                "operations": ["CREATE", "UPDATE"],
                "scope": "Cluster" if i in ("queue", "clusterworkflowtemplate") else "Namespaced",
            }
        ]
        assert (hook["failurePolicy"], hook["timeoutSeconds"], hook["sideEffects"]) == ("Fail", 10, "None")
    ignore = one(
        render(**{"webhook.failurePolicy": "Ignore", "webhook.timeoutSeconds": "5"}),
        "ValidatingWebhookConfiguration",
    )
    assert {(w["failurePolicy"], w["timeoutSeconds"]) for w in ignore["webhooks"]} == {("Ignore", 5)}


def test_webhook_off_and_loopback_render_no_in_cluster_objects() -> None:
    for mode in ("off", "loopback"):
        kinds = {d["kind"] for d in render(**{"webhook.mode": mode})}
        assert not kinds & {"ValidatingWebhookConfiguration", "Secret", "Certificate"}, mode
        names = [d["metadata"]["name"] for d in render(**{"webhook.mode": mode}) if d["kind"] == "Service"]
        assert names == ["rel-meson-metrics"]


def test_cert_manager_issues_the_certificate_and_injects_the_ca() -> None:
    docs = render(**{"webhook.certManager.enabled": "true"})
    cert = one(docs, "Certificate")
    assert cert["spec"]["secretName"] == "rel-meson-webhook-tls"
    assert cert["spec"]["dnsNames"] == [
        "rel-meson-webhook.meson-system.svc",
        "rel-meson-webhook.meson-system.svc.cluster.local",
    ]
    assert cert["spec"]["issuerRef"] == {"name": "rel-meson-selfsigned", "kind": "Issuer"}
    assert one(docs, "Issuer")["spec"] == {"selfSigned": {}}
    vwc = one(docs, "ValidatingWebhookConfiguration")
    assert vwc["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": "meson-system/rel-meson-webhook"
    }
    assert all(d["kind"] != "Secret" for d in docs)  # cert-manager owns it
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert {"name": "webhook-tls", "secret": {"secretName": "rel-meson-webhook-tls"}} in pod["volumes"]
    args = _container(docs)["args"]
    assert args[args.index("--webhook-cert-dir") + 1] == "/etc/meson/webhook-tls"
    assert "--webhook-secret" not in args and "--webhook-configuration" not in args
    own = render(**{"webhook.certManager.enabled": "true", "webhook.certManager.issuerRef.name": "corp-ca",
                    "webhook.certManager.issuerRef.kind": "ClusterIssuer"})  # fmt: skip
    assert one(own, "Certificate")["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer"}
    assert all(d["kind"] != "Issuer" for d in own)


# --- values.schema.json --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicas": "0"}, "at '/replicas': minimum: got 0, want 1"),
        ({"replicas": "two"}, "at '/replicas': got string, want integer"),
        ({"replica": "2"}, "additional properties 'replica' not allowed"),
        ({"webhook.mode": "service"}, "at '/webhook/mode'"),
        (
            {"webhook.failurePolicy": "Sometimes"},
            "at '/webhook/failurePolicy': value must be one of 'Fail', 'Ignore'",
        ),
        ({"webhook.timeoutSeconds": "31"}, "at '/webhook/timeoutSeconds': maximum: got 31, want 30"),
        ({"webhook.certificate.validitySeconds": "5"}, "at '/webhook/certificate/validitySeconds': minimum"),
        ({"metrics.port": "70000"}, "at '/metrics/port': maximum: got 70,000, want 65,535"),
        ({"image.pullPolicy": "Sometimes"}, "at '/image/pullPolicy'"),
        ({"podAntiAffinity": "strict"}, "at '/podAntiAffinity': value must be one of 'soft', 'hard', 'none'"),
        ({"scheduler.preemptAfterSeconds": "soon"}, "at '/scheduler/preemptAfterSeconds'"),
        ({"exampleQueues.tenants[0]": "Bad_Name"}, "at '/exampleQueues/tenants/0'"),
        ({"priorityClasses.items[0].value": "2000000000"}, "at '/priorityClasses/items/0/value': maximum"),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else "",
)
def test_schema_refuses_bad_values_with_their_path(values: dict[str, str], message: str) -> None:
    err = failure(**values)
    assert "values don't meet the specifications of the schema" in err and message in err, err


def test_schema_accepts_decimals_given_with_set() -> None:
    # helm --set passes 1.5 as the string "1.5": accepted, and the CLI parses it.
    args = _container(
        render(**{"scheduler.preemptAfterSeconds": "1.5", "leaderElection.leaseDurationSeconds": "20"})
    )["args"]
    assert args[args.index("--preempt-after") + 1] == "1.5"


# --- availability: replicas, PodDisruptionBudget, anti-affinity ----------------------------------------


def test_pod_disruption_budget_keeps_a_replica() -> None:
    pdb = one(render(), "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert (
        pdb["spec"]["selector"]["matchLabels"]
        == one(render(), "Deployment")["spec"]["selector"]["matchLabels"]
    )
    assert all(d["kind"] != "PodDisruptionBudget" for d in render(replicas="1"))  # would block every drain
    assert all(d["kind"] != "PodDisruptionBudget" for d in render(**{"podDisruptionBudget.enabled": "false"}))
    assert one(render(replicas="5"), "Deployment")["spec"]["replicas"] == 5


def test_replicas_spread_over_nodes() -> None:
    def affinity(**values: str) -> dict[str, Any] | None:
        return one(render(**values), "Deployment")["spec"]["template"]["spec"].get("affinity")

    soft = affinity()["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert soft[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert soft[0]["podAffinityTerm"]["labelSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "meson", "app.kubernetes.io/instance": "rel"
    }  # fmt: skip
    hard = affinity(podAntiAffinity="hard")["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert hard[0]["topologyKey"] == "kubernetes.io/hostname"
    assert affinity(podAntiAffinity="none") is None
    custom = affinity(**{"affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key": "x",  # noqa: E501
                         "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator": "Exists"})  # noqa: E501  # fmt: skip
    assert set(custom) == {"nodeAffinity"}


# --- optional objects and the test hook ---------------------------------------------------------------


def test_priority_classes_and_example_queues_are_optional() -> None:
    assert not {d["kind"] for d in render()} & {"PriorityClass", "Queue"}
    docs = render(**{"priorityClasses.create": "true", "exampleQueues.create": "true"})
    classes = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PriorityClass"}
    assert {n: c["value"] for n, c in classes.items()} == {
        "meson-high": 100000,
        "meson-normal": 10000,
        "meson-low": 1000,
    }
    assert classes["meson-low"]["preemptionPolicy"] == "Never" and not any(
        c["globalDefault"] for c in classes.values()
    )
    queues = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Queue"}
    assert set(queues) == {"rel-meson-root", "rel-meson-analytics", "rel-meson-ml"}
    assert queues["rel-meson-ml"]["spec"]["parent"] == "rel-meson-root"
    assert queues["rel-meson-root"]["spec"]["quota"]["cpu"] == {"guaranteed": "16", "limit": "16"}
    # Reviewed by the in-cluster webhook, so created after the operator is up; plain objects otherwise.
    assert queues["rel-meson-ml"]["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    off = render(**{"exampleQueues.create": "true", "webhook.mode": "off"})
    assert all("annotations" not in d["metadata"] for d in off if d["kind"] == "Queue")


def test_example_queues_are_valid_for_the_webhook_checks() -> None:
    from meson.api.validation import validate

    queues = [d for d in render(**{"exampleQueues.create": "true"}) if d["kind"] == "Queue"]
    parents = {q["metadata"]["name"]: q["spec"].get("parent") for q in queues}
    for q in queues:
        assert validate("Queue", q, queue_parents=parents) == [], q


def test_helm_test_hook_is_a_restricted_pod() -> None:
    pod = named(render(), "Pod", "rel-meson-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    (c,) = pod["spec"]["containers"]
    assert c["image"] == "ghcr.io/meson-dev/meson:0.1.0"
    assert (
        c["securityContext"]["runAsNonRoot"] is True
        and c["securityContext"]["readOnlyRootFilesystem"] is True
    )
    script = c["args"][0]
    assert "http://rel-meson-metrics.meson-system.svc:8080/metrics" in script
    assert '"rel-meson-webhook.meson-system.svc"' in script
    compile(script, "helm-test", "exec")  # valid Python
    assert all(d["kind"] != "Pod" for d in render(**{"tests.enabled": "false"}))
