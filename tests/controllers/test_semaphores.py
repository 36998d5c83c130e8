"""Semaphores across workflows and steps, with the real loop on the in-memory API server: never more holders
than the limit, waiters start by priority, a retrying step keeps its place, workflow and step holders share
one count, and an operator killed during a hand-off loses nothing; and the holder and waiter computation on
its own."""

from __future__ import annotations

import pytest

from meson.controllers import sync
from meson.controllers.store import Store
from meson.controllers.sync import Semaphores, declared, holding_instances, resolve_limit
from meson.workflow import LABEL_STEP, LABEL_WORKFLOW, InstanceRequest, PodObservation
from tests.controllers.builders import chain, queue, step, steps_by_instance, workflow
from tests.controllers.fake_cluster import FAIL_ATTEMPTS, FakeCluster, Operator, run
from tests.controllers.fake_cluster import sync as run_sync
from tests.controllers.test_loop import assert_no_pod_created_twice

NAMES = ("low", "mid", "high")


def contended(cluster: FakeCluster, limit: int = 1) -> None:
    cluster.apply(queue("q", cpu="100"))
    for name, value in zip(NAMES, (10, 20, 30), strict=True):
        cluster.add_priority_class(f"p-{name}", value)
    sem = {"semaphore": {"name": "db", "limit": limit}}
    for name in NAMES:  # created low first: priority, not age, decides
        cluster.apply(
            workflow(name, "q", chain("a", "b"), priorityClassName=f"p-{name}", synchronization=sem)
        )


def holders(cluster: FakeCluster) -> set[str]:
    return {p["metadata"]["labels"][LABEL_WORKFLOW] for p in cluster.pods(queue="q", live=True)}


def finished(cluster: FakeCluster, names: tuple[str, ...] = NAMES) -> bool:
    return all(cluster.status("workflows", n).get("phase") == "Succeeded" for n in names)


def waiting_messages(cluster: FakeCluster, instance: str) -> list[str]:
    """The messages of the Pending ``instance`` of the workflows of NAMES."""
    entries = [steps_by_instance(cluster.status("workflows", n)).get(instance) or {} for n in NAMES]
    return [e["message"] for e in entries if e.get("phase") == "Pending" and e.get("message")]


def hand_overs(seen: list[set[str]]) -> list[str]:
    """The holders one after the other, from samples of one holder at a time."""
    return [next(iter(s)) for i, s in enumerate(seen) if s and (i == 0 or s != seen[i - 1])]


@run_sync
async def test_a_mutex_runs_the_workflows_one_at_a_time_in_priority_order_and_waiters_say_why() -> None:
    cluster = FakeCluster()
    contended(cluster)
    seen: list[set[str]] = []
    messages: list[str] = []

    def sample() -> None:
        seen.append(holders(cluster))
        messages.extend(waiting_messages(cluster, "a"))

    await run(cluster, Operator(cluster), lambda: finished(cluster), each=sample)
    assert max(len(s) for s in seen) == 1, seen
    assert hand_overs(seen) == ["high", "mid", "low"]
    assert "waiting for semaphore db: 1/1 held by high; 1 in line" in messages


@run_sync
async def test_a_semaphore_of_two_and_an_operator_killed_during_the_hand_off() -> None:
    cluster = FakeCluster()
    contended(cluster, limit=2)
    op = Operator(cluster)
    most = 0

    def sample() -> None:
        nonlocal most
        most = max(most, len(holders(cluster)))

    # Run until the first holder finishes its last step, then kill the operator before it hands over.
    await run(
        cluster, op, lambda: cluster.status("workflows", "high").get("phase") == "Succeeded", each=sample
    )
    await op.crash()
    await run(cluster, Operator(cluster), lambda: finished(cluster), each=sample)
    assert most == 2
    assert_no_pod_created_twice(cluster)
    assert len(cluster.pods(queue="q")) == 6  # each step of each workflow ran once


# --- a limit read from a ConfigMap (configMapKeyRef) --------------------------------------------------------


def from_config_map(cluster: FakeCluster) -> None:
    cluster.apply(queue("q", cpu="100"))
    sem = {"semaphore": {"name": "db", "configMapKeyRef": {"name": "limits", "key": "db"}}}
    for name in ("one", "two"):
        cluster.apply(workflow(name, "q", chain("a", "b"), synchronization=sem))


def messages_of(cluster: FakeCluster, name: str) -> str:
    return (steps_by_instance(cluster.status("workflows", name)).get("a") or {}).get("message") or ""


@run_sync
async def test_a_missing_or_bad_config_map_limit_holds_the_workflows_back_until_it_is_fixed() -> None:
    cluster = FakeCluster()
    from_config_map(cluster)
    op = Operator(cluster)
    for _ in range(3):
        await op.cycle()
    assert not holders(cluster)
    assert "semaphore db: ConfigMap limits not found (it sets the limit)" in messages_of(cluster, "one")
    assert cluster.status("workflows", "one").get("phase") != "Failed"

    cluster.add("configmaps", "default", {"metadata": {"name": "limits"}, "data": {"other": "3"}})
    for _ in range(3):
        await op.cycle()
    assert not holders(cluster)
    assert "semaphore db: ConfigMap limits has no key db (it sets the limit)" in messages_of(cluster, "two")

    cluster.user_patch("configmaps", "limits", {"data": {"db": "0"}})
    for _ in range(3):
        await op.cycle()
    assert not holders(cluster)
    assert "ConfigMap limits key db is '0', not a positive integer" in messages_of(cluster, "one")

    cluster.user_patch("configmaps", "limits", {"data": {"db": "1"}})
    seen: list[set[str]] = []
    await run(
        cluster,
        op,
        lambda: finished(cluster, ("one", "two")),
        each=lambda: seen.append(holders(cluster)),
    )
    assert max(len(s) for s in seen) == 1, seen  # the fixed limit of 1 is kept


@run_sync
async def test_raising_the_config_map_limit_lets_a_waiter_start_beside_the_holder() -> None:
    cluster = FakeCluster()
    cluster.add("configmaps", "default", {"metadata": {"name": "limits"}, "data": {"db": "1"}})
    from_config_map(cluster)
    op = Operator(cluster)
    for _ in range(3):
        await op.cycle()
    assert len(holders(cluster)) == 1
    waiter = ({"one", "two"} - holders(cluster)).pop()
    assert "waiting for semaphore db: 1/1 held by" in messages_of(cluster, waiter)

    cluster.user_patch("configmaps", "limits", {"data": {"db": " 2\n"}})  # as `kubectl create --from-file`
    for _ in range(3):
        await op.cycle()
    assert holders(cluster) == {"one", "two"}


def test_limit_resolution_reasons() -> None:
    sem = {"name": "db", "configMapKeyRef": {"name": "limits", "key": "db"}}
    ns = "team"
    assert resolve_limit({"name": "db", "limit": 3}, ns, {}) == 3
    assert resolve_limit(sem, ns, {("other", "limits"): {"db": "2"}}) == (
        "semaphore db: ConfigMap limits not found (it sets the limit)"
    )
    assert resolve_limit(sem, ns, {(ns, "limits"): {"db": "2"}}) == 2
    assert resolve_limit(sem, ns, {(ns, "limits"): {"db": "-1"}}).endswith("is '-1', not a positive integer")
    assert resolve_limit(sem, ns, {(ns, "limits"): {"db": "two"}}).endswith(
        "is 'two', not a positive integer"
    )
    assert resolve_limit(sem, ns, {(ns, "limits"): {"db": None}}).endswith(
        "is too long, not a positive integer"
    )


def test_the_view_keeps_only_short_config_map_values_and_ignores_stale_events() -> None:
    store = Store()
    cm = {"metadata": {"namespace": "ns", "name": "limits", "resourceVersion": "5"}, "data": {"db": "2"}}
    store.on_config_map("ADDED", cm | {"data": {"db": "2", "ca.crt": "x" * 2000}})
    assert store.config_maps[("ns", "limits")] == {"db": "2", "ca.crt": None}
    store.on_config_map(
        "MODIFIED", {**cm, "metadata": {**cm["metadata"], "resourceVersion": "4"}, "data": {}}
    )
    assert store.config_maps[("ns", "limits")]["db"] == "2"  # an older version does not roll it back
    store.on_config_map("DELETED", cm)
    assert ("ns", "limits") not in store.config_maps


# --- step-level semaphores (steps[].synchronization) -------------------------------------------------------

DB = {"semaphore": {"name": "db", "limit": 1}}


def loading(name: str, q: str = "q", load: dict | None = None, **spec) -> dict:
    """A workflow whose step ``load`` takes the mutex db and whose step ``free`` takes nothing."""
    load = load or step("load", duration="3s", synchronization=DB)
    return workflow(name, q, [load, step("free", duration="8s")], **spec)


def live_steps(cluster: FakeCluster, step_name: str) -> set[str]:
    """The workflows with a live pod of ``step_name``."""
    return {
        p["metadata"]["labels"][LABEL_WORKFLOW]
        for p in cluster.pods(queue="q", live=True)
        if p["metadata"]["labels"][LABEL_STEP] == step_name
    }


def phase_of(cluster: FakeCluster, name: str, instance: str) -> str | None:
    return (steps_by_instance(cluster.status("workflows", name)).get(instance) or {}).get("phase")


def step_contended(cluster: FakeCluster) -> None:
    cluster.apply(queue("q", cpu="100"))
    for name, value in zip(NAMES, (10, 20, 30), strict=True):
        cluster.add_priority_class(f"p-{name}", value)
    for name in NAMES:  # created low first: priority, not age, decides
        cluster.apply(loading(name, priorityClassName=f"p-{name}"))


@run_sync
async def test_a_step_mutex_runs_one_load_at_a_time_in_priority_order_while_the_other_steps_run() -> None:
    cluster = FakeCluster()
    step_contended(cluster)
    loads: list[set[str]] = []
    frees: list[set[str]] = []
    messages: list[str] = []

    def sample() -> None:
        loads.append(live_steps(cluster, "load"))
        frees.append(live_steps(cluster, "free"))
        messages.extend(waiting_messages(cluster, "load"))

    await run(cluster, Operator(cluster), lambda: finished(cluster), each=sample)
    assert max(len(s) for s in loads) == 1, loads
    assert hand_overs(loads) == ["high", "mid", "low"]
    # The steps that take no semaphore are not held: all three ran at once, beside the first load.
    first = next(i for i, s in enumerate(frees) if s)  # the first cycle dry-runs the pod templates
    assert frees[first] == set(NAMES) and loads[first] == {"high"}, (frees, loads)
    assert "waiting for semaphore db: 1/1 held by high/load; 1 in line" in messages
    assert "waiting for semaphore db: 1/1 held by high/load; 2 in line" in messages
    assert_no_pod_created_twice(cluster)


@run_sync
async def test_a_retrying_step_keeps_the_semaphore_between_its_attempts() -> None:
    cluster = FakeCluster()
    cluster.apply(queue("q", cpu="100"))
    cluster.add_priority_class("first", 100)
    flaky = step(
        "load",
        duration="2s",
        exit_code=1,
        synchronization=DB,
        retryPolicy={"limit": 2, "backoff": {"initialSeconds": 5}},
    )
    flaky["template"]["metadata"]["annotations"][FAIL_ATTEMPTS] = "1"  # fails once, then succeeds
    cluster.apply(loading("flaky", load=flaky, priorityClassName="first"))
    cluster.apply(loading("waiter"))
    seen: list[tuple[str | None, set[str]]] = []

    def sample() -> None:
        seen.append((phase_of(cluster, "flaky", "load"), live_steps(cluster, "load")))

    await run(cluster, Operator(cluster), lambda: finished(cluster, ("flaky", "waiter")), each=sample)
    between = [live for phase, live in seen if phase == "Retrying"]
    assert len(between) >= 3, seen  # the backoff of 5 s: several cycles between the two attempts
    assert not any("waiter" in live for live in between), seen  # the waiter did not start in between
    assert max(len(live) for _, live in seen) == 1, seen
    first_waiter = next(i for i, (_, live) in enumerate(seen) if "waiter" in live)
    assert all(phase == "Succeeded" for phase, _ in seen[first_waiter:]), seen
    runs = sorted(p["metadata"]["name"] for p in cluster.pods("flaky") if "-load-" in p["metadata"]["name"])
    assert runs == ["flaky-load-r1-0", "flaky-load-r2-0"]


@run_sync
async def test_a_workflow_semaphore_and_a_step_semaphore_of_the_same_name_share_one_count() -> None:
    cluster = FakeCluster()
    cluster.apply(queue("q", cpu="100"))
    cluster.add_priority_class("first", 100)
    # The whole workflow holds db (priority first); the other one's load step waits for it, its free
    # step does not.
    cluster.apply(
        workflow("whole", "q", chain("a", "b", duration="2s"), synchronization=DB, priorityClassName="first")
    )
    cluster.apply(loading("part"))
    samples: list[tuple[set[str], set[str], set[str]]] = []
    messages: set[str] = set()

    def sample() -> None:
        whole = {"whole"} if cluster.pods("whole", live=True) else set()
        samples.append((whole, live_steps(cluster, "load"), live_steps(cluster, "free")))
        messages.add(
            (steps_by_instance(cluster.status("workflows", "part")).get("load") or {}).get("message")
        )

    await run(cluster, Operator(cluster), lambda: finished(cluster, ("whole", "part")), each=sample)
    assert all(len(whole) + len(load) <= 1 for whole, load, _ in samples), samples
    first = next(s for s in samples if any(s))  # the first cycle dry-runs the pod templates
    assert first == ({"whole"}, set(), {"part"}), samples  # the free step ran at once
    assert "waiting for semaphore db: 1/1 held by whole; 1 in line" in messages
    assert any(load == {"part"} for _, load, _ in samples)


@run_sync
async def test_exit_steps_take_a_semaphore_too() -> None:
    cluster = FakeCluster()
    cluster.apply(queue("q", cpu="100"))
    names = ("one", "two", "three")
    for name in names:
        exit_step = {**step("on-exit", duration="3s", synchronization=DB), "name": "notify"}
        cluster.apply(workflow(name, "q", [step("work")], onExit=exit_step))
    seen: list[set[str]] = []
    await run(
        cluster,
        Operator(cluster),
        lambda: finished(cluster, names),
        each=lambda: seen.append(live_steps(cluster, "notify")),
    )
    assert max(len(s) for s in seen) == 1 and set().union(*seen) == set(names), seen


@pytest.mark.parametrize("when", ["pod ended", "status recorded"])
@run_sync
async def test_an_operator_killed_as_a_step_mutex_is_handed_over(when: str) -> None:
    cluster = FakeCluster()
    step_contended(cluster)
    op = Operator(cluster)
    most = 0

    def sample() -> None:
        nonlocal most
        most = max(most, len(live_steps(cluster, "load")))

    def handing_over() -> bool:  # the first holder's load ended: its pod, or its status too
        if when == "status recorded":
            return phase_of(cluster, "high", "load") == "Succeeded"
        return any(
            p["status"]["phase"] == "Succeeded"
            for p in cluster.pods("high")
            if "-load-" in p["metadata"]["name"]
        )

    await run(cluster, op, handing_over, each=sample)
    await op.crash()
    await run(cluster, Operator(cluster), lambda: finished(cluster), each=sample)
    assert most == 1
    assert_no_pod_created_twice(cluster)
    assert len(cluster.pods(queue="q")) == 6  # each step of each workflow ran once


# --- the holder and waiter computation, pure ------------------------------------------------------------


def obs(instance: str, run: int, phase: str) -> PodObservation:
    return PodObservation(
        f"wf-{instance}-r{run}-0", instance, run, run, phase, None, None, None, 0.0, None, None
    )


def test_which_step_instances_hold_their_semaphore() -> None:
    status = {
        "steps": [
            {"name": "load", "index": 0, "phase": "Running", "attempts": 1, "run": 1},
            {"name": "load", "index": 1, "phase": "Retrying", "attempts": 1, "run": 1},
            # back in line after a preemption; due for its next attempt
            {"name": "load", "index": 2, "phase": "Pending", "attempts": 1, "run": 2, "reason": "Preempted"},
            {
                "name": "load",
                "index": 13,
                "phase": "Pending",
                "attempts": 2,
                "run": 1,
                "reason": "FailedExit",
            },
            {
                "name": "load",
                "index": 3,
                "phase": "Pending",
                "attempts": 1,
                "message": "waiting for semaphore",
            },
            {"name": "load", "index": 4, "phase": "Succeeded", "attempts": 1, "run": 1},
            {"name": "load", "index": 5, "phase": "Pending", "attempts": 1, "run": 2},  # rerun by a restart
            {"name": "load", "index": 6, "phase": "Pending", "attempts": 1},
            {"name": "load", "index": 7, "phase": "Failed", "attempts": 3, "run": 3},
            {"name": "load", "indexes": "8-9", "phase": "Running", "attempts": 1, "run": 1},
            {"name": "load", "indexes": "10-11", "phase": "Succeeded", "run": 1},
            {"name": "other", "phase": "Running", "attempts": 1, "run": 1},  # takes no semaphore
        ]
    }
    pods = [
        obs("load-5", 2, "Failed"),  # the restarted instance's old pod: not a hold
        obs("load-6", 1, "Failed"),  # newer than its status (a status write not seen yet): a hold
        obs("load-7", 3, "Running"),  # ended, but its pod still runs (being stopped): a hold
        obs("load-10", 1, "Succeeded"),
        obs("other", 1, "Running"),
    ]
    holding = holding_instances(status, {"load"}, pods, admitted={"load-3", "other", "load-12"})
    held = [0, 1, 2, 3, 6, 7, 8, 9, 12, 13]
    assert holding == {f"load-{i}": "load" for i in held}
    assert holding_instances(
        {"steps": [{"name": "gang", "phase": "Running", "attempts": 1}]}, {"gang"}, []
    ) == {"gang": "gang"}


def test_what_a_spec_declares() -> None:
    sem = {"semaphore": {"name": "db"}}
    spec = {
        "synchronization": {"semaphore": {"name": "wf"}},
        "steps": [
            {"name": "a", "synchronization": sem},
            {"name": "b"},
            {"name": "same", "synchronization": {"semaphore": {"name": "wf"}}},  # the workflow holds it
            {"name": "child", "workflowTemplateRef": {"name": "t"}, "synchronization": sem},
        ],
        "onExit": {"synchronization": sem},
    }
    d = declared(spec)
    assert d is not None and d.workflow == {"name": "wf"}
    assert d.steps == {"a": {"name": "db"}, "on-exit": {"name": "db"}}
    assert declared({"steps": [{"name": "a"}], "onExit": {"name": "x"}}) is None


def member(name: str, *, created: str = "2025-01-01T00:00:00Z", status: dict | None = None, **spec) -> dict:
    steps = [{"name": "load", "synchronization": {"semaphore": {"name": "db", "limit": 2}}}, {"name": "free"}]
    return {
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
        "spec": {"steps": steps, **spec},
        "status": status or {},
    }


def req(
    workflow_name: str, instance: str, step_name: str = "load", index: int | None = None
) -> InstanceRequest:
    return InstanceRequest(
        f"ns/{workflow_name}/{instance}", instance, step_name, index, 1, 1, 1, False, {}, 0.0
    )


def verdicts(sem: Semaphores, requests: list[InstanceRequest]) -> dict[str, str | None]:
    for r in requests:
        gate = sem.gate(("ns", r.key.split("/")[1]))
        assert gate is not None and gate(r), r.key
    return sem.decide()


def test_waiters_are_ordered_by_priority_creation_name_then_step_and_index() -> None:
    running = {"steps": [{"name": "load", "phase": "Running", "attempts": 1, "run": 1}]}
    workflows = {
        ("ns", "holder"): member("holder", status=running),
        ("ns", "old"): member("old", created="2024-01-01T00:00:00Z"),
        ("ns", "urgent"): member("urgent", created="2026-01-01T00:00:00Z", priorityClassName="high"),
        ("ns", "fan"): member("fan"),
        ("ns", "plain"): {
            "metadata": {"name": "plain", "namespace": "ns"},
            "spec": {"steps": [{"name": "a"}]},
        },
        ("ns", "done"): member("done", status={"phase": "Succeeded"}),
    }
    sem = Semaphores()
    sem.refresh(workflows, lambda k: False, set(), lambda c: 100 if c == "high" else 0)
    assert sem.gate(("ns", "plain")) is None and sem.gate(("ns", "done")) is None
    gate = sem.gate(("ns", "holder"))
    assert gate is not None and not gate(req("holder", "load")) and not gate(req("holder", "free", "free"))
    out = verdicts(
        sem,
        [req("fan", f"load-{i}", index=i) for i in (10, 2)] + [req("old", "load"), req("urgent", "load")],
    )
    # limit 2, one holder: one may go, the urgent one (priority); then the oldest; then fan's by index.
    assert out == {
        "ns/urgent/load": None,
        "ns/old/load": "waiting for semaphore db: 1/2 held by holder/load; 1 in line",
        "ns/fan/load-2": "waiting for semaphore db: 1/2 held by holder/load; 2 in line",
        "ns/fan/load-10": "waiting for semaphore db: 1/2 held by holder/load; 3 in line",
    }


def test_a_workflow_holder_and_step_holders_share_a_count_and_a_config_map_limit_holds_back() -> None:
    whole = {
        "metadata": {"name": "whole", "namespace": "ns"},
        "spec": {"synchronization": {"semaphore": {"name": "db", "limit": 3}}, "steps": [{"name": "a"}]},
        "status": {"steps": [{"name": "a", "phase": "Running", "run": 1}]},
    }
    from_cm = member("cm")
    from_cm["spec"]["steps"][0]["synchronization"] = {
        "semaphore": {"name": "db", "configMapKeyRef": {"name": "limits", "key": "db"}}
    }
    workflows = {
        ("ns", "whole"): whole,
        ("ns", "admitted"): member("admitted"),
        ("ns", "next"): member("next"),
        ("ns", "cm"): from_cm,
    }
    sem = Semaphores()
    sem.refresh(workflows, lambda k: False, {"ns/admitted/load", "other/x/load"}, lambda c: 0)
    out = verdicts(sem, [req("next", "load"), req("cm", "load")])
    assert out == {
        # The smallest limit (2) with two holders, the workflow and a step instance admitted a moment ago.
        "ns/next/load": "waiting for semaphore db: 2/2 held by admitted/load, whole; 1 in line",
        "ns/cm/load": "semaphore db: ConfigMap limits not found (it sets the limit)",
    }


def test_what_a_spec_declares_is_worked_out_once_per_object(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    real = sync.declared
    monkeypatch.setattr(sync, "declared", lambda spec: calls.append(spec) or real(spec))
    workflows = {("ns", n): member(n) for n in ("a", "b")} | {
        ("ns", "plain"): {"metadata": {"name": "plain"}, "spec": {"steps": []}}
    }
    sem = Semaphores()
    for _ in range(3):
        sem.refresh(workflows, lambda k: False, set(), lambda c: 0)
    assert len(calls) == 3
    workflows[("ns", "a")] = member("a")  # a new object (a watch event): worked out again
    del workflows[("ns", "b")]
    sem.refresh(workflows, lambda k: False, set(), lambda c: 0)
    assert len(calls) == 4 and ("ns", "b") not in sem._declared
