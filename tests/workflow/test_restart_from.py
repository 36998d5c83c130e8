"""Restart from any step with parameter overrides: the step and its downstream rerun, the rest keeps its
results; recorded in status.history."""

from __future__ import annotations

import pytest

from meson.api.validation import validate_workflow
from meson.workflow_commands import parameter_overrides, restart_change
from tests.workflow.sim import Cluster, Outcome, container, step, workflow


def with_args(name: str, deps: list[str] | None = None, **fields) -> dict:
    out = step(name, deps, **fields)
    out["template"] = {"spec": {"containers": [container(args=["{{ params.n }}"])]}}
    return out


def chain(**spec) -> Cluster:
    wf = workflow(
        [with_args("a"), with_args("b", ["a"]), with_args("c", ["b"]), with_args("side", ["a"])],
        parameters=[{"name": "n", "default": 1}],
        onExit={"template": {"spec": {"containers": [container()]}}},
        **spec,
    )
    results = {"a": '{"from": "a"}', "b": '"b1"'}
    return Cluster(wf, script=lambda i, run, attempt, index: Outcome(result=results.get(i)))


def launched_args(c: Cluster, since: int) -> dict[str, list[str]]:
    out = {}
    for result in c.plans[since:]:
        for request in result.pending:
            out[request.instance] = request.pods[0]["spec"]["containers"][0].get("args")
    return out


def test_restart_from_a_middle_step_reruns_it_and_downstream_with_the_new_value_and_keeps_upstream():
    c = chain()
    c.run()
    assert c.status["phase"] == "Succeeded"
    before = list(c.launches)
    change = restart_change(c.wf, "b", {"n": 7})
    c.set_spec(**change)
    mark = len(c.plans)
    c.run()
    assert c.status["phase"] == "Succeeded"
    again = [inst for inst, _, _ in c.launches[len(before) :]]
    assert sorted(again) == ["b", "c", "on-exit"]  # a and side are not rerun
    assert launched_args(c, mark) == {"b": ["7"], "c": ["7"], "on-exit": None}
    assert c.entry("b")["run"] == 2 and c.entry("a")["run"] == 1
    assert c.status["outputs"]["a"] == '{"from": "a"}'
    (record,) = c.status["history"]
    assert record["restart"] == 1 and record["from"] == "b" and record["rerun"] == 3
    assert record["parameters"] == "n=7"
    restarted = next(x for x in c.status["conditions"] if x["type"] == "Restarted")
    assert restarted["reason"] == "RestartedFromStep" and "rerun from step b" in restarted["message"]


def test_a_plain_restart_after_a_restart_from_reruns_only_failed_steps_and_history_is_bounded():
    c = chain()
    c.run()
    for _ in range(12):
        c.set_spec(**restart_change(c.wf, None, {}))
        c.run()
    history = c.status["history"]
    assert len(history) == 10 and history[-1]["restart"] == 12 and "from" not in history[-1]
    assert c.entry("b")["run"] == 1  # nothing failed: only the exit step reran


def test_restart_from_a_running_workflow_relaunches_the_running_step():
    c = chain()
    c.script = lambda i, run, attempt, index: Outcome(duration=30 if i == "b" else 5)
    c.run(until=lambda p: c.status.get("steps") and c.phase("b") == "Running")
    c.set_spec(**restart_change(c.wf, "b", {}))
    c.run()
    assert c.status["phase"] == "Succeeded" and c.entry("b")["run"] == 2


def test_cli_change_refuses_unknown_steps_and_parameters_and_reads_json_values():
    c = chain()
    with pytest.raises(SystemExit, match="has no step 'nope'"):
        restart_change(c.wf, "nope", {})
    with pytest.raises(SystemExit, match="has no parameter 'm'"):
        restart_change(c.wf, "b", {"m": 1})
    with pytest.raises(SystemExit, match="expected NAME=VALUE"):
        parameter_overrides(["oops"])
    assert parameter_overrides(["n=3", "d=2025-06-01", "l=[1,2]"]) == {"n": 3, "d": "2025-06-01", "l": [1, 2]}


def test_restart_from_an_unknown_step_is_refused_at_apply():
    c = chain(restartFrom="nope")
    assert validate_workflow(c.wf) == ["spec.restartFrom: unknown step 'nope'"]
