"""WorkflowTemplates: a Workflow made from a template with its own parameter values and choices."""

from __future__ import annotations

from meson.api.validation import validate, validate_workflow
from meson.controllers.templates import Templates, template_problem
from meson.workflow import plan
from meson.workflow.templates import resolve_template, unresolved_ref
from tests.workflow.sim import T0, Cluster, container, step, workflow

TEMPLATE_SPEC = {
    "queue": "analytics",
    "failureMode": "Continue",
    "parameters": [{"name": "day", "default": "mon"}, {"name": "mode", "default": "fast"}],
    "steps": [
        {
            "name": "a",
            "template": {"spec": {"containers": [container(args=["{{ params.day }}", "{{ params.mode }}"])]}},
        },
        {"name": "b", "dependencies": ["a"], "template": {"spec": {"containers": [container()]}}},
    ],
}


def from_template(**spec) -> dict:
    wf = workflow([], name="made")
    wf["spec"] = {"workflowTemplateRef": {"name": "etl"}, **spec}
    return wf


def test_the_workflow_s_parameter_values_and_non_default_fields_win_and_the_ref_is_kept():
    spec = resolve_template(
        {
            "workflowTemplateRef": {"name": "etl"},
            "queue": "default",  # the API server's default: the template's queue stays
            "priorityClassName": "urgent",
            "parameters": [{"name": "day", "value": "tue"}, {"name": "extra", "default": 1}],
        },
        TEMPLATE_SPEC,
    )
    assert spec["queue"] == "analytics" and spec["priorityClassName"] == "urgent"
    assert spec["parameters"] == [
        {"name": "day", "default": "mon", "value": "tue"},
        {"name": "mode", "default": "fast"},
        {"name": "extra", "default": 1},
    ]
    assert spec["steps"] == TEMPLATE_SPEC["steps"] and spec["workflowTemplateRef"] == {"name": "etl"}
    assert unresolved_ref(spec) is None and unresolved_ref({"workflowTemplateRef": {"name": "x"}})
    assert TEMPLATE_SPEC["parameters"][0] == {"name": "day", "default": "mon"}  # the template is not changed


def test_a_resolved_workflow_runs_with_its_values():
    wf = from_template(parameters=[{"name": "day", "value": "fri"}])
    wf["spec"] = resolve_template(wf["spec"], TEMPLATE_SPEC)
    c = Cluster(wf)
    c.run()
    assert c.status["phase"] == "Succeeded"
    args = [
        r.pods[0]["spec"]["containers"][0].get("args") for p in c.plans for r in p.pending if r.step == "a"
    ]
    assert args == [["fri", "fast"]]


def test_an_unresolved_workflow_is_never_planned_as_empty():
    result = plan(from_template(), [], T0)
    assert result.status["phase"] == "Failed" and "not made from its template yet" in result.status["message"]


def test_templates_are_found_by_scope_and_a_missing_one_is_named():
    templates = Templates()
    templates.on_workflowtemplate(
        "ADDED", {"metadata": {"name": "etl", "namespace": "ns"}, "spec": TEMPLATE_SPEC}
    )
    templates.on_clusterworkflowtemplate("ADDED", {"metadata": {"name": "etl"}, "spec": TEMPLATE_SPEC})
    assert templates.find("ns", {"name": "etl"}) is not None
    assert templates.find("other", {"name": "etl"}) is None
    assert templates.find("other", {"name": "etl", "clusterScope": True}) is not None
    templates.on_clusterworkflowtemplate("DELETED", {"metadata": {"name": "etl"}})
    assert templates.find("other", {"name": "etl", "clusterScope": True}) is None
    assert template_problem({"name": "etl"}, "ns", False) == (
        "spec.workflowTemplateRef: WorkflowTemplate 'etl' not found in namespace 'ns'"
    )
    assert template_problem({"name": "x", "clusterScope": True}, "ns", False) == (
        "spec.workflowTemplateRef: ClusterWorkflowTemplate 'x' not found"
    )


def test_validation_of_refs_and_templates():
    assert validate_workflow(from_template()) == []
    no_steps = workflow([])
    del no_steps["spec"]["steps"]
    assert validate_workflow(no_steps) == ["spec.steps: required unless workflowTemplateRef is set"]
    nested = {"metadata": {"name": "t"}, "spec": {"workflowTemplateRef": {"name": "u"}}}
    assert validate("WorkflowTemplate", nested) == [
        "spec.workflowTemplateRef: a template cannot be made from another template"
    ]
    bad = {"metadata": {"name": "t"}, "spec": {"steps": [step("a", ["zzz"])]}}
    assert validate("ClusterWorkflowTemplate", bad) == ["spec.steps[0].dependencies: unknown step 'zzz'"]
