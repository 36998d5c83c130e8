"""Strict templates: an undeclared field is reported with its path, never dropped by a typed model.

Unknown fields around a pod spec (the template itself, its metadata, the step) are found by the pure checks;
unknown fields inside a pod spec are left to the API server's strict dry run, so the rendered pods must
carry them verbatim.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from meson.api.validation import parse, sample_pods, unknown_fields, validate
from meson.api.workflow import WorkflowSpec

CONTAINER = {"name": "main", "image": "busybox:1.36"}


def _step(name: str = "a", **extra: Any) -> dict[str, Any]:
    return {"name": name, "template": {"spec": {"containers": [dict(CONTAINER)]}}, **extra}


def _workflow(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "meson.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "wf", "namespace": "team-a"},
        "spec": {"steps": [_step()], **spec},
    }


def _cron(workflow_spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "meson.dev/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": {"name": "nightly", "namespace": "team-a"},
        "spec": {"schedule": "@daily", "workflowTemplate": {"spec": workflow_spec}},
    }


def test_template_level_typos_name_the_step():
    wf = _workflow()
    template = wf["spec"]["steps"][0]["template"]
    template["spek"] = {}
    template["metadata"] = {"lables": {"team": "a"}}
    assert sorted(validate("Workflow", wf)) == sorted(
        [
            'spec.steps[0].template: unknown field "spek" (did you mean "spec"?)',
            'spec.steps[0].template.metadata: unknown field "lables" (did you mean "labels"?)',
        ]
    )


def test_exit_step_typos_name_the_exit_step():
    exit_step = {"template": {"spec": {"containers": [CONTAINER]}, "metdata": {}}, "timeoutSecond": 5}
    assert sorted(validate("Workflow", _workflow(onExit=exit_step))) == sorted(
        [
            'spec.onExit: unknown field "timeoutSecond" (did you mean "timeoutSeconds"?)',
            'spec.onExit.template: unknown field "metdata" (did you mean "metadata"?)',
        ]
    )


def test_step_and_nested_typos():
    wf = _workflow(steps=[_step("a"), _step("b", retryPolicy={"limit": 2, "backof": {"initialSeconds": 1}})])
    wf["spec"]["failurMode"] = "Continue"
    assert sorted(validate("Workflow", wf)) == sorted(
        [
            'spec: unknown field "failurMode" (did you mean "failureMode"?)',
            'spec.steps[1].retryPolicy: unknown field "backof" (did you mean "backoff"?)',
        ]
    )


def test_snake_case_is_not_a_wire_name():
    wf = _workflow(steps=[_step(retry_policy={"limit": 1})])
    assert validate("Workflow", wf) == [
        'spec.steps[0]: unknown field "retry_policy" (did you mean "retryPolicy"?)'
    ]


def test_a_name_far_from_any_field_lists_the_known_ones():
    wf = _workflow()
    wf["spec"]["steps"][0]["template"]["zzz"] = 1
    assert validate("Workflow", wf) == [
        'spec.steps[0].template: unknown field "zzz" (known fields: metadata, spec)'
    ]


def test_cronworkflow_template_typos_have_the_template_path():
    spec = {"steps": [_step()]}
    spec["steps"][0]["template"]["metadata"] = {"annotation": {"a": "b"}}
    cron = _cron(spec)
    cron["spec"]["workflowTemplate"]["metdata"] = {}
    assert sorted(validate("CronWorkflow", cron)) == sorted(
        [
            'spec.workflowTemplate: unknown field "metdata" (did you mean "metadata"?)',
            'spec.workflowTemplate.spec.steps[0].template.metadata: unknown field "annotation" '
            '(did you mean "annotations"?)',
        ]
    )


def test_streamjob_and_queue_typos():
    job = {
        "apiVersion": "meson.dev/v1alpha1",
        "kind": "StreamJob",
        "metadata": {"name": "sj"},
        "spec": {"template": {"spec": {"containers": [CONTAINER]}, "metadata": {"label": {}}}, "replica": 2},
    }
    assert validate("StreamJob", job) == [
        'spec.template.metadata: unknown field "label" (did you mean "labels"?)',
        'spec: unknown field "replica" (did you mean "replicas"?)',
    ]
    queue = {"kind": "Queue", "metadata": {"name": "q"}, "spec": {"quota": {"cpu": {"guaranted": 4}}}}
    assert validate("Queue", queue) == [
        'spec.quota.cpu: unknown field "guaranted" (did you mean "guaranteed"?)'
    ]


def test_unknown_fields_make_the_object_unparsable():
    wf = _workflow()
    wf["spec"]["steps"][0]["template"]["spek"] = {}
    model, problems = parse("Workflow", wf)
    assert model is None and problems
    assert sample_pods("Workflow", wf) == []  # nothing is dry-run from a template that lost a field


def test_free_form_nodes_and_metadata_are_not_walked():
    wf = _workflow(parameters=[{"name": "cfg", "default": {"anything": [1, {"goes": True}]}}])
    wf["spec"]["steps"][0]["foreach"] = {"items": [{"region": "eu", "extra": 1}]}
    wf["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    wf["status"] = {"somethingNew": 1}
    assert validate("Workflow", wf) == []
    assert unknown_fields(WorkflowSpec, "not a mapping", "spec") == []


@pytest.mark.parametrize(
    ("where", "field"),
    [("container", "resorces"), ("pod", "restartPolicyy")],
)
def test_pod_spec_typos_reach_the_dry_run_verbatim(where, field):
    wf = _workflow(onExit={"template": {"spec": {"containers": [CONTAINER]}}})
    for template in (wf["spec"]["steps"][0]["template"], wf["spec"]["onExit"]["template"]):
        target = template["spec"]["containers"][0] if where == "container" else template["spec"]
        target[field] = {"requests": {"cpu": "1"}} if where == "container" else "Never"
    original = copy.deepcopy(wf)
    assert validate("Workflow", wf) == []  # the pod schema is the API server's (strict dry run)
    pods = dict(sample_pods("Workflow", wf))
    assert set(pods) == {"spec.steps[0].template", "spec.onExit.template"}
    for pod in pods.values():
        node = pod["spec"]["containers"][0] if where == "container" else pod["spec"]
        assert field in node
    assert wf == original


def test_cron_template_pods_are_named_like_a_run():
    spec = {"steps": [_step("a")]}
    spec["steps"][0]["template"]["spec"]["containers"][0]["args"] = ["{{ workflow.name }}"]
    ((where, pod),) = sample_pods("CronWorkflow", _cron(spec))
    assert where == "spec.workflowTemplate.spec.steps[0].template"
    run = pod["spec"]["containers"][0]["args"][0]
    assert run.startswith("nightly-") and run.removeprefix("nightly-").isdigit()
    assert pod["metadata"]["generateName"].startswith("nightly-")
