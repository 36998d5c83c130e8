"""Status is a record, not an input: verify_status drops the claims the pods do not back."""

from __future__ import annotations

import copy

import pytest

from meson.workflow import PodObservation, instance_entries, plan, verify_status
from meson.workflow.verify import MAX_CORRECTIONS
from tests.workflow.sim import T0, Cluster, Outcome, step, workflow

EXIT = {"template": {"spec": {"containers": [{"name": "x", "image": "y"}]}}}


def pod(
    instance: str, run: int = 1, attempt: int = 1, phase: str = "Running", index: int = 0
) -> PodObservation:
    finished = T0 + 5 if phase in ("Succeeded", "Failed") else None
    code = {"Succeeded": 0, "Failed": 1}.get(phase)
    return PodObservation(
        f"wf-{instance}-r{run}-{index}",
        instance,
        run,
        attempt,
        phase,
        "node-a",
        code,
        None,
        T0,
        T0 + 1,
        finished,
    )


def forged(wf: dict, steps: list[dict], phase: str = "Succeeded", **extra) -> dict:
    status = {"phase": phase, "startedAt": "2023-11-14T22:13:20Z", "steps": steps, **extra}
    return {**wf, "status": status}


def chain() -> dict:
    return workflow([step("a"), step("b", ["a"]), step("c", ["b"])])


# ---------------------------------------------------------------------------------- forged claims


def test_forged_success_of_a_running_workflow_is_corrected_and_no_step_is_skipped():
    c = Cluster(chain(), script=lambda *a: Outcome(duration=5))
    c.run(until=lambda p: c.phase("a") == "Running")
    c.wf["status"] = forged(
        c.wf, [{"name": n, "phase": "Succeeded", "run": 1, "attempts": 1} for n in "abc"]
    )["status"]  # someone patches the status subresource, then the operator restarts
    status, corrections = verify_status(c.wf, c.observations())
    assert status["phase"] == "Running" and "finishedAt" not in status
    assert [(e["name"], e["phase"], e.get("run")) for e in status["steps"]] == [
        ("a", "Running", 1),
        ("b", "Waiting", None),
        ("c", "Waiting", None),
    ]
    assert corrections == [
        "step a: status said Succeeded but no pod of run 1 succeeded; reset to Running",
        "step b: status said Succeeded but no pod of run 1 succeeded; reset to Waiting",
        "step c: status said Succeeded but no pod of run 1 succeeded; reset to Waiting",
        "workflow: status said Succeeded but its steps did not all finish; reopened",
    ]
    c.wf["status"] = status
    assert c.run().finished and c.status["phase"] == "Succeeded"
    assert c.launches == [("a", 1, 1), ("b", 1, 1), ("c", 1, 1)]  # every step ran, a only once
    assert c.first("b", "Running") > c.first("a", "Succeeded")


def test_forged_finished_status_with_finished_at_is_reopened_while_pods_run():
    wf = forged(
        chain(),
        [{"name": n, "phase": "Succeeded", "run": 1, "attempts": 1} for n in "abc"],
        finishedAt="2023-11-14T22:14:00Z",
        conditions=[{"type": "Completed", "status": "True", "reason": "Succeeded"}],
    )
    status, corrections = verify_status(wf, [pod("a")])
    assert status["phase"] == "Running" and "finishedAt" not in status and "conditions" not in status
    assert len(corrections) == 4


def test_forged_skipped_step_still_runs():
    wf = forged(
        chain(),
        [
            {"name": "a", "phase": "Succeeded", "run": 1, "attempts": 1},
            {"name": "b", "phase": "Skipped", "message": "condition false"},
        ],
        phase="Running",
    )
    pods = [pod("a", phase="Succeeded")]
    status, corrections = verify_status(wf, pods)
    assert corrections == ["step b: status said Skipped but its condition is not false; reset to Waiting"]
    result = plan({**wf, "status": status}, pods, T0 + 10)
    assert [r.instance for r in result.pending] == ["b"]  # the engine derives b again: it runs


def test_a_genuinely_skipped_step_is_kept():
    wf = workflow(
        [step("a"), step("b", ["a"], when="params.go"), step("c", ["b"])],
        parameters=[{"name": "go", "default": False}],
    )
    wf = forged(
        wf,
        [
            {"name": "a", "phase": "Succeeded", "run": 1, "attempts": 1},
            {"name": "b", "phase": "Skipped", "message": "condition false"},
        ],
        phase="Running",
    )
    assert verify_status(wf, [pod("a", phase="Succeeded")]) == (wf["status"], [])


def test_forged_omission_is_derived_again_and_a_real_one_is_kept():
    steps = [
        {"name": "a", "phase": "Succeeded", "run": 1, "attempts": 1},
        {"name": "b", "phase": "Omitted", "message": "not run: dependency a failed"},
    ]
    wf = forged(chain(), steps, phase="Running")
    status, corrections = verify_status(wf, [pod("a", phase="Succeeded")])
    assert corrections == [
        "step b: status said Omitted but no failure, dependency or shutdown stops it; reset to Waiting"
    ]
    assert status["steps"][1] == {"name": "b", "phase": "Waiting"}
    failed = forged(
        chain(), [{**steps[0], "phase": "Failed", "reason": "FailedExit"}, steps[1]], phase="Running"
    )
    assert verify_status(failed, [pod("a", phase="Failed")]) == (failed["status"], [])


def test_claims_of_runs_without_pods_are_reset():
    wf = forged(
        workflow([step("a"), step("b"), step("c")]),
        [
            {"name": "a", "phase": "Running", "run": 2, "attempts": 2},
            {"name": "b", "phase": "Failed", "run": 3, "attempts": 3, "reason": "FailedExit"},
            {
                "name": "c",
                "phase": "Retrying",
                "run": 1,
                "attempts": 1,
                "retryAt": 99,
                "reason": "FailedExit",
            },
        ],
        phase="Running",
    )
    status, corrections = verify_status(wf, [pod("a", 1, 1, "Failed"), pod("b", 1, 1, "Failed")])
    assert [(e["name"], e["phase"], e.get("run"), e.get("attempts")) for e in status["steps"]] == [
        ("a", "Running", 1, 1),  # the pods of run 1 decide (a retry, or a failure)
        ("b", "Running", 1, 1),
        ("c", "Waiting", None, None),
    ]
    assert len(corrections) == 3


def test_failures_whose_pods_are_gone_by_design_are_kept():
    wf = forged(
        workflow([step("a"), step("b"), step("c")]),
        [
            {"name": "a", "phase": "Failed", "run": 1, "attempts": 1, "reason": "Evicted"},
            {"name": "b", "phase": "Retrying", "run": 1, "attempts": 1, "reason": "Timeout", "retryAt": 40},
            {"name": "c", "phase": "Failed", "run": 1, "attempts": 1, "message": "stopped: step a failed"},
            {"name": "x", "phase": "Succeeded"},  # not a step: ignored by the engine, left alone
        ],
        phase="Running",
    )
    assert verify_status(wf, []) == (wf["status"], [])


def test_attempts_never_go_below_the_pod_labels():
    wf = forged(
        workflow([step("a", retryPolicy={"limit": 3})]),
        [{"name": "a", "phase": "Running", "run": 3, "attempts": 1}],
        phase="Running",
    )
    status, corrections = verify_status(wf, [pod("a", 3, 3)])
    assert status["steps"][0]["attempts"] == 3 and len(corrections) == 1


def test_a_finished_workflow_without_pods_is_trusted():
    """Pods of old workflows may have been garbage collected: a finished record is kept."""
    wf = chain()
    c = Cluster(wf)
    c.run()
    assert c.status["phase"] == "Succeeded"
    assert verify_status(c.wf, []) == (c.status, [])
    assert verify_status(c.wf, c.observations()) == (c.status, [])


def test_huge_forged_fan_out_is_corrected_with_a_bounded_list_of_corrections():
    wf = workflow([step("fan", foreach={"items": list(range(10000))}), step("after", ["fan"])])
    wf = forged(wf, [{"name": "fan", "indexes": "0-9999", "phase": "Succeeded", "run": 1, "attempts": 1}])
    pods = [pod(f"fan-{i}", phase="Succeeded") for i in range(10)] + [pod("fan-10")]
    status, corrections = verify_status(wf, pods)
    assert len(corrections) == MAX_CORRECTIONS + 2  # the first ones, how many more, the workflow
    assert corrections[MAX_CORRECTIONS] == f"... and {10000 - 10 - MAX_CORRECTIONS} more corrections"
    phases = [e["phase"] for e in instance_entries(status).values()]
    assert (
        phases.count("Succeeded") == 10 and phases.count("Running") == 1 and phases.count("Waiting") == 9990
    )
    assert len(status["steps"]) <= 5  # written compactly
    result = plan({**wf, "status": status}, pods, T0 + 10)
    assert len(result.pending) == 9989 and result.status["phase"] == "Running"


def test_garbage_is_not_trusted_and_does_not_break_anything():
    wf = forged(
        chain(),
        [{"name": "a", "phase": "Done", "run": "x"}, {"name": ["b"]}, "junk", {"name": "c", "indexes": 5}],
    )
    status, corrections = verify_status(wf, [])
    assert status["phase"] == "Running" and corrections[-1].startswith("workflow:")
    assert [r.instance for r in plan({**wf, "status": status}, [], T0).pending] == ["a"]


# ---------------------------------------------------------------------------------- genuine histories


def failing_first(*instances: str):
    def script(instance: str, run: int, attempt: int, index: int) -> Outcome:
        return Outcome(duration=3, exit_code=int(instance in instances and attempt == 1))

    return script


FAN = {"items": list(range(150)), "maxConcurrency": 40}
HISTORIES = {
    "dag": (workflow([step("a"), step("b", ["a"]), step("c", ["a"]), step("d", ["b", "c"])]), None),
    "retries": (
        workflow([step("a", retryPolicy={"limit": 2, "backoff": {"initialSeconds": 2}}), step("b", ["a"])]),
        failing_first("a"),
    ),
    "fan-out": (
        workflow([step("a"), step("fan", ["a"], foreach=FAN, retryPolicy={"limit": 1}), step("z", ["fan"])]),
        failing_first("fan-3", "fan-77"),
    ),
    "gang and exit step": (workflow([step("g", parallelism=3)], onExit=EXIT), None),
    "conditions": (
        workflow(
            [
                step("a"),
                step("b", ["a"], when="params.go"),
                step("c", ["b"]),
                step("d", ["a"], when="!params.go"),
            ],
            parameters=[{"name": "go", "default": False}],
        ),
        None,
    ),
    "stop scheduling": (
        workflow([step("a"), step("slow"), step("b", ["a"]), step("c", ["b"])], onExit=EXIT),
        lambda i, r, a, x: Outcome(duration=8 if i == "slow" else 2, exit_code=int(i == "a")),
    ),
    "continue": (
        workflow([step("a"), step("b", ["a"]), step("c")], failureMode="Continue"),
        failing_first("a"),
    ),
    "fail fast": (
        workflow([step("a"), step("slow"), step("b", ["a"])], failureMode="FailFast", onExit=EXIT),
        lambda i, r, a, x: Outcome(duration=30 if i == "slow" else 2, exit_code=int(i == "a")),
    ),
    "step timeout": (
        workflow(
            [step("t", timeoutSeconds=3, retryPolicy={"limit": 1, "retryOn": ["Timeout"]}), step("u", ["t"])]
        ),
        lambda i, r, a, x: Outcome(duration=10 if a == 1 else 1),
    ),
    "workflow timeout": (
        workflow([step("a"), step("b", ["a"])], timeoutSeconds=5, onExit=EXIT),
        lambda i, r, a, x: Outcome(duration=20 if i == "a" else 1),
    ),
}


def checked(c: Cluster, inject=lambda c: None, seconds: float = 300) -> int:
    """Runs ``c`` to the end; at every cycle the operator may restart: the status it wrote last, against the
    pods as they are now (a cycle later: pods created, started or finished since), must be kept with no
    correction. Returns how many statuses were checked."""
    checked = 0
    result = None
    end = c.now + seconds
    while c.now < end and not (result and result.finished):
        c.tick_pods()
        if "status" in c.wf:
            status, corrections = verify_status(c.wf, c.observations())
            assert corrections == [] and status == c.wf["status"], (c.now - T0, corrections)
            checked += 1
        inject(c)
        result = c.cycle()
        c.now += 1
    assert result is not None and result.finished
    assert verify_status(c.wf, c.observations()) == (c.status, [])
    return checked


@pytest.mark.parametrize("name", HISTORIES)
def test_a_genuine_status_passes_unchanged_at_every_cycle(name):
    wf, script = HISTORIES[name]
    c = Cluster(copy.deepcopy(wf), script=script or (lambda *a: Outcome(duration=3)))
    assert checked(c) > 3


def test_a_genuine_status_passes_unchanged_through_preemption_suspend_and_restart():
    retry = {"limit": 1, "backoff": {"initialSeconds": 1}}
    wf = workflow([step("a"), step("b", ["a"], retryPolicy=retry), step("c", ["b"])])
    c = Cluster(wf, script=lambda i, r, a, x: Outcome(duration=4, exit_code=int(i == "b" and r <= 2)))

    def inject(c: Cluster) -> None:
        if c.now == T0 + 3:  # a is preempted
            c.delete_pod("wf-a-r1-0", failure="Preempted")
        if c.now == T0 + 5:
            c.set_spec(suspend=True)
        if c.now == T0 + 9:
            c.set_spec(suspend=False)

    checked(c, inject)
    assert c.status["phase"] == "Failed" and c.launches[:2] == [("a", 1, 1), ("a", 2, 1)]
    assert c.entry("b")["attempts"] == 2
    c.set_spec(restarts=1)  # rerun b (attempts counted afresh from 1, in run 3), then c
    assert checked(c) > 3 and c.status["phase"] == "Succeeded"
    assert ("b", 3, 1) in c.launches


@pytest.mark.parametrize(
    "name", ["conditions", "stop scheduling", "continue", "fail fast", "workflow timeout"]
)
def test_skipped_and_omitted_are_derived_again_from_upstream(name):
    """What verify_status resets to Waiting, the engine derives again: the same phases come back."""
    wf, script = HISTORIES[name]
    c = Cluster(copy.deepcopy(wf), script=script or (lambda *a: Outcome(duration=3)))
    c.run()
    genuine = {i: e["phase"] for i, e in c.instances().items()}
    assert {"Skipped", "Omitted"} & set(genuine.values())
    steps = [
        {"name": e["name"], "phase": "Waiting"} if e["phase"] in ("Skipped", "Omitted") else e
        for e in c.status["steps"]
    ]
    reset = {**c.wf, "status": {**c.status, "phase": "Running", "steps": steps}}
    reset["status"].pop("finishedAt")
    result = plan(reset, c.observations(), c.now + 1, nodes=c.nodes)
    assert {i: e["phase"] for i, e in instance_entries(result.status).items()} == genuine
    assert result.pending == [] and result.finished
