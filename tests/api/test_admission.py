"""The webhook handlers with a fake pod dry run (the real one is exercised by the e2e tests)."""

from __future__ import annotations

import json
import ssl

import kopf
import pytest
from kubernetes.client.exceptions import ApiException

from e2e.bad_manifests import load_cases
from meson.controllers import admission

CASES = {case["name"]: case for case in load_cases()}


def _ok(namespace, pod):
    return None


def test_review_runs_pure_checks_before_pods():
    calls = []
    manifest = CASES["workflow-dependency-cycle"]["manifest"]
    problems = admission.review("Workflow", manifest, namespace="ns", dry_run=lambda n, p: calls.append(p))
    assert problems == ["spec.steps: dependency cycle: extract -> load -> transform -> extract"]
    assert calls == []


def test_review_dry_runs_each_distinct_template_in_the_namespace():
    calls = []

    def dry_run(namespace, pod):
        calls.append((namespace, pod))
        return (
            'spec.containers[0].name: Invalid value: "Main_Container"'
            if "Main_Container" in str(pod)
            else None
        )

    manifest = CASES["workflow-pod-template-invalid"]["manifest"]
    problems = admission.review("Workflow", manifest, namespace="team-a", dry_run=dry_run)
    assert problems == [
        'spec.steps[0].template: invalid pod: spec.containers[0].name: Invalid value: "Main_Container"'
    ]
    assert calls[0][0] == "team-a" and calls[0][1]["metadata"]["namespace"] == "team-a"
    assert calls[0][1]["kind"] == "Pod" and calls[0][1]["metadata"]["generateName"] == "bad-pod-name-a-"


def test_identical_templates_are_dry_run_once():
    calls = []
    step = {"template": {"spec": {"containers": [{"name": "m", "image": "busybox"}]}}}
    manifest = {"metadata": {"name": "w"}, "spec": {"steps": [{"name": f"s{i}", **step} for i in range(20)]}}
    assert admission.review("Workflow", manifest, namespace="ns", dry_run=lambda n, p: calls.append(p)) == []
    assert len(calls) == 1


def test_queue_review_uses_given_parents_and_skips_pods():
    manifest = CASES["queue-hierarchy-cycle"]["manifest"]
    problems = admission.review("Queue", manifest, parents={"bad-cycle-b": "bad-cycle-a"}, dry_run=None)
    assert problems == ["spec.parent: queue hierarchy cycle: bad-cycle-a -> bad-cycle-b -> bad-cycle-a"]


def test_admit_raises_admission_error(monkeypatch):
    monkeypatch.setattr(admission, "kubernetes_pod_dry_run", _ok)
    manifest = CASES["workflow-item-without-foreach"]["manifest"]
    with pytest.raises(kopf.AdmissionError) as info:
        admission.validate_workflow(body=manifest, old=None, operation="CREATE", namespace="ns")
    assert info.value.code == 422
    assert str(info.value) == CASES["workflow-item-without-foreach"]["error"]


def test_update_without_spec_change_is_allowed_at_once():
    manifest = CASES["workflow-dependency-cycle"]["manifest"]
    admission.validate_workflow(body=manifest, old=manifest, operation="UPDATE", namespace="ns")


def test_api_messages_are_trimmed():
    body = json.dumps(
        {"message": 'Pod "w-a-" is invalid: spec.restartPolicy: Unsupported value: "Sometimes"'}
    )
    exc = ApiException(status=422, reason="Unprocessable Entity")
    exc.body = body
    assert admission._api_message(exc) == 'spec.restartPolicy: Unsupported value: "Sometimes"'


def test_handlers_are_registered():
    registry = kopf.get_default_registry()
    ids = {handler.id for handler in registry._webhooks.get_all_handlers()}
    assert {"workflow", "cronworkflow", "streamjob", "queue"} <= ids


def test_configure_webhook(tmp_path):
    settings = kopf.OperatorSettings()
    server = admission.configure_webhook(settings, port=19443, certdir=tmp_path)
    assert settings.admission.managed == "validate.meson.dev"
    assert settings.admission.server is server
    assert server.addr == "127.0.0.1" and server.host == "127.0.0.1" and server.port == 19443
    context = ssl.create_default_context(cafile=str(tmp_path / "tls.crt"))
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    der = ssl.PEM_cert_to_DER_cert((tmp_path / "tls.crt").read_text())
    assert b"127.0.0.1" in der or bytes([127, 0, 0, 1]) in der


def _template_refs(*objs: dict) -> dict:
    """The sub-workflow references of existing templates, as the webhook lists them (namespace ns)."""
    from meson.api.validation import parse, sub_workflow_refs, template_key

    refs = {}
    for obj in objs:
        cluster = obj["kind"] == "ClusterWorkflowTemplate"
        model, problems = parse(obj["kind"], obj)
        assert model is not None, problems
        ns = None if cluster else "ns"
        refs[template_key(ns, obj["metadata"]["name"], cluster)] = sub_workflow_refs(model.spec, ns)
    return refs


def _runs(kind: str, name: str, *refs: tuple[str, bool]) -> dict:
    steps = [
        {"name": f"s{i}", "workflowTemplateRef": {"name": ref, "clusterScope": cluster}}
        for i, (ref, cluster) in enumerate(refs)
    ]
    return {
        "apiVersion": "meson.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {"steps": steps},
    }


def test_a_template_closing_a_sub_workflow_cycle_is_refused_with_the_cycle_named():
    case = CASES["workflowtemplate-sub-workflow-cycle"]
    existing = _template_refs(*case["setup"])
    problems = admission.review(
        "WorkflowTemplate", case["manifest"], namespace="ns", templates=existing, dry_run=_ok
    )
    assert problems == [
        "spec.steps: sub-workflow cycle: bad-cycle-first -> bad-cycle-second -> bad-cycle-first "
        "(a template may not run itself through its sub-workflows)"
    ]
    # The same template when the other one runs something else: no cycle.
    other = _template_refs(_runs("WorkflowTemplate", "bad-cycle-second", ("elsewhere", False)))
    assert (
        admission.review("WorkflowTemplate", case["manifest"], namespace="ns", templates=other, dry_run=_ok)
        == []
    )


def test_cycles_through_cluster_templates_are_refused_and_namespaces_are_told_apart():
    existing = _template_refs(
        _runs("ClusterWorkflowTemplate", "shared", ("local", False), ("common", True)),
        _runs("ClusterWorkflowTemplate", "common", ("team", False)),
        _runs("WorkflowTemplate", "team", ("shared", True)),
    )
    # ns/local -> cluster shared -> cluster common: no way back (a cluster template's namespaced reference
    # is resolved only when it runs).
    mine = _runs("WorkflowTemplate", "local", ("shared", True))
    assert admission.review("WorkflowTemplate", mine, namespace="ns", templates=existing, dry_run=_ok) == []
    looping = _runs("ClusterWorkflowTemplate", "common", ("shared", True))
    assert admission.review("ClusterWorkflowTemplate", looping, templates=existing, dry_run=_ok) == [
        "spec.steps: sub-workflow cycle: ClusterWorkflowTemplate common -> ClusterWorkflowTemplate shared -> "
        "ClusterWorkflowTemplate common (a template may not run itself through its sub-workflows)"
    ]
