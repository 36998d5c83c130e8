"""The models as the controllers use them: parsing objects, reading fields, writing compact status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from meson.api import (
    CronWorkflow,
    Queue,
    StepStatus,
    StreamJob,
    Workflow,
    WorkflowStatus,
)
from meson.api.template import render, unknown_references

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name):
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


def test_workflow_fields():
    wf = Workflow.model_validate(_load("etl-workflow.yaml")[0])
    spec = wf.spec
    assert spec.queue == "analytics"
    assert [s.name for s in spec.steps] == ["extract", "transform", "aggregate", "publish"]
    transform = spec.step("transform")
    assert transform.deps() == ["extract"]
    assert transform.foreach is not None and transform.foreach.parameter == "partitions"
    assert transform.foreach.max_concurrency == 4
    assert transform.retry_policy is not None and transform.retry_policy.limit == 3
    assert transform.retry_policy.backoff is not None and transform.retry_policy.backoff.max_seconds == 600
    assert "Timeout" in transform.retry_policy.retry_on
    assert spec.step("aggregate").parallelism == 4
    assert spec.step("publish").when == "params.env == 'prod' && steps.aggregate.phase == 'Succeeded'"
    assert spec.parameter_values()["partitions"][0] == "eu-west"
    assert spec.on_exit is not None and spec.on_exit.name == "notify"
    assert spec.failure_mode == "StopScheduling"
    assert spec.step("extract").template.containers()[0]["name"] == "extract"
    # Defaults the API server also fills in.
    assert spec.step("extract").parallelism == 1
    assert spec.suspend is False


def test_wire_form_round_trips():
    doc = _load("etl-workflow.yaml")[0]
    wf = Workflow.model_validate(doc)
    again = Workflow.model_validate(wf.to_dict())
    assert again == wf
    assert "retryPolicy" in wf.to_dict()["spec"]["steps"][0]


def test_queue_translates_to_core_config():
    queues = {q["metadata"]["name"]: Queue.model_validate(q) for q in _load("tenant-queues.yaml")}
    research = queues["research"].spec
    assert research.parent == "cluster"
    assert research.guaranteed() == {"cpu": 128_000, "memory": 512 * 2**30, "nvidia.com/gpu": 16}
    assert research.limit() == {"cpu": 256_000, "memory": 2**40, "nvidia.com/gpu": 24}
    assert research.weight == 3 and research.max_admitted == 50
    assert research.queueing_strategy == "StrictFIFO"
    assert research.preemption is not None
    assert research.preemption.within_queue == "LowerPriority" and research.preemption.reclaim_borrowed
    assert research.stop_policy == "None"
    default = queues["default"].spec
    assert default.admission_rate is not None and default.admission_rate.pods_per_second == 2.5
    assert default.admission_rate.burst == 10
    # A limit defaults to the guaranteed amount (no borrowing).
    only = Queue.model_validate(
        {"metadata": {"name": "q"}, "spec": {"quota": {"cpu": {"guaranteed": "500m"}}}}
    )
    assert only.spec.limit() == {"cpu": 500}


def test_cron_and_stream():
    cron = CronWorkflow.model_validate(_load("nightly-cronworkflow.yaml")[0])
    assert cron.spec.schedule == "30 2 * * *" and cron.spec.time_zone == "Europe/Paris"
    assert cron.spec.concurrency_policy == "Forbid"
    assert cron.spec.workflow_template.spec.steps[0].foreach is not None
    job = StreamJob.model_validate(_load("streamjob.yaml")[0])
    assert job.spec.replicas == 3 and job.spec.desired_state == "Running"
    assert job.spec.update_strategy is not None and job.spec.update_strategy.max_surge == 1
    assert job.spec.restart_budget is not None and job.spec.restart_budget.max_restarts == 10


def test_bad_quantity_is_rejected_by_the_model():
    with pytest.raises(ValidationError, match="not a quantity"):
        Queue.model_validate({"spec": {"quota": {"cpu": {"guaranteed": "two"}}}})


def test_status_of_5000_steps_is_compact():
    steps = [
        StepStatus(
            name=f"transform-partition-{i // 100}",
            index=i % 100,
            phase="Succeeded",
            attempts=1,
            start=100 + i,
            end=400 + i,
            node=f"kwok-node-{i % 20}",
            exit_code=0,
        )
        for i in range(5000)
    ]
    status = WorkflowStatus(phase="Running", progress="5000/5000", steps=steps)
    size = len(json.dumps(status.to_dict(), separators=(",", ":")))
    assert size < 700_000, size  # etcd's limit is 1.5 MB


def test_render_whole_and_embedded_placeholders():
    context = {
        "params": {"n": 3, "list": [1, 2]},
        "item": {"region": "eu"},
        "step": {"name": "s", "index": 2},
    }
    node = {
        "a": "{{ params.n }}",
        "b": "x-{{params.n}}-{{ item.region }}",
        "c": ["{{ params.list }}"],
        "d": 5,
    }
    assert render(node, context) == {"a": "3", "b": "x-3-eu", "c": [[1, 2]], "d": 5}
    # A numeric foreach item fills a pod's string fields (args, env values) as text.
    assert render({"args": ["{{ item }}"]}, {"item": 7}) == {"args": ["7"]}
    assert render("{{ params.list }}!", context) == "[1,2]!"


def test_unknown_references():
    node = {
        "x": ["{{ params.a }}", "{{ foo.bar }}", "{{ step.attempt }}", "{{ workflow.name }}", "{{ item }}"]
    }
    problems = unknown_references(node, params={"a"}, has_item=False, path="t")
    assert problems == [
        "t.x[1]: unknown placeholder {{ foo.bar }} (use params.NAME, item, step.name, step.index, "
        "workflow.name, workflow.namespace, workflow.uid or steps.NAME.outputs.result)",
        "t.x[2]: unknown placeholder {{ step.attempt }} (use step.name or step.index)",
        "t.x[4]: {{ item }} is only available in a step with foreach",
    ]
