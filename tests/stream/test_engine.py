"""Behaviour of the pure stream engine, driven by the simulator in virtual time."""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest

from meson.stream import plan_stream, revision_name
from tests.stream.sim import Sim, streamjob, template


def running(sim: Sim) -> bool:
    return sim.status.get("phase") == "Running"


def stable(sim: Sim) -> bool:
    return running(sim) and "rolloutStartedAt" not in sim.status


def deployed(replicas: int = 3, **spec) -> Sim:
    sim = Sim(streamjob(replicas, **spec))
    sim.until(stable)
    return sim


def test_deploy_three_replicas_becomes_running():
    sim = Sim(streamjob(3))
    plan = sim.cycle()
    assert sim.status["phase"] == "Deploying"
    assert [r.key for r in plan.pending] == ["ns/sj/0", "ns/sj/1", "ns/sj/2"]
    pod = plan.pending[0].pods[0]
    rev = revision_name(template())
    assert pod["metadata"]["name"] == f"sj-{rev}-0-1"
    labels = pod["metadata"]["labels"]
    assert labels["meson.dev/streamjob"] == "sj" and labels["meson.dev/slot"] == "0"
    assert labels["meson.dev/revision"] == rev and labels["meson.dev/run"] == "1" and labels["app"] == "proc"
    assert labels["meson.dev/queue"] == "default"
    assert pod["spec"]["restartPolicy"] == "Always"
    assert plan.pending[0].pod_request == {"cpu": 500, "memory": 1 << 30}
    assert plan.record_revisions == {rev: template()}
    sim.until(running)
    assert sim.status["readyReplicas"] == 3 and sim.status["selector"] == "meson.dev/streamjob=sj"
    sim.until(stable)
    assert sim.status["stableRevision"] == rev
    assert "Deployed" in sim.events()
    plan = sim.cycle()
    assert not plan.pending and len(plan.admitted) == 3 and not plan.delete_pods
    conds = {c["type"]: (c["status"], c["reason"]) for c in sim.status["conditions"]}
    assert conds == {
        "Available": ("True", "MinimumReplicasAvailable"),
        "Progressing": ("True", "NewRevisionAvailable"),
        "Valid": ("True", "Valid"),
    }


def test_priority_class_and_queue_reach_the_pods():
    sim = Sim(streamjob(1, queue="analytics", priorityClassName="high"))
    (req,) = sim.cycle().pending
    assert req.pods[0]["spec"]["priorityClassName"] == "high"
    assert req.pods[0]["metadata"]["labels"]["meson.dev/queue"] == "analytics"


@pytest.mark.parametrize(
    ("surge", "unavailable", "replicas"),
    [(1, 0, 3), (0, 1, 3), (2, 1, 5), ("25%", "25%", 4), ("50%", 0, 6)],
)
def test_image_change_rolls_within_bounds(surge, unavailable, replicas):
    strategy = {"maxSurge": surge, "maxUnavailable": unavailable}
    sim = deployed(replicas, updateStrategy=strategy)
    old = sim.status["currentRevision"]
    sim.set_spec(template=template("proc:2"))
    abs_surge = surge if isinstance(surge, int) else -(-int(surge[:-1]) * replicas // 100)
    abs_unavail = unavailable if isinstance(unavailable, int) else int(unavailable[:-1]) * replicas // 100

    def check(s: Sim) -> None:
        live = s.live()
        ready = [p for p in live if p.ready_since is not None and p.deleting_at is None]
        assert len(ready) >= replicas - abs_unavail, s.status
        assert len(live) <= replicas + abs_surge, s.status

    plan = sim.cycle()
    assert sim.status["phase"] == "Updating"
    assert "RolloutStarted" in [e.reason for e in plan.events]
    for _ in range(300):
        if stable(sim):
            break
        sim.cycle()
        check(sim)
    new = revision_name(template("proc:2"))
    assert sim.status["stableRevision"] == new and sim.status["currentRevision"] == new
    assert sim.status["previousRevision"] == old
    sim.run(3, check=check)  # the last old pod is gone
    assert {p.revision for p in sim.live()} == {new} and len(sim.live()) == replicas
    assert "RolloutComplete" in sim.events()
    assert set(sim.revisions) == {old, new} and sim.status["revisionHistory"] == [old, new]


def test_never_ready_update_rolls_back_within_deadline_and_old_pods_serve():
    sim = deployed(3, progressDeadlineSeconds=60)
    old = sim.status["currentRevision"]
    old_pods = {p.name for p in sim.live()}
    sim.set_spec(template=template("proc:2", never_ready="true"))
    bad = revision_name(template("proc:2", never_ready="true"))
    start = sim.now

    def serving(s: Sim) -> None:
        ready_old = [p for p in s.live() if p.revision == old and p.ready_since is not None]
        assert len(ready_old) >= 3
        assert len(s.live()) <= 4

    sim.run(30, check=serving)
    assert sim.status["phase"] == "Updating"
    sim.until(lambda s: s.status.get("phase") == "RollingBack", limit=40)
    assert sim.now - start <= 62
    assert "RolledBack" in sim.events()
    progressing = next(c for c in sim.status["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")
    sim.until(stable, limit=60)
    assert {p.name for p in sim.live()} == old_pods  # the old pods served throughout
    assert sim.status["currentRevision"] == old and sim.status["failedRevision"] == bad
    progressing = next(c for c in sim.status["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "RolledBack")
    # Not retried while the template stays the failed one.
    sim.run(200, check=serving)
    assert all(p.revision == old for p in sim.pods.values())
    # A new template rolls out again.
    sim.set_spec(template=template("proc:3"))
    sim.until(lambda s: stable(s) and s.status["currentRevision"] == revision_name(template("proc:3")))
    assert "failedRevision" not in sim.status


def test_scale_up_then_down_deletes_newest_slots_first():
    sim = deployed(3)
    sim.set_spec(replicas=6)
    plan = sim.cycle()
    assert [r.index for r in plan.pending] == [3, 4, 5]
    assert "ScaledUp" in [e.reason for e in plan.events]
    sim.until(lambda s: stable(s) and s.status["readyReplicas"] == 6)
    sim.set_spec(replicas=2)
    plan = sim.cycle()
    assert sorted(int(d.name.rsplit("-", 2)[1]) for d in plan.delete_pods) == [2, 3, 4, 5]
    assert {d.reason for d in plan.delete_pods} == {"ScaledDown"}
    assert "ScaledDown" in [e.reason for e in plan.events]
    sim.until(lambda s: len(s.pods) == 2)
    assert sorted(p.slot for p in sim.pods.values()) == [0, 1]
    sim.cycle()
    assert sim.status["replicas"] == 2 and sim.status["phase"] == "Running"


def test_suspend_deletes_every_pod_and_resume_redeploys():
    sim = deployed(3)
    sim.set_spec(desiredState="Suspended")
    plan = sim.cycle()
    assert sim.status["phase"] == "Suspended" and "Suspended" in [e.reason for e in plan.events]
    assert {d.reason for d in plan.delete_pods} == {"Suspended"} and len(plan.delete_pods) == 3
    assert not plan.pending
    sim.run(5)
    assert not sim.pods and not sim.plans[-1].admitted
    sim.set_spec(desiredState="Running")
    plan = sim.cycle()
    assert "Resumed" in [e.reason for e in plan.events] and len(plan.pending) == 3
    sim.until(stable)
    assert sim.status["readyReplicas"] == 3


def test_crash_loop_beyond_budget_fails_and_restart_clears():
    budget = {"maxRestarts": 3, "windowSeconds": 60}
    sim = Sim(streamjob(2, template=template(crash_loop="true"), restartBudget=budget))
    sim.until(lambda s: s.status.get("phase") == "Failed", limit=60)
    assert "RestartBudgetExceeded" in sim.events()
    available = next(c for c in sim.status["conditions"] if c["type"] == "Available")
    assert (available["status"], available["reason"]) == ("False", "RestartBudgetExceeded")
    assert sim.status["restartsInWindow"] > 3
    sim.run(10)
    assert not sim.pods and sim.status["phase"] == "Failed"
    # Fixed template + restart: redeploys.
    sim.set_spec(template=template("proc:2"), restarts=1)
    sim.until(stable)
    assert sim.status["readyReplicas"] == 2 and "failed" not in sim.status


def test_failed_pod_is_replaced_with_next_run_after_backoff():
    sim = deployed(2)
    victim = next(p for p in sim.pods.values() if p.slot == 1)
    victim.phase = "Failed"
    victim.ready_since = None
    plan = sim.cycle()
    assert "ReplicaRestarted" in [e.reason for e in plan.events]
    assert sim.status["restarts"] == 1 and sim.status["slotFailures"][0]["run"] == 1
    sim.until(lambda s: any(p.slot == 1 and p.run == 2 for p in s.pods.values()), limit=10)
    sim.until(lambda s: "slotFailures" not in s.status, limit=30)  # the replacement is available
    assert not [p for p in sim.pods.values() if p.phase == "Failed"]  # the failed pod was deleted
    # Two quick failures: the second waits 2 s.
    for expected_wait in (1, 2):
        pod = next(p for p in sim.live() if p.slot == 0)
        pod.phase = "Failed"
        sim.cycle(0.5)
        failed_at = sim.now
        run = pod.run
        sim.until(lambda s, run=run: any(p.slot == 0 and p.run > run for p in s.pods.values()), dt=0.5)
        assert sim.now - failed_at >= expected_wait - 0.5


def test_gone_tombstone_counts_as_a_failure():
    sim = deployed(1)
    (pod,) = sim.live()
    pod.phase = "Gone"
    plan = sim.cycle()
    assert sim.status["restarts"] == 1 and plan.wake_at is not None


def test_same_inputs_same_plan():
    sim = deployed(3)
    sim.set_spec(template=template("proc:2"), replicas=4)
    sim.run(3)
    a, b = sim.plan(), sim.plan()
    assert a == b


def test_stale_status_replay_creates_no_duplicates():
    sim = Sim(streamjob(3))
    stale = None
    for step in range(120):
        if step == 30:
            sim.set_spec(template=template("proc:2"))
        if step == 70:
            sim.set_spec(replicas=5)
        previous = copy.deepcopy(sim.job.get("status"))
        sim.cycle()
        if stale is not None and step % 3 == 0:
            sim.job["status"] = stale  # the last status write was lost: replay a one-cycle-old one
            sim.cycle()  # Sim.apply asserts no pod name is created twice
        stale = previous
    assert len(sim.created_names) == len(set(sim.created_names))
    sim.until(stable)
    assert len(sim.live()) == 5


def test_revision_history_is_bounded():
    sim = deployed(1, revisionHistoryLimit=2)
    for i in range(2, 7):
        sim.set_spec(template=template(f"proc:{i}"))
        sim.until(
            lambda s, i=i: stable(s) and s.status["currentRevision"] == revision_name(template(f"proc:{i}"))
        )
    sim.run(3)  # the last old pod is gone: its revision is no longer protected
    assert len(sim.revisions) == 3  # the current one and two old ones
    assert len(sim.status["revisionHistory"]) == 3


def test_invalid_spec_is_refused():
    job = streamjob(2, updateStrategy={"maxSurge": 0, "maxUnavailable": 0})
    plan = plan_stream(job, [], {}, 1.7e9)
    assert plan.status["phase"] == "Failed" and not plan.pending
    valid = next(c for c in plan.status["conditions"] if c["type"] == "Valid")
    assert valid["status"] == "False"


FORBIDDEN = ("kubernetes", "kopf", "meson.controllers", "meson.adapters", "meson.core")


def test_stream_engine_is_pure():
    package = Path(__file__).resolve().parents[2] / "meson" / "stream"
    files = sorted(package.glob("*.py"))
    assert files
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert not any(name == f or name.startswith(f + ".") for f in FORBIDDEN), (path.name, name)
