"""`meson simulate`: trace and queue files read or refused with the line and field, the replay through
the operator's core (a change of quota shows in the figures), a live cluster's work, and the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meson import simulate as sim
from meson.cli import main

QUEUES = """\
apiVersion: meson.dev/v1alpha1
kind: Queue
metadata: {name: root}
spec:
  quota: {cpu: {guaranteed: "8"}}
---
apiVersion: meson.dev/v1alpha1
kind: Queue
metadata: {name: research}
spec:
  parent: root
  quota: {cpu: {guaranteed: "2", limit: "8"}}
---
apiVersion: meson.dev/v1alpha1
kind: Queue
metadata: {name: prod}
spec:
  parent: root
  quota: {cpu: {guaranteed: "6", limit: "8"}}
"""
# research may no longer borrow: its 2 CPUs only.
NO_BORROWING = """\
apiVersion: meson.dev/v1alpha1
kind: Queue
metadata: {name: research}
spec:
  parent: root
  quota:
    cpu: {guaranteed: "2", limit: "2"}
"""
# research: 6 one-CPU jobs of 100 s at 0; prod: 6 one-CPU jobs of 100 s at 50 s.
TRACE = "arrival,queue,cpu,duration,priority\n" + "".join(
    f"{0 if q == 'research' else 50},{q},1,100,0\n" for q in ["research"] * 6 + ["prod"] * 6
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_quota_change_shows_in_time_to_admission_and_borrowing(tmp_path: Path):
    queues = sim.load_queues(write(tmp_path, "q.yaml", QUEUES))
    trace = sim.load_trace(write(tmp_path, "t.csv", TRACE))
    before = sim.replay(queues, trace)
    after = sim.replay(sim.merge(queues, sim.load_queues(write(tmp_path, "c.yaml", NO_BORROWING))), trace)
    # Before: research borrows 4 of the idle CPUs at once; prod waits for them (no reclaim by default).
    assert before["research"].tta_p50 == 0 and before["research"].borrowed_share == pytest.approx(4 / 6)
    assert before["prod"].tta_p90 == 50  # from 50 s to 100 s, when research's jobs end
    # After: research runs 2 at a time (0, 100, 200 s), prod starts at once.
    assert after["research"].tta_p90 == 200 and after["research"].borrowed_share == 0
    assert after["prod"].tta_p50 == 0 and after["prod"].admitted == 6
    assert (before["prod"].preemptions, after["prod"].preemptions) == (0, 0)


def test_a_queue_set_the_core_refuses_is_reported_with_its_reason(tmp_path: Path):
    queues = sim.load_queues(write(tmp_path, "q.yaml", QUEUES))
    bigger = NO_BORROWING.replace('guaranteed: "2", limit: "2"', 'guaranteed: "4", limit: "4"')
    changed = sim.merge(queues, sim.load_queues(write(tmp_path, "c.yaml", bigger)))
    after = sim.replay(changed, sim.load_trace(write(tmp_path, "t.csv", TRACE)))
    assert after["research"].admitted == 0 and "below the guarantees" in after["research"].disabled


def test_json_traces_are_read_like_csv(tmp_path: Path):
    rows = [
        {"arrival": 0, "queue": "prod", "resources": {"cpu": "500m", "memory": "1Gi"}, "duration": 5},
        {"arrival": 1.5, "queue": "prod", "resources": {"cpu": 2}, "duration": 5, "priority": 10, "pods": 2},
    ]
    (a, b) = sim.load_trace(write(tmp_path, "t.json", json.dumps({"workloads": rows}, indent=1)))
    assert a.workload.pod_request["cpu"] == 500 and a.workload.pod_request["memory"] == 1 << 30
    assert (b.workload.created, b.workload.priority, b.workload.pod_count) == (1.5, 10, 2)


BAD_JSON = '[\n {"arrival": 0, "queue": "prod", "resources": {"cpu": 1}, "duration": 1},\n {"arrival": 0}\n]'


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "t.csv",
            "arrival,queue,cpu,duration\n0,prod,1,10\n5,prod,1,ten\n",
            "line 3, field duration: 'ten' is not",
        ),
        ("t.csv", "arrival,queue,cpu\n0,prod,1\n", "t.csv: line 1, field duration: missing from the header"),
        (
            "t.csv",
            "arrival,queue,cpu,duration\n0,prod,lots,10\n",
            "line 2, field cpu: 'lots' is not a quantity",
        ),
        (
            "t.csv",
            "arrival,queue,cpu,duration\n-1,prod,1,10\n",
            "line 2, field arrival: '-1' must be a finite",
        ),
        ("t.json", BAD_JSON, "t.json: line 3 (workload 2), field resources: expected an object"),
        (
            "t.json",
            '[{"arrival": 0, "queue": "p", "resources": {}, "duration": 1, "prio": 3}]',
            "field prio: unknown",
        ),
        ("t.json", '[{"arrival": 0,', "t.json: line 1: not JSON"),
    ],
)
def test_a_malformed_trace_is_refused_with_its_line_and_field(
    tmp_path: Path, name: str, text: str, message: str
):
    with pytest.raises(sim.InputError) as e:
        sim.load_trace(write(tmp_path, name, text))
    assert message in str(e.value)


def test_a_malformed_queue_file_is_refused_with_its_line_and_field(tmp_path: Path):
    bad = QUEUES.replace('quota: {cpu: {guaranteed: "6", limit: "8"}}', 'quota: {cpu: {guaranteed: "six"}}')
    with pytest.raises(sim.InputError) as e:
        sim.load_queues(write(tmp_path, "q.yaml", bad))
    assert str(e.value).startswith(f"{tmp_path / 'q.yaml'}: line 19, field spec.quota.cpu.guaranteed")
    workflow = QUEUES.replace(
        "kind: Queue\nmetadata: {name: research}", "kind: Workflow\nmetadata: {name: x}"
    )
    with pytest.raises(sim.InputError, match=r"line 7, field kind: 'Workflow' is not a Queue"):
        sim.load_queues(write(tmp_path, "k.yaml", workflow))


def test_work_naming_an_unknown_queue_is_refused(tmp_path: Path):
    queues = sim.load_queues(write(tmp_path, "q.yaml", QUEUES))
    trace = sim.load_trace(write(tmp_path, "t.csv", "arrival,queue,cpu,duration\n0,nope,1,1\n"))
    with pytest.raises(sim.InputError, match="queues that do not exist: nope"):
        sim.replay(queues, trace)


def container(cpu: str) -> dict:
    return {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}


def test_live_work_takes_pending_steps_and_running_pods_with_their_remaining_time():
    wf = {
        "metadata": {"name": "etl", "namespace": "ns", "creationTimestamp": "2026-11-28T12:00:00Z"},
        "spec": {
            "queue": "prod",
            "priorityClassName": "high",
            "steps": [
                {"name": "a", "expectedDurationSeconds": 300, "template": {"spec": container("2")}},
                {"name": "b", "template": {"spec": container("1")}},
            ],
        },
        "status": {"phase": "Running", "steps": [{"name": "b", "indexes": "0-2", "phase": "Pending"}]},
    }
    labels = {"meson.dev/queue": "prod", "meson.dev/workflow": "etl", "meson.dev/step": "a"}
    pod = {
        "metadata": {"name": "etl-a-0", "namespace": "ns", "labels": labels},
        "spec": {"nodeName": "n1", "priority": 100, **container("2")},
        "status": {"phase": "Running", "startTime": "2026-11-28T12:01:00Z"},
    }
    now = sim.translate.epoch("2026-11-28T12:02:00Z")
    assert now is not None
    work = sim.live_work([wf], [], [pod], {"high": 100}, now, default_duration=50)
    assert [(t.workload.key, t.workload.priority, t.duration) for t in work.pending] == [
        (f"ns/etl/b[0-2]#{i}", 100, 50) for i in range(3)
    ]
    ((running, admitted),) = work.running
    assert running.duration == 300 - 60 and running.workload.pod_request["cpu"] == 2000
    assert admitted == now - 60
    stats = sim.replay(sim.load_queues_text(QUEUES), work.pending, work.running, work.start)
    # 2 CPUs run; three 1-CPU steps fit at once in prod's 6.
    assert stats["prod"].workloads == 3 and stats["prod"].tta_p90 == 0


def test_the_command_prints_before_and_after_and_refuses_bad_files(tmp_path: Path, capsys):
    q, t = write(tmp_path, "q.yaml", QUEUES), write(tmp_path, "t.csv", TRACE)
    change = write(tmp_path, "c.yaml", NO_BORROWING)
    assert main(["simulate", "--trace", str(t), "--queues", str(q), "-f", str(change)]) == 0
    out = capsys.readouterr().out
    research = next(line for line in out.splitlines() if "research (cpu)" in line)
    assert "67% → 0%" in research and "0s → " in research
    assert main(["simulate", "--trace", str(t), "--queues", str(q), "-o", "json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"before"}
    bad = write(tmp_path, "bad.csv", "arrival,queue,cpu,duration\n0,prod,1,x\n")
    assert main(["simulate", "--trace", str(bad), "--queues", str(q)]) == 2
    assert "bad.csv: line 2, field duration" in capsys.readouterr().err


def test_live_work_of_a_queue_that_no_longer_exists_is_left_out():
    queues = sim.load_queues_text(QUEUES)
    cpu = sim.Resources(cpu=1000)
    gone = sim.TraceItem(sim.Workload("ns/old-pod", "deleted", 0, 0.0, cpu), 50.0)
    waiting = sim.TraceItem(sim.Workload("ns/wf/a", "prod", 0, 5.0, cpu), 10.0)
    stats = sim.replay(queues, [waiting], running=[(gone, 0.0)], start=10.0)
    assert set(stats) == {"prod"} and stats["prod"].tta_p50 == 0
