"""The pure validator: every webhook-layer bad manifest gets its exact message; good objects pass."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from e2e.bad_manifests import LAYERS, load_cases
from meson.api.validation import find_cycle, invalid_condition, parse, sample_pods, validate

CASES = load_cases()
EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
# Pod-template cases need the API server's (strict) dry run; they are covered by the e2e tests.
NEEDS_SERVER = {case["name"] for case in CASES if "invalid pod: " in case["error"]}
# So do references to missing templates (the webhook gets the template from the API server).
MISSING_TEMPLATE = {case["name"] for case in CASES if "not found in namespace" in case["error"]}
# And cycles of sub-workflows through other templates (the webhook lists them; tests/api/test_admission.py).
TEMPLATE_CYCLE = {
    case["name"] for case in CASES if "sub-workflow cycle" in case["error"] and case.get("setup")
}


def test_table_shape():
    assert len(CASES) >= 25
    names = [case["name"] for case in CASES]
    assert len(names) == len(set(names))
    for case in CASES:
        assert case["layer"] in LAYERS, case["name"]
        assert case["error"], case["name"]
        assert case["manifest"]["apiVersion"] == "meson.dev/v1alpha1"
    assert {case["layer"] for case in CASES} == set(LAYERS)
    object_names = [c["manifest"]["metadata"]["name"] for c in CASES]
    assert len(object_names) == len(set(object_names))


def _parents(case):
    setup = case.get("setup") or []
    return {obj["metadata"]["name"]: obj["spec"].get("parent") for obj in setup if obj["kind"] == "Queue"}


@pytest.mark.parametrize(
    "case",
    [
        c
        for c in CASES
        if c["layer"] == "webhook" and c["name"] not in NEEDS_SERVER | MISSING_TEMPLATE | TEMPLATE_CYCLE
    ],
    ids=lambda c: c["name"],
)
def test_webhook_case_gives_exact_error(case):
    manifest = case["manifest"]
    problems = validate(manifest["kind"], manifest, queue_parents=_parents(case))
    assert any(case["error"] in p for p in problems), problems


@pytest.mark.parametrize("case", [c for c in CASES if c["name"] in NEEDS_SERVER], ids=lambda c: c["name"])
def test_pod_cases_pass_pure_checks_and_render_a_pod(case):
    manifest = case["manifest"]
    assert validate(manifest["kind"], manifest) == []
    assert sample_pods(manifest["kind"], manifest)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    parents = {d["metadata"]["name"]: d["spec"].get("parent") for d in docs if d["kind"] == "Queue"}
    for doc in docs:
        assert validate(doc["kind"], doc, queue_parents=parents) == [], doc["metadata"]


def test_examples_cover_the_kinds():
    kinds = {d["kind"] for p in EXAMPLES for d in yaml.safe_load_all(p.read_text()) if d}
    # A ClusterWorkflowTemplate is a WorkflowTemplate cluster-wide: no example of its own (the e2e tests
    # create every example in each test namespace, which a cluster-scoped object cannot survive).
    assert kinds == {"Queue", "Workflow", "CronWorkflow", "StreamJob", "WorkflowTemplate"}


def test_sample_pods_render_placeholders():
    doc = yaml.safe_load((EXAMPLES[0].parent / "etl-workflow.yaml").read_text())
    doc["metadata"]["name"] = "etl-1"
    doc["metadata"]["namespace"] = "data"
    pods = dict(sample_pods("Workflow", doc))
    transform = pods["spec.steps[1].template"]
    assert transform["metadata"]["labels"] == {"acme.io/partition": "eu-west"}
    assert transform["metadata"]["namespace"] == "data"
    assert "--partition=eu-west" in transform["spec"]["containers"][0]["args"]
    assert pods["spec.steps[0].template"]["spec"]["containers"][0]["image"] == "ghcr.io/acme/sales-etl:2.3.0"
    assert "workflow=etl-1" in pods["spec.onExit.template"]["spec"]["containers"][0]["args"][-1]
    assert "{{" not in yaml.safe_dump(pods)


def test_parse_reports_paths():
    model, problems = parse(
        "Workflow", {"spec": {"steps": [{"name": "a", "template": {"spec": {}}, "parallelism": 0}]}}
    )
    assert model is None
    assert problems == ["spec.steps[0].parallelism: Input should be greater than or equal to 1"]
    assert parse("Nope", {})[1][0].startswith("kind: unknown kind 'Nope'")


def test_invalid_condition():
    condition = invalid_condition(["a: bad", "b: worse"], generation=3)
    assert condition["type"] == "Valid" and condition["status"] == "False"
    assert condition["reason"] == "InvalidSpec" and condition["message"] == "a: bad; b: worse"
    assert condition["observedGeneration"] == 3


def test_condition_with_dashed_step_names_and_results():
    wf = {
        "spec": {
            "parameters": [{"name": "threshold", "default": 3}],
            "steps": [
                {"name": "load-data", "template": {"spec": {"containers": [{"name": "m", "image": "x"}]}}},
                {
                    "name": "report",
                    "dependencies": ["load-data"],
                    "when": "steps['load-data'].exitCode == 0 && "
                    "int(steps['load-data'].result) > params.threshold",
                    "template": {"spec": {"containers": [{"name": "m", "image": "x"}]}},
                },
            ],
        }
    }
    assert validate("Workflow", wf) == []


def test_unknown_variable_in_condition():
    wf = {
        "spec": {
            "steps": [
                {
                    "name": "a",
                    "when": "env == 'x'",
                    "template": {"spec": {"containers": [{"name": "m", "image": "x"}]}},
                }
            ]
        }
    }
    assert validate("Workflow", wf) == [
        "spec.steps[0].when: unknown variable 'env' (conditions see params and steps)"
    ]


def test_upstream_is_transitive():
    step = {"template": {"spec": {"containers": [{"name": "m", "image": "x"}]}}}
    wf = {
        "spec": {
            "steps": [
                {"name": "a", **step},
                {"name": "b", "dependencies": ["a"], **step},
                {"name": "c", "dependencies": ["b"], "when": "steps.a.phase == 'Succeeded'", **step},
            ]
        }
    }
    assert validate("Workflow", wf) == []


@given(st.integers(min_value=2, max_value=30), st.data())
def test_find_cycle_finds_planted_cycles(size, data):
    # A DAG (edges only to lower indices) plus one back edge: the cycle must be found and be real.
    graph = {str(i): [str(j) for j in range(i) if data.draw(st.booleans())] for i in range(size)}
    assert find_cycle(graph) is None
    low = data.draw(st.integers(min_value=0, max_value=size - 2))
    high = data.draw(st.integers(min_value=low + 1, max_value=size - 1))
    graph[str(high)].append(str(low))  # high depends on low
    graph[str(low)].append(str(high))  # low depends on high: a cycle
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1]
    for node, dep in itertools.pairwise(cycle):
        assert dep in graph[node]


def test_fanouts_above_the_documented_maximums_are_refused() -> None:
    template = {"spec": {"containers": [{"name": "m", "image": "busybox"}]}}
    over = {
        "apiVersion": "meson.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "x"},
        "spec": {
            "parameters": [{"name": "xs", "default": list(range(10001))}],
            "steps": [{"name": "a", "foreach": {"parameter": "xs"}, "template": template}],
        },
    }
    assert validate("Workflow", over) == [
        "spec.steps[0].foreach.parameter: parameter 'xs' has 10001 elements, more than 10000"
    ]
    over["spec"]["parameters"][0]["default"] = list(range(10000))
    over["spec"]["steps"] = [
        {"name": f"s{i}", "foreach": {"parameter": "xs"}, "template": template} for i in range(6)
    ]
    assert validate("Workflow", over) == ["spec.steps: 60000 step instances, more than 50000 per workflow"]
    over["spec"]["steps"] = over["spec"]["steps"][:5]
    assert validate("Workflow", over) == []


def test_a_sub_workflow_step_takes_only_the_fields_that_mean_something_for_a_child():
    from meson.api.validation import validate

    wf = {
        "metadata": {"name": "w"},
        "spec": {
            "parameters": [{"name": "day", "default": "mon"}],
            "steps": [
                {"name": "list", "template": {"spec": {"containers": [{"name": "m", "image": "busybox"}]}}},
                {
                    "name": "etl",
                    "dependencies": ["list"],
                    "foreach": {"items": ["a", "b"]},
                    "retryPolicy": {"limit": 2},
                    "workflowTemplateRef": {
                        "name": "etl",
                        "parameters": [
                            {"name": "day", "value": "{{ params.day }}-{{ item }}"},
                            {"name": "rows", "value": "{{ steps.list.outputs.json.rows }}"},
                        ],
                    },
                },
            ],
        },
    }
    assert validate("Workflow", wf) == []
    bad = wf["spec"]["steps"][1]
    bad.update(timeoutSeconds=60, memoize={"key": "k", "maxAgeSeconds": 60})
    bad["workflowTemplateRef"]["parameters"].append(
        {"name": "day", "value": "{{ steps.etl.outputs.result }}"}
    )
    assert validate("Workflow", wf) == [
        "spec.steps[1].memoize: a step with foreach cannot be memoized",
        "spec.steps[1].timeoutSeconds: not supported for a sub-workflow step (workflowTemplateRef)",
        "spec.steps[1].memoize: not supported for a sub-workflow step (workflowTemplateRef)",
        "spec.steps[1].workflowTemplateRef.parameters[2].name: duplicate parameter 'day'",
        "spec.steps[1].workflowTemplateRef.parameters[2].value: {{ steps.etl.outputs.result }} refers to the "
        "outputs of step 'etl', which is not upstream of this step",
    ]
    neither = {"metadata": {"name": "w"}, "spec": {"steps": [{"name": "a"}]}}
    assert validate("Workflow", neither) == [
        "spec.steps[0]: exactly one of template and workflowTemplateRef must be set"
    ]


@pytest.mark.parametrize(
    ("semaphore", "refused"),
    [
        ({"name": "db"}, False),  # neither limit nor configMapKeyRef: a mutex, as before configMapKeyRef
        ({"name": "db", "limit": 3}, False),
        ({"name": "db", "configMapKeyRef": {"name": "limits", "key": "db"}}, False),
        ({"name": "db", "limit": 3, "configMapKeyRef": {"name": "limits", "key": "db"}}, True),
    ],
)
def test_a_semaphore_takes_a_limit_or_a_config_map_key_not_both(semaphore, refused):
    wf = {
        "apiVersion": "meson.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "w", "namespace": "default"},
        "spec": {
            "synchronization": {"semaphore": semaphore},
            "steps": [{"name": "a", "template": {"spec": {"containers": [{"name": "main", "image": "x"}]}}}],
        },
    }
    problems = [p for p in validate("Workflow", wf) if "semaphore" in p]
    assert bool(problems) == refused, problems
