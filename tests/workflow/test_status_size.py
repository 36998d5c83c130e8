"""The workflow status fits its budget at every documented maximum, over the whole life of the workflow.

Sizes are measured as the API server stores them (json_size), after the runtime added queue positions (with
long reasons) to every pending instance, as it does before each write.
"""

from __future__ import annotations

import pytest

from meson.api.workflow import MAX_FOREACH_ITEMS, MAX_STEPS, MAX_WORKFLOW_INSTANCES
from meson.workflow import STATUS_BUDGET_BYTES, Plan, instance_entries, plan, with_queue_positions
from meson.workflow.status import (
    COMPACT_ABOVE,
    PLAN_BUDGET_BYTES,
    QUEUE_POSITIONS_MAX,
    STEP_MESSAGE_MAX_BYTES,
    cap_message,
    format_ranges,
    json_size,
    parse_ranges,
)
from tests.workflow.sim import T0, Cluster, Outcome, step, workflow

NAME = "s" * 40  # the longest step name
# A queue reason as long as the core may make it, with characters the API server escapes.
REASON = "waiting for quota <cpu> & memory in queue " + "q" * 400


def long_name(i: int) -> str:
    return f"{'x' * 36}{i:04d}"


def node_of(i: int) -> str:
    return f"{'n' * 240}-{i}"  # a node name near the 253-character limit, one per instance


def written(result: Plan) -> dict:
    """The status as the runtime writes it: every pending instance has a position and a long reason."""
    positions = {r.instance: (k + 1, REASON) for k, r in enumerate(result.pending)}
    return with_queue_positions(result.status, positions)


class Sizes:
    """Drives a Cluster and records the written status size at every cycle."""

    def __init__(self, c: Cluster) -> None:
        self.c = c
        self.seen: list[tuple[str, int]] = []

    def cycle(self, dt: float = 0) -> Plan:
        self.c.now += dt
        result = self.c.cycle()
        size = json_size(written(result))
        self.seen.append((result.status["phase"], size))
        assert size <= STATUS_BUDGET_BYTES, (result.status["phase"], size)
        return result

    @property
    def peak(self) -> int:
        return max(size for _, size in self.seen)


def lose_nodes(c: Cluster, which) -> None:
    """Pods of the chosen instances are deleted with their node (NodeLost, with the long node name)."""
    for name, pod in list(c.pods.items()):
        if pod.phase == "Running" and which(pod):
            c.delete_pod(name)
            c.nodes.discard(pod.node or "")


def test_largest_foreach_fits_over_its_whole_life():
    """10,000 elements, a 40-character name, 240-character node names, retries, exit codes, lost nodes."""

    def script(instance: str, run: int, attempt: int, index: int) -> Outcome:
        i = int(instance.rsplit("-", 1)[1])
        return Outcome(duration=20 + i % 7, exit_code=(i % 5 == 0) * (1 + i % 200), node=node_of(i))

    wf = workflow(
        [step(NAME, foreach={"items": list(range(MAX_FOREACH_ITEMS))}, retryPolicy={"limit": 1})],
        failureMode="Continue",
    )
    c = Cluster(wf, script=script, admit=lambda r: False)
    sizes = Sizes(c)
    sizes.cycle()  # all pending
    sizes.cycle(1)
    c.admit = lambda r: True
    sizes.cycle(1)  # 10,000 launched
    sizes.cycle(2)  # 10,000 running
    lose_nodes(c, lambda pod: pod.index == 0 and int(pod.instance.rsplit("-", 1)[1]) % 2 == 1)
    sizes.cycle(1)  # 5,000 retrying with long, distinct messages
    sizes.cycle(10)  # retries pending and launched
    sizes.cycle(10)  # first attempts fail with exit codes
    lose_nodes(c, lambda pod: int(pod.instance.rsplit("-", 1)[1]) % 4 == 1)
    sizes.cycle(1)  # 2,500 failed for good with long, distinct messages
    for _ in range(10):
        result = sizes.cycle(10)
        if result.finished:
            break
    assert result.finished and c.status["phase"] == "Failed"
    instances = c.instances()
    assert len(instances) == MAX_FOREACH_ITEMS
    failed = [e for e in instances.values() if e["phase"] == "Failed"]
    assert len(failed) > 2000 and any(e.get("message", "").startswith("stopped") for e in failed) is False
    phases = [p for p, _ in sizes.seen]
    assert phases[0] == "Pending" and "Running" in phases and phases[-1] == "Failed"
    print(f"largest foreach: peak {sizes.peak} bytes; sizes {sizes.seen}")


def test_150_steps_with_long_names_and_messages_fit():
    retry = ({"limit": 1}, {"limit": 1, "retryOn": ["FailedExit"]})  # half fail for good on a lost node
    steps = [step(long_name(i), parallelism=1 + i % 3, retryPolicy=retry[i % 2]) for i in range(MAX_STEPS)]
    wf = workflow(steps, failureMode="Continue", onExit={"name": "e" * 40, "template": steps[0]["template"]})

    def script(instance: str, run: int, attempt: int, index: int) -> Outcome:
        i = int(instance[-4:]) if instance[-4:].isdigit() else 0
        return Outcome(duration=20, exit_code=(i % 3 == 0) * 7, node=node_of(i * 10 + index))

    c = Cluster(wf, script=script, admit=lambda r: False)
    sizes = Sizes(c)
    sizes.cycle()
    c.admit = lambda r: True
    sizes.cycle(1)
    sizes.cycle(2)
    lose_nodes(c, lambda pod: pod.index == 1)  # gangs lose a member: "pod 1: node … lost"
    for _ in range(20):
        result = sizes.cycle(10)
        if result.finished:
            break
    assert result.finished and c.status["phase"] == "Failed"
    assert len(c.status["steps"]) == MAX_STEPS + 1  # small workflows keep one entry per instance
    capped = [e for e in c.status["steps"] if e.get("message", "").endswith("…")]
    assert capped and all(json_size(e["message"]) - 2 <= STEP_MESSAGE_MAX_BYTES for e in capped)
    print(f"150 steps: peak {sizes.peak} bytes")


# ---------------------------------------------------------------------------------- synthetic statuses

LARGE_STEPS = MAX_WORKFLOW_INSTANCES // MAX_FOREACH_ITEMS  # as many 10,000-element steps as allowed


def large_workflow(count: int = LARGE_STEPS, items: int = MAX_FOREACH_ITEMS):
    """``count`` foreach steps of ``items`` elements (one list parameter), 40-character names."""
    fan = {"foreach": {"parameter": "items"}, "retryPolicy": {"limit": 100}}
    steps = [step(f"{'f' * 36}{k:04d}", **fan) for k in range(count)]
    params = [{"name": "items", "default": list(range(items))}]
    return workflow(steps, parameters=params, failureMode="Continue")


def synthetic(wf: dict, state) -> dict:
    """``wf`` with a status giving each instance ``state(k, i)`` (k: step number, i: index)."""
    steps = []
    items = len(wf["spec"]["parameters"][0]["default"]) if "parameters" in wf["spec"] else MAX_FOREACH_ITEMS
    for k, s in enumerate(wf["spec"]["steps"]):
        for i in range(items):
            steps.append({"name": s["name"], "index": i, **state(k, i)})
    return {**wf, "status": {"phase": "Running", "startedAt": "2023-11-14T22:13:20Z", "steps": steps}}


def busy(k: int, i: int) -> dict:
    """Every phase at once, with distinct runs, retry times and long messages: the worst a life can do."""
    run = 1 + (i * 7 + k) % 40
    kind = i % 5
    if kind == 0:
        return {"phase": "Succeeded", "run": run, "attempts": run, "exitCode": 0, "start": i, "end": i + 9}
    if kind == 1:
        message = f"NodeLost: node {node_of(i)} lost"
        return {"phase": "Failed", "run": run, "attempts": run, "reason": "NodeLost", "message": message}
    if kind == 2:
        return {"phase": "Retrying", "run": run, "attempts": run, "retryAt": 5000 + i, "reason": "FailedExit"}
    if kind == 3:
        return {"phase": "Pending", "run": run, "attempts": run, "message": "preempted; back in the queue"}
    return {"phase": "Waiting", "run": run}


FINISHED = ("Succeeded", "Failed", "Skipped", "Omitted")


@pytest.mark.parametrize("count", [1, LARGE_STEPS])
def test_large_foreach_steps_fit_at_every_stage(count):
    """One 10,000-element step, and as many as a workflow may have: all pending, a busy mix, all finished."""
    wf = large_workflow(count)
    stages = {
        "pending": lambda k, i: {"phase": "Pending", "attempts": 1},
        "busy": busy,
        "finished": lambda k, i: {**busy(k, i), "phase": FINISHED[i % 4]},
    }
    for stage, state in stages.items():
        result = plan(synthetic(wf, state), [], T0 + 3600)
        size = json_size(written(result))
        assert result.status["counts"]["total"] == count * MAX_FOREACH_ITEMS
        assert json_size(result.status) <= PLAN_BUDGET_BYTES and size <= STATUS_BUDGET_BYTES, (stage, size)
        assert not any(e.reason == "StatusTooLarge" for e in result.events), stage
        print(f"{count} x 10,000 {stage}: {size} bytes")


def test_a_status_that_cannot_fit_terminates_the_workflow_and_then_fits():
    """Thousands of distinct (run, attempts) among pending instances defeat every level of detail: the
    workflow is terminated, and a status of finished instances always fits."""
    wf = workflow([step(NAME, foreach={"items": list(range(MAX_FOREACH_ITEMS))})])
    hopeless = synthetic(wf, lambda k, i: {"phase": "Pending", "run": i, "attempts": 1 + i % 100})
    result = plan(hopeless, [], T0 + 60)
    assert [e.reason for e in result.events if e.reason == "StatusTooLarge"] == ["StatusTooLarge"]
    assert result.pending == [] and result.finished and result.status["phase"] == "Failed"
    assert result.status["message"] == "status too large"
    assert json_size(result.status) <= STATUS_BUDGET_BYTES
    assert {e["phase"] for e in instance_entries(result.status).values()} == {"Omitted"}
    again = plan({**hopeless, "status": result.status}, [], T0 + 61)  # frozen: the record stays
    assert again.status == result.status and again.pending == []


@pytest.mark.parametrize(
    ("count", "items"), [(LARGE_STEPS, MAX_FOREACH_ITEMS), (MAX_STEPS, MAX_WORKFLOW_INSTANCES // MAX_STEPS)]
)
def test_the_worst_finished_status_fits(count, items):
    """The bound behind the termination: every instance finished, the phases and the engine's stop messages
    alternating from one index to the next, with distinct runs, over 50,000 instances (in 5 steps or in
    150)."""
    whys = (f"step {'f' * 36}0001-9999 failed", "workflow timeout", "terminated", "status too large")
    killed = [f"stopped: {why}" for why in whys]
    phases = [("Succeeded", None), ("Skipped", None), ("Omitted", None), ("Failed", "exit code 1")]
    phases += [("Failed", k) for k in killed]

    def state(k: int, i: int) -> dict:
        phase, message = phases[(i + k) % len(phases)]
        out = {"phase": phase, "run": 1 + i % 97, "attempts": 1 + i % 89}
        return out | ({"message": message} if message else {})

    result = plan(synthetic(large_workflow(count, items), state), [], T0 + 60)
    assert result.finished and not any(e.reason == "StatusTooLarge" for e in result.events)
    assert result.status["counts"]["total"] == count * items
    print(f"worst finished, {count} x {items}: {json_size(result.status)} bytes")
    assert json_size(result.status) <= PLAN_BUDGET_BYTES


# ---------------------------------------------------------------------------------- levels of detail


def test_levels_of_detail():
    small = workflow([step("fan", foreach={"items": list(range(COMPACT_ABOVE))})])
    assert len(plan(small, [], T0).status["steps"]) == COMPACT_ABOVE  # one entry per instance
    large = workflow([step("fan", foreach={"items": list(range(COMPACT_ABOVE + 1))})])
    assert plan(large, [], T0).status["steps"] == [
        {"name": "fan", "indexes": f"0-{COMPACT_ABOVE}", "phase": "Pending", "attempts": 1}
    ]
    # 150 steps of 100: too many instance entries, every foreach step becomes ranges
    many = workflow([step(long_name(i), foreach={"items": list(range(100))}) for i in range(MAX_STEPS)])
    result = plan(many, [], T0)
    assert len(result.status["steps"]) == MAX_STEPS and json_size(result.status) < 20_000


def test_lean_level_keeps_what_decisions_need():
    wf = workflow([step("fan", foreach={"items": list(range(2000))})], failureMode="Continue")
    status = synthetic_one(wf, lambda i: {"phase": "Failed", "run": 1, "attempts": 1, "message": f"{i}" * 50})
    result = plan(status, [], T0)
    (entry,) = result.status["steps"]  # messages dropped: one entry for 2,000 distinct failures
    assert entry == {"name": "fan", "indexes": "0-1999", "phase": "Failed", "attempts": 1, "run": 1}


def synthetic_one(wf: dict, state) -> dict:
    n = len(wf["spec"]["steps"][0]["foreach"]["items"])
    steps = [{"name": wf["spec"]["steps"][0]["name"], "index": i, **state(i)} for i in range(n)]
    return {**wf, "status": {"phase": "Running", "startedAt": "2023-11-14T22:13:20Z", "steps": steps}}


# ---------------------------------------------------------------------------------- queue positions


def test_only_the_first_pending_instances_get_a_position():
    wf = workflow([step(NAME, foreach={"items": list(range(MAX_FOREACH_ITEMS))})])
    result = plan(wf, [], T0)
    positions = {r.instance: (k + 1, REASON) for k, r in enumerate(reversed(result.pending))}
    status = with_queue_positions(result.status, positions)
    placed = {i: e for i, e in instance_entries(status).items() if "position" in e}
    assert len(placed) == QUEUE_POSITIONS_MAX
    assert sorted(e["position"] for e in placed.values()) == list(range(1, QUEUE_POSITIONS_MAX + 1))
    assert {e["index"] for e in placed.values()} == set(range(MAX_FOREACH_ITEMS - QUEUE_POSITIONS_MAX, 10000))
    assert all(len(e["message"].encode()) <= STEP_MESSAGE_MAX_BYTES + 3 for e in placed.values())
    rest = [e for e in status["steps"] if "indexes" in e]
    assert rest == [{"name": NAME, "indexes": "0-9899", "phase": "Pending", "attempts": 1}]
    assert len(instance_entries(status)) == MAX_FOREACH_ITEMS
    # fed back, positions are only a record: same decisions, the same status again
    again = plan({**wf, "status": status}, [], T0 + 1)
    assert again.status == result.status
    assert [(r.instance, r.run) for r in again.pending] == [(r.instance, r.run) for r in result.pending]
    assert with_queue_positions(status, {}) == {**result.status, "steps": status_without_positions(status)}


def status_without_positions(status: dict) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "position"} for e in status["steps"]]


def test_positions_of_small_workflows_are_unchanged():
    wf = workflow([step("a"), step("b")])
    result = plan(wf, [], T0)
    status = with_queue_positions(result.status, {"a": (2, "behind b"), "b": (1, "")})
    assert [(e["name"], e.get("position"), e.get("message")) for e in status["steps"]] == [
        ("a", 2, "behind b"),
        ("b", 1, None),
    ]


# ---------------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("text", "limit"),
    [("a" * 1000, 256), ("é" * 1000, 256), ("<&>" * 300, 256), ('"\\' * 300, 100), ("x\ny\tz" * 100, 64)],
)
def test_messages_are_capped_in_encoded_bytes(text, limit):
    capped = cap_message(text, limit)
    assert capped is not None and capped.endswith("…") and "\n" not in capped
    assert json_size(capped) - 2 <= limit  # minus the quotes
    assert cap_message(capped, limit) == capped  # stable: a capped message read back is not cut again


def test_short_messages_are_kept():
    assert cap_message("exit code 1") == "exit code 1" and cap_message("") is None and cap_message(3) is None


def test_ranges_round_trip_and_malformed_ranges_are_ignored():
    indexes = [0, 1, 2, 5, 7, 8, 9999]
    assert format_ranges(indexes) == "0-2,5,7-8,9999"
    assert parse_ranges("0-2,5,7-8,9999", 10000) == indexes
    assert parse_ranges("3-1,x,-4,5-,2-99999999999,", 6) == [2, 3, 4, 5]
    assert parse_ranges(None, 10) == []


def test_fan_outs_above_the_maximums_are_refused():
    over = workflow(
        [step("fan", foreach={"parameter": "xs"})], parameters=[{"name": "xs", "default": [0] * 10001}]
    )
    result = plan(over, [], T0)
    assert result.status["phase"] == "Failed" and "more than 10000" in result.status["message"]
    wide = workflow(
        [step(f"f{k}", foreach={"parameter": "xs"}) for k in range(6)],
        parameters=[{"name": "xs", "default": list(range(9000))}],
    )
    result = plan(wide, [], T0)
    assert result.status["phase"] == "Failed" and "54000 step instances" in result.status["message"]
    assert result.pending == []


def test_whatever_an_edited_status_carries_the_engine_writes_a_bounded_one():
    wf = workflow([step("a")])
    wf["status"] = {
        "phase": "Running",
        "startedAt": "2023-11-14T22:13:20Z",
        "junk": "x" * 2_000_000,
        "conditions": [{"type": f"T{i}", "status": "True", "message": "m" * 100_000} for i in range(50)],
        "steps": [{"name": "a", "phase": "Pending", "message": "y" * 100_000, "node": "z" * 9999}],
    }
    result = plan(wf, [], T0 + 5)
    assert "junk" not in result.status and len(result.status["conditions"]) == 8
    assert json_size(result.status) < 12_000
