"""Restart safety: the engine only knows the persisted status and the pods, and may see a stale status."""

from __future__ import annotations

import copy
import random

import pytest

from meson.workflow import PodObservation, instance_entries, plan, reporting, with_queue_positions
from tests.workflow.sim import T0, Cluster, Outcome, step, workflow


def running_status_workflow(node: str = "node-x"):
    wf = workflow([step("a")])
    wf["status"] = {
        "phase": "Running",
        "startedAt": "2023-11-14T22:13:20Z",
        "steps": [{"name": "a", "phase": "Running", "attempts": 1, "run": 1, "start": 0, "node": node}],
    }
    return wf


def test_pods_created_before_a_lost_status_write_are_adopted():
    c = Cluster(workflow([step("a"), step("b", ["a"])]))
    c.persist = False  # the runtime creates a's pods, then crashes before writing the status
    first = c.cycle()
    assert [r.instance for r in first.pending] == ["a"] and "status" not in c.wf
    c.persist = True
    c.now += 2
    result = c.cycle()
    assert c.phase("a") == "Running" and result.pending == [] and c.entry("a")["run"] == 1
    assert [r.instance for r in result.admitted] == ["a"]
    assert [r for _, r, _ in c.events].count("StepStarted") == 1
    c.run()
    assert c.status["phase"] == "Succeeded" and c.launches == [("a", 1, 1), ("b", 1, 1)]


def test_a_retry_launched_before_a_lost_status_write_is_adopted_with_its_attempt():
    wf = workflow([step("s", retryPolicy={"limit": 2, "backoff": {"initialSeconds": 0}})])
    c = Cluster(wf, script=lambda i, r, a, x: Outcome(duration=3, exit_code=int(r == 1)))
    c.run(until=lambda p: c.phase("s") == "Running")
    stale = copy.deepcopy(c.status)
    c.run(until=lambda p: ("s", 2, 2) in c.launches)  # failed, retried, relaunched
    c.wf["status"] = stale  # the operator restarts and reads a status one transition behind
    c.now += 1
    result = c.cycle()
    entry = c.entry("s")
    assert (entry["phase"], entry["run"], entry["attempts"]) == ("Running", 2, 2) and result.pending == []
    assert c.run().finished and c.status["phase"] == "Succeeded"


def test_adoption_expands_a_foreach_step_the_status_had_not_expanded():
    wf = workflow([step("fan", foreach={"items": ["x", "y"]})])
    pods = [
        PodObservation(
            f"wf-fan-{i}-r1-0", f"fan-{i}", 1, 1, "Running", "node-a", None, None, T0, T0 + 1, None
        )
        for i in range(2)
    ]
    result = plan(wf, pods, T0 + 2)
    assert [(s["index"], s["phase"]) for s in result.status["steps"]] == [(0, "Running"), (1, "Running")]
    assert result.pending == [] and len(result.admitted) == 2


@pytest.mark.parametrize(
    ("nodes", "reason"), [({"node-a"}, "NodeLost"), ({"node-x"}, "Evicted"), (None, "Evicted")]
)
def test_running_instance_without_pods_lost_them(nodes, reason):
    result = plan(running_status_workflow(), [], T0 + 10, nodes=nodes)
    entry = result.status["steps"][0]
    assert entry["phase"] == "Failed" and entry["reason"] == reason
    assert result.status["phase"] == "Failed"


def test_pods_in_unknown_phase_on_a_deleted_node_are_lost():
    pod = PodObservation("wf-a-r1-0", "a", 1, 1, "Unknown", "node-x", None, None, T0, T0 + 1, None)
    result = plan(running_status_workflow(), [pod], T0 + 10, nodes={"node-a"})
    assert result.status["steps"][0]["reason"] == "NodeLost" and result.delete_pods == ["wf-a-r1-0"]


def test_live_pods_of_old_runs_and_unknown_instances_are_deleted():
    wf = running_status_workflow()
    wf["status"]["steps"][0]["run"] = 2
    pods = [
        PodObservation("wf-a-r1-0", "a", 1, 1, "Running", "node-a", None, None, T0, T0 + 1, None),
        PodObservation("wf-a-r2-0", "a", 2, 2, "Running", "node-a", None, None, T0, T0 + 1, None),
        PodObservation("wf-gone-r1-0", "gone", 1, 1, "Running", "node-a", None, None, T0, T0 + 1, None),
        PodObservation("wf-gone-r1-1", "gone", 1, 1, "Running", "node-a", None, None, T0, T0 + 1, None, True),
    ]
    result = plan(wf, pods, T0 + 10, nodes={"node-a"})
    assert result.delete_pods == ["wf-a-r1-0", "wf-gone-r1-0"]
    assert result.status["steps"][0]["phase"] == "Running"
    assert [(r.instance, r.run) for r in result.admitted] == [("a", 2)]


def test_same_inputs_give_the_same_plan_and_inputs_are_not_modified():
    wf = workflow(
        [step("a"), step("fan", ["a"], foreach={"items": [1, 2, 3], "maxConcurrency": 2}, parallelism=2)],
        onExit={"template": {"spec": {"containers": [{"name": "x", "image": "y"}]}}},
    )
    c = Cluster(wf, script=lambda *a: Outcome(duration=4))
    for _ in range(12):
        before = copy.deepcopy(c.wf)
        observations = c.observations()
        first = plan(c.wf, observations, c.now, nodes=set(c.nodes))
        second = plan(c.wf, list(reversed(observations)), c.now, nodes=set(c.nodes))
        assert first == second
        assert c.wf == before
        c.cycle()
        c.now += 1


@pytest.mark.parametrize("seed", range(12))
def test_lost_status_writes_never_cause_duplicate_launches(seed):
    """Drop random status writes: the workflow ends the same, and every run is launched with one name set."""
    rng = random.Random(seed)

    def build():
        return workflow(
            [
                step("a", retryPolicy={"limit": 3, "backoff": {"initialSeconds": 2}}),
                step(
                    "fan",
                    ["a"],
                    foreach={"items": list(range(5)), "maxConcurrency": 3},
                    parallelism=2,
                    retryPolicy={"limit": 1, "backoff": {"initialSeconds": 1}},
                ),
                step("z", ["fan"], retryPolicy={"limit": 1, "backoff": {"initialSeconds": 0}}),
            ],
            onExit={"template": {"spec": {"containers": [{"name": "x", "image": "y"}]}}},
        )

    fail_runs = {("a", 1), ("a", 2), ("fan-2", 1), ("z", 1)}

    def script(instance, run, attempt, index):
        return Outcome(
            duration=rng.choice([2, 3, 5]), exit_code=int((instance, run) in fail_runs and index == 0)
        )

    reference = Cluster(
        build(), script=lambda i, r, a, x: Outcome(duration=3, exit_code=int((i, r) in fail_runs))
    )
    reference.run()
    names: dict[tuple[str, int], tuple[int, tuple[str, ...]]] = {}
    c = Cluster(build(), script=script)
    result = c.cycle()
    while not result.finished and c.now < T0 + 600:
        for request in result.pending:
            seen = names.setdefault(
                (request.instance, request.run),
                (request.attempt, tuple(p["metadata"]["name"] for p in request.pods)),
            )
            assert seen == (request.attempt, tuple(p["metadata"]["name"] for p in request.pods))
        c.now += 1
        c.persist = rng.random() > 0.3
        result = c.cycle()
    assert result.finished
    c.persist = True
    c.cycle()
    assert c.status["phase"] == reference.status["phase"] == "Succeeded"
    assert {(s["name"], s.get("index"), s["phase"], s.get("attempts")) for s in c.status["steps"]} == {
        (s["name"], s.get("index"), s["phase"], s.get("attempts")) for s in reference.status["steps"]
    }
    created = [name for request_names in names.values() for name in request_names[1]]
    assert len(created) == len(set(created))


# ---------------------------------------------------------------------------------- compact status round trip

BIG = 240  # above COMPACT_ABOVE: the fan-out is recorded as range entries


def big_fan_out() -> dict:
    return workflow(
        [
            step("a"),
            step(
                "fan",
                ["a"],
                foreach={"items": list(range(BIG)), "maxConcurrency": 70},
                parallelism=2,
                retryPolicy={"limit": 2, "backoff": {"initialSeconds": 2}},
            ),
            step("z", ["fan"]),
        ],
        onExit={"template": {"spec": {"containers": [{"name": "x", "image": "y"}]}}},
    )


def flaky(instance: str, run: int, attempt: int, index: int) -> Outcome:
    i = int(instance.rsplit("-", 1)[1]) if instance.startswith("fan-") else 0
    return Outcome(duration=2 + i % 4, exit_code=int(i % 9 == 4 and attempt == 1 and index == 1))


def decisions(result) -> tuple:
    return (
        sorted((r.instance, r.run, r.attempt) for r in result.pending),
        sorted((r.instance, r.run, r.attempt) for r in result.admitted),
        result.delete_pods,
        sorted(p["metadata"]["name"] for p in result.create_pods),
        result.finished,
        result.wake_at,
        result.status["phase"],
        result.status["counts"],
    )


def test_compact_status_gives_the_same_decisions_as_one_entry_per_instance(monkeypatch):
    compact = Cluster(big_fan_out(), script=flaky)
    compact.run()
    with monkeypatch.context() as m:
        m.setattr(reporting, "COMPACT_ABOVE", 10**6)
        full = Cluster(big_fan_out(), script=flaky)
        full.run()
    assert len(full.status["steps"]) == BIG + 3 and len(compact.status["steps"]) < 10
    assert [decisions(p) for p in compact.plans] == [decisions(p) for p in full.plans]
    assert compact.launches == full.launches and compact.status["phase"] == "Succeeded"
    retried = [i for i, e in compact.instances().items() if e.get("attempts", 0) > 1]
    assert retried == [f"fan-{i}" for i in range(BIG) if i % 9 == 4]


def test_restart_replaying_a_one_cycle_stale_compact_status_duplicates_nothing():
    """At every cycle, the operator restarts with the status of the cycle before: the same pods are asked
    for, and the status it then writes is the one it would have written."""
    c = Cluster(big_fan_out(), script=flaky)
    stale = None
    result = c.cycle()
    while not result.finished:
        c.now += 1
        c.tick_pods()
        if stale is not None:
            replay = plan({**c.wf, "status": stale}, c.observations(), c.now, nodes=set(c.nodes))
            fresh = plan(c.wf, c.observations(), c.now, nodes=set(c.nodes))
            assert decisions(replay)[:5] == decisions(fresh)[:5]
            assert instance_entries(replay.status) == instance_entries(fresh.status)
        stale = copy.deepcopy(c.status)
        result = c.cycle()
    assert c.status["phase"] == "Succeeded"


@pytest.mark.parametrize("seed", range(4))
def test_lost_writes_of_a_compact_status_never_cause_duplicate_launches(seed):
    rng = random.Random(seed)
    reference = Cluster(big_fan_out(), script=flaky)
    reference.run()
    c = Cluster(big_fan_out(), script=flaky)
    result = c.cycle()
    while not result.finished and c.now < T0 + 600:
        c.now += 1
        c.persist = rng.random() > 0.3
        result = c.cycle()
    c.persist = True
    c.cycle()
    assert sorted(c.launches) == sorted(reference.launches)
    assert len(c.launches) == len(set(c.launches))

    def outcome(cluster: Cluster) -> dict:
        return {i: (e["phase"], e.get("run"), e.get("attempts")) for i, e in cluster.instances().items()}

    assert outcome(c) == outcome(reference)


def test_positions_fed_back_change_no_decision():
    """The controller feeds the engine the status it wrote, positions and split-out entries included: the
    engine decides as without them."""
    c = Cluster(big_fan_out(), script=flaky, admit=lambda r: r.instance == "a" or r.instance.endswith("7"))
    result = c.cycle()
    while not result.finished and c.now < T0 + 600:
        positions = {r.instance: (k + 1, f"behind {k} others") for k, r in enumerate(result.pending)}
        written = with_queue_positions(result.status, positions)
        c.now += 1
        c.tick_pods()
        fed_back = plan({**c.wf, "status": written}, c.observations(), c.now, nodes=set(c.nodes))
        plain = plan(c.wf, c.observations(), c.now, nodes=set(c.nodes))
        assert fed_back.status == plain.status and decisions(fed_back) == decisions(plain)
        if c.now == T0 + 30:
            c.admit = lambda r: True
        c.wf["status"] = written
        result = c.cycle()
    assert result.finished and c.status["phase"] == "Succeeded"


def test_a_status_whose_indexes_were_pruned_is_read_again_from_the_pods():
    """A Workflow CRD older than the operator prunes ``indexes``: the range entries must not be read as the
    whole step (one of them says Pending, another Succeeded); the pods tell instead, and nothing is launched
    twice."""
    reference = Cluster(big_fan_out(), script=flaky)
    reference.run()
    c = Cluster(big_fan_out(), script=flaky)
    c.run(until=lambda p: sum(e["phase"] == "Succeeded" for e in c.instances().values()) > 100)
    assert any("indexes" in e for e in c.status["steps"])
    c.wf["status"] = {
        **c.status,
        "steps": [{k: v for k, v in e.items() if k != "indexes"} for e in c.status["steps"]],
    }
    c.now += 1
    result = c.cycle()
    assert any(e.reason == "StatusIndexesLost" for e in result.events)
    launched = {(i, r) for i, r, _ in c.launches}
    assert len(launched) == len(c.launches)  # no run of an instance launched twice
    assert c.run().finished and c.status["phase"] == "Succeeded"
    assert sorted(c.launches) == sorted(reference.launches)
