"""Step outputs: a step's result (its main container's termination message) read by later steps' conditions,
templates and foreach."""

from __future__ import annotations

import json

from meson.api.validation import validate_workflow
from meson.workflow import plan
from meson.workflow.status import json_size
from tests.workflow.sim import Cluster, Outcome, container, step, workflow

PARTITIONS = json.dumps({"partitions": ["a", "b", "c"], "rows": 42})


def emitting(results: dict[str, str]):
    """A script where the named instances succeed with the given result."""

    def script(instance: str, run: int, attempt: int, index: int) -> Outcome:
        return Outcome(result=results.get(instance))

    return script


def pods_args(c: Cluster) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for result in c.plans:
        for request in result.pending:
            out[request.instance] = request.pods[0]["spec"]["containers"][0].get("args", [])
    return out


def template(*args: str) -> dict:
    return {"spec": {"containers": [container(args=list(args))]}}


def test_a_step_fans_out_over_a_list_another_step_produced_and_a_condition_reads_it():
    wf = workflow(
        [
            step("list"),
            step(
                "load",
                ["list"],
                foreach={"fromOutput": "steps.list.outputs.json.partitions"},
                template=template("{{ item }}", "{{ steps.list.outputs.json.rows }}"),
            ),
            step("big", ["list"], when="steps.list.outputs.json.rows > 40"),
            step("small", ["list"], when="steps.list.outputs.json.rows <= 40"),
            step("report", ["list"], template=template("{{ steps.list.outputs.result }}")),
        ]
    )
    c = Cluster(wf, script=emitting({"list": PARTITIONS}))
    c.run()
    assert c.status["phase"] == "Succeeded"
    assert c.status["outputs"] == {"list": PARTITIONS}
    args = pods_args(c)
    assert [args[f"load-{i}"] for i in range(3)] == [["a", "42"], ["b", "42"], ["c", "42"]]
    assert args["report"] == [PARTITIONS]
    assert c.phase("big") == "Succeeded" and c.phase("small") == "Skipped"
    assert c.status["progress"] == "7/7"


def test_a_text_result_is_kept_as_text_and_legacy_result_sees_it():
    wf = workflow([step("probe"), step("act", ["probe"], when="steps.probe.result == 'go'")])
    c = Cluster(wf, script=emitting({"probe": "go"}))
    c.run()
    assert c.status["outputs"] == {"probe": "go"} and c.phase("act") == "Succeeded"


def test_a_foreach_over_an_output_that_is_not_a_list_fails_the_step_with_the_reason():
    wf = workflow([step("list"), step("load", ["list"], foreach={"fromOutput": "steps.list.outputs.json.x"})])
    c = Cluster(wf, script=emitting({"list": '{"x": 3}'}))
    c.run()
    assert c.status["phase"] == "Failed"
    assert c.entry("load")["message"] == "foreach.fromOutput: steps.list.outputs.json.x is not a list (int)"


def test_an_empty_list_output_succeeds_with_no_instances():
    wf = workflow([step("list"), step("load", ["list"], foreach={"fromOutput": "steps.list.outputs.json"})])
    c = Cluster(wf, script=emitting({"list": "[]"}))
    c.run()
    assert c.status["phase"] == "Succeeded" and c.entry("load")["message"] == "no items"


def test_a_step_without_a_result_reads_as_empty_and_a_template_needing_json_fails_clearly():
    wf = workflow([step("a"), step("b", ["a"], template=template("{{ steps.a.outputs.json.k }}"))])
    c = Cluster(wf)
    c.run()
    assert "outputs" not in c.status
    assert c.entry("b")["message"] == "template: no value for {{ steps.a.outputs.json.k }}"


def test_results_are_capped_at_4_kib_and_all_results_at_the_workflow_budget():
    steps = [step(f"s{i}") for i in range(20)]
    c = Cluster(workflow(steps), script=lambda instance, run, attempt, index: Outcome(result="é" * 4000))
    c.run()
    kept = c.status["outputs"]
    assert all(len(v.encode()) <= 4096 for v in kept.values())
    assert json_size(kept) <= 64 * 1024 < 20 * 4096
    dropped = [f"s{i}" for i in range(20) if f"s{i}" not in kept]
    assert dropped and all("result not kept" in c.entry(name)["message"] for name in dropped)
    assert c.status["phase"] == "Succeeded"


def test_outputs_survive_a_replan_from_the_persisted_status_and_restart_clears_rerun_steps():
    wf = workflow([step("a"), step("b", ["a"])], failureMode="Continue")
    results = {"a": '"one"', "b": "x"}
    c = Cluster(wf, script=lambda i, run, attempt, index: Outcome(result=results[i], exit_code=int(i == "b")))
    c.run()
    assert c.status["outputs"] == {"a": '"one"'} and c.phase("b") == "Failed"
    again = plan(c.wf, c.observations(), c.now + 5)
    assert again.status["outputs"] == {"a": '"one"'}


def test_references_to_outputs_of_steps_that_are_not_upstream_are_refused():
    wf = workflow(
        [
            step("a"),
            step("fan", foreach={"items": [1, 2]}),
            step("b", ["fan"], template=template("{{ steps.a.outputs.result }}")),
            step("c", ["fan"], foreach={"fromOutput": "steps.fan.outputs.json"}),
            step("d", ["a"], foreach={"fromOutput": "steps.a.outputs.json", "items": [1]}),
            step("e", ["fan"], when="steps.fan.outputs.result == ''"),
            step("f", ["a"], template=template("{{ steps.a.output }}")),
        ]
    )
    fan = "which has foreach (only steps without foreach have outputs)"
    assert validate_workflow(wf) == [
        "spec.steps[2].template.spec.containers[0].args[0]: {{ steps.a.outputs.result }} refers to the "
        "outputs of step 'a', which is not upstream of this step",
        f"spec.steps[3].foreach.fromOutput: refers to the outputs of step 'fan', {fan}",
        "spec.steps[4].foreach: exactly one of items, parameter or fromOutput must be set",
        f"spec.steps[5].when: refers to the outputs of step 'fan', {fan}",
        "spec.steps[6].template.spec.containers[0].args[0]: {{ steps.a.output }} must be "
        "steps.NAME.outputs.result or steps.NAME.outputs.json.KEY",
    ]


def test_pods_of_a_fan_out_over_an_output_are_kept_while_the_status_with_that_output_is_not_written_yet():
    """The operator plans from the status it last wrote: a status write still in flight (or put off) may
    not hold the result a fan-out was made from. Its pods are the fan-out's, not orphans to delete."""
    wf = workflow(
        [
            step("list"),
            step("load", ["list"], foreach={"fromOutput": "steps.list.outputs.json.partitions"}),
        ]
    )
    c = Cluster(wf, script=emitting({"list": PARTITIONS}))
    c.run(until=lambda p: c.phase("list") == "Running")
    c.persist = False  # every plan from now on starts from 'list Running', no result known
    deleted: list[str] = []
    for _ in range(10):  # list ends after 5 s: its result is read from its pod in every plan after that
        c.now += 1.0
        deleted += c.cycle().delete_pods
    assert {p.instance for p in c.pods.values()} >= {"load-0", "load-1", "load-2"}
    assert deleted == []
    c.persist = True
    c.run()
    assert c.status["phase"] == "Succeeded"
    assert sorted(i for i, _, _ in c.launches if i.startswith("load")) == ["load-0", "load-1", "load-2"]
