"""The typed API on the real control plane: CRDs install, examples apply, explain and scale work, and every
bad manifest of e2e/bad_manifests/cases.yaml is rejected at apply time with its exact error, leaving no
object and no pod behind.

Module fixtures: ``crds_installed`` (``kubectl apply --server-side -f crds/``) and ``webhook`` (the real
``meson operator --webhook loopback``, which registers ValidatingWebhookConfiguration validate.meson.dev and
serves meson.controllers.admission on 127.0.0.1).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from e2e.bad_manifests import load_cases
from e2e.operator import OperatorProcess

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
CASES = load_cases()
KIND_PLURALS = {
    "Workflow": "workflows",
    "CronWorkflow": "cronworkflows",
    "StreamJob": "streamjobs",
    "Queue": "queues",
    "WorkflowTemplate": "workflowtemplates",
    "ClusterWorkflowTemplate": "clusterworkflowtemplates",
}


@pytest.fixture(scope="module")
def crds_installed(cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    cluster.wait_established(*KIND_PLURALS.values())
    # Discovery must show the new kinds before kubectl can resolve short names and categories.
    deadline = time.monotonic() + 60
    while "mwf" not in cluster.kubectl("api-resources", "--api-group=meson.dev", check=False).stdout:
        assert time.monotonic() < deadline, "meson.dev kinds not in discovery after 60s"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def webhook(cluster, crds_installed) -> Iterator[None]:
    """The real `meson operator --webhook loopback`: it registers validate.meson.dev and serves it."""
    operator = OperatorProcess(cluster.kubeconfig, webhook="loopback")
    operator.start()
    probe = next(case for case in CASES if case["name"] == "workflow-dependency-cycle")
    try:
        deadline = time.monotonic() + 90
        while True:
            assert operator.proc is not None and operator.proc.poll() is None, operator.log()[-4000:]
            result = cluster.kubectl(
                "apply", "--dry-run=server", "-n", "default", "-f", "-",
                input=yaml.safe_dump(probe["manifest"]), check=False,
            )  # fmt: skip
            if probe["error"] in result.stderr:
                break
            assert time.monotonic() < deadline, "webhook not serving after 90s:\n" + operator.log()[-4000:]
            time.sleep(1)
        yield
    finally:
        operator.stop()
        cluster.kubectl(
            "delete",
            "validatingwebhookconfiguration",
            "validate.meson.dev",
            "--ignore-not-found",
            check=False,
        )


def _docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_crds_are_established_with_names_and_category(cluster, crds_installed):
    resources = cluster.kubectl("api-resources", "--api-group=meson.dev", "-o", "wide").stdout
    for kind, short in [("Workflow", "mwf"), ("CronWorkflow", "mcwf"), ("StreamJob", "msj"), ("Queue", "mq")]:
        line = next(line for line in resources.splitlines() if f" {kind} " in f" {line} ")
        assert short in line and "meson" in line, line


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_applies_cleanly(cluster, webhook, namespace, path):
    docs = _docs(path)
    queues = [doc["metadata"]["name"] for doc in docs if doc["kind"] == "Queue"]
    existing = {q for q in queues if cluster.kubectl("get", "queue", q, check=False).returncode == 0}
    # create (generateName examples) or apply (cluster-scoped queues other tests may share); the webhook is
    # on, so every pod template is dry-run against the real pod rules too.
    verb = "apply" if queues else "create"
    cluster.kubectl(verb, "-n", namespace, "-f", str(path))
    for doc in docs:
        if doc["kind"] != "Queue":
            listing = cluster.kubectl("get", KIND_PLURALS[doc["kind"]], "-n", namespace, "-o", "json")
            assert json.loads(listing.stdout)["items"]
    created = [q for q in queues if q not in existing]
    if created:
        cluster.kubectl("delete", "queue", *created)


def test_get_meson_lists_every_kind(cluster, webhook, namespace):
    for path in EXAMPLES:
        # Queues are cluster-wide and other tests apply them; what-if-analytics.yaml is a change set for
        # `meson simulate -f` (its queue is tenant-queues.yaml's analytics), never applied.
        if path.name not in ("tenant-queues.yaml", "what-if-analytics.yaml"):
            cluster.kubectl("create", "-n", namespace, "-f", str(path))
    out = cluster.kubectl("get", "meson", "-n", namespace).stdout
    for kind in ("workflow.meson.dev/", "cronworkflow.meson.dev/", "streamjob.meson.dev/"):
        assert kind in out, out
    header = cluster.kubectl("get", "mwf", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "QUEUE", "PRIORITY", "PROGRESS", "ETA", "AGE"]
    header = cluster.kubectl("get", "msj", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "REPLICAS", "READY", "REVISION", "UPDATED", "AGE"]


def test_queue_printer_columns(cluster, crds_installed):
    name = f"e2e-columns-{os.getpid()}"
    manifest = {
        "apiVersion": "meson.dev/v1alpha1",
        "kind": "Queue",
        "metadata": {"name": name},
        "spec": {"weight": 7},
    }
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
    try:
        lines = cluster.kubectl("get", "mq", name).stdout.splitlines()
        assert lines[0].split() == ["NAME", "PENDING", "ADMITTED", "WEIGHT", "PARENT", "AGE"]
        # Read the cell under WEIGHT by position: PENDING/ADMITTED are empty until an operator writes status.
        start = lines[0].index("WEIGHT")
        assert lines[1][start : lines[0].index("PARENT")].strip() == "7"
        # Defaults from the models are applied by the API server.
        spec = json.loads(cluster.kubectl("get", "mq", name, "-o", "json").stdout)["spec"]
        assert spec["queueingStrategy"] == "BestEffortFIFO" and spec["stopPolicy"] == "None"
    finally:
        cluster.kubectl("delete", "mq", name, check=False)


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ("workflows.spec.steps.retryPolicy.backoff.factor", "Multiplier applied to the delay per retry"),
        ("workflows.spec.steps.foreach.maxConcurrency", "Most instances running at the same time"),
        ("workflows.status.steps.position", "Position in the queue while Pending"),
        ("queues.spec.quota.limit", "by borrowing what its siblings leave unused"),
        ("queues.spec.preemption.reclaimBorrowed", "borrowed its guaranteed"),
        ("cronworkflows.spec.workflowTemplate.spec.failureMode", "StopScheduling"),
        ("streamjobs.spec.restartBudget.windowSeconds", "Length of the sliding window"),
        ("streamjobs.spec.template.spec", "server-side dry-run Pod create"),
    ],
)
def test_explain_shows_nested_descriptions(cluster, crds_installed, resource, expected):
    out = cluster.kubectl("explain", resource).stdout
    assert expected in " ".join(out.split()), out


def test_kubectl_scale_changes_streamjob_replicas(cluster, webhook, namespace):
    cluster.kubectl("apply", "-n", namespace, "-f", str(REPO / "examples/streamjob.yaml"))
    cluster.kubectl("scale", "-n", namespace, "streamjob/clickstream-enricher", "--replicas", "5")
    replicas = cluster.kubectl(
        "get", "msj", "clickstream-enricher", "-n", namespace, "-o", "jsonpath={.spec.replicas}"
    )
    assert replicas.stdout == "5"
    path = f"/apis/meson.dev/v1alpha1/namespaces/{namespace}/streamjobs/clickstream-enricher/scale"
    scale = json.loads(cluster.kubectl("get", "--raw", path).stdout)
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 5


def _in_one_format(message: str) -> str:
    """The API server's message in one wording for every supported minor: 1.33 prints every CEL failure as
    'Invalid value: "object": ...' (1.36 only some) and a duplicate list entry as a Go map."""
    message = message.replace('Invalid value: "object": ', "Invalid value: ")
    return re.sub(r"map\[string\]interface \{\}(\{[^}]*\})", r"\1", message)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_bad_manifest_is_rejected(cluster, webhook, namespace, case):
    setup = case.get("setup") or []
    for obj in setup:
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(obj))
    manifest = case["manifest"]
    try:
        result = cluster.kubectl(
            "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest), check=False
        )
        assert result.returncode != 0, f"accepted: {result.stdout}"
        assert _in_one_format(case["error"]) in _in_one_format(result.stderr), result.stderr
        if case["layer"] == "webhook":
            assert 'admission webhook "' in result.stderr and "validate.meson.dev" in result.stderr, (
                result.stderr
            )
        else:
            assert "admission webhook" not in result.stderr, result.stderr
        plural = KIND_PLURALS[manifest["kind"]]
        leftover = cluster.kubectl("get", plural, manifest["metadata"]["name"], "-n", namespace, check=False)
        assert leftover.returncode != 0 and "NotFound" in leftover.stderr, leftover.stdout
        pods = cluster.kubectl("get", "pods", "-n", namespace, "-o", "name").stdout
        assert pods.strip() == ""
    finally:
        for obj in setup:
            plural = KIND_PLURALS[obj["kind"]]
            cluster.kubectl(
                "delete", plural, obj["metadata"]["name"], "-n", namespace, "--ignore-not-found", check=False
            )
